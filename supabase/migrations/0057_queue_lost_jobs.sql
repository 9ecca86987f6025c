-- Fix (0053): a job whose worker dies on every attempt (killed, OOM, a handler that takes the
-- process down) was redelivered forever: attempts are counted at claim, but only a settle
-- compared them with the limit, and a dead worker never settles. Now a claim first
-- "rescues" the kind's lost jobs: processing jobs whose lease expired on their last allowed
-- attempt go to the dead-letter queue (reason "worker lost…") instead of running again.
-- claim_jobs therefore takes the worker's retry policy too (p_policy, the same jsonb as
-- settle_jobs': {"max_attempts"}), so both sides apply the same limit.

-- Dead-letters lost jobs of one kind. Only locks it can take without waiting (SKIP LOCKED on
-- the message first, then the job), so it never deadlocks with a claim (message, then job)
-- or a settle (job, then message) running at the same time; what it skips, a later claim
-- rescues. Cheap: it reads only processing jobs (partial index jobs_processing_queue_idx).
create function conveyor.rescue_lost_jobs(
  p_kind text,
  p_max_attempts int,
  p_now timestamptz
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_cand record;
  v_job public.jobs;
  v_locked bigint;
  v_n int := 0;
begin
  for v_cand in
    select j.id, j.queue_name, j.msg_id
    from public.jobs j
    left join public.queues q on q.tenant_id = j.tenant_id and q.kind = j.kind
    where j.kind = p_kind and j.status = 'processing' and j.locked_until <= p_now
      and j.attempts >= coalesce(j.max_attempts, q.max_attempts, p_max_attempts)
    limit 100
  loop
    execute format('select msg_id from pgmq.%I where msg_id = $1 for update skip locked',
                   'q_' || v_cand.queue_name)
      into v_locked using v_cand.msg_id;
    continue when v_locked is null;
    select * into v_job from public.jobs j
    where j.id = v_cand.id and j.status = 'processing' and j.locked_until <= p_now
    for update skip locked;
    continue when v_job.id is null;
    perform conveyor.dead_letter(
      v_job,
      format('worker lost: the lease of attempt %s expired without a settle', v_job.attempts),
      v_job.errors || jsonb_build_array(jsonb_build_object(
        'message', 'lease expired without a settle (worker lost)',
        'stack', null, 'attempt', v_job.attempts, 'at', p_now)),
      p_now);
    v_n := v_n + 1;
  end loop;
  return v_n;
end
$$;

revoke all on function conveyor.rescue_lost_jobs(text, int, timestamptz) from public;

drop function public.claim_jobs(text, text, int, int, timestamptz);

-- claim_jobs: as in 0053 (up to p_qty jobs of one kind, fast before normal before bulk,
-- attempts counted at claim), after rescuing the kind's lost jobs.
create function public.claim_jobs(
  p_kind text,
  p_worker text,
  p_qty int default 10,
  p_vt int default null,
  p_now timestamptz default null,
  p_policy jsonb default '{}'
) returns setof conveyor.claimed_job
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_kind conveyor.job_kinds;
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_max int := coalesce((p_policy ->> 'max_attempts')::int,
                        conveyor.setting_int('max_attempts')::int);
  v_tier text;
  v_left int := p_qty;
  v_n int;
begin
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind;
  if not found then
    raise exception 'claim_jobs: unsupported kind %', p_kind;
  end if;
  if p_qty is null or p_qty < 1 or p_qty > 1000 then
    raise exception 'claim_jobs: p_qty must be between 1 and 1000';
  end if;
  if v_vt < 1 or v_vt > 43200 then
    raise exception 'claim_jobs: p_vt must be between 1 and 43200 seconds';
  end if;
  if coalesce(btrim(p_worker), '') = '' then
    raise exception 'claim_jobs: p_worker must name the worker';
  end if;
  if p_policy is not null and jsonb_typeof(p_policy) <> 'object' then
    raise exception 'claim_jobs: p_policy must be a JSON object';
  end if;

  perform conveyor.rescue_lost_jobs(p_kind, v_max, v_now);

  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    exit when v_left <= 0;
    return query
    with msgs as (
      select * from conveyor.read_queue(conveyor.tier_queue(v_kind.queue_name, v_tier),
                                        v_vt, v_left, v_kind.service_name, v_now)
    ), claimed as (
      update public.jobs j
      set status = 'processing',
          attempts = j.attempts + 1,
          lease_id = gen_random_uuid(),
          locked_by = p_worker,
          locked_until = m.vt,
          started_at = coalesce(j.started_at, v_now),
          updated_at = v_now
      from msgs m
      where j.id = (m.message ->> 'job_id')::uuid
        and j.msg_id = m.msg_id
        and j.status in ('pending', 'processing')
      returning j.id, j.lease_id, j.kind, j.queue_name, j.msg_id, j.tenant_id, j.priority,
                j.attempts, j.max_attempts, j.payload, j.headers, m.enqueued_at, j.locked_until
    ), events as (
      insert into public.job_events (job_id, tenant_id, type, payload)
      select c.id, c.tenant_id, 'claimed',
             jsonb_build_object('attempt', c.attempts, 'worker', p_worker, 'msg_id', c.msg_id,
                                'lease_id', c.lease_id, 'locked_until', c.locked_until)
      from claimed c
    )
    select c.id, c.lease_id, c.kind, c.queue_name, c.msg_id, c.tenant_id, c.priority,
           c.attempts, c.max_attempts, c.payload, c.headers, c.enqueued_at, c.locked_until
    from claimed c;
    get diagnostics v_n = row_count;
    v_left := v_left - v_n;
  end loop;
end
$$;

revoke all on function public.claim_jobs(text, text, int, int, timestamptz, jsonb)
  from public, anon, authenticated;
grant execute on function public.claim_jobs(text, text, int, int, timestamptz, jsonb)
  to service_role;
