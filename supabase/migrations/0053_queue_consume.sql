-- Consuming the job queues (seed 002 on pgmq): claim, settle (complete / fail / snooze /
-- cancel), extend, release, redrive. Each is ONE SQL call in one transaction, batch-shaped
-- so a worker makes one round trip per batch, not per message. Called by the worker
-- runtime (service_role) through PostgREST RPC.
--
-- Leases: a claim gives every job a fresh lease_id and locked_until (= the message's vt).
-- A settle is accepted only with the current lease_id while the lease is live; anything
-- else (expired visibility, another worker re-claimed it) is refused and recorded as a
-- `settle_refused` event: the double-processing guard.
--
-- Order: each function after the ones it calls.
--   reading messages   take_rate_limit, read_queue (takes the rate limits of what it reads)
--   failing for good   backoff_ms, dead_letter, rescue_lost_jobs (claim rescues lost jobs)
--   claim and settle   claim_jobs, settle_jobs, complete_job, fail_job, settle_and_claim_jobs
--   the rest           extend_jobs, release_jobs, redrive_dead_job, queue_next_due_at

-- The row a claim hands to a worker.
create type conveyor.claimed_job as (
  job_id uuid,
  lease_id uuid,
  kind text,
  queue_name text,
  msg_id bigint,
  tenant_id uuid,
  priority text,
  attempt int,
  max_attempts int,
  payload jsonb,
  headers jsonb,
  enqueued_at timestamptz,
  locked_until timestamptz
);

-- ---------------------------------------------------------------------------------------
-- Reading messages
-- ---------------------------------------------------------------------------------------

-- Takes tokens and concurrency slots for up to p_want jobs of one tenant and service.
-- Returns how many were granted. The limiter row lock serialises concurrent claimers of
-- the same bucket, so slots (counted from live leases, which heals after a crashed worker)
-- and tokens can never be over-granted.
create function conveyor.take_rate_limit(
  p_tenant_id uuid,
  p_service text,
  p_want int,
  p_now timestamptz
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_lim public.rate_limiters;
  v_tokens numeric;
  v_busy int;
  v_grant int;
begin
  select * into v_lim from public.rate_limiters r
  where r.tenant_id = p_tenant_id and r.service_name = p_service
  for update;
  if not found then
    return p_want; -- no bucket configured for this tenant: not limited
  end if;
  v_tokens := least(v_lim.capacity, v_lim.tokens_available
    + v_lim.refill_per_sec * greatest(0, extract(epoch from p_now - v_lim.refilled_at)));
  select count(*) into v_busy
  from public.jobs j
  join conveyor.job_kinds k on k.kind = j.kind
  where j.tenant_id = p_tenant_id and k.service_name = p_service
    and j.status = 'processing' and j.locked_until > p_now;
  v_grant := greatest(0, least(p_want, floor(v_tokens)::int, v_lim.max_concurrent - v_busy));
  update public.rate_limiters r
  set tokens_available = v_tokens - v_grant,
      refilled_at = greatest(p_now, r.refilled_at)
  where r.tenant_id = p_tenant_id and r.service_name = p_service;
  return v_grant;
end
$$;

-- Locks up to p_qty visible messages of one pgmq queue and makes them invisible for p_vt
-- seconds. Without a service this is pgmq.read. With one, candidates are locked first
-- (FOR UPDATE SKIP LOCKED, as pgmq.read does) and only those whose tenant gets a token
-- and a slot are read; the rest stay visible with read_ct unchanged, which pgmq.read
-- cannot do (it makes every row it returns invisible). That path reads the queue table
-- directly, using pgmq 1.5.1's documented layout (msg_id, read_ct, vt, message, headers).
--
-- Limiter rows are locked in one global order, so concurrent claimers cannot deadlock.
-- claim_jobs calls this once per priority tier in one transaction; locking each tenant's
-- row as its messages came up would let two claimers that met tenants A and B in opposite
-- orders each hold one row and wait for the other's (tests/rate_limiters_test.ts: 8
-- claimers, two tenants, two tiers). So the first call of a transaction locks every
-- limiter row it needs at once, sorted by tenant_id; a later call (the next tier), which
-- already holds rows, never waits: it takes the rows it can with SKIP LOCKED, and a tenant
-- whose bucket another claimer is serving gets nothing from this claim (its messages stay
-- visible for that claimer or the next call). The marker is the transaction-local setting
-- conveyor.limiter_locks_held, which only this function sets.
--
-- A token and a slot are taken in the claim's transaction; slots are counted from live
-- leases (processing jobs whose lock has not expired), so completing, failing or releasing
-- a job frees its slot, and a crashed worker's slot heals when its lease ends.
create function conveyor.read_queue(
  p_queue text,
  p_vt int,
  p_qty int,
  p_service text,
  p_now timestamptz
) returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
declare
  v_msg_ids bigint[] := '{}';
  v_msg_tenants uuid[] := '{}';
  v_tenants uuid[];
  v_limited uuid[];
  v_locked uuid[];
  v_tenant uuid;
  v_group bigint[];
  v_ids bigint[] := '{}';
  v_granted int;
begin
  if p_qty <= 0 then
    return;
  end if;
  if p_service is null then
    return query select * from pgmq.read(p_queue, p_vt, p_qty);
    return;
  end if;

  -- Candidates: visible messages, locked as pgmq.read locks them (SKIP LOCKED), in a
  -- window larger than the batch so one throttled tenant at the head does not starve the
  -- others behind it. pgmq 1.5.1's documented table layout (msg_id, read_ct, vt, message).
  execute format(
    $q$select coalesce(array_agg(c.msg_id order by c.msg_id), '{}'),
              coalesce(array_agg((c.message ->> 'tenant_id')::uuid order by c.msg_id), '{}')
       from (select msg_id, message from pgmq.%I
             where vt <= clock_timestamp()
             order by msg_id
             limit $1
             for update skip locked) c$q$, 'q_' || p_queue)
    into v_msg_ids, v_msg_tenants
    using p_qty * 4 + 10;
  if cardinality(v_msg_ids) = 0 then
    return;
  end if;

  select array_agg(distinct t order by t) into v_tenants from unnest(v_msg_tenants) as t;
  select coalesce(array_agg(r.tenant_id), '{}') into v_limited
  from public.rate_limiters r
  where r.service_name = p_service and r.tenant_id = any (v_tenants);

  if coalesce(current_setting('conveyor.limiter_locks_held', true), '') = '' then
    -- Holding no limiter row yet: wait for them, in tenant_id order.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update) l;
  else
    -- Already holding some (an earlier tier of this claim): never wait while holding.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update skip locked) l;
  end if;
  if cardinality(v_locked) > 0 then
    perform set_config('conveyor.limiter_locks_held', 'on', true);
  end if;

  -- Grants, tenant by tenant in the order of their oldest candidate.
  for v_tenant, v_group in
    select m.tenant, array_agg(m.id order by m.id)
    from unnest(v_msg_ids, v_msg_tenants) as m(id, tenant)
    group by m.tenant
    order by min(m.id)
  loop
    exit when cardinality(v_ids) >= p_qty;
    if v_tenant = any (v_limited) and not (v_tenant = any (v_locked)) then
      continue; -- its bucket is being served by another claimer right now
    end if;
    -- take_rate_limit's own FOR UPDATE finds the row already locked by us: no wait.
    -- A tenant without a bucket for this service is not limited (it returns p_want).
    v_granted := conveyor.take_rate_limit(v_tenant, p_service,
      least(cardinality(v_group), p_qty - cardinality(v_ids)), p_now);
    if v_granted > 0 then
      v_ids := v_ids || v_group[1:v_granted];
    end if;
  end loop;
  if cardinality(v_ids) = 0 then
    return;
  end if;
  return query execute format(
    $q$update pgmq.%I q
       set vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
       where q.msg_id = any($1)
       returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$q$,
    'q_' || p_queue) using v_ids, p_vt;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Failing for good
