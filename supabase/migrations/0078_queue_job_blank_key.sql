-- Fix (0051): queue_job took a key made only of tabs or newlines ("\t\n") as an idempotency
-- key, while a key of spaces is refused as missing: btrim() trims spaces only. Found by the
-- reliability suite's fuzzer (tests/reliability_fuzz_test.ts). A key with no visible
-- character is now "missing idempotency_key" whatever the whitespace. The function is
-- otherwise 0051's, unchanged (CREATE OR REPLACE keeps its grants and comment).

create or replace function public.queue_job(jsonb) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  p alias for $1;
  c_fn constant text := 'queue_job';
  c_fields constant text[] := array['idempotency_key', 'kind', 'payload', 'priority',
    'delay_seconds', 'execute_after', 'headers', 'critical', 'tenant_id'];
  v_kind text;
  v_key text;
  v_priority text := 'normal';
  v_run_at timestamptz;
  v_tenant uuid;
  v_size int;
  v_limit bigint := conveyor.setting_int('payload_max_bytes');
  v_max_delay bigint := conveyor.setting_int('max_delay_sec');
  v_extra text;
  v_result record;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_job: the body must be a JSON object';
  end if;

  -- The seed's three checks, in the seed's order, with the seed's texts.
  if p -> 'kind' is null or jsonb_typeof(p -> 'kind') = 'null' then
    raise exception 'queue_job: missing kind in payload';
  end if;
  v_kind := p ->> 'kind';
  if jsonb_typeof(p -> 'kind') <> 'string'
     or not exists (select 1 from conveyor.job_kinds k where k.kind = v_kind) then
    raise exception 'queue_job: unsupported kind %', v_kind;
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';

  -- Beyond the seed: every other field is checked, each with its own message.
  v_size := octet_length(p::text);
  if v_size > v_limit then
    raise exception 'queue_job: payload too large (% bytes, the limit is % bytes)', v_size, v_limit;
  end if;
  select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
  if v_extra is not null then
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
       or (p ->> 'delay_seconds')::numeric not between 0 and v_max_delay then
      raise exception 'queue_job: delay_seconds must be a whole number between 0 and %', v_max_delay;
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
    if v_run_at > now() + make_interval(secs => v_max_delay) then
      raise exception 'queue_job: execute_after is more than % seconds away', v_max_delay;
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

  v_tenant := conveyor.resolve_tenant((p ->> 'tenant_id')::uuid, c_fn);
  if not exists (select 1 from public.tenants t where t.id = v_tenant) then
    raise exception 'queue_job: unknown tenant %', v_tenant;
  end if;

  select * into v_result from conveyor.enqueue(
    p_tenant_id => v_tenant,
    p_kind => v_kind,
    p_payload => coalesce(p -> 'payload', '{}'::jsonb),
    p_idempotency_key => v_key,
    p_priority => v_priority,
    p_run_at => v_run_at,
    p_headers => nullif(p -> 'headers', 'null'::jsonb),
    p_critical => coalesce((p ->> 'critical')::boolean, false),
    p_source => c_fn,
    p_fn => c_fn
  );
  return v_result.msg_id;
end
$$;
