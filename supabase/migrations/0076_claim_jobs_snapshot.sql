-- Fix (0057): claim_jobs read messages and updated their ledger rows in ONE statement. The
-- read runs inside a volatile function whose statements take fresh snapshots, while the
-- UPDATE used the outer statement's older one: a job enqueued during a claim could have its
-- message read (hidden for the visibility timeout, a rate-limit token spent) but its job row
-- not claimed, delaying it by a whole timeout. Found by the multi-tenant claim tests.

-- claim_jobs: as in 0057, with the read and the ledger update in separate statements.
create or replace function public.claim_jobs(
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
  v_msgs pgmq.message_record[];
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
    -- Read first, in a statement of its own: the UPDATE below then runs with a snapshot
    -- taken after the read, so it sees the ledger row of every message the read returned
    -- (both were committed together by conveyor.enqueue). In one statement the UPDATE kept
    -- the statement's older snapshot while read_queue's inner statements saw newer commits:
    -- a job enqueued meanwhile had its message hidden for a whole visibility timeout
    -- without being claimed.
    select coalesce(array_agg(m), '{}'::pgmq.message_record[]) into v_msgs
    from conveyor.read_queue(conveyor.tier_queue(v_kind.queue_name, v_tier),
                             v_vt, v_left, v_kind.service_name, v_now) m;
    continue when cardinality(v_msgs) = 0;
    return query
    with msgs as (
      select * from unnest(v_msgs)
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

