-- public.queue_jobs(jsonb): batch enqueue. The body is a JSON array of queue_job bodies;
-- every element goes through public.queue_job, so validation, error texts, idempotency,
-- tenancy (resolve_tenant reads the `role` setting, which survives the call) and
-- transactional publish are exactly queue_job's. The whole array is ONE transaction: a bad
-- element rolls every element back, and the error names it (DETAIL "element N", 0-based).
-- Returns the message ids in the order of the array (setof: a JSON array over PostgREST).
--
-- Why: single-call enqueue pays a commit (and, over HTTP, a request) per job; a caller
-- with many jobs (imports, fan-out, the benchmark's pre-fill) pays one per array. Like
-- queue_job the parameter is unnamed, so POST /rest/v1/rpc/queue_jobs takes the array as
-- the body. Granted to service_role only (trusted batch producers); tenants enqueue one
-- job at a time through queue_job.

create function public.queue_jobs(jsonb) returns setof bigint
language plpgsql
set search_path = ''
as $$
declare
  p alias for $1;
  c_max constant int := 10000;
  v_n int;
  v_i int := 0;
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
  -- One exception block around the whole loop (one subtransaction per call, not one per
  -- element): only to say which element failed; the error itself is queue_job's.
  begin
    while v_i < v_n loop
      return next public.queue_job(p -> v_i);
      v_i := v_i + 1;
    end loop;
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text,
                            v_detail = pg_exception_detail, v_hint = pg_exception_hint;
    v_detail := concat_ws('; ', format('element %s of the array (0-based)', v_i),
                          nullif(v_detail, ''));
    -- RAISE refuses a NULL option: re-raise with a hint only when queue_job gave one.
    if coalesce(v_hint, '') = '' then
      raise exception using errcode = v_state, message = v_msg, detail = v_detail;
    end if;
    raise exception using errcode = v_state, message = v_msg, detail = v_detail, hint = v_hint;
  end;
end
$$;

comment on function public.queue_jobs(jsonb) is
  'Enqueue many jobs in one transaction: a JSON array of queue_job bodies. Returns their message ids in order.';

revoke all on function public.queue_jobs(jsonb) from public, anon, authenticated;
grant execute on function public.queue_jobs(jsonb) to service_role;
