-- queue_metrics (seed 004): a snapshot per pgmq queue and tenant every minute (pg_cron), or
-- on demand with an explicit clock: depth (pending jobs), in_flight (processing), the age
-- of the oldest job that is ready and waiting, and the jobs that finished in the interval
-- since the previous snapshot (processed = completed, failed = dead-lettered/cancelled).
--
-- Read from the ledger, not from pgmq: the ledger knows the tenant and the outcome. Live
-- jobs are few (they leave pending/processing when settled), and finished ones are read
-- through jobs_finished_at_idx, so a snapshot costs the live set plus the last minute,
-- never the history. A (queue, tenant) with nothing live and nothing finished in the
-- interval writes no row: an idle system writes nothing.

insert into conveyor.settings (key, value, description) values
  ('metrics_retention_hours', '168', 'queue_metrics snapshots older than this are pruned')
on conflict (key) do nothing;

-- When snapshots were taken (also for idle minutes, so the next interval starts there).
create table conveyor.metric_snapshots (
  captured_at timestamptz primary key,
  interval_sec int not null,
  rows_written int not null
);

create function public.capture_queue_metrics(p_now timestamptz default null)
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
  v_prev timestamptz;
  v_rows int;
begin
  -- Two concurrent calls (cron + an operator) must not both count the same interval.
  perform pg_advisory_xact_lock(hashtext('conveyor.capture_queue_metrics'));
  if exists (select 1 from conveyor.metric_snapshots s where s.captured_at >= v_now) then
    return 0; -- this instant (or a later one) is already captured
  end if;
  select max(s.captured_at) into v_prev from conveyor.metric_snapshots s;
  v_prev := coalesce(v_prev, v_now - interval '1 minute');

  with live as (
    select j.tenant_id, j.queue_name,
           count(*) filter (where j.status = 'pending') as depth,
           count(*) filter (where j.status = 'processing') as in_flight,
           min(j.run_at) filter (where j.status = 'pending' and j.run_at <= v_now) as oldest
    from public.jobs j
    where j.status in ('pending', 'processing')
    group by j.tenant_id, j.queue_name
  ), done as (
    select j.tenant_id, j.queue_name,
           count(*) filter (where j.status = 'completed') as processed,
           count(*) filter (where j.status = 'failed') as failed
    from public.jobs j
    where j.finished_at > v_prev and j.finished_at <= v_now
      and j.status in ('completed', 'failed')
    group by j.tenant_id, j.queue_name
  )
  insert into public.queue_metrics (tenant_id, queue_name, captured_at, depth, in_flight,
                                    oldest_age_sec, processed, failed, interval_sec)
  select coalesce(l.tenant_id, d.tenant_id), coalesce(l.queue_name, d.queue_name), v_now,
         coalesce(l.depth, 0), coalesce(l.in_flight, 0),
         greatest(0, floor(extract(epoch from v_now - l.oldest)))::int,
         coalesce(d.processed, 0), coalesce(d.failed, 0),
         ceil(extract(epoch from v_now - v_prev))::int
  from live l
  full join done d on d.tenant_id = l.tenant_id and d.queue_name = l.queue_name;
  get diagnostics v_rows = row_count;

  insert into conveyor.metric_snapshots (captured_at, interval_sec, rows_written)
  values (v_now, ceil(extract(epoch from v_now - v_prev))::int, v_rows);

  -- Retention: through the captured_at indexes.
  delete from public.queue_metrics m
  where m.captured_at < v_now - make_interval(hours => conveyor.setting_int('metrics_retention_hours')::int);
  delete from conveyor.metric_snapshots s
  where s.captured_at < v_now - make_interval(hours => conveyor.setting_int('metrics_retention_hours')::int);
  return v_rows;
end
$$;

comment on function public.capture_queue_metrics(timestamptz) is
  'Writes one queue_metrics snapshot per (tenant, queue) with activity; returns the rows written.';

revoke all on function public.capture_queue_metrics(timestamptz) from public, anon, authenticated;
grant execute on function public.capture_queue_metrics(timestamptz) to service_role;

do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-queue-metrics', '* * * * *',
                          'select public.capture_queue_metrics()');
  end if;
end
$$;
