-- Seed 000: public.queue_job(payload jsonb) returns bigint, exposed through PostgREST; and
-- public.queue_jobs(jsonb), the same for an array of bodies in one transaction.
--
-- The parameter is declared WITHOUT a name: PostgREST matches JSON body keys to parameter
-- names and hands the WHOLE body only to a function with a single unnamed json/jsonb
-- parameter. A named `payload` parameter would make the seed's own curl call 404.
--
-- Body: {"idempotency_key": "...", "kind": "enrich|outreach|enforce", "payload": {...}}
-- plus the optional fields conveyor.parse_queue_job lists (0050_enqueue_core.sql).
-- Returns the pgmq message id. The same idempotency_key returns the same id and enqueues
-- nothing new. Every rejected body raises an error (P0001, HTTP 400, for a bad body) and
-- writes nothing.

-- Validate (the seed's three checks first, in the seed's order, with the seed's texts),
-- resolve the tenant, then conveyor.enqueue.
create function public.queue_job(jsonb) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_fn constant text := 'queue_job';
  v conveyor.queue_job_item;
  v_limit bigint;
  v_max_delay bigint;
  v_result record;
begin
  -- Both limits in one read (each helper call costs more than the read itself).
  select max((s.value #>> '{}')::bigint) filter (where s.key = 'payload_max_bytes'),
         max((s.value #>> '{}')::bigint) filter (where s.key = 'max_delay_sec')
  into v_limit, v_max_delay
  from conveyor.settings s where s.key in ('payload_max_bytes', 'max_delay_sec');
  v := conveyor.parse_queue_job($1, v_limit, v_max_delay);
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

comment on function public.queue_job(jsonb) is
  'Enqueue a job: {"idempotency_key","kind","payload"} (+ priority, delay_seconds | execute_after, headers, critical). Returns the pgmq message id.';

-- Seed 000: granted to the PostgREST roles that may enqueue. anon may not; authenticated
-- callers are bound to the tenant of their token (conveyor.resolve_tenant).
revoke all on function public.queue_job(jsonb) from public, anon;
grant execute on function public.queue_job(jsonb) to service_role, authenticated;

-- ---------------------------------------------------------------------------------------
-- public.queue_jobs(jsonb): batch enqueue. The body is a JSON array of queue_job bodies.
-- Single-call enqueue pays a commit (and, over HTTP, a request) per job; a caller with many
-- jobs (imports, fan-out, the benchmark's pre-fill) pays one per array.
--
-- The contract:
--   * every element is validated exactly as queue_job validates it (same checks, order,
--     texts and SQLSTATEs: conveyor.parse_queue_job); the first bad element fails the call,
--     its index in DETAIL ("element N of the array (0-based)"), and nothing of the array is
--     written: the whole array is ONE transaction;
--   * idempotency as queue_job: an element whose key exists returns that job's message id
--     and writes nothing; elements repeating a key within the array share one job (the
--     first of them is the one enqueued);
--   * the message ids come back in array order (setof: a JSON array over PostgREST).
-- Like queue_job the parameter is unnamed, so POST /rest/v1/rpc/queue_jobs takes the array
-- as the body. Granted to service_role only (trusted batch producers); tenants enqueue one
-- job at a time through queue_job.
-- ---------------------------------------------------------------------------------------

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

-- Every element through public.queue_job, one subtransaction for the whole loop, the error
-- re-raised with the element's index. queue_jobs' path for the two cases it cannot write
-- set-based (an API role calling, a write that failed).
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

-- SECURITY DEFINER: it writes the ledger and the pgmq tables itself (conveyor.enqueue_items).
create function public.queue_jobs(jsonb) returns setof bigint
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

  -- Per element, through queue_job, for an API role: queue_jobs is not granted to them, but a
  -- definer function of theirs could call it, and then each job must go through the per-row
  -- enqueue rate limit trigger (0020_tenancy_pre_request.sql; a refusal names its element)
  -- and resolve_tenant's refusals.
  if conveyor.caller_role() in ('anon', 'authenticated') then
    return query select t.id from unnest(conveyor.queue_jobs_each(p)) with ordinality as t(id, o)
                 order by t.o;
    return;
  end if;

  v_limit := conveyor.setting_int('payload_max_bytes');
  v_max_delay := conveyor.setting_int('max_delay_sec');
  -- One subtransaction for the whole call, only to name the element that failed.
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

revoke all on function conveyor.raise_element_error(int, text, text, text, text),
  conveyor.queue_jobs_each(jsonb) from public;
revoke all on function public.queue_jobs(jsonb) from public, anon, authenticated;
grant execute on function public.queue_jobs(jsonb) to service_role;
