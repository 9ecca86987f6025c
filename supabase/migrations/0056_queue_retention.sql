-- Retention (RETENTION_HOURS, conveyor.settings.retention_hours): finished jobs and what
-- hangs off them (events, idempotency keys, critical and dead-letter rows: ON DELETE CASCADE
-- in 0011_tenant_tables.sql), the per-minute counts (conveyor.job_counts) and the archive
-- rows (pgmq a_ tables) of our queues, once older than the retention. Live jobs (pending, processing) are never touched, however old. An
-- idempotency key lives as long as its job, so a retry within the retention still gets
-- the same id.
--
-- Run hourly by pg_cron where it exists; callable by hand (service_role) with an explicit
-- retention and clock for tests: conveyor.prune(1, now() + interval '2 hours').

create function conveyor.prune(
  p_retention_hours int default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hours int := coalesce(p_retention_hours, conveyor.setting_int('retention_hours')::int);
  v_cutoff timestamptz;
  v_jobs bigint;
  v_archived bigint := 0;
  v_n bigint;
  v_queue text;
begin
  if v_hours is null or v_hours < 1 then
    raise exception 'prune: the retention must be at least 1 hour (got %)', v_hours;
  end if;
  v_cutoff := coalesce(p_now, now()) - make_interval(hours => v_hours);

  -- A job finished before the cutoff was also created before it: a range of jobs_pkey (ids
  -- are time-ordered, 0011_tenant_tables.sql), of which only jobs still live or finished
  -- since stay behind. No index on finished_at is needed (it would make every settle a
  -- non-HOT update).
  delete from public.jobs j
  where j.id < conveyor.job_id_floor(v_cutoff)
    and j.finished_at < v_cutoff and j.status in ('completed', 'failed');
  get diagnostics v_jobs = row_count;
  delete from conveyor.job_counts c where c.minute < v_cutoff;

  -- Archives of our queues (every tier of every kind, and the dead-letter queue), through
  -- pgmq's archived_at index.
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    union all
    select conveyor.dlq_name()
  loop
    continue when to_regclass(format('pgmq.%I', 'a_' || v_queue)) is null;
    execute format('delete from pgmq.%I where archived_at < $1', 'a_' || v_queue)
      using v_cutoff;
    get diagnostics v_n = row_count;
    v_archived := v_archived + v_n;
  end loop;

  return jsonb_build_object('cutoff', v_cutoff, 'retention_hours', v_hours,
                            'jobs', v_jobs, 'archived_messages', v_archived);
end
$$;

comment on function conveyor.prune(int, timestamptz) is
  'Deletes finished jobs (with their events, keys, critical and dead-letter rows) and archived queue messages older than the retention.';

revoke all on function conveyor.prune(int, timestamptz) from public;
grant execute on function conveyor.prune(int, timestamptz) to service_role;

-- Hourly, where pg_cron exists (it exists only in cron.database_name; a scratch database
-- built from the same migrations simply has no schedule). cron.schedule(name, …) upserts,
-- so re-running this file is harmless.
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-retention', '17 * * * *', 'select conveyor.prune()');
  end if;
end
$$;