-- ---------------------------------------------------------------------------------------

-- Exponential backoff in milliseconds for the attempt that just failed (1-based).
create function conveyor.backoff_ms(p_attempt int, p_base_ms bigint, p_max_ms bigint)
returns bigint
language sql immutable
set search_path = ''
as $$
  select least(p_max_ms, (p_base_ms * power(2::numeric, greatest(p_attempt - 1, 0)))::numeric)::bigint
$$;

-- Moves a job to the dead-letter queue: archive its message, send a copy to q_dlq, record
-- dead_letter_jobs, mark it failed. (What happens to dead letters next:
-- 0061_dead_letters.sql.)
create function conveyor.dead_letter(
  p_job public.jobs,
  p_reason text,
  p_errors jsonb,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_dlq_msg bigint;
begin
  perform pgmq.archive(p_job.queue_name, p_job.msg_id);
  select m into v_dlq_msg from pgmq.send(
    queue_name => conveyor.dlq_name(),
    msg => jsonb_build_object('job_id', p_job.id, 'tenant_id', p_job.tenant_id,
                              'kind', p_job.kind, 'reason', p_reason,
                              'attempts', p_job.attempts, 'payload', p_job.payload),
    headers => p_job.headers
  ) as m;
  insert into public.dead_letter_jobs (tenant_id, job_id, kind, queue_name, payload, reason,
                                       errors, attempts, dlq_msg_id)
  values (p_job.tenant_id, p_job.id, p_job.kind, p_job.queue_name, p_job.payload, p_reason,
          p_errors, p_job.attempts, v_dlq_msg);
  update public.jobs
  set status = 'failed', finished_at = p_now, updated_at = p_now, lease_id = null,
      locked_by = null, locked_until = null, last_error = p_reason, errors = p_errors
  where id = p_job.id;
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (p_job.id, p_job.tenant_id, 'dead_lettered',
          jsonb_build_object('reason', p_reason, 'attempts', p_job.attempts,
                             'dlq_msg_id', v_dlq_msg));
end
$$;

-- Dead-letters the lost jobs of one kind: processing jobs whose lease expired on their last
-- allowed attempt (reason "worker lost…"). Attempts are counted at claim, but only a settle
-- compares them with the limit, and a worker that dies on every attempt (killed, OOM, a
-- handler that takes the process down) never settles: without this its job would be
-- redelivered forever. claim_jobs calls it first, with the worker's retry policy
-- ({"max_attempts"}, the same as settle_jobs'), so both sides apply the same limit.
--
-- Only locks it can take without waiting (SKIP LOCKED on the message first, then the job),
-- so it never deadlocks with a claim (message, then job) or a settle (job, then message)
-- running at the same time; what it skips, a later claim rescues. Cheap: it reads only
-- processing jobs (jobs_live_idx).
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

-- ---------------------------------------------------------------------------------------
-- Claim and settle
-- ---------------------------------------------------------------------------------------

-- claim_jobs: up to p_qty jobs of one kind, fast tier before normal before bulk, after
-- rescuing the kind's lost jobs. Attempts are counted at claim. Jobs of a paused (tenant,
-- kind) are not skipped here: pausing is enforced at dispatch (no workers are started; see
-- public.queues and conveyor.queue_ready_count). p_policy is the worker's retry policy
-- ({"max_attempts"}), as settle_jobs takes it.
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

-- settle_jobs: the outcome of a batch, in one call. p_results is an array of
--   {"job_id", "lease_id", "status": "completed"|"failed"|"cancelled"|"snoozed",
--    "output"?: {...}, "error"?: {"message", "stack"?}, "snooze_seconds"?: n}
-- p_policy carries the worker's retry settings: {"max_attempts", "backoff_base_ms",
-- "backoff_max_ms"} (defaults from conveyor.settings). A job's own max_attempts (critical
-- jobs: 5; a tenant's queues.max_attempts) wins over the policy's.
-- Returns one row per result: accepted or refused, and what happened.
create function public.settle_jobs(
  p_worker text,
  p_results jsonb,
  p_policy jsonb default '{}',
  p_now timestamptz default null
) returns table (job_id uuid, accepted boolean, outcome text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_max int := coalesce((p_policy ->> 'max_attempts')::int, conveyor.setting_int('max_attempts')::int);
  v_base bigint := coalesce((p_policy ->> 'backoff_base_ms')::bigint, conveyor.setting_int('backoff_base_ms'));
  v_cap bigint := coalesce((p_policy ->> 'backoff_max_ms')::bigint, conveyor.setting_int('backoff_max_ms'));
  v_row record;
  v_job public.jobs;
  v_errors jsonb;
  v_limit int;
  v_delay_ms bigint;
  v_done record;
  v_accepted uuid[] := '{}'::uuid[];
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;

  -- Completions, set-based: the hot path.
  for v_done in
    with r as (
      select x.job_id, x.lease_id, x.output
      from jsonb_to_recordset(p_results) as x(job_id uuid, lease_id uuid, status text, output jsonb)
      where x.status = 'completed'
    ), ok as (
      update public.jobs j
      set status = 'completed', finished_at = v_now, updated_at = v_now, output = r.output,
          lease_id = null, locked_by = null, locked_until = null
      from r
      where j.id = r.job_id and j.lease_id = r.lease_id and j.status = 'processing'
        and j.locked_until > v_now
      returning j.id, j.tenant_id, j.queue_name, j.msg_id, j.attempts
    ), ev as (
      insert into public.job_events (job_id, tenant_id, type, payload)
      select ok.id, ok.tenant_id, 'completed', jsonb_build_object('attempt', ok.attempts, 'worker', p_worker)
      from ok
    )
    select ok.queue_name, array_agg(ok.msg_id) as msg_ids, array_agg(ok.id) as job_ids
    from ok group by ok.queue_name
  loop
    perform pgmq.archive(v_done.queue_name, v_done.msg_ids);
    v_accepted := v_accepted || v_done.job_ids;
    return query select unnest(v_done.job_ids), true, 'completed'::text;
  end loop;

  -- Everything else, one by one (rare compared to completions).
  for v_row in
    select x.job_id, x.lease_id, x.status, x.error, x.snooze_seconds
    from jsonb_to_recordset(p_results)
      as x(job_id uuid, lease_id uuid, status text, error jsonb, snooze_seconds int)
  loop
    if v_row.status = 'completed' and v_row.job_id = any(v_accepted) then
      continue; -- accepted above
    end if;
    if v_row.status is null
       or v_row.status not in ('completed', 'failed', 'cancelled', 'snoozed') then
      raise exception 'settle_jobs: unknown status % for job %', v_row.status, v_row.job_id;
    end if;
    select * into v_job from public.jobs j where j.id = v_row.job_id for update;
    if not found then
      return query select v_row.job_id, false, 'unknown job'::text;
      continue;
    end if;
    if v_job.status <> 'processing' or v_job.lease_id is distinct from v_row.lease_id
       or v_job.locked_until <= v_now then
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'settle_refused', jsonb_build_object(
        'worker', p_worker, 'wanted', v_row.status, 'lease_id', v_row.lease_id,
        'reason', case
          when v_job.status <> 'processing' then 'job is ' || v_job.status
          when v_job.lease_id is distinct from v_row.lease_id then 'lease is held by another claim'
          else 'lease expired' end));
      return query select v_job.id, false, 'refused'::text;
      continue;
    end if;

    v_errors := v_job.errors;
    if v_row.status in ('failed', 'cancelled') then
      v_errors := v_errors || jsonb_build_array(jsonb_build_object(
        'message', coalesce(v_row.error ->> 'message', 'unknown error'),
        'stack', v_row.error ->> 'stack',
        'attempt', v_job.attempts,
        'at', v_now));
    end if;

    if v_row.status = 'snoozed' then
      -- Reschedule without spending the attempt.
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id,
        greatest(0, coalesce(v_row.snooze_seconds, 0)));
      update public.jobs
      set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
          locked_until = null, updated_at = v_now,
          run_at = v_now + make_interval(secs => greatest(0, coalesce(v_row.snooze_seconds, 0)))
      where id = v_job.id;
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'snoozed',
              jsonb_build_object('seconds', v_row.snooze_seconds, 'worker', p_worker));
      return query select v_job.id, true, 'snoozed'::text;
      continue;
    end if;

    select coalesce(v_job.max_attempts, q.max_attempts, v_max) into v_limit
    from (select 1) one
    left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;

    if v_row.status = 'cancelled' or v_job.attempts >= v_limit then
      perform conveyor.dead_letter(v_job,
        case when v_row.status = 'cancelled'
          then 'cancelled: ' || coalesce(v_row.error ->> 'message', 'no reason given')
          else coalesce(v_row.error ->> 'message', 'unknown error') end,
        v_errors, v_now);
      return query select v_job.id, true, 'dead_lettered'::text;
    else
      v_delay_ms := conveyor.backoff_ms(v_job.attempts, v_base, v_cap);
      -- pgmq's visibility API is in whole seconds: round the backoff up.
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, ceil(v_delay_ms / 1000.0)::int);
      update public.jobs
      set status = 'pending', lease_id = null, locked_by = null, locked_until = null,
          last_error = v_row.error ->> 'message', errors = v_errors, updated_at = v_now,
          run_at = v_now + make_interval(secs => ceil(v_delay_ms / 1000.0))
      where id = v_job.id;
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'retry_scheduled', jsonb_build_object(
        'attempt', v_job.attempts, 'max_attempts', v_limit, 'delay_ms', v_delay_ms,
        'error', v_row.error ->> 'message', 'worker', p_worker));
      return query select v_job.id, true, 'retry_scheduled'::text;
    end if;
  end loop;
