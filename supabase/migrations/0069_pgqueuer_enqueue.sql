-- Seed 003: PGQueuer's PostgREST entry point, fn_pgqueuer_enqueue, with the seed's exact
-- signature and parameter names, so existing HTTP callers work unchanged. It enqueues into
-- Conveyor's own queues (conveyor.enqueue: same ledger, pgmq messages and workers as
-- queue_job) with the hardening seed 003 leaves to the reader built in:
--   * EXECUTE only for service_role and authenticated (tenant-bound), never PUBLIC/anon;
--   * entrypoints allow-listed (conveyor.pgqueuer_entrypoints) and mapped to job kinds;
--   * the payload size limit of queue_job (conveyor.settings payload_max_bytes);
--   * every accepted call recorded in job_events (the role of PGQueuer's pgqueuer_log).
--
-- Priority: PGQueuer runs higher numbers first. Conveyor has three tiers:
--   priority > 0  → fast,   priority = 0 → normal,   priority < 0 → bulk.
-- dedupe_key: as PGQueuer documents it, a second job with the same key is refused while the
-- first is queued or running (HTTP 409), and the key is free again once that job finished.

-- `fetch`, the seed's example entrypoint, becomes a job kind of its own: the fetch handler
-- records what it was given (size, digest, and the text when it is UTF-8).
insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description)
values ('fetch', 'q_fetch', null, 'fetch-worker', 'PGQueuer-style jobs sent to fn_pgqueuer_enqueue')
on conflict (kind) do nothing;
select conveyor.ensure_kind_queues('fetch');

create table conveyor.pgqueuer_entrypoints (
  entrypoint text primary key check (entrypoint ~ '^[A-Za-z][A-Za-z0-9_.:-]{0,62}$'),
  kind text not null references conveyor.job_kinds (kind) on delete cascade,
  created_at timestamptz not null default now()
);
comment on table conveyor.pgqueuer_entrypoints is
  'Entrypoints fn_pgqueuer_enqueue accepts, and the job kind each one runs as.';

-- Deleting a kind checks its entrypoints (ON DELETE of job_kinds) through this index.
create index pgqueuer_entrypoints_kind_idx on conveyor.pgqueuer_entrypoints (kind);

insert into conveyor.pgqueuer_entrypoints (entrypoint, kind) values
  ('fetch', 'fetch'),
  ('enrich', 'enrich'),
  ('outreach', 'outreach'),
  ('enforce', 'enforce')
on conflict (entrypoint) do nothing;

create function public.fn_pgqueuer_enqueue(
  entrypoint text,
  payload bytea default null,
  priority int default 0,
  execute_after interval default '0'::interval,
  dedupe_key text default null,
  headers jsonb default null
) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_fn constant text := 'fn_pgqueuer_enqueue';
  v_kind text;
  v_limit bigint := conveyor.setting_int('payload_max_bytes');
  v_max_delay bigint := conveyor.setting_int('max_delay_sec');
  v_tenant uuid;
  v_result record;
begin
  if entrypoint is null or btrim(entrypoint) = '' then
    raise exception 'fn_pgqueuer_enqueue: missing entrypoint';
  end if;
  select e.kind into v_kind from conveyor.pgqueuer_entrypoints e where e.entrypoint = $1;
  if v_kind is null then
    raise exception 'fn_pgqueuer_enqueue: unknown entrypoint %', entrypoint
      using hint = 'allowed: ' || (select string_agg(e.entrypoint, ', ' order by e.entrypoint)
                                   from conveyor.pgqueuer_entrypoints e);
  end if;
  if octet_length(coalesce(payload, ''::bytea)) + octet_length(coalesce(headers::text, '')) > v_limit then
    raise exception 'fn_pgqueuer_enqueue: payload too large (% bytes, the limit is % bytes)',
      octet_length(coalesce(payload, ''::bytea)) + octet_length(coalesce(headers::text, '')), v_limit;
  end if;
  if execute_after is null then
    raise exception 'fn_pgqueuer_enqueue: execute_after must be an interval such as ''10 seconds''';
  end if;
  -- As queue_job refuses a negative delay_seconds or execute_after interval.
  if execute_after < '0'::interval then
    raise exception 'fn_pgqueuer_enqueue: execute_after must not be negative (got %)', execute_after;
  end if;
  if now() + execute_after > now() + make_interval(secs => v_max_delay) then
    raise exception 'fn_pgqueuer_enqueue: execute_after is more than % seconds away', v_max_delay;
  end if;
  if headers is not null and jsonb_typeof(headers) not in ('object', 'null') then
    raise exception 'fn_pgqueuer_enqueue: headers must be a JSON object';
  end if;
  if dedupe_key is not null and (btrim(dedupe_key) = '' or length(dedupe_key) > 255) then
    raise exception 'fn_pgqueuer_enqueue: dedupe_key must be 1 to 255 characters';
  end if;

  v_tenant := conveyor.resolve_tenant(null, c_fn);

  select * into v_result from conveyor.enqueue(
    p_tenant_id => v_tenant,
    p_kind => v_kind,
    p_payload => jsonb_build_object(
      'entrypoint', entrypoint,
      'payload_base64', encode(coalesce(payload, ''::bytea), 'base64'),
      'size', octet_length(coalesce(payload, ''::bytea))),
    -- PGQueuer has no idempotency key; dedupe_key is its (reusable) duplicate guard.
    p_idempotency_key => 'pgqueuer:' || gen_random_uuid(),
    p_priority => case when priority > 0 then 'fast' when priority < 0 then 'bulk' else 'normal' end,
    p_run_at => now() + execute_after,
    p_headers => nullif(headers, 'null'::jsonb),
    p_dedupe_key => dedupe_key,
    p_source => c_fn,
    p_fn => c_fn
  );
  return v_result.msg_id;
end
$$;

comment on function public.fn_pgqueuer_enqueue(text, bytea, int, interval, text, jsonb) is
  'PGQueuer-compatible enqueue (seed 003): returns the job''s number (its pgmq message id, unique across queues).';

revoke all on function public.fn_pgqueuer_enqueue(text, bytea, int, interval, text, jsonb)
  from public, anon;
grant execute on function public.fn_pgqueuer_enqueue(text, bytea, int, interval, text, jsonb)
  to service_role, authenticated;
