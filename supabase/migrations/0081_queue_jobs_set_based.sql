-- public.queue_jobs(jsonb), set-based (0058 called public.queue_job once per element).
--
-- Why (benchmark, docs/benchmarks.md §2): 0058 paid queue_job's whole per-job path for each
-- element (a PL/pgSQL call into conveyor.enqueue, four single-row writes, a pgmq.send through
-- dynamic SQL, a kick): about 7k jobs/s, against 60k/s for pg-boss insert() and 88k/s for
-- graphile addJobs() on the same machine. Now each element is only validated one by one,
-- and the writes are one statement per table for the whole array (one per tier queue for
-- the pgmq messages). See tools/bench/notes.md for the figures.
--
-- The contract is 0058's, unchanged:
--   * every element is validated exactly as queue_job validates it (same checks, order,
--     texts and SQLSTATEs: both now call conveyor.parse_queue_job, queue_job's former body);
--     the first bad element fails the call, its index in DETAIL ("element N of the array
--     (0-based)"), and nothing of the array is written;
--   * idempotency as queue_job: an element whose key exists returns that job's message id
--     and writes nothing; elements repeating a key within the array share one job (the
--     first of them is the one enqueued);
--   * the message ids come back in array order.
--
-- queue_job is split into conveyor.parse_queue_job (validation, tenancy) + conveyor.enqueue
-- (the writes, as before); its checks and texts are moved, not changed.

-- One validated queue_job body: what conveyor.enqueue needs. `queue_name` is the pgmq queue
-- of the job's priority tier; `run_at` is never NULL (now() when no delay was given);
-- `tenant_id` is the requested one out of parse_queue_job, the resolved one after
-- queue_job_tenant.
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

-- queue_job's validation, moved here verbatim from 0051/0078 so that queue_job and
-- queue_jobs share one copy of every check and error text: all of it but the tenant, which
-- comes last (conveyor.queue_job_tenant). `tenant_id` is the one the body asked for (NULL
-- when none). The two limits are arguments so that a batch reads the settings once.
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

-- queue_job as in 0078: validate, then conveyor.enqueue. CREATE OR REPLACE keeps its grants
-- and comment.
create or replace function public.queue_job(jsonb) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_fn constant text := 'queue_job';
  v conveyor.queue_job_item;
  v_result record;
begin
  v := conveyor.parse_queue_job($1, conveyor.setting_int('payload_max_bytes'),
                                conveyor.setting_int('max_delay_sec'));
  v.tenant_id := conveyor.queue_job_tenant(v.tenant_id);
  select * into v_result from conveyor.enqueue(
    p_tenant_id => v.tenant_id,
    p_kind => v.kind,
    p_payload => v.payload,
    p_idempotency_key => v.idempotency_key,
    p_priority => v.priority,
    p_run_at => v.run_at,
    p_headers => v.headers,
    p_critical => v.critical,
    p_source => c_fn,
    p_fn => c_fn
  );
  return v_result.msg_id;
end
$$;

-- The writes of conveyor.enqueue for a whole array of validated items, set-based: the same
-- rows (idempotency key, pgmq message, job, critical_jobs row, 'enqueued' event, kick) with
-- the same values. Returns the message ids in the order of p_items, an existing job's id
-- for a key that is taken. Dedupe keys are not supported (queue_job has none).
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

-- Re-raises an element's error (its SQLSTATE, message and hint) with "element N of the array
-- (0-based)" put first in DETAIL: how queue_jobs names the element that failed.
create function conveyor.raise_element_error(
  p_index int, p_state text, p_msg text, p_detail text, p_hint text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_detail text := concat_ws('; ', format('element %s of the array (0-based)', p_index),
                             nullif(p_detail, ''));
begin
  -- RAISE refuses a NULL option: re-raise with a hint only when the element's error had one.
  if coalesce(p_hint, '') = '' then
    raise exception using errcode = p_state, message = p_msg, detail = v_detail;
  end if;
  raise exception using errcode = p_state, message = p_msg, detail = v_detail, hint = p_hint;
end
$$;

-- 0058's loop, kept for the two cases below: every element through public.queue_job, one
-- subtransaction for the whole loop, the error re-raised with the element's index.
create function conveyor.queue_jobs_each(p jsonb) returns bigint[]
language plpgsql
set search_path = ''
as $$
declare
  v_n int := jsonb_array_length(p);
  v_i int := 0;
  v_ids bigint[] := '{}';
  v_state text;
  v_msg text;
  v_detail text;
  v_hint text;
begin
  begin
    while v_i < v_n loop
      v_ids := v_ids || public.queue_job(p -> v_i);
      v_i := v_i + 1;
    end loop;
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text,
                            v_detail = pg_exception_detail, v_hint = pg_exception_hint;
    perform conveyor.raise_element_error(v_i, v_state, v_msg, v_detail, v_hint);
  end;
  return v_ids;
end
$$;

-- SECURITY DEFINER now (0058 was INVOKER and reached the tables through queue_job, a
-- definer): it writes the ledger and the pgmq tables itself. Still service_role only.
create or replace function public.queue_jobs(jsonb) returns setof bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  p alias for $1;
  c_max constant int := 10000;
  v_n int;
  v_i int := 0;
  v_limit bigint;
  v_max_delay bigint;
  v_elem jsonb;
  v_item conveyor.queue_job_item;
  v_requested uuid;
  v_tenant uuid;
  v_items conveyor.queue_job_item[] := '{}';
  v_ids bigint[];
  v_replay boolean := false;
  v_state text;
  v_msg text;
  v_detail text;
  v_hint text;
begin
  if p is null or jsonb_typeof(p) <> 'array' then
    raise exception 'queue_jobs: the body must be a JSON array of queue_job bodies';
  end if;
  v_n := jsonb_array_length(p);
  if v_n > c_max then
    raise exception 'queue_jobs: at most % jobs per call (got %)', c_max, v_n;
  end if;
  if v_n = 0 then
    return;
  end if;

  -- Per element, as 0058, for an API role: queue_jobs is not granted to them, but a definer
  -- function of theirs could call it, and then each job must go through the per-row enqueue
  -- rate limit trigger (0070; a refusal names its element) and resolve_tenant's refusals.
  if conveyor.caller_role() in ('anon', 'authenticated') then
    return query select t.id from unnest(conveyor.queue_jobs_each(p)) with ordinality as t(id, o)
                 order by t.o;
    return;
  end if;

  v_limit := conveyor.setting_int('payload_max_bytes');
  v_max_delay := conveyor.setting_int('max_delay_sec');
  -- One subtransaction for the whole call (as 0058), only to name the element that failed.
  begin
    -- Validate everything before writing anything: the first bad element is the error.
    -- Each element's checks in queue_job's order, its tenant last; the tenant is resolved
    -- again only when an element asks for another one than the element before (the answer
    -- is the same for the whole call).
    for v_elem in select e from jsonb_array_elements(p) as e loop
      v_item := conveyor.parse_queue_job(v_elem, v_limit, v_max_delay);
      if v_i = 0 or v_item.tenant_id is distinct from v_requested then
        v_requested := v_item.tenant_id;
        v_tenant := conveyor.queue_job_tenant(v_requested);
      end if;
      v_item.tenant_id := v_tenant;
      v_items := v_items || v_item;
      v_i := v_i + 1;
    end loop;
    v_ids := conveyor.enqueue_items(v_items);
  exception when others then
    if v_i >= v_n then
      -- Every element was valid and a write failed (a tenant deleted meanwhile, a setting
      -- out of range...). The set-based writes cannot say which element was at fault: they
      -- are rolled back, and the array is replayed one element at a time, which raises the
      -- same error naming its element (or succeeds, if the cause has gone).
      v_replay := true;
    else
      get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text,
                              v_detail = pg_exception_detail, v_hint = pg_exception_hint;
      perform conveyor.raise_element_error(v_i, v_state, v_msg, v_detail, v_hint);
    end if;
  end;
  if v_replay then
    v_ids := conveyor.queue_jobs_each(p);
  end if;
  return query select t.id from unnest(v_ids) with ordinality as t(id, o) order by t.o;
end
$$;

comment on function public.queue_jobs(jsonb) is
  'Enqueue many jobs in one transaction: a JSON array of queue_job bodies. Returns their message ids in order.';

revoke all on function conveyor.parse_queue_job(jsonb, bigint, bigint),
  conveyor.raise_element_error(int, text, text, text, text),
  conveyor.queue_job_tenant(uuid),
  conveyor.enqueue_items(conveyor.queue_job_item[], text),
  conveyor.queue_jobs_each(jsonb) from public;
revoke all on function public.queue_jobs(jsonb) from public, anon, authenticated;
grant execute on function public.queue_jobs(jsonb) to service_role;