end
$$;

-- Single-job forms of settle_jobs, for SQL callers and tests.
create function public.complete_job(p_job_id uuid, p_lease_id uuid, p_output jsonb default null)
returns boolean
language sql
security definer
set search_path = ''
as $$
  select coalesce(bool_and(s.accepted), false)
  from public.settle_jobs('sql', jsonb_build_array(jsonb_build_object(
    'job_id', p_job_id, 'lease_id', p_lease_id, 'status', 'completed', 'output', p_output))) s
$$;

create function public.fail_job(p_job_id uuid, p_lease_id uuid, p_error text,
                                 p_policy jsonb default '{}')
returns text
language sql
security definer
set search_path = ''
as $$
  select s.outcome
  from public.settle_jobs('sql', jsonb_build_array(jsonb_build_object(
    'job_id', p_job_id, 'lease_id', p_lease_id, 'status', 'failed',
    'error', jsonb_build_object('message', p_error))), p_policy) s
$$;

-- settle_and_claim_jobs: a worker's steady state in ONE call and ONE transaction: settle the
-- batch it just ran (exactly settle_jobs) and claim its next batch (exactly claim_jobs).
-- The worker loop otherwise pays two round trips and two commits per batch (settle, then
-- claim); over HTTP every round trip is a gateway request. Same checks, same events, same
-- leases: this only composes the two functions.
--
-- Returns {"settled": [{"job_id","accepted","outcome"}…], "claimed": [conveyor.claimed_job…]}.
-- A refused settle (lease lost) is reported as settle_jobs reports it, and a claim error
-- (e.g. a bad p_qty) rolls the settle back with it: the caller retries both or falls back
-- to settle_jobs.
create function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled jsonb;
  v_claimed jsonb;
