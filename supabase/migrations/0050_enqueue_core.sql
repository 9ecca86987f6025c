-- Enqueue: validating a queue_job body, and the writes that put a job on a queue. Every way
-- in uses these: queue_job and queue_jobs (0051), fn_pgqueuer_enqueue (0069), schedules
-- (0071). In ONE transaction a job gets its ledger row (whose idempotency key decides) and
-- its pgmq message under the job's number (transactional publish), and kicks the dispatcher.
--
-- Order: each function after the ones it calls.
--   validation  parse_run_at, parse_queue_job, queue_job_tenant (0051's RPCs call the last two)
--   beside      dedupe_keys, job_counts (+ count_jobs), queue_hints (+ lower_hint)
--   writes      check_same_request, enqueue (one job: every way in but queue_jobs),
--               enqueue_items (a validated array, set-based: queue_jobs)
-- conveyor.q_put, the message's INSERT, is generated per queue (0052_queue_bootstrap.sql);
-- conveyor.kick, which both writes call, is the dispatcher's (0060_dispatch.sql).

-- ---------------------------------------------------------------------------------------
-- Validation
-- ---------------------------------------------------------------------------------------

-- Parses a delay given as an ISO timestamp ("2026-01-01T10:00:00Z") or an interval
-- ("10 seconds", "5 minutes"). NULL when it is neither.
create function conveyor.parse_run_at(p_value text, p_now timestamptz default null)
returns timestamptz
language plpgsql stable
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
begin
  if p_value is null or btrim(p_value) = '' then
    return null;
  end if;
  -- A timestamp must look like one (digits, dash): keeps words like 'epoch'/'infinity' out.
  if p_value ~ '^\s*\d{4}-\d{2}-\d{2}' then
    begin
      return p_value::timestamptz;
    exception when others then
      return null;
    end;
  end if;
  begin
    return v_now + p_value::interval;
  exception when others then
    return null;
  end;
end
$$;

-- One validated queue_job body: what the writes need. `queue_name` is the pgmq queue of the
-- job's priority tier; `run_at` is never NULL (now() when no delay was given); `tenant_id` is
-- the requested one out of parse_queue_job, the resolved one after queue_job_tenant.
create type conveyor.queue_job_item as (
  tenant_id uuid,
  kind text,
  queue_name text,
  idempotency_key text,
  priority text,
  run_at timestamptz,
  payload jsonb,
  headers jsonb,
  critical boolean
);

-- Every check of a queue_job body but the tenant, which comes last (queue_job_tenant):
-- queue_job and each element of queue_jobs go through this one copy of every check and
-- error text. Body (seed 000 + seed 003): {"idempotency_key", "kind", "payload"} plus
-- "priority" (fast|normal|bulk), "delay_seconds" (integer) or "execute_after" (ISO
-- timestamp or interval such as "10 seconds"), "headers" (object), "critical" (boolean: 5
-- attempts instead of 3), and for trusted callers "tenant_id". Every rejection raises P0001
-- (HTTP 400 through PostgREST). `tenant_id` of the result is the one the body asked for
-- (NULL when none). The two limits are arguments so that a batch reads the settings once.
create function conveyor.parse_queue_job(p jsonb, p_limit bigint, p_max_delay bigint)
returns conveyor.queue_job_item
language plpgsql stable
set search_path = ''
as $$
declare
  c_fields constant text[] := array['idempotency_key', 'kind', 'payload', 'priority',
    'delay_seconds', 'execute_after', 'headers', 'critical', 'tenant_id'];
  v_kind text;
  v_queue text;
  v_key text;
  v_priority text := 'normal';
  v_run_at timestamptz;
  v_size int;
  v_extra text;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_job: the body must be a JSON object';
  end if;

  -- The seed's three checks, in the seed's order, with the seed's texts.
  if p -> 'kind' is null or jsonb_typeof(p -> 'kind') = 'null' then
    raise exception 'queue_job: missing kind in payload';
  end if;
  v_kind := p ->> 'kind';
  if jsonb_typeof(p -> 'kind') = 'string' then
    select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = v_kind;
  end if;
  if v_queue is null then
    raise exception 'queue_job: unsupported kind %', v_kind;
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';

  -- Beyond the seed: every other field is checked, each with its own message.
  v_size := octet_length(p::text);
  if v_size > p_limit then
    raise exception 'queue_job: payload too large (% bytes, the limit is % bytes)', v_size, p_limit;
  end if;
  -- `p - c_fields` is a plain expression: the key query runs only when there is an extra key.
  if p - c_fields <> '{}'::jsonb then
    select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
    raise exception 'queue_job: unknown field "%"', v_extra
      using hint = 'accepted fields: ' || array_to_string(c_fields, ', ');
  end if;
  if length(v_key) > 255 then
    raise exception 'queue_job: idempotency_key is longer than 255 characters';
  end if;
  if p ? 'payload' and jsonb_typeof(p -> 'payload') <> 'object' then
    raise exception 'queue_job: payload must be a JSON object';
  end if;
  if p ? 'priority' then
    if jsonb_typeof(p -> 'priority') <> 'string'
       or p ->> 'priority' not in ('fast', 'normal', 'bulk') then
      raise exception 'queue_job: unsupported priority % (use fast, normal or bulk)', p -> 'priority';
    end if;
    v_priority := p ->> 'priority';
  end if;
  if p ? 'delay_seconds' and p ? 'execute_after' then
    raise exception 'queue_job: give either delay_seconds or execute_after, not both';
  end if;
  if p ? 'delay_seconds' then
    if jsonb_typeof(p -> 'delay_seconds') <> 'number'
       or (p ->> 'delay_seconds')::numeric <> trunc((p ->> 'delay_seconds')::numeric)
       or (p ->> 'delay_seconds')::numeric not between 0 and p_max_delay then
      raise exception 'queue_job: delay_seconds must be a whole number between 0 and %', p_max_delay;
    end if;
    v_run_at := now() + make_interval(secs => (p ->> 'delay_seconds')::numeric);
  end if;
  if p ? 'execute_after' then
    if jsonb_typeof(p -> 'execute_after') = 'string' then
      v_run_at := conveyor.parse_run_at(p ->> 'execute_after');
    end if;
    if v_run_at is null then
      raise exception 'queue_job: execute_after must be an ISO timestamp or an interval such as "10 seconds"';
    end if;
    -- A past timestamp means "now"; a negative interval is a mistake (as a negative
    -- delay_seconds, or fn_pgqueuer_enqueue's negative execute_after).
    if v_run_at < now() and p ->> 'execute_after' !~ '^\s*\d{4}-\d{2}-\d{2}' then
      raise exception 'queue_job: execute_after must not be a negative interval';
    end if;
    if v_run_at > now() + make_interval(secs => p_max_delay) then
      raise exception 'queue_job: execute_after is more than % seconds away', p_max_delay;
    end if;
  end if;
  if p ? 'headers' and jsonb_typeof(p -> 'headers') not in ('object', 'null') then
    raise exception 'queue_job: headers must be a JSON object';
  end if;
  if p ? 'critical' and jsonb_typeof(p -> 'critical') <> 'boolean' then
    raise exception 'queue_job: critical must be true or false';
  end if;
  if p ? 'tenant_id' then
    if jsonb_typeof(p -> 'tenant_id') <> 'string'
       or p ->> 'tenant_id' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      raise exception 'queue_job: tenant_id must be a uuid';
    end if;
  end if;

  return row(
    (p ->> 'tenant_id')::uuid,
    v_kind,
    conveyor.tier_queue(v_queue, v_priority),
    v_key,
    v_priority,
    coalesce(v_run_at, now()),
    coalesce(p -> 'payload', '{}'::jsonb),
    nullif(p -> 'headers', 'null'::jsonb),
    coalesce((p ->> 'critical')::boolean, false)
  )::conveyor.queue_job_item;
end
$$;

-- The last of queue_job's checks: the tenant the call acts for (conveyor.resolve_tenant:
-- refusals for the API roles, else the requested or default tenant) must exist.
create function conveyor.queue_job_tenant(p_requested uuid) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_tenant uuid := conveyor.resolve_tenant(p_requested, 'queue_job');
begin
  if not exists (select 1 from public.tenants t where t.id = v_tenant) then
    raise exception 'queue_job: unknown tenant %', v_tenant;
  end if;
  return v_tenant;
end
$$;

-- ---------------------------------------------------------------------------------------
-- What the writes keep beside the ledger
-- ---------------------------------------------------------------------------------------

-- Live dedupe keys (seed 003's dedupe_key): one live job per (tenant, key). The row goes when
-- the job finishes (conveyor.release_job_holds, 0053) and comes back with a redrive. A table
-- of its own, written only by jobs that have a key, so that public.jobs carries no index on
-- a column whose meaning changes with the job's state (which would make every claim and
-- settle a non-HOT update).
create table conveyor.dedupe_keys (
  tenant_id uuid not null,
  dedupe_key text not null,
  job_id uuid not null references public.jobs (id) on delete cascade,
  primary key (tenant_id, dedupe_key)
);
create index dedupe_keys_job_id_idx on conveyor.dedupe_keys (job_id);

-- Jobs counted per minute, tenant and queue, as they are enqueued, claimed, completed,
-- retried and failed: what "how many in this window" questions read (queue_stats, the metric
-- snapshots, the dashboard, alerts), so public.jobs needs no index on finished_at. One row
-- per backend (pg_backend_pid()) and minute: a backend runs one transaction at a time, so
-- concurrent writers never wait for each other's row; readers sum the backends. A batch
-- writes one row per (tenant, queue), not one per job. Pruned with the ledger.
create table conveyor.job_counts (
  minute timestamptz not null,
  backend int not null,
  tenant_id uuid not null,
  queue_name text not null,
  enqueued bigint not null default 0,
  claimed bigint not null default 0,
  completed bigint not null default 0,
  retried bigint not null default 0,
  failed bigint not null default 0,
  primary key (minute, backend, tenant_id, queue_name)
);
comment on table conveyor.job_counts is
  'Jobs enqueued/claimed/completed/retried/failed per minute, tenant and queue (one row per backend: sum them).';

-- Adds to the counts of (tenant, queue) in p_at's minute, for this backend.
create function conveyor.count_jobs(
  p_tenant_id uuid, p_queue text, p_at timestamptz,
  p_enqueued int default 0, p_claimed int default 0, p_completed int default 0,
  p_retried int default 0, p_failed int default 0
) returns void
language sql
set search_path = ''
as $$
  insert into conveyor.job_counts as c
    (minute, backend, tenant_id, queue_name, enqueued, claimed, completed, retried, failed)
  values (date_trunc('minute', p_at), pg_backend_pid(), p_tenant_id, p_queue,
          p_enqueued, p_claimed, p_completed, p_retried, p_failed)
  on conflict (minute, backend, tenant_id, queue_name) do update
  set enqueued = c.enqueued + excluded.enqueued, claimed = c.claimed + excluded.claimed,
      completed = c.completed + excluded.completed, retried = c.retried + excluded.retried,
      failed = c.failed + excluded.failed
$$;

-- When each tier queue may next hold a visible message: a claim skips a tier whose time has
-- not come without reading it (most kinds' fast and bulk tiers are empty nearly always).
-- Whatever makes a message visible sooner (an enqueue, a retry, a snooze, a release, a
-- redrive) lowers it under a SHARED advisory lock on the queue, held to its commit; a claim
-- that found the tier empty raises it only under the EXCLUSIVE lock (a try-lock: it never
-- waits) held to its commit, after reading the earliest vt with a fresh snapshot
-- (conveyor.raise_hints, 0053). So a raise never hides a message being written: its writer
-- committed before the raise's snapshot (which sees the message) or takes its lock after the
-- raise committed (and its UPDATE, a statement after that lock, sees the raised value and
-- lowers it again).
create table conveyor.queue_hints (
  queue_name text primary key,
  visible_from timestamptz not null default '-infinity'
);
comment on table conveyor.queue_hints is
  'Per tier queue: no message of it can be visible before visible_from (claims skip it until then).';

-- The advisory lock key of a queue's hint. Inlined (see conveyor.default_tenant_id, 0010).
create function conveyor.hint_lock_key(p_queue text) returns bigint
language sql immutable parallel safe
as $$ select pg_catalog.hashtextextended('conveyor.queue_hint:' operator(pg_catalog.||) p_queue, 0) $$;

create function conveyor.lower_hint(p_queue text, p_at timestamptz) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock_shared(conveyor.hint_lock_key(p_queue));
  update conveyor.queue_hints h set visible_from = p_at
  where h.queue_name = p_queue and h.visible_from > p_at;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Writes
-- ---------------------------------------------------------------------------------------

-- An idempotency key already names a job: the same request gets that job's number back;
-- another request under the same key is refused (23505, HTTP 409), as payment APIs refuse a
-- key reused with other parameters, naming the job that holds it. "The same request": kind,
-- payload, priority, headers and the critical flag (a delay is relative to the call, so it
-- is not compared).
create function conveyor.check_same_request(
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

-- One job. The ledger row comes first: its idempotency key (jobs_tenant_idempotency_key)
-- decides, so of N identical calls exactly one enqueues and the others get its job
-- (created = false). A dedupe_key (seed 003) refuses a second live job with the same key
-- (23505, HTTP 409). Then the message, under the job's number (conveyor.job_number_seq),
-- carrying only the tenant. The 'enqueued' event is written for fn_pgqueuer_enqueue (seed
-- 003's function logs every job's initial state) and in audit 'full' mode.
create function conveyor.enqueue(
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
  select case p_priority when 'fast' then k.queue_name || '_fast'
                         when 'bulk' then k.queue_name || '_bulk' else k.queue_name end
  into v_queue
  from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  -- ON CONFLICT waits for a concurrent holder of the same key to commit or roll back, so of
  -- N identical calls exactly one inserts and the others read its job (race-free at READ
  -- COMMITTED: the SELECT below is a statement of its own, with a snapshot that sees it).
  insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                           dedupe_key, max_attempts, payload, headers, run_at)
  values (p_tenant_id, nextval('conveyor.job_number_seq'), p_kind, v_queue, p_priority,
          p_idempotency_key, p_dedupe_key, v_max_attempts, p_payload, p_headers, v_run_at)
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
    -- ON CONFLICT again: a racing call with the same key waits, then sees it taken.
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (p_tenant_id, p_dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
        using errcode = '23505',
              hint = 'the key can be reused once that job has finished';
    end if;
  end if;

  perform conveyor.q_put(v_queue, v_job.msg_id, v_run_at,
                         jsonb_build_object('tenant_id', p_tenant_id), p_headers);
  -- conveyor.lower_hint and conveyor.count_jobs, written out: this runs for every job.
  perform pg_advisory_xact_lock_shared(conveyor.hint_lock_key(v_queue));
  update conveyor.queue_hints h set visible_from = v_run_at
  where h.queue_name = v_queue and h.visible_from > v_run_at;
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
  values (date_trunc('minute', now()), pg_backend_pid(), p_tenant_id, v_queue, 1)
  on conflict (minute, backend, tenant_id, queue_name) do update set enqueued = c.enqueued + 1;

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job.id, p_idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (p_tenant_id, p_idempotency_key, v_job.id);
  end if;
  if p_source = 'fn_pgqueuer_enqueue'
     or exists (select 1 from conveyor.settings s where s.key = 'audit' and s.value = '"full"') then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_job.id, p_tenant_id, 'enqueued', jsonb_build_object(
      'msg_id', v_job.msg_id, 'queue', v_queue, 'priority', p_priority,
      'run_at', v_run_at, 'source', p_source, 'critical', p_critical));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now;
  -- its first check is made here, so a kick inside the debounce window costs one read.
  if v_run_at <= now() and not exists (
    select 1 from conveyor.dispatch_kicks k
    where k.target = 'queue:' || p_kind
      and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
        (select (s.value #>> '{}')::numeric from conveyor.settings s where s.key = 'kick_debounce_ms'),
        250) / 1000.0)) then
    perform conveyor.kick('queue:' || p_kind);
  end if;

  return query select v_job.id, v_job.msg_id, true;
end
$$;

-- conveyor.enqueue for a whole array of validated items, set-based: the same rows with the
-- same values, but one statement per table for the whole array (one per tier queue for the
-- messages) instead of a PL/pgSQL call per job, which capped a batch at about 7k jobs/s.
-- Returns the job numbers in the order of p_items, an existing job's number for a key that is
-- taken. An element whose key names another request is refused (23505); the caller
-- (queue_jobs) replays element by element to name it. Dedupe keys are not supported
-- (queue_job has none).
create function conveyor.enqueue_items(
  p_items conveyor.queue_job_item[],
  p_source text default 'queue_job'
) returns bigint[]
language plpgsql
set search_path = ''
as $$
declare
  v_critical_attempts int := conveyor.setting_int('critical_max_attempts');
  v_new public.jobs[];
  v_queue text;
  v_ids bigint[];
begin
  -- 1. The jobs: one per distinct (tenant, key), the first element with that key being the
  -- job. As in conveyor.enqueue, ON CONFLICT waits for a concurrent holder of a key to commit
  -- or roll back, so racing calls make one job per key. The rows go in (tenant, key) order:
  -- every call takes its key locks in the same order, so two batches with overlapping keys
  -- wait for each other instead of deadlocking. Any fixed order will do, so the keys sort
  -- bytewise (COLLATE "C": equality is the same as the unique index's under any
  -- deterministic collation). Job numbers follow array order.
  with firsts as (
    select distinct on (e.tenant_id, e.idempotency_key collate "C") e.*, e.ordinality as ord
    from unnest(p_items) with ordinality as e
    order by e.tenant_id, e.idempotency_key collate "C", e.ordinality
  ), numbered as (
    select f.*, nextval('conveyor.job_number_seq') as msg_id
    from (select * from firsts order by ord) f
  ), ins as (
    insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                             max_attempts, payload, headers, run_at)
    select n.tenant_id, n.msg_id, n.kind, n.queue_name, n.priority, n.idempotency_key,
           case when n.critical then v_critical_attempts end, n.payload, n.headers, n.run_at
    from numbered n
    order by n.tenant_id, n.idempotency_key collate "C"
    on conflict (tenant_id, idempotency_key) do nothing
    returning *
  )
  select coalesce(array_agg(ins order by ins.msg_id), '{}') into v_new from ins;

  if cardinality(v_new) > 0 then
    -- 2. The messages, one INSERT per tier queue (pgmq.send_batch takes one delay for the
    -- whole batch, each element has its own run_at), under the jobs' numbers.
    for v_queue in select distinct j.queue_name from unnest(v_new) j loop
      execute format(
        $q$insert into pgmq.%I (msg_id, vt, message, headers) overriding system value
           select j.msg_id, j.run_at, jsonb_build_object('tenant_id', j.tenant_id), j.headers
           from unnest($1::public.jobs[]) j
           where j.queue_name = $2
           order by j.msg_id$q$,
        'q_' || v_queue) using v_new, v_queue;
      perform conveyor.lower_hint(v_queue, (select min(j.run_at) from unnest(v_new) j
                                            where j.queue_name = v_queue));
    end loop;

    -- 3. Counts, critical jobs' rows, and the 'enqueued' events when auditing everything.
    insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
    select date_trunc('minute', now()), pg_backend_pid(), j.tenant_id, j.queue_name, count(*)
    from unnest(v_new) j group by j.tenant_id, j.queue_name
    on conflict (minute, backend, tenant_id, queue_name) do update
    set enqueued = c.enqueued + excluded.enqueued;
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    select j.tenant_id, j.id, j.idempotency_key, j.max_attempts
    from unnest(v_new) j where j.max_attempts is not null order by j.msg_id;
    insert into public.idempotency_keys (tenant_id, key, job_id)
    select j.tenant_id, j.idempotency_key, j.id
    from unnest(v_new) j where j.max_attempts is not null order by j.msg_id;
    if conveyor.audit_full() then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select j.id, j.tenant_id, 'enqueued', jsonb_build_object(
               'msg_id', j.msg_id, 'queue', j.queue_name, 'priority', j.priority,
               'run_at', j.run_at, 'source', p_source, 'critical', j.max_attempts is not null)
      from unnest(v_new) j
      order by j.msg_id;
    end if;

    -- 4. Wake the dispatcher for kinds with work due now: once per kind.
    perform conveyor.kick('queue:' || k.kind)
    from (select j.kind, min(j.msg_id) as first from unnest(v_new) j
          where j.run_at <= now() group by j.kind) k
    order by k.first;
  end if;

  -- 5. Every element's job, new or existing: a statement of its own, so under READ
  -- COMMITTED its snapshot sees the keys that concurrent callers committed while step 1
  -- waited for them. A key that names another request is refused.
  if exists (
    select 1
    from unnest(p_items) e
    join public.jobs j on j.tenant_id = e.tenant_id and j.idempotency_key = e.idempotency_key
    where j.kind is distinct from e.kind or j.payload is distinct from e.payload
       or j.priority is distinct from e.priority or j.headers is distinct from e.headers
       or (j.max_attempts is not null) is distinct from e.critical
  ) then
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

revoke all on function conveyor.parse_run_at(text, timestamptz),
  conveyor.parse_queue_job(jsonb, bigint, bigint),
  conveyor.queue_job_tenant(uuid),
  conveyor.count_jobs(uuid, text, timestamptz, int, int, int, int, int),
  conveyor.hint_lock_key(text),
  conveyor.lower_hint(text, timestamptz),
  conveyor.check_same_request(public.jobs, text, jsonb, text, jsonb, boolean, text),
  conveyor.enqueue(uuid, text, jsonb, text, text, timestamptz, jsonb, boolean, text, text, text),
  conveyor.enqueue_items(conveyor.queue_job_item[], text)
  from public;
