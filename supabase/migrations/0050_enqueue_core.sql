-- Enqueue: validating a queue_job body, and the writes that put a job on a queue. Every way
-- in uses these: queue_job and queue_jobs (0051), fn_pgqueuer_enqueue (0069), schedules
-- (0071). In ONE transaction a job claims its idempotency key, gets its pgmq message, its
-- ledger row and its first event (transactional publish), and kicks the dispatcher.
--
-- Order: each function after the ones it calls.
--   validation  parse_run_at, parse_queue_job, queue_job_tenant (0051's RPCs call the last two)
--   writes      enqueue (one job: every way in but queue_jobs), enqueue_items (a validated
--               array, set-based: queue_jobs)
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
-- Writes
-- ---------------------------------------------------------------------------------------

-- One job. The idempotency key is claimed first, so of N identical calls exactly one
-- enqueues and the others get its job (created = false). A dedupe_key (seed 003) refuses a
-- second live job with the same key (23505, HTTP 409). The job id is time-ordered
-- (conveyor.new_job_id, 0011_tenant_tables.sql).
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
  v_tier_queue text;
  v_job_id uuid := conveyor.new_job_id();
  v_msg_id bigint;
  v_existing record;
  v_max_attempts int;
  v_run_at timestamptz := coalesce(p_run_at, now());
begin
  select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  v_tier_queue := conveyor.tier_queue(v_queue, p_priority);

  -- Claim the key first. ON CONFLICT waits for a concurrent holder of the same key to
  -- commit or roll back, so of N identical calls exactly one proceeds and the others
  -- return its job (race-free at READ COMMITTED). The FK to jobs is deferred: the job row
  -- is written below, in this same transaction.
  insert into public.idempotency_keys (tenant_id, key, job_id)
  values (p_tenant_id, p_idempotency_key, v_job_id)
  on conflict (tenant_id, key) do nothing;
  if not found then
    select j.id, j.msg_id into v_existing
    from public.idempotency_keys ik
    join public.jobs j on j.id = ik.job_id
    where ik.tenant_id = p_tenant_id and ik.key = p_idempotency_key;
    return query select v_existing.id, v_existing.msg_id, false;
    return;
  end if;

  if p_dedupe_key is not null and exists (
    select 1 from public.jobs j
    where j.tenant_id = p_tenant_id and j.dedupe_key = p_dedupe_key
      and j.status in ('pending', 'processing')
  ) then
    raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
      using errcode = '23505',
            hint = 'the key can be reused once that job has finished';
  end if;

  select m into v_msg_id
  from pgmq.send(
    queue_name => v_tier_queue,
    msg => jsonb_build_object(
      'job_id', v_job_id,
      'tenant_id', p_tenant_id,
      'kind', p_kind,
      'payload', p_payload
    ),
    headers => p_headers,
    delay => v_run_at
  ) as m;

  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  insert into public.jobs (id, tenant_id, kind, queue_name, priority, payload, headers,
                           idempotency_key, dedupe_key, msg_id, max_attempts, run_at)
  values (v_job_id, p_tenant_id, p_kind, v_tier_queue, p_priority, p_payload, p_headers,
          p_idempotency_key, p_dedupe_key, v_msg_id, v_max_attempts, v_run_at);

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job_id, p_idempotency_key, v_max_attempts);
  end if;

  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job_id, p_tenant_id, 'enqueued', jsonb_build_object(
    'msg_id', v_msg_id, 'queue', v_tier_queue, 'priority', p_priority,
    'run_at', v_run_at, 'source', p_source, 'critical', p_critical));
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now.
  perform conveyor.kick('queue:' || p_kind) where v_run_at <= now();

  return query select v_job_id, v_msg_id, true;
end
$$;

-- The writes of conveyor.enqueue for a whole array of validated items, set-based: the same
-- rows (idempotency key, pgmq message, job, critical_jobs row, 'enqueued' event, kick) with
-- the same values, but one statement per table for the whole array (one per tier queue for
-- the messages) instead of a PL/pgSQL call per job: per-job calls cap a batch at about 7k
-- jobs/s (docs/benchmarks.md §2). Returns the message ids in the order of p_items, an
-- existing job's id for a key that is taken. Dedupe keys are not supported (queue_job has
-- none).
create function conveyor.enqueue_items(
  p_items conveyor.queue_job_item[],
  p_source text default 'queue_job'
) returns bigint[]
language plpgsql
set search_path = ''
as $$
declare
  v_critical_attempts int := conveyor.setting_int('critical_max_attempts');
  v_new_ord bigint[];
  v_new_job uuid[];
  v_queue text;
  v_msg_job uuid[] := '{}';
  v_msg_id bigint[] := '{}';
  v_q_job uuid[];
  v_q_id bigint[];
  v_ids bigint[];