begin
  -- Claim first, then settle: the claim's read then never has to step over this
  -- transaction's own not-yet-committed archive deletes at the head of the queue (with
  -- settle first, batches of 100 drained ~20 % slower than two separate calls). The jobs
  -- being settled are still leased to this worker, their messages invisible: the claim
  -- cannot take them again, unless a lease has already expired, and then the settle is
  -- refused exactly as settle_jobs alone would refuse it.
  select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb)
  into v_claimed
  from public.claim_jobs(p_kind, p_worker, p_qty, p_vt, p_now, coalesce(p_policy, '{}'::jsonb)) c;
  select coalesce(jsonb_agg(jsonb_build_object('job_id', s.job_id, 'accepted', s.accepted,
                                               'outcome', s.outcome)), '[]'::jsonb)
  into v_settled
  from public.settle_jobs(p_worker, p_results, coalesce(p_policy, '{}'::jsonb), p_now) s;
  return jsonb_build_object('settled', v_settled, 'claimed', v_claimed);
end
$$;

comment on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz) is
  'settle_jobs then claim_jobs in one transaction: the worker loop''s steady state in one round trip.';

-- ---------------------------------------------------------------------------------------
-- Leases, redrive, due times
-- ---------------------------------------------------------------------------------------

-- extend_jobs: heartbeat for long jobs. Pushes visibility and the lease out by p_vt
-- seconds for every live lease given ([{"job_id","lease_id"}]); returns the extended ids.
create function public.extend_jobs(p_worker text, p_leases jsonb, p_vt int default null)
returns table (job_id uuid, locked_until timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_job record;
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'extend_jobs: p_leases must be a JSON array';
  end if;
  for v_job in
    select j.id, j.queue_name, j.msg_id
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing' and j.locked_until > clock_timestamp()
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, v_vt);
    return query
    update public.jobs j
    set locked_until = clock_timestamp() + make_interval(secs => v_vt), locked_by = p_worker,
        updated_at = now()
    where j.id = v_job.id
    returning j.id, j.locked_until;
  end loop;
