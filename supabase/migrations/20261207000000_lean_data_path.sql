-- PROTOTYPE (issue 16, lean data path): overrides on top of the current chain, to be folded
-- into the baseline once it lands.

insert into conveyor.settings (key, value, description) values
  ('audit', '"lean"',
   '''lean'': job_events records what the ledger cannot say (retries with errors, failures, dead letters, cancels, redrives, snoozes, handler events); ''full'': also one event per enqueue, claim and success'),
  ('archive_completed', 'false',
   'true: a completed job''s pgmq message is archived (pgmq a_ table) instead of deleted; the ledger keeps the record either way')
on conflict (key) do nothing;

-- ---------------------------------------------------------------------------------------
-- The job number: one sequence for the messages of every Conveyor queue, so a message id
-- names one job across kinds and tiers. queue_job returns it; jobs.msg_id keeps it.
-- ---------------------------------------------------------------------------------------
create sequence if not exists conveyor.job_number_seq as bigint;
select setval('conveyor.job_number_seq',
  greatest((select coalesce(max(msg_id), 0) from public.jobs), 1));

create unique index if not exists jobs_msg_id_key on public.jobs (msg_id);
create unique index if not exists jobs_tenant_idempotency_key on public.jobs (tenant_id, idempotency_key);
drop index if exists public.jobs_live_idx;
drop index if exists public.jobs_live_dedupe_key;
alter table public.jobs set (fillfactor = 70);
drop index if exists public.jobs_finished_at_idx;

create table if not exists conveyor.dedupe_keys (
  tenant_id uuid not null,
  dedupe_key text not null,
  job_id uuid not null references public.jobs (id) on delete cascade,
  primary key (tenant_id, dedupe_key)
);
create index if not exists dedupe_keys_job_id_idx on conveyor.dedupe_keys (job_id);

-- When each tier queue may next hold a visible message. A claim skips a tier whose time has
-- not come without reading it; it is lowered by everything that makes a message visible
-- sooner (an enqueue, a retry, a release, a redrive) and raised only by a claim that found
-- the tier empty (compare-and-set, so it never hides a message written meanwhile).
create table if not exists conveyor.queue_hints (
  queue_name text primary key,
  visible_from timestamptz not null default '-infinity'
);

create or replace function conveyor.hint_visible(p_queue text, p_at timestamptz) returns void
language sql
set search_path = ''
as $$
  update conveyor.queue_hints h set visible_from = p_at
  where h.queue_name = p_queue and h.visible_from > p_at
$$;

create or replace function conveyor.audit_full() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce((select s.value #>> '{}' from conveyor.settings s where s.key = 'audit'), 'lean') = 'full'
$$;

-- Hint protocol. Whoever makes a message visible sooner than the hint says (enqueue, retry,
-- release, redrive) lowers the hint under a SHARED advisory lock on the queue, held to its
-- commit; a claim raises it only under the EXCLUSIVE lock (try-lock: it never waits), after
-- recomputing the earliest vt with a fresh snapshot. So a raise never races a message being
-- written: the writer either committed before the raise's snapshot (the raise sees its vt)
-- or takes its shared lock after the raise committed (and lowers the hint again).
create or replace function conveyor.hint_lock_key(p_queue text) returns bigint
language sql immutable
set search_path = ''
as $$ select hashtextextended('conveyor.queue_hint:' || p_queue, 0) $$;

create or replace function conveyor.lower_hint(p_queue text, p_at timestamptz) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock_shared(conveyor.hint_lock_key(p_queue));
  update conveyor.queue_hints h set visible_from = p_at
  where h.queue_name = p_queue and h.visible_from > p_at;
end
$$;

-- A claim found no visible message in p_queue: remember when the next one can appear
-- (the earliest vt of what is left: delayed, backing off or leased; 'infinity' if empty).
create or replace function conveyor.raise_hint(p_queue text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_next timestamptz;
begin
  if not pg_try_advisory_xact_lock(conveyor.hint_lock_key(p_queue)) then
    return; -- a writer is busy with this queue: leave the hint low
  end if;
  execute format('select min(vt) from pgmq.%I', 'q_' || p_queue) into v_next;
  update conveyor.queue_hints h set visible_from = coalesce(v_next, 'infinity')
  where h.queue_name = p_queue and h.visible_from < coalesce(v_next, 'infinity');
end
$$;

-- Writes one message of a job into its tier queue with the job's number as msg_id (pgmq's
-- documented layout; OVERRIDING SYSTEM VALUE because msg_id is an identity column).
create or replace function conveyor.put_message(
  p_queue text, p_msg_id bigint, p_vt timestamptz, p_message jsonb, p_headers jsonb
) returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format(
    'insert into pgmq.%I (msg_id, vt, message, headers) overriding system value values ($1, $2, $3, $4)',
    'q_' || p_queue) using p_msg_id, p_vt, p_message, p_headers;
  perform conveyor.lower_hint(p_queue, p_vt);
end
$$;

-- An idempotency key already names a job: the same request gets its number back; another
-- request under the same key is refused (as payment APIs refuse a key reused with other
-- parameters), naming the job that holds the key.
create or replace function conveyor.check_same_request(
  p_job public.jobs, p_kind text, p_payload jsonb, p_priority text, p_headers jsonb,
  p_critical boolean, p_fn text
) returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_job.kind is distinct from p_kind or p_job.payload is distinct from p_payload
     or p_job.priority is distinct from p_priority or p_job.headers is distinct from p_headers
     or (p_job.max_attempts is not null) is distinct from p_critical then
    raise exception '%: idempotency_key % is already used by job % with another request',
      p_fn, p_job.idempotency_key, p_job.msg_id
      using errcode = '23505',
            detail = format('job %s: kind %s, priority %s', p_job.msg_id, p_job.kind, p_job.priority),
            hint = 'send the same kind, payload, priority, headers and critical flag to get that job back, or use another key';
  end if;
end
$$;

create or replace function conveyor.enqueue(
  p_tenant_id uuid,
  p_kind text,
  p_payload jsonb,
  p_idempotency_key text,
  p_priority text default 'normal',
  p_run_at timestamptz default null,
  p_headers jsonb default null,
  p_critical boolean default false,
  p_dedupe_key text default null,
  p_source text default 'queue_job',
  p_fn text default 'queue_job'
) returns table (job_id uuid, msg_id bigint, created boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_job public.jobs;
  v_run_at timestamptz := coalesce(p_run_at, now());
  v_max_attempts int;
begin
  select conveyor.tier_queue(k.queue_name, p_priority) into v_queue
  from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  -- The key: jobs_tenant_idempotency_key. ON CONFLICT waits for a concurrent holder of the
  -- same key to commit or roll back, so of N identical calls exactly one inserts and the
  -- others return its job (race-free at READ COMMITTED).
  insert into public.jobs (id, tenant_id, kind, queue_name, priority, payload, headers,
                           idempotency_key, dedupe_key, msg_id, max_attempts, run_at)
  values (conveyor.new_job_id(), p_tenant_id, p_kind, v_queue, p_priority, p_payload, p_headers,
          p_idempotency_key, p_dedupe_key, nextval('conveyor.job_number_seq'), v_max_attempts,
          v_run_at)
  on conflict (tenant_id, idempotency_key) do nothing
  returning * into v_job;
  if v_job.id is null then
    select * into v_job from public.jobs j
    where j.tenant_id = p_tenant_id and j.idempotency_key = p_idempotency_key;
    perform conveyor.check_same_request(v_job, p_kind, p_payload, p_priority, p_headers,
                                        p_critical, p_fn);
    return query select v_job.id, v_job.msg_id, false;
    return;
  end if;

  if p_dedupe_key is not null then
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (p_tenant_id, p_dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
        using errcode = '23505',
              hint = 'the key can be reused once that job has finished';
    end if;
  end if;

  perform conveyor.put_message(v_queue, v_job.msg_id, v_run_at,
    jsonb_build_object('tenant_id', p_tenant_id),
    p_headers);

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job.id, p_idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (p_tenant_id, p_idempotency_key, v_job.id);
  end if;

  -- Seed 003's function logs every enqueue's initial state (pgqueuer_log): its callers get
  -- that record in any audit mode.
  if p_source = 'fn_pgqueuer_enqueue' or conveyor.audit_full() then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_job.id, p_tenant_id, 'enqueued', jsonb_build_object(
      'msg_id', v_job.msg_id, 'queue', v_queue, 'priority', p_priority,
      'run_at', v_run_at, 'source', p_source, 'critical', p_critical));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT) for work due now.
  if v_run_at <= now() then
    perform conveyor.kick('queue:' || p_kind);
  end if;

  return query select v_job.id, v_job.msg_id, true;
end
$$;

-- conveyor.enqueue for a whole array of validated items, set-based: the same rows with the
-- same values. Returns the job numbers in the order of p_items, an existing job's number
-- for a key that is taken (the same request: check_same_request). Dedupe keys are not
-- supported (queue_job has none).
create or replace function conveyor.enqueue_items(
  p_items conveyor.queue_job_item[],
  p_source text default 'queue_job'
) returns bigint[]
language plpgsql
set search_path = ''
as $$
declare
  v_critical_attempts int := conveyor.setting_int('critical_max_attempts');
  v_full boolean := conveyor.audit_full();
  v_new public.jobs[];
  v_queue text;
  v_ids bigint[];
  v_bad record;
begin
  -- 1. The jobs: one per distinct (tenant, key), the first element with that key being the
  -- job. As in conveyor.enqueue, ON CONFLICT waits for a concurrent holder of a key to
  -- commit or roll back, so racing calls make one job per key. Rows go in (tenant, key)
  -- order, bytewise (COLLATE "C"): every call takes its key locks in the same order, so two
  -- batches with overlapping keys wait for each other instead of deadlocking.
  with firsts as (
    select distinct on (e.tenant_id, e.idempotency_key collate "C") e.*, e.ordinality as ord
    from unnest(p_items) with ordinality as e
    order by e.tenant_id, e.idempotency_key collate "C", e.ordinality
  ), ins as (
    insert into public.jobs (id, tenant_id, kind, queue_name, priority, payload, headers,
                             idempotency_key, msg_id, max_attempts, run_at)
    select conveyor.new_job_id(), f.tenant_id, f.kind, f.queue_name, f.priority, f.payload,
           f.headers, f.idempotency_key, nextval('conveyor.job_number_seq'),
           case when f.critical then v_critical_attempts end, f.run_at
    from firsts f
    order by f.tenant_id, f.idempotency_key collate "C"
    on conflict (tenant_id, idempotency_key) do nothing
    returning *
  )
  select coalesce(array_agg(ins), '{}') into v_new from ins;

  if cardinality(v_new) > 0 then
    -- 2. The messages, one INSERT per tier queue (pgmq.send_batch takes one delay per batch,
    -- each element has its own run_at), with the jobs' numbers as msg_ids.
    for v_queue in select distinct j.queue_name from unnest(v_new) j loop
      execute format(
        $q$insert into pgmq.%I (msg_id, vt, message, headers) overriding system value
           select j.msg_id, j.run_at,
                  jsonb_build_object('tenant_id', j.tenant_id),
                  j.headers
           from unnest($1::public.jobs[]) j
           where j.queue_name = $2
           order by j.msg_id$q$,
        'q_' || v_queue) using v_new, v_queue;
      perform conveyor.lower_hint(v_queue, (select min(j.run_at) from unnest(v_new) j
                                            where j.queue_name = v_queue));
    end loop;

    -- 3. Critical jobs' rows, and the 'enqueued' events when auditing everything.
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    select j.tenant_id, j.id, j.idempotency_key, j.max_attempts
    from unnest(v_new) j where j.max_attempts is not null;
    insert into public.idempotency_keys (tenant_id, key, job_id)
    select j.tenant_id, j.idempotency_key, j.id
    from unnest(v_new) j where j.max_attempts is not null;
    if v_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select j.id, j.tenant_id, 'enqueued', jsonb_build_object(
               'msg_id', j.msg_id, 'queue', j.queue_name, 'priority', j.priority,
               'run_at', j.run_at, 'source', p_source, 'critical', j.max_attempts is not null)
      from unnest(v_new) j
      order by j.msg_id;
    end if;

    -- 4. Wake the dispatcher once per kind with work due now.
    perform conveyor.kick('queue:' || k.kind)
    from (select j.kind, min(j.msg_id) as first from unnest(v_new) j
          where j.run_at <= now() group by j.kind) k
    order by k.first;
  end if;

  -- 5. Every element's job, new or existing: a statement of its own, so under READ
  -- COMMITTED its snapshot sees the keys that concurrent callers committed while step 1
  -- waited for them. An element whose key names another request is refused (the caller
  -- replays element by element to name it).
  select e.ordinality as ord into v_bad
  from unnest(p_items) with ordinality as e
  join public.jobs j on j.tenant_id = e.tenant_id and j.idempotency_key = e.idempotency_key
  where j.kind is distinct from e.kind or j.payload is distinct from e.payload
     or j.priority is distinct from e.priority or j.headers is distinct from e.headers
     or (j.max_attempts is not null) is distinct from e.critical
  limit 1;
  if found then
    raise exception 'queue_jobs: an idempotency_key is already used with another request'
      using errcode = '23505';
  end if;
  select array_agg(j.msg_id order by e.ordinality)
  into v_ids
  from unnest(p_items) with ordinality as e
  left join public.jobs j on j.tenant_id = e.tenant_id and j.idempotency_key = e.idempotency_key;
  return v_ids;
end
$$;

-- read_queue as in 0075, and it says when it held visible messages back.
create or replace function conveyor.read_queue(
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
    return query select * from conveyor.q_read(p_queue, p_vt, p_qty);
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
  -- Visible messages were held back (tokens or slots): the caller should come back soon
  -- rather than report the queue empty. Transaction-local; read by settle_and_claim_jobs.
  if cardinality(v_ids) < least(p_qty, cardinality(v_msg_ids)) then
    perform set_config('conveyor.throttled', 'on', true);
  end if;
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


-- Live leases of jobs whose kind calls a rate-limited service: the slots of
-- rate_limiters.max_concurrent. Written only for those jobs (claim in, settle/release/
-- dead-letter out, extend moves expires_at), so the ledger needs no index on live jobs.
-- A crashed worker's slot comes back when its lease expires.
create table if not exists conveyor.service_leases (
  job_id uuid primary key references public.jobs (id) on delete cascade,
  tenant_id uuid not null,
  service_name text not null,
  expires_at timestamptz not null
);
create index if not exists service_leases_tenant_service_idx
  on conveyor.service_leases (tenant_id, service_name);

-- take_rate_limit as in 0053, the busy slots counted from service_leases.
create or replace function conveyor.take_rate_limit(
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
  from conveyor.service_leases l
  where l.tenant_id = p_tenant_id and l.service_name = p_service and l.expires_at > p_now;
  v_grant := greatest(0, least(p_want, floor(v_tokens)::int, v_lim.max_concurrent - v_busy));
  update public.rate_limiters r
  set tokens_available = v_tokens - v_grant,
      refilled_at = greatest(p_now, r.refilled_at)
  where r.tenant_id = p_tenant_id and r.service_name = p_service;
  return v_grant;
end
$$;

-- What a finished job gives back: its dedupe key and its service slot.
create or replace function conveyor.release_job_holds(p_job_ids uuid[]) returns void
language sql
set search_path = ''
as $$
  delete from conveyor.dedupe_keys d where d.job_id = any (p_job_ids);
  delete from conveyor.service_leases l where l.job_id = any (p_job_ids);
$$;

-- Moves a job to the dead-letter queue: archive its message (redrive moves it back), send
-- a copy to q_dlq, record dead_letter_jobs, mark it failed.
create or replace function conveyor.dead_letter(
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
  perform conveyor.release_job_holds(array[p_job.id]);
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (p_job.id, p_job.tenant_id, 'dead_lettered',
          jsonb_build_object('reason', p_reason, 'attempts', p_job.attempts,
                             'dlq_msg_id', v_dlq_msg));
end
$$;

-- Messages a claim read but could not claim, for three reasons: no job in the ledger has
-- that number (an orphan: sent to the queue without queue_job); the job used its last
-- attempt and its lease expired without a settle (the worker was lost); or the job is
-- already finished (a stale message). Orphans go to q_dlq with a reason (the dead-letter
-- consumer reports them) and are archived; lost jobs are dead-lettered; stale messages
-- deleted. None of them runs, and none stays visible to wake workers again.
create or replace function conveyor.dispose_unclaimed(
  p_queue text,
  p_msgs pgmq.message_record[],
  p_max int,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_m pgmq.message_record;
  v_job public.jobs;
  v_limit int;
begin
  foreach v_m in array p_msgs loop
    select * into v_job from public.jobs j where j.msg_id = v_m.msg_id for update;
    if not found then
      perform pgmq.send(conveyor.dlq_name(), jsonb_build_object(
        'reason', format('orphan message: no job numbered %s in the ledger (queue %s)',
                         v_m.msg_id, p_queue),
        'kind', v_m.message ->> 'kind', 'tenant_id', v_m.message ->> 'tenant_id',
        'queue', p_queue, 'msg_id', v_m.msg_id, 'message', v_m.message));
      perform pgmq.archive(p_queue, v_m.msg_id);
      continue;
    end if;
    if v_job.status in ('completed', 'failed') then
      perform pgmq.delete(p_queue, v_m.msg_id);
      continue;
    end if;
    select coalesce(v_job.max_attempts, q.max_attempts, p_max) into v_limit
    from (select 1) one
    left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;
    if v_job.attempts >= v_limit then
      perform conveyor.dead_letter(
        v_job,
        format('worker lost: the lease of attempt %s expired without a settle', v_job.attempts),
        v_job.errors || jsonb_build_array(jsonb_build_object(
          'message', 'lease expired without a settle (worker lost)',
          'stack', null, 'attempt', v_job.attempts, 'at', p_now)),
        p_now);
    end if;
    -- Otherwise a settle raced the read: make the message visible again at once.
    perform pgmq.set_vt(p_queue, v_m.msg_id, 0);
  end loop;
end
$$;

-- A worker invocation's heartbeat: true while it may go on claiming. Its slot is held for
-- invocation_lease_sec past its last heartbeat; a worker that stops heart-beating (killed,
-- out of memory, the platform recycled it) gives the slot back within that time, and a
-- worker whose invocation lapsed may not claim again, so max_concurrency holds either way.
-- Written at most once per half lease: most calls only read.
create or replace function conveyor.invocation_alive(p_invocation uuid, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_lease int := conveyor.setting_int('invocation_lease_sec')::int;
  v_expires timestamptz;
begin
  if p_invocation is null then
    return true; -- a worker called by hand: not counted by the dispatcher
  end if;
  select i.expires_at into v_expires from conveyor.worker_invocations i
  where i.id = p_invocation and i.status = 'running';
  if v_expires is null or v_expires <= p_now then
    return false;
  end if;
  if v_expires < p_now + make_interval(secs => v_lease / 2.0) then
    update conveyor.worker_invocations i
    set expires_at = p_now + make_interval(secs => v_lease)
    where i.id = p_invocation and i.status = 'running' and i.expires_at > p_now;
  end if;
  return true;
end
$$;

-- The claim: up to p_qty jobs of one kind, fast tier before normal before bulk, attempts
-- counted at claim. A tier whose hint says nothing can be visible yet is not read. A
-- message that cannot be claimed is disposed of (dispose_unclaimed). The ledger update
-- changes no indexed column of public.jobs, so it is a HOT update.
create or replace function conveyor.claim(
  p_kind text,
  p_worker text,
  p_qty int,
  p_vt int,
  p_now timestamptz,
  p_policy jsonb,
  p_invocation uuid default null
) returns setof conveyor.claimed_job
language plpgsql
set search_path = ''
as $$
declare
  v_kind conveyor.job_kinds;
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_max int := coalesce((p_policy ->> 'max_attempts')::int,
                        conveyor.setting_int('max_attempts')::int);
  v_full boolean;
  v_tier text;
  v_queue text;
  v_from timestamptz;
  v_msgs pgmq.message_record[];
  v_rows conveyor.claimed_job[];
  v_left int := p_qty;
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
  perform set_config('conveyor.throttled', '', true);
  perform set_config('conveyor.invocation_lost', '', true);
  if not conveyor.invocation_alive(p_invocation, v_now) then
    perform set_config('conveyor.invocation_lost', 'on', true);
    return;
  end if;

  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    exit when v_left <= 0;
    v_queue := conveyor.tier_queue(v_kind.queue_name, v_tier);
    select h.visible_from into v_from from conveyor.queue_hints h where h.queue_name = v_queue;
    continue when v_from > clock_timestamp();
    -- Read in a statement of its own: the UPDATE below then runs with a snapshot taken
    -- after the read, so it sees the ledger row of every message the read returned (both
    -- were committed together by the enqueue).
    --
    -- The read runs in a subtransaction: FOR UPDATE SKIP LOCKED skips locked rows, but when
    -- a row's newer version (left by a concurrent read, and being deleted by that worker's
    -- settle) is in the way, PostgreSQL follows the update chain and waits, and three such
    -- claims can wait on each other (seen as "deadlock detected ... while locking updated
    -- version of tuple" under 10 concurrent workers, on every version of this claim). The
    -- victim's read is rolled back and it claims nothing from this tier this time, instead
    -- of failing the whole settle-and-claim call.
    begin
      select coalesce(array_agg(m), '{}') into v_msgs
      from conveyor.read_queue(v_queue, v_vt, v_left, v_kind.service_name, v_now) m;
    exception when deadlock_detected then
      v_msgs := '{}';
    end;
    if cardinality(v_msgs) < v_left
       and coalesce(current_setting('conveyor.throttled', true), '') <> 'on' then
      perform conveyor.raise_hint(v_queue);
    end if;
    continue when cardinality(v_msgs) = 0;
    with claimed as (
      update public.jobs j
      set status = 'processing',
          attempts = j.attempts + 1,
          lease_id = gen_random_uuid(),
          locked_by = p_worker,
          locked_until = m.vt,
          started_at = coalesce(j.started_at, v_now),
          updated_at = v_now
      from unnest(v_msgs) m
      where j.msg_id = m.msg_id
        and j.status in ('pending', 'processing')
        -- a job whose last attempt was lost is not run again (dispose_unclaimed)
        and case when j.attempts = 0 then true
                 else j.attempts < coalesce(j.max_attempts,
                   (select q.max_attempts from public.queues q
                    where q.tenant_id = j.tenant_id and q.kind = j.kind), v_max) end
      returning j.id, j.lease_id, j.kind, j.queue_name, j.msg_id, j.tenant_id, j.priority,
                j.attempts, j.max_attempts, j.payload, j.headers, m.enqueued_at, j.locked_until
    )
    select coalesce(array_agg(row(c.*)::conveyor.claimed_job), '{}') into v_rows from claimed c;
    if cardinality(v_rows) < cardinality(v_msgs) then
      perform conveyor.dispose_unclaimed(v_queue,
        array(select m from unnest(v_msgs) m
              where m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))),
        v_max, v_now);
    end if;
    if v_kind.service_name is not null then
      insert into conveyor.service_leases (job_id, tenant_id, service_name, expires_at)
      select r.job_id, r.tenant_id, v_kind.service_name, r.locked_until from unnest(v_rows) r
      on conflict (job_id) do update set expires_at = excluded.expires_at;
    end if;
    v_full := coalesce(v_full, conveyor.audit_full());
    if v_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select r.job_id, r.tenant_id, 'claimed',
             jsonb_build_object('attempt', r.attempt, 'worker', p_worker, 'msg_id', r.msg_id,
                                'lease_id', r.lease_id, 'locked_until', r.locked_until)
      from unnest(v_rows) r;
    end if;
    return query select * from unnest(v_rows);
    v_left := v_left - cardinality(v_rows);
  end loop;
end
$$;

create or replace function public.claim_jobs(
  p_kind text,
  p_worker text,
  p_qty int default 10,
  p_vt int default null,
  p_now timestamptz default null,
  p_policy jsonb default '{}'
) returns setof conveyor.claimed_job
language sql
security definer
set search_path = ''
as $$
  select * from conveyor.claim(p_kind, p_worker, p_qty, p_vt, p_now, p_policy, null)
$$;

-- settle_jobs: the outcome of a batch, in one call. p_results is an array of
--   {"job_id", "lease_id", "status": "completed"|"failed"|"cancelled"|"snoozed",
--    "output"?: {...}, "error"?: {"message", "stack"?}, "snooze_seconds"?: n}
-- p_policy carries the worker's retry settings: {"max_attempts", "backoff_base_ms",
-- "backoff_max_ms"} (defaults from conveyor.settings). A job's own max_attempts (critical
-- jobs: 5; a tenant's queues.max_attempts) wins over the policy's.
-- A settle is accepted only with the current lease while it is live; anything else is
-- refused and recorded (settle_refused): the double-processing guard.
-- Returns one row per result: accepted or refused, and what happened.
create or replace function public.settle_jobs(
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
  v_archive boolean;
  v_full boolean;
  v_row record;
  v_job public.jobs;
  v_errors jsonb;
  v_limit int;
  v_delay_ms bigint;
  v_vt timestamptz;
  v_done record;
  v_accepted uuid[] := '{}'::uuid[];
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;

  -- Completions, set-based: the hot path. A completed job's message is deleted (the ledger
  -- is the record), or archived when conveyor.settings archive_completed says so.
  for v_done in
    with r as (
      select x.job_id, x.lease_id, x.output
      from jsonb_to_recordset(p_results) as x(job_id uuid, lease_id uuid, status text, output jsonb)
      where x.status = 'completed'
    ), ok as (
      update public.jobs j
      set status = 'completed', finished_at = v_now, updated_at = v_now, output = r.output,
          lease_id = null, locked_by = null, locked_until = null, last_error = null
      from r
      where j.id = r.job_id and j.lease_id = r.lease_id and j.status = 'processing'
        and j.locked_until > v_now
      returning j.id, j.tenant_id, j.queue_name, j.msg_id, j.attempts, j.dedupe_key
    )
    select ok.queue_name, array_agg(ok.msg_id) as msg_ids, array_agg(ok.id) as job_ids,
           array_agg(ok.tenant_id) as tenants, array_agg(ok.attempts) as attempts,
           bool_or(ok.dedupe_key is not null) as deduped
    from ok group by ok.queue_name
  loop
    v_archive := coalesce(v_archive, conveyor.setting_text('archive_completed') = 'true');
    if v_archive then
      perform pgmq.archive(v_done.queue_name, v_done.msg_ids);
    else
      perform conveyor.q_delete(v_done.queue_name, v_done.msg_ids);
    end if;
    if v_done.deduped then
      delete from conveyor.dedupe_keys d where d.job_id = any (v_done.job_ids);
    end if;
    delete from conveyor.service_leases l where l.job_id = any (v_done.job_ids);
    v_full := coalesce(v_full, conveyor.audit_full());
    if v_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select x.id, x.tenant_id, 'completed', jsonb_build_object('attempt', x.attempts, 'worker', p_worker)
      from unnest(v_done.job_ids, v_done.tenants, v_done.attempts) as x(id, tenant_id, attempts);
    end if;
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
      v_vt := v_now + make_interval(secs => greatest(0, coalesce(v_row.snooze_seconds, 0)));
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id,
        greatest(0, coalesce(v_row.snooze_seconds, 0)));
      perform conveyor.lower_hint(v_job.queue_name, v_vt);
      update public.jobs
      set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
          locked_until = null, updated_at = v_now, run_at = v_vt
      where id = v_job.id;
      delete from conveyor.service_leases l where l.job_id = v_job.id;
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
      v_vt := v_now + make_interval(secs => ceil(v_delay_ms / 1000.0));
      -- pgmq's visibility API is in whole seconds: round the backoff up.
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, ceil(v_delay_ms / 1000.0)::int);
      perform conveyor.lower_hint(v_job.queue_name, v_vt);
      update public.jobs
      set status = 'pending', lease_id = null, locked_by = null, locked_until = null,
          last_error = v_row.error ->> 'message', errors = v_errors, updated_at = v_now,
          run_at = v_vt
      where id = v_job.id;
      delete from conveyor.service_leases l where l.job_id = v_job.id;
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'retry_scheduled', jsonb_build_object(
        'attempt', v_job.attempts, 'max_attempts', v_limit, 'delay_ms', v_delay_ms,
        'error', v_row.error ->> 'message', 'worker', p_worker));
      return query select v_job.id, true, 'retry_scheduled'::text;
    end if;
  end loop;
end
$$;

-- settle_and_claim_jobs: a worker's steady state in ONE call and ONE transaction: settle the
-- batch it just ran (exactly settle_jobs) and claim its next batch (exactly the claim).
--
-- Order: for a kind without a rate-limited service, claim first: the claim's read then never
-- steps over this transaction's own not-yet-committed deletes at the head of the queue
-- (settle first drained batches of 100 ~20 % slower). The jobs being settled are still
-- leased to this worker, their messages invisible: the claim cannot take them again. For a
-- rate-limited kind, settle first: the slots of the jobs just finished are free for the claim
-- (claiming first counted them busy, and a worker holding max_concurrent leases claimed
-- nothing and stopped).
--
-- Returns {"settled": [{"job_id","accepted","outcome"}…], "claimed": [conveyor.claimed_job…],
-- "throttled": true|false (visible jobs were held back by tokens or slots: come back soon),
-- "invocation_lost": true|false (p_invocation's slot has lapsed: claim no more)}.
create or replace function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null,
  p_invocation uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_limited boolean;
  v_settled jsonb;
  v_claimed jsonb;
begin
  select k.service_name is not null into v_limited from conveyor.job_kinds k where k.kind = p_kind;
  if coalesce(v_limited, false) then
    select coalesce(jsonb_agg(jsonb_build_object('job_id', s.job_id, 'accepted', s.accepted,
                                                 'outcome', s.outcome)), '[]'::jsonb)
    into v_settled
    from public.settle_jobs(p_worker, p_results, coalesce(p_policy, '{}'::jsonb), p_now) s;
  end if;
  select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb)
  into v_claimed
  from conveyor.claim(p_kind, p_worker, p_qty, p_vt, p_now, coalesce(p_policy, '{}'::jsonb),
                      p_invocation) c;
  if not coalesce(v_limited, false) then
    select coalesce(jsonb_agg(jsonb_build_object('job_id', s.job_id, 'accepted', s.accepted,
                                                 'outcome', s.outcome)), '[]'::jsonb)
    into v_settled
    from public.settle_jobs(p_worker, p_results, coalesce(p_policy, '{}'::jsonb), p_now) s;
  end if;
  return jsonb_build_object(
    'settled', v_settled,
    'claimed', v_claimed,
    'throttled', coalesce(current_setting('conveyor.throttled', true), '') = 'on',
    'invocation_lost', coalesce(current_setting('conveyor.invocation_lost', true), '') = 'on');
end
$$;
revoke all on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid)
  from public, anon, authenticated;
grant execute on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid)
  to service_role;
drop function if exists public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz);

insert into conveyor.settings (key, value, description) values
  ('invocation_lease_sec', '15',
   'a running worker invocation holds its dispatch slot this long past its last heartbeat (claims and extends beat)')
on conflict (key) do nothing;

-- extend_jobs: the heartbeat of a worker holding jobs ([{"job_id","lease_id"}]). Beats
-- p_invocation's heart, and pushes visibility and the lease out to p_vt seconds from now
-- for every live lease with less than half of p_vt left (a heartbeat every few seconds
-- writes the jobs' rows only about twice per visibility timeout); returns the extended ids.
create or replace function public.extend_jobs(p_worker text, p_leases jsonb, p_vt int default null,
                                              p_invocation uuid default null)
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
  perform conveyor.invocation_alive(p_invocation, clock_timestamp());
  for v_job in
    select j.id, j.queue_name, j.msg_id
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing' and j.locked_until > clock_timestamp()
      and j.locked_until < clock_timestamp() + make_interval(secs => v_vt / 2.0)
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, v_vt);
    update conveyor.service_leases l
    set expires_at = clock_timestamp() + make_interval(secs => v_vt)
    where l.job_id = v_job.id;
    return query
    update public.jobs j
    set locked_until = clock_timestamp() + make_interval(secs => v_vt), locked_by = p_worker,
        updated_at = now()
    where j.id = v_job.id
    returning j.id, j.locked_until;
  end loop;
end
$$;
revoke all on function public.extend_jobs(text, jsonb, int, uuid) from public, anon, authenticated;
grant execute on function public.extend_jobs(text, jsonb, int, uuid) to service_role;
drop function if exists public.extend_jobs(text, jsonb, int);

-- release_jobs: graceful shutdown. Hands back jobs the worker will not run: visible again
-- now, and the attempt is not spent.
create or replace function public.release_jobs(p_worker text, p_leases jsonb)
returns table (job_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job record;
  v_full boolean := conveyor.audit_full();
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
    perform conveyor.lower_hint(v_job.queue_name, clock_timestamp());
    update public.jobs
    set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
        locked_until = null, updated_at = now()
    where id = v_job.id;
    delete from conveyor.service_leases l where l.job_id = v_job.id;
    if v_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'released', jsonb_build_object('worker', p_worker));
    end if;
    return query select v_job.id;
  end loop;
end
$$;

-- redrive_dead_job: a dead job's message goes back to its tier queue under the same number
-- (moved out of the archive; written anew if retention already pruned it), its attempts
-- reset; the DLQ copy is archived. Returns the job's number.
create or replace function public.redrive_dead_job(p_job_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.jobs;
  v_dead public.dead_letter_jobs;
begin
  select * into v_job from public.jobs j where j.id = p_job_id for update;
  if not found then
    raise exception 'redrive_dead_job: no job %', p_job_id using errcode = 'P0002';
  end if;
  if v_job.status <> 'failed' then
    raise exception 'redrive_dead_job: job % is %, only failed jobs can be redriven',
      p_job_id, v_job.status;
  end if;
  if v_job.dedupe_key is not null then
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (v_job.tenant_id, v_job.dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception 'redrive_dead_job: dedupe_key % is already queued or running', v_job.dedupe_key
        using errcode = '23505', hint = 'the job can be redriven once that job has finished';
    end if;
  end if;
  select * into v_dead from public.dead_letter_jobs d
  where d.job_id = p_job_id and d.redriven_at is null
  order by d.created_at desc limit 1;
  if v_dead.dlq_msg_id is not null then
    perform pgmq.archive(conveyor.dlq_name(), v_dead.dlq_msg_id);
  end if;
  update public.dead_letter_jobs set redriven_at = now() where id = v_dead.id;
  execute format('delete from pgmq.%I where msg_id = $1', 'a_' || v_job.queue_name)
    using v_job.msg_id;
  perform conveyor.put_message(v_job.queue_name, v_job.msg_id, now(),
    jsonb_build_object('tenant_id', v_job.tenant_id),
    v_job.headers);
  update public.jobs
  set status = 'pending', attempts = 0, finished_at = null, run_at = now(),
      updated_at = now(), lease_id = null, locked_by = null, locked_until = null
  where id = v_job.id;
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job.id, v_job.tenant_id, 'redriven',
          jsonb_build_object('msg_id', v_job.msg_id, 'dead_letter_id', v_dead.id));
  perform conveyor.kick('queue:' || v_job.kind);
  return v_job.msg_id;
end
$$;

create table if not exists conveyor.maintenance_runs (
  task text primary key,
  last_run_at timestamptz not null
);

-- The maintenance tick's rescue (pg_cron, every minute; not part of any claim): messages that
-- became visible since the previous tick (minus a margin) are checked against the ledger.
--   * a job whose lease expired without a settle (its worker was lost): on its last attempt
--     it is dead-lettered; otherwise it goes back to pending (its message is visible, the
--     next claim runs it), with the loss recorded in errors and a 'lease_expired' event;
--   * an orphan (a message no job is numbered by): sent to q_dlq with a reason and archived.
-- Visible messages are read through pgmq's vt index, so the tick costs what arrived since
-- the last one, never a scan of the ledger. Locks are taken with SKIP LOCKED (message
-- first, then job, as a claim does): a message a claim is busy with is left to it.
create or replace function conveyor.rescue_lost_jobs(p_now timestamptz default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_since timestamptz;
  v_max int := conveyor.setting_int('max_attempts')::int;
  v_queue text;
  v_m record;
  v_job public.jobs;
  v_limit int;
  v_lost int := 0;
  v_dead int := 0;
  v_orphans int := 0;
begin
  select r.last_run_at - interval '1 minute' into v_since
  from conveyor.maintenance_runs r where r.task = 'rescue' for update;
  v_since := coalesce(v_since, '-infinity');
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
  loop
    continue when to_regclass(format('pgmq.%I', 'q_' || v_queue)) is null;
    for v_m in execute format(
      $q$select q.msg_id, q.message, q.read_ct from pgmq.%I q
         where q.vt <= $1 and q.vt > $2
           and (q.read_ct > 0 or not exists (select 1 from public.jobs j where j.msg_id = q.msg_id))
         order by q.vt
         limit 1000
         for update skip locked$q$, 'q_' || v_queue) using v_now, v_since
    loop
      select * into v_job from public.jobs j where j.msg_id = v_m.msg_id for update skip locked;
      if not found then
        if not exists (select 1 from public.jobs j where j.msg_id = v_m.msg_id) then
          perform pgmq.send(conveyor.dlq_name(), jsonb_build_object(
            'reason', format('orphan message: no job numbered %s in the ledger (queue %s)',
                             v_m.msg_id, v_queue),
            'kind', v_m.message ->> 'kind', 'tenant_id', v_m.message ->> 'tenant_id',
            'queue', v_queue, 'msg_id', v_m.msg_id, 'message', v_m.message));
          perform pgmq.archive(v_queue, v_m.msg_id);
          v_orphans := v_orphans + 1;
        end if;
        continue;
      end if;
      continue when v_job.status <> 'processing' or v_job.locked_until > v_now;
      select coalesce(v_job.max_attempts, q.max_attempts, v_max) into v_limit
      from (select 1) one
      left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;
      if v_job.attempts >= v_limit then
        perform conveyor.dead_letter(
          v_job,
          format('worker lost: the lease of attempt %s expired without a settle', v_job.attempts),
          v_job.errors || jsonb_build_array(jsonb_build_object(
            'message', 'lease expired without a settle (worker lost)',
            'stack', null, 'attempt', v_job.attempts, 'at', v_now)),
          v_now);
        v_dead := v_dead + 1;
      else
        update public.jobs
        set status = 'pending', lease_id = null, locked_by = null, locked_until = null,
            updated_at = v_now, last_error = 'lease expired without a settle (worker lost)',
            errors = v_job.errors || jsonb_build_array(jsonb_build_object(
              'message', 'lease expired without a settle (worker lost)',
              'stack', null, 'attempt', v_job.attempts, 'at', v_now))
        where id = v_job.id;
        delete from conveyor.service_leases l where l.job_id = v_job.id;
        insert into public.job_events (job_id, tenant_id, type, payload)
        values (v_job.id, v_job.tenant_id, 'lease_expired', jsonb_build_object(
          'attempt', v_job.attempts, 'worker', v_job.locked_by));
        v_lost := v_lost + 1;
      end if;
    end loop;
  end loop;
  insert into conveyor.maintenance_runs (task, last_run_at) values ('rescue', v_now)
  on conflict (task) do update set last_run_at = excluded.last_run_at;
  return jsonb_build_object('lost', v_lost, 'dead_lettered', v_dead, 'orphans', v_orphans);
end
$$;
revoke all on function conveyor.rescue_lost_jobs(timestamptz) from public;
drop function if exists conveyor.rescue_lost_jobs(text, int, timestamptz);

do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-rescue', '* * * * *', 'select conveyor.rescue_lost_jobs()');
  end if;
end
$$;

-- start_invocation as in 0060; a queue worker's slot is now a lease renewed by its
-- heartbeats (conveyor.invocation_alive), not a fixed 300 s.
create or replace function public.start_invocation(p_invocation_id uuid, p_worker text) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_inv conveyor.worker_invocations;
  v_max int;
  v_busy int;
begin
  select * into v_inv from conveyor.worker_invocations i where i.id = p_invocation_id;
  if not found then
    return false;
  end if;
  -- Lock order everywhere: the target's config row, then invocation rows.
  v_max := conveyor.lock_dispatch_target(v_inv.source, v_inv.target);
  select * into v_inv from conveyor.worker_invocations i where i.id = p_invocation_id for update;
  if v_inv.started_at is not null then
    return false;
  end if;
  if not (v_inv.status = 'triggered' and v_inv.expires_at > v_now) and v_inv.source = 'queue' then
    -- It expired before starting: its slot was given back. Run only if one is free now.
    select count(*) into v_busy
    from conveyor.worker_invocations i
    where i.source = v_inv.source and i.target = v_inv.target and i.id <> v_inv.id
      and i.status <> 'finished' and i.expires_at > v_now;
    if v_busy + 1 > coalesce(v_max, 0) then
      return false;
    end if;
  end if;
  update conveyor.worker_invocations
  set status = 'running', started_at = v_now, finished_at = null, worker = p_worker,
      expires_at = v_now + make_interval(secs => conveyor.setting_int(
        case when v_inv.source = 'queue' then 'invocation_lease_sec' else 'invocation_run_sec' end))
  where id = p_invocation_id;
  return true;
end
$$;

-- queue_next_due_at: when the next job of a kind that is not claimable yet becomes due (a
-- delay, a retry backoff, a snooze), or NULL when there is none. Read from the kind's queues
-- (the live jobs; pgmq's vt index), only for messages whose job is pending.
create or replace function public.queue_next_due_at(p_kind text) returns timestamptz
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_queue text;
  v_at timestamptz;
  v_min timestamptz;
begin
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    where k.kind = p_kind
  loop
    continue when to_regclass(format('pgmq.%I', 'q_' || v_queue)) is null;
    execute format(
      $q$select min(q.vt) from pgmq.%I q
         where q.vt > clock_timestamp()
           and exists (select 1 from public.jobs j where j.msg_id = q.msg_id and j.status = 'pending')$q$,
      'q_' || v_queue) into v_at;
    v_min := least(v_min, v_at);
  end loop;
  return v_min;
end
$$;

-- Debounced kick, cheaper on the hot path: a plain read first. Enqueues inside the window
-- (the common case under load) return without taking a lock or writing; only the first
-- caller after the window takes the row and sends the kick (sent by pg_net after COMMIT).
create or replace function conveyor.kick(p_target text) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_window interval := make_interval(secs => conveyor.setting_int('kick_debounce_ms') / 1000.0);
  v_last timestamptz;
  v_won boolean;
begin
  if not conveyor.push_enabled() then
    return false;
  end if;
  select k.last_kick_at into v_last from conveyor.dispatch_kicks k where k.target = p_target;
  if v_last >= v_now - v_window then
    return false;
  end if;
  with c as (
    select k.target from conveyor.dispatch_kicks k
    where k.target = p_target and k.last_kick_at < v_now - v_window
    for update skip locked
  )
  update conveyor.dispatch_kicks k
  set last_kick_at = v_now, kicks = k.kicks + 1
  from c
  where k.target = c.target;
  v_won := found;
  if not v_won and v_last is null then
    -- A target kicked for the first time (e.g. a kind added later).
    insert into conveyor.dispatch_kicks (target, last_kick_at, kicks) values (p_target, v_now, 1)
    on conflict (target) do nothing;
    v_won := found;
  end if;
  if not v_won then
    return false;
  end if;
  begin
    if p_target = 'dlq' then
      perform conveyor.invoke_dead_letter_worker('kick');
    else
      perform conveyor.invoke_dispatcher('kick', p_target);
    end if;
  exception when others then
    raise warning 'conveyor.kick: % not called (%); cron picks the work up',
      case when p_target = 'dlq' then 'dlq-worker' else 'the dispatcher' end, sqlerrm;
    return false;
  end;
  return true;
end
$$;

-- ensure_queue as in 0052, plus what the lean path needs of every tier queue: its hint row,
-- and its own identity sequence moved far above the job numbers, so a message sent to it
-- by pgmq.send (not by queue_job: an orphan the claim and the rescue tick remove) can never
-- take a number a job will have.
create or replace function conveyor.ensure_queue(p_queue text) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pgmq.meta m where m.queue_name = p_queue) then
    perform pgmq.create(p_queue);
    if p_queue <> conveyor.dlq_name() then
      execute format('alter table pgmq.%I alter column msg_id restart with 1125899906842624',
                     'q_' || p_queue);
    end if;
  end if;
  if p_queue <> conveyor.dlq_name() then
    insert into conveyor.queue_hints (queue_name) values (p_queue) on conflict do nothing;
  end if;
  -- With "Expose Queues via PostgREST" (pgmq_public) on, a queue table without RLS is
  -- readable by the API roles (Supabase lint 0019). No policies: only service_role and
  -- the table owner (both bypass RLS) touch our queues, through our RPCs.
  execute format('alter table pgmq.%I enable row level security', 'q_' || p_queue);
  execute format('alter table pgmq.%I enable row level security', 'a_' || p_queue);
end
$$;

insert into conveyor.queue_hints (queue_name)
select conveyor.tier_queue(k.queue_name, t.tier)
from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
on conflict do nothing;

revoke all on all functions in schema conveyor from public;

do $$
declare
  v_queue text;
begin
  for v_queue in select queue_name from conveyor.queue_hints loop
    execute format('alter table pgmq.%I alter column msg_id restart with 1125899906842624',
                   'q_' || v_queue);
  end loop;
end
$$;

-- Visible messages of a kind across its tiers, counted with a LIMIT (never a full scan:
-- pgmq.metrics() would count the whole table). Only messages of a job (an orphan is no work:
-- it must not wake workers), and not of a tenant that paused the kind (public.queues.paused:
-- pausing is enforced here, at dispatch).
create or replace function conveyor.queue_ready_count(p_kind text, p_limit int default 1000) returns int
language plpgsql stable
set search_path = ''
as $$
declare
  v_queue text;
  v_tier text;
  v_n int := 0;
  v_part int;
begin
  select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    return 0;
  end if;
  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    exit when v_n >= p_limit;
    -- A kind whose queues are being dropped (its row goes last) has nothing ready.
    continue when to_regclass(format('pgmq.%I', 'q_' || conveyor.tier_queue(v_queue, v_tier))) is null;
    execute format(
      $q$select count(*)::int from (
           select 1 from pgmq.%I q
           where q.vt <= clock_timestamp()
             and exists (select 1 from public.jobs j where j.msg_id = q.msg_id)
             and not exists (select 1 from public.queues p
                             where p.kind = $2 and p.paused
                               and p.tenant_id::text = q.message ->> 'tenant_id')
           limit $1) x$q$,
      'q_' || conveyor.tier_queue(v_queue, v_tier))
      into v_part using p_limit - v_n, p_kind;
    v_n := v_n + v_part;
  end loop;
  return v_n;
end
$$;
revoke all on all functions in schema conveyor from public;

-- Fixed SQL per queue for the three statements every job runs through: the claim's read, the
-- enqueue's insert and the settle's delete. pgmq's functions build these statements with
-- format() and EXECUTE them, so they are parsed and planned on every call; here each queue's
-- statement is written out once (regenerated whenever a kind's queues are created), and
-- PL/pgSQL prepares it once per session. Same statements as pgmq 1.5.1's read/send/delete
-- on its documented table layout; a queue not (yet) generated falls back to pgmq's API.
create or replace function conveyor.generate_queue_sql() returns void
language plpgsql
set search_path = ''
as $gen$
declare
  v_queue text;
  v_kw text := 'if';
  v_read text := '';
  v_put text := '';
  v_delete text := '';
begin
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    where to_regclass(format('pgmq.%I', 'q_' || conveyor.tier_queue(k.queue_name, t.tier))) is not null
    order by 1
  loop
    v_read := v_read || format($f$
  %s p_queue = %L then
    return query
    update pgmq.%I m
    set vt = clock_timestamp() + make_interval(secs => p_vt), read_ct = m.read_ct + 1
    from (select q.msg_id from pgmq.%I q
          where q.vt <= clock_timestamp()
          order by q.msg_id
          limit p_qty
          for update skip locked) c
    where m.msg_id = c.msg_id
    returning m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers;$f$,
      v_kw, v_queue, 'q_' || v_queue, 'q_' || v_queue);
    v_put := v_put || format($f$
  %s p_queue = %L then
    insert into pgmq.%I (msg_id, vt, message, headers) overriding system value
    values (p_msg_id, p_vt, p_message, p_headers);$f$,
      v_kw, v_queue, 'q_' || v_queue);
    v_delete := v_delete || format($f$
  %s p_queue = %L then
    delete from pgmq.%I m where m.msg_id = any (p_msg_ids);$f$,
      v_kw, v_queue, 'q_' || v_queue);
    v_kw := 'elsif';
  end loop;

  execute format($def$
create or replace function conveyor.q_read(p_queue text, p_vt int, p_qty int)
returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
  %s
    return query select * from pgmq.read(p_queue, p_vt, p_qty);
  %s
end
$body$$def$,
    v_read, case when v_read = '' then '' else 'else' end,
    case when v_read = '' then '' else 'end if;' end);

  execute format($def$
create or replace function conveyor.q_put(
  p_queue text, p_msg_id bigint, p_vt timestamptz, p_message jsonb, p_headers jsonb
) returns void
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
  %s
    execute format('insert into pgmq.%%I (msg_id, vt, message, headers) overriding system value values ($1, $2, $3, $4)',
                   'q_' || p_queue) using p_msg_id, p_vt, p_message, p_headers;
  %s
end
$body$$def$,
    v_put, case when v_put = '' then '' else 'else' end,
    case when v_put = '' then '' else 'end if;' end);

  execute format($def$
create or replace function conveyor.q_delete(p_queue text, p_msg_ids bigint[])
returns void
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
  %s
    perform pgmq.delete(p_queue, p_msg_ids);
  %s
end
$body$$def$,
    v_delete, case when v_delete = '' then '' else 'else' end,
    case when v_delete = '' then '' else 'end if;' end);

  revoke all on function conveyor.q_read(text, int, int),
    conveyor.q_put(text, bigint, timestamptz, jsonb, jsonb),
    conveyor.q_delete(text, bigint[]) from public;
end
$gen$;

-- ensure_kind_queues as in 0052, and the fixed SQL regenerated for the new queues.
create or replace function conveyor.ensure_kind_queues(p_kind text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_tier text;
begin
  select k.queue_name into strict v_queue from conveyor.job_kinds k where k.kind = p_kind;
  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    perform conveyor.ensure_queue(conveyor.tier_queue(v_queue, v_tier));
  end loop;
  perform conveyor.generate_queue_sql();
end
$$;

select conveyor.generate_queue_sql();

-- The hot path through the fixed SQL.
create or replace function conveyor.put_message(
  p_queue text, p_msg_id bigint, p_vt timestamptz, p_message jsonb, p_headers jsonb
) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform conveyor.q_put(p_queue, p_msg_id, p_vt, p_message, p_headers);
  perform conveyor.lower_hint(p_queue, p_vt);
end
$$;
revoke all on all functions in schema conveyor from public;

-- ---------------------------------------------------------------------------------------
-- The hot path, flat: what a worker calls once per batch. Few statements, no nested
-- function layers on the common path (completions, a claim of an unlimited kind): measured
-- with pgbench, every PL/pgSQL layer, settings lookup and JSON round trip here costs as much
-- CPU as the rows themselves.
-- ---------------------------------------------------------------------------------------

-- Completions of a batch: the ledger rows (only with the live lease), then their messages
-- deleted (or archived), dedupe keys and service slots given back. Returns the accepted ids.
create or replace function conveyor.complete_jobs(
  p_worker text, p_done jsonb, p_now timestamptz, p_archive boolean, p_full boolean
) returns uuid[]
language plpgsql
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_msgs bigint[];
  v_queue text;
  v_queues text[];
  v_extra boolean;
begin
  with ok as (
    update public.jobs j
    set status = 'completed', finished_at = p_now, updated_at = p_now, output = r.output,
        lease_id = null, locked_by = null, locked_until = null, last_error = null
    from jsonb_to_recordset(p_done) as r(job_id uuid, lease_id uuid, status text, output jsonb)
    where r.status = 'completed' and j.id = r.job_id and j.lease_id = r.lease_id
      and j.status = 'processing' and j.locked_until > p_now
    returning j.id, j.msg_id, j.queue_name, j.dedupe_key
  )
  select array_agg(ok.id), array_agg(ok.msg_id), array_agg(distinct ok.queue_name),
         bool_or(ok.dedupe_key is not null)
  into v_ids, v_msgs, v_queues, v_extra
  from ok;
  if v_ids is null then
    return '{}';
  end if;
  if cardinality(v_queues) = 1 and not p_archive then
    perform conveyor.q_delete(v_queues[1], v_msgs);
  else
    foreach v_queue in array v_queues loop
      if p_archive then
        perform pgmq.archive(v_queue, array(select j.msg_id from public.jobs j
                                            where j.id = any (v_ids) and j.queue_name = v_queue));
      else
        perform conveyor.q_delete(v_queue, array(select j.msg_id from public.jobs j
                                                 where j.id = any (v_ids) and j.queue_name = v_queue));
      end if;
    end loop;
  end if;
  if v_extra then
    delete from conveyor.dedupe_keys d where d.job_id = any (v_ids);
  end if;
  delete from conveyor.service_leases l where l.job_id = any (v_ids);
  if p_full then
    insert into public.job_events (job_id, tenant_id, type, payload)
    select j.id, j.tenant_id, 'completed', jsonb_build_object('attempt', j.attempts, 'worker', p_worker)
    from public.jobs j where j.id = any (v_ids);
  end if;
  return v_ids;
end
$$;

create or replace function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null,
  p_invocation uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_kind conveyor.job_kinds;
  v_archive boolean;
  v_full boolean;
  v_done uuid[] := '{}';
  v_settled jsonb := '[]';
  v_claimed jsonb;
  v_rest jsonb;
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind;
  select coalesce(bool_or(s.key = 'archive_completed' and s.value = 'true'), false),
         coalesce(bool_or(s.key = 'audit' and s.value = '"full"'), false)
  into v_archive, v_full
  from conveyor.settings s where s.key in ('archive_completed', 'audit');

  -- Rate-limited kinds settle first (the slots just freed count for the claim); others
  -- claim first (the claim's read never steps over this transaction's own deletes).
  if v_kind.service_name is not null and jsonb_array_length(p_results) > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;
  select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb) into v_claimed
  from conveyor.claim(p_kind, p_worker, p_qty, p_vt, p_now, coalesce(p_policy, '{}'::jsonb),
                      p_invocation) c;
  if v_kind.service_name is null and jsonb_array_length(p_results) > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;

  if jsonb_array_length(p_results) > 0 then
    select coalesce(jsonb_agg(jsonb_build_object('job_id', d, 'accepted', true, 'outcome', 'completed')), '[]')
    into v_settled from unnest(v_done) d;
    -- Everything that is not an accepted completion (failures, snoozes, refusals) is rare:
    -- settle_jobs handles it one by one.
    select coalesce(jsonb_agg(e), '[]') into v_rest
    from jsonb_array_elements(p_results) e
    where not (e ->> 'status' = 'completed' and (e ->> 'job_id')::uuid = any (v_done));
    if jsonb_array_length(v_rest) > 0 then
      select v_settled || coalesce(jsonb_agg(jsonb_build_object('job_id', s.job_id, 'accepted', s.accepted,
                                                                 'outcome', s.outcome)), '[]')
      into v_settled
      from public.settle_jobs(p_worker, v_rest, coalesce(p_policy, '{}'::jsonb), p_now) s;
    end if;
  end if;
  return jsonb_build_object(
    'settled', v_settled,
    'claimed', v_claimed,
    'throttled', coalesce(current_setting('conveyor.throttled', true), '') = 'on',
    'invocation_lost', coalesce(current_setting('conveyor.invocation_lost', true), '') = 'on');
end
$$;
revoke all on all functions in schema conveyor from public;