begin
  -- 1. Claim the keys: one new job id per distinct (tenant, key), the first element with
  -- that key being the job. As in conveyor.enqueue, ON CONFLICT waits for a concurrent
  -- holder of a key to commit or roll back, so racing calls make one job per key. The rows
  -- go in (tenant, key) order: every call takes its key locks in the same order, so two
  -- batches with overlapping keys wait for each other instead of deadlocking. Any fixed
  -- order will do, so the keys sort bytewise (COLLATE "C": no locale-aware comparisons;
  -- equality is the same as the unique index's under any deterministic collation).
  with firsts as (
    select distinct on (e.tenant_id, e.idempotency_key collate "C")
           e.tenant_id, e.idempotency_key, e.ordinality as ord
    from unnest(p_items) with ordinality as e
    order by e.tenant_id, e.idempotency_key collate "C", e.ordinality
  ), claimed as (
    insert into public.idempotency_keys (tenant_id, key, job_id)
    select f.tenant_id, f.idempotency_key, conveyor.new_job_id()
    from firsts f
    order by f.tenant_id, f.idempotency_key collate "C"
    on conflict (tenant_id, key) do nothing
    returning tenant_id, key, job_id
  )
  select array_agg(f.ord order by f.ord), array_agg(c.job_id order by f.ord)
  into v_new_ord, v_new_job
  from claimed c
  join firsts f on f.tenant_id = c.tenant_id and f.idempotency_key = c.key;

  if v_new_ord is not null then
    -- 2. The pgmq messages, one INSERT per tier queue, in array order. Straight into the
    -- queue table, as pgmq.send does (and as claim_jobs reads it, 0053): pgmq.send_batch
    -- takes one delay for the whole batch, while each element has its own run_at. The
    -- message is conveyor.enqueue's; its job_id maps the new msg_id back to the job.
    for v_queue in
      select e.queue_name
      from unnest(v_new_ord) as n(ord)
      join unnest(p_items) with ordinality as e on e.ordinality = n.ord
      group by e.queue_name
      order by min(n.ord)
    loop
      execute format(
        $q$
        with m as (
          insert into pgmq.%I (vt, message, headers)
          select e.run_at,
                 jsonb_build_object('job_id', n.job_id, 'tenant_id', e.tenant_id,
                                    'kind', e.kind, 'payload', e.payload),
                 e.headers
          from unnest($1::bigint[], $2::uuid[]) as n(ord, job_id)
          join unnest($3::conveyor.queue_job_item[]) with ordinality as e
            on e.ordinality = n.ord
          where e.queue_name = $4
          order by n.ord
          returning msg_id, (message ->> 'job_id')::uuid as job_id
        )
        select array_agg(m.job_id), array_agg(m.msg_id) from m
        $q$,
        'q_' || v_queue)
      into v_q_job, v_q_id
      using v_new_ord, v_new_job, p_items, v_queue;
      v_msg_job := v_msg_job || v_q_job;
      v_msg_id := v_msg_id || v_q_id;
    end loop;

    -- 3. The ledger: jobs, critical_jobs and the 'enqueued' events, in array order. One
    -- statement: the foreign keys to jobs are checked at its end, when the jobs are there.
    with x as (
      select e.*, n.ord, n.job_id, m.msg_id
      from unnest(v_new_ord, v_new_job) as n(ord, job_id)
      join unnest(v_msg_job, v_msg_id) as m(job_id, msg_id) on m.job_id = n.job_id
      join unnest(p_items) with ordinality as e on e.ordinality = n.ord
    ), j as (
      insert into public.jobs (id, tenant_id, kind, queue_name, priority, payload, headers,
                               idempotency_key, msg_id, max_attempts, run_at)
      select x.job_id, x.tenant_id, x.kind, x.queue_name, x.priority, x.payload, x.headers,
             x.idempotency_key, x.msg_id, case when x.critical then v_critical_attempts end,
             x.run_at
      from x
      order by x.ord
    ), c as (
      insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
      select x.tenant_id, x.job_id, x.idempotency_key, v_critical_attempts
      from x
      where x.critical
      order by x.ord
    )
    insert into public.job_events (job_id, tenant_id, type, payload)
    select x.job_id, x.tenant_id, 'enqueued', jsonb_build_object(
             'msg_id', x.msg_id, 'queue', x.queue_name, 'priority', x.priority,
             'run_at', x.run_at, 'source', p_source, 'critical', x.critical)
    from x
    order by x.ord;

    -- 4. Wake the dispatcher for kinds with work due now: once per kind (conveyor.enqueue
    -- kicks per job, and all but the first of those are debounced away).
    perform conveyor.kick('queue:' || k.kind)
    from (
      select e.kind, min(n.ord) as first
      from unnest(v_new_ord) as n(ord)
      join unnest(p_items) with ordinality as e on e.ordinality = n.ord
      where e.run_at <= now()
      group by e.kind
    ) k
    order by k.first;
  end if;

  -- 5. Every element's message id, new or existing. A statement of its own, so under READ
  -- COMMITTED its snapshot sees the keys that concurrent callers committed while step 1
  -- waited for them (conveyor.enqueue reads them the same way).
  select array_agg(j.msg_id order by e.ordinality)
  into v_ids
  from unnest(p_items) with ordinality as e
  left join public.idempotency_keys ik
    on ik.tenant_id = e.tenant_id and ik.key = e.idempotency_key
  left join public.jobs j on j.id = ik.job_id;
  return v_ids;
end
$$;

revoke all on function conveyor.parse_run_at(text, timestamptz),
  conveyor.parse_queue_job(jsonb, bigint, bigint),
  conveyor.queue_job_tenant(uuid),
  conveyor.enqueue(uuid, text, jsonb, text, text, timestamptz, jsonb, boolean, text, text, text),
  conveyor.enqueue_items(conveyor.queue_job_item[], text)
  from public;