end
$$;

-- release_jobs: graceful shutdown. Hands back jobs the worker will not run: visible again
-- now, and the attempt is not spent.
create function public.release_jobs(p_worker text, p_leases jsonb)
returns table (job_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job record;
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'release_jobs: p_leases must be a JSON array';
  end if;
  for v_job in
    select j.id, j.tenant_id, j.queue_name, j.msg_id
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing'
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, 0);
    update public.jobs
    set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
        locked_until = null, updated_at = now()
    where id = v_job.id;
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_job.id, v_job.tenant_id, 'released', jsonb_build_object('worker', p_worker));
    return query select v_job.id;
  end loop;
end
$$;

-- redrive_dead_job: a dead job gets a fresh message in its original tier queue, its
-- attempts reset; the DLQ copy is archived. Returns the new message id.
create function public.redrive_dead_job(p_job_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.jobs;
  v_dead public.dead_letter_jobs;
  v_msg bigint;
begin
  select * into v_job from public.jobs j where j.id = p_job_id for update;
  if not found then
    raise exception 'redrive_dead_job: no job %', p_job_id using errcode = 'P0002';
  end if;
  if v_job.status <> 'failed' then
    raise exception 'redrive_dead_job: job % is %, only failed jobs can be redriven',
      p_job_id, v_job.status;
  end if;
  select * into v_dead from public.dead_letter_jobs d
  where d.job_id = p_job_id and d.redriven_at is null
  order by d.created_at desc limit 1;
  if v_dead.dlq_msg_id is not null then
    perform pgmq.archive(conveyor.dlq_name(), v_dead.dlq_msg_id);
  end if;
  update public.dead_letter_jobs set redriven_at = now() where id = v_dead.id;
  select m into v_msg from pgmq.send(
    queue_name => v_job.queue_name,
    msg => jsonb_build_object('job_id', v_job.id, 'tenant_id', v_job.tenant_id,
                              'kind', v_job.kind, 'payload', v_job.payload),
    headers => v_job.headers
  ) as m;
  update public.jobs
  set status = 'pending', attempts = 0, msg_id = v_msg, finished_at = null, run_at = now(),
      updated_at = now(), lease_id = null, locked_by = null, locked_until = null
  where id = v_job.id;
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job.id, v_job.tenant_id, 'redriven',
          jsonb_build_object('msg_id', v_msg, 'dead_letter_id', v_dead.id));
  return v_msg;
