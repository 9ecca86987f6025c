-- public.queue_job cost far more Postgres CPU per call than a one-row INSERT function (issue
-- 16's target is at most 2×; the full bench of 1c1049a measured 738 µs against 166 µs, 4.45×).
-- Much of it was the layers and statements around the work, not the work (perf and
-- pg_stat_statements, tools/bench/notes.md item 13): the call went through parse_queue_job (a
-- composite return), queue_job_tenant, resolve_tenant, conveyor.enqueue (a RETURNS TABLE
-- function read with `select * into`: a tuplestore per call), q_put and kick, each PL/pgSQL
-- with its own search_path (a GUC save and restore); it read conveyor.settings four times;
-- every statement and every PL/pgSQL expression is set up again in each transaction (an
-- executor start, an ACL check per function); conveyor.job_message, declared immutable
-- around jsonb_build_object (stable), was never inlined, so its body was parsed and planned
-- again in every transaction; and with push kicks off (the bench) every call still read
-- dispatch_kicks and called conveyor.kick. Same-run A/B, 10k calls c10 over SQL, medians of
-- 4: 623 → 460 µs Postgres CPU per call with the first two changes below, then 541 → 492
-- with the last two (a busier run); WAL 1,254 → 1,197 B/call.
--
-- public.queue_job now does one call's work itself, with the same checks in the same order
-- and the same texts as before. It calls conveyor.parse_queue_job, the one definition of the
-- checks that queue_jobs uses too, which takes the lean version of them (the optional fields
-- checked only when the body has one, the payload and headers read once); queue_job_tenant
-- and conveyor.enqueue stay for queue_jobs, fn_pgqueuer_enqueue and the schedules. A first
-- version copied the checks into queue_job instead: same-run A/B 342 µs/call with the copy
-- against 339 calling the parser (tools/bench/notes.md item 13), so the one copy is kept.
--
-- * one statement reads the kind's queue and every setting the call needs (payload_max_bytes,
--   max_delay_sec, critical_max_attempts, audit, push_kicks, kick_debounce_ms) as one
--   jsonb_object_agg; void calls (q_put, the hint lock) are assignments, not PERFORM (a full
--   executor pass); the ledger row returns only its id and number; no dispatch_kicks read
--   when push_kicks is off
--   (conveyor.kick would return at once: pg_cron's dispatcher picks the work up);
-- * conveyor.job_message is declared stable, so it is inlined where it is called;
-- * the tenant (conveyor.resolve_tenant: the JWT's claim) is checked to exist by the ledger
--   INSERT itself (INSERT … SELECT from public.tenants; no row and no job with the key: the
--   same "unknown tenant" error);
-- * the hint and the per-minute count are one statement, the count by an UPDATE first (the
--   upsert only for the first job of a minute in a backend, as 20261207130000_lean_settle.sql
--   does for claim and settle: an upsert that finds its row locks it first, a WAL record more).
--
-- queue_job never sends a dedupe key (its body has no such field), so conveyor.enqueue's
-- dedupe_keys branch is not part of it; its source is always 'queue_job', so the audit event
-- is written exactly when audit is 'full'.

create or replace function conveyor.parse_queue_job(p jsonb, p_limit bigint, p_max_delay bigint)
returns conveyor.queue_job_item
language plpgsql stable
set search_path = ''
as $_$
declare
  c_fields constant text[] := array['idempotency_key', 'kind', 'payload', 'priority',
    'delay_seconds', 'execute_after', 'headers', 'critical', 'concurrency_key',
    'concurrency_limit', 'tenant_id'];
  c_basic constant text[] := array['idempotency_key', 'kind', 'payload'];
  v_kind text;
  v_queue text;
  v_key text;
  v_priority text := 'normal';
  v_run_at timestamptz;
  v_size int;
  v_extra text;
  v_payload jsonb;
  v_headers jsonb;
  v_critical boolean := false;
  v_ckey text;
  v_climit int;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_job: the body must be a JSON object';
  end if;

  -- The seed's three checks, in the seed's order, with the seed's texts.
  if p -> 'kind' is null or jsonb_typeof(p -> 'kind') = 'null' then
    raise exception 'queue_job: missing kind in payload';
  end if;
  v_kind := p ->> 'kind';
  select k.queue_name into v_queue from conveyor.job_kinds k
  where k.kind = v_kind and jsonb_typeof(p -> 'kind') = 'string';
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
  v_payload := p -> 'payload';
  if v_payload is null then
    v_payload := '{}';
  elsif jsonb_typeof(v_payload) <> 'object' then
    raise exception 'queue_job: payload must be a JSON object';
  end if;
  -- The optional fields, checked only when the body has one (most have none: each check is
  -- an expression to set up in every transaction).
  if p - c_basic <> '{}'::jsonb then
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
    v_headers := p -> 'headers';
    if v_headers is not null then
      if jsonb_typeof(v_headers) = 'null' then
        v_headers := null;
      elsif jsonb_typeof(v_headers) <> 'object' then
        raise exception 'queue_job: headers must be a JSON object';
      end if;
    end if;
    if p ? 'critical' then
      if jsonb_typeof(p -> 'critical') <> 'boolean' then
        raise exception 'queue_job: critical must be true or false';
      end if;
      v_critical := (p ->> 'critical')::boolean;
    end if;
    if coalesce(jsonb_typeof(p -> 'concurrency_key'), 'null') <> 'null' then
      if jsonb_typeof(p -> 'concurrency_key') <> 'string' or (p ->> 'concurrency_key') !~ '\S' then
        raise exception 'queue_job: concurrency_key must be a non-empty string';
      end if;
      v_ckey := p ->> 'concurrency_key';
      if length(v_ckey) > 255 then
        raise exception 'queue_job: concurrency_key is longer than 255 characters';
      end if;
    end if;
    if coalesce(jsonb_typeof(p -> 'concurrency_limit'), 'null') <> 'null' then
      if jsonb_typeof(p -> 'concurrency_limit') <> 'number'
         or (p ->> 'concurrency_limit')::numeric <> trunc((p ->> 'concurrency_limit')::numeric)
         or (p ->> 'concurrency_limit')::numeric not between 1 and 1000 then
        raise exception 'queue_job: concurrency_limit must be a whole number between 1 and 1000';
      end if;
      if v_ckey is null then
        raise exception 'queue_job: concurrency_limit needs a concurrency_key';
      end if;
      v_climit := (p ->> 'concurrency_limit')::int;
    end if;
    if p ? 'tenant_id' then
      if jsonb_typeof(p -> 'tenant_id') <> 'string'
         or p ->> 'tenant_id' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
        raise exception 'queue_job: tenant_id must be a uuid';
      end if;
    end if;
  end if;

  return row(
    (p ->> 'tenant_id')::uuid,
    v_kind,
    conveyor.tier_queue(v_queue, v_priority),
    v_key,
    v_priority,
    coalesce(v_run_at, now()),
    v_payload,
    v_headers,
    v_critical,
    v_ckey,
    v_climit
  )::conveyor.queue_job_item;
end
$_$;

create or replace function public.queue_job(jsonb) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_fn constant text := 'queue_job';
  v conveyor.queue_job_item;
  v_tenant uuid;
  v_max_attempts int;
  v_settings jsonb;
  v_id uuid;
  v_msg bigint;
  v_job public.jobs;
  v_void text;
begin
  -- Every setting this call reads, in one statement (one aggregate: each one more is work at
  -- every executor start).
  select jsonb_object_agg(s.key, s.value) into v_settings
  from conveyor.settings s
  where s.key in ('payload_max_bytes', 'max_delay_sec', 'critical_max_attempts', 'audit',
                  'push_kicks', 'kick_debounce_ms');
  v := conveyor.parse_queue_job($1, (v_settings ->> 'payload_max_bytes')::bigint,
                                (v_settings ->> 'max_delay_sec')::bigint);

  -- The tenant: the token's (conveyor.queue_job_tenant).
  v_tenant := conveyor.resolve_tenant(v.tenant_id, c_fn);
  if v.critical then
    v_max_attempts := (v_settings ->> 'critical_max_attempts')::int;
  end if;

  -- conveyor.enqueue's work for one queue_job call. ON CONFLICT waits for a concurrent
  -- holder of the same key to commit or roll back, so of N identical calls exactly one
  -- inserts and the others read its job (race-free at READ COMMITTED: the SELECT below is a
  -- statement of its own, with a snapshot that sees it).
  insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                           max_attempts, payload, headers, run_at, concurrency_key,
                           concurrency_limit)
  select v_tenant, nextval('conveyor.job_number_seq'), v.kind, v.queue_name, v.priority,
         v.idempotency_key, v_max_attempts, v.payload, v.headers, v.run_at, v.concurrency_key,
         v.concurrency_limit
  from public.tenants t where t.id = v_tenant
  on conflict (tenant_id, idempotency_key) do nothing
  returning id, msg_id into v_id, v_msg;
  if v_id is null then
    select * into v_job from public.jobs j
    where j.tenant_id = v_tenant and j.idempotency_key = v.idempotency_key;
    -- No row from public.tenants: the check conveyor.queue_job_tenant makes, after the fact
    -- (a tenant's jobs keep it from being deleted, so a job found means the tenant exists).
    if v_job.id is null and not exists (select 1 from public.tenants t where t.id = v_tenant) then
      raise exception 'queue_job: unknown tenant %', v_tenant;
    end if;
    perform conveyor.check_same_request(v_job, v.kind, v.payload, v.priority, v.headers,
                                        v.critical, v.concurrency_key, v.concurrency_limit, c_fn);
    return v_job.msg_id;
  end if;

  -- Assignments, not PERFORM: a void call as an expression skips an executor pass.
  v_void := conveyor.q_put(v.queue_name, v_msg, v.run_at,
                           conveyor.job_message(v_tenant, v.concurrency_key, v.concurrency_limit),
                           v.headers);
  -- conveyor.lower_hint, written out.
  v_void := pg_advisory_xact_lock_shared(conveyor.hint_lock_key(v.queue_name));
  -- With conveyor.count_jobs in the same statement, UPDATE first (this backend's row for the
  -- minute is there but for the first job of a minute).
  with h as (
    update conveyor.queue_hints h set visible_from = v.run_at
    where h.queue_name = v.queue_name and h.visible_from > v.run_at
  )
  update conveyor.job_counts c set enqueued = c.enqueued + 1
  where c.minute = date_trunc('minute', now()) and c.backend = pg_backend_pid()
    and c.tenant_id = v_tenant and c.queue_name = v.queue_name;
  if not found then
    insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
    values (date_trunc('minute', now()), pg_backend_pid(), v_tenant, v.queue_name, 1)
    on conflict (minute, backend, tenant_id, queue_name) do update set enqueued = c.enqueued + 1;
  end if;

  if v.critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (v_tenant, v_id, v.idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (v_tenant, v.idempotency_key, v_id);
  end if;
  if v_settings ->> 'audit' = 'full' then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_id, v_tenant, 'enqueued', jsonb_strip_nulls(jsonb_build_object(
      'msg_id', v_msg, 'queue', v.queue_name, 'priority', v.priority,
      'run_at', v.run_at, 'source', c_fn, 'critical', v.critical,
      'concurrency_key', v.concurrency_key)));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now;
  -- its first check is made here, so a kick inside the debounce window costs one read, and
  -- none when push kicks are off (conveyor.kick would do nothing).
  if v.run_at <= now() and coalesce((v_settings ->> 'push_kicks')::boolean, true) then
    if not exists (
      select 1 from conveyor.dispatch_kicks k
      where k.target = 'queue:' || v.kind
        and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
          (v_settings ->> 'kick_debounce_ms')::numeric, 250) / 1000.0)) then
      perform conveyor.kick('queue:' || v.kind);
    end if;
  end if;
  return v_msg;
end
$$;

comment on function public.queue_job(jsonb) is
  'Enqueue a job: {"idempotency_key","kind","payload"} (+ priority, delay_seconds | execute_after, headers, critical, concurrency_key, concurrency_limit). Returns the pgmq message id.';
revoke all on function public.queue_job(jsonb) from public;
grant execute on function public.queue_job(jsonb) to authenticated, service_role;

-- The message of a job is inlined where it is called, as 20261207120000_fair_share.sql meant
-- (conveyor.enqueue and redrive_dead_job gain too).
alter function conveyor.job_message(uuid, text, int) stable;