end
$$;

-- queue_next_due_at: when the next pending job of a kind that is not claimable yet becomes
-- due (a delay, a retry backoff, a snooze), or NULL when there is none.
--
-- A queue worker stops when its queue is empty, and only an enqueue (its kick) or cron's
-- dispatcher (once a minute) starts the next one: a job that became due after the last
-- worker stopped (the last delayed jobs of a burst, the retry of the last failure) would
-- wait for the next cron minute. A worker whose queue runs dry asks this and, for a job due
-- within QUEUE_DUE_WAIT_MAX_MS, wakes at that time and calls trigger_queue_worker (reason
-- 'due'): capacity-checked like a dispatch.
--
-- Reads only pending jobs of the kind (jobs_live_idx); called only once a drain has found
-- nothing claimable, when they are the delayed few.
create function public.queue_next_due_at(p_kind text) returns timestamptz
language sql stable
security definer
set search_path = ''
as $$
  select min(j.run_at)
  from public.jobs j
  where j.kind = p_kind and j.status = 'pending' and j.run_at > clock_timestamp()
$$;

comment on function public.queue_next_due_at(text) is
  'When the next pending job of a kind becomes due (delay, backoff, snooze); NULL when none is waiting.';

revoke all on function conveyor.take_rate_limit(uuid, text, int, timestamptz),
  conveyor.read_queue(text, int, int, text, timestamptz),
  conveyor.backoff_ms(int, bigint, bigint),
  conveyor.dead_letter(public.jobs, text, jsonb, timestamptz),
  conveyor.rescue_lost_jobs(text, int, timestamptz)
  from public;
revoke all on function public.claim_jobs(text, text, int, int, timestamptz, jsonb),
  public.settle_jobs(text, jsonb, jsonb, timestamptz),
  public.complete_job(uuid, uuid, jsonb),
  public.fail_job(uuid, uuid, text, jsonb),
  public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz),
  public.extend_jobs(text, jsonb, int),
  public.release_jobs(text, jsonb),
  public.redrive_dead_job(uuid),
  public.queue_next_due_at(text)
  from public, anon, authenticated;
grant execute on function public.claim_jobs(text, text, int, int, timestamptz, jsonb),
  public.settle_jobs(text, jsonb, jsonb, timestamptz),
  public.complete_job(uuid, uuid, jsonb),
  public.fail_job(uuid, uuid, text, jsonb),
  public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz),
  public.extend_jobs(text, jsonb, int),
  public.release_jobs(text, jsonb),
  public.redrive_dead_job(uuid),
  public.queue_next_due_at(text)
  to service_role;
