-- Tenancy at the API: the request's tenant, and per-tenant enqueue limits.
--
-- The request's tenant comes ONLY from the verified JWT. PostgREST (and the local gateway)
-- runs conveyor.pre_request() after it has set request.jwt.claims from a token whose
-- signature it checked, and before the request's own query; it copies the `tenant_id` claim
-- (top level, or app_metadata.tenant_id as Supabase custom-claims hooks usually place it)
-- into app.current_tenant, which every RLS policy reads. Whatever the client puts in
-- headers, bodies or query strings never reaches app.current_tenant: clients cannot call
-- set_config (pg_catalog is not exposed) and no exposed function sets it.
--
-- The claim is stored in its canonical text form (uuid::text, lower case): a token whose
-- tenant_id is an upper-case uuid would otherwise enqueue into that tenant (queue_job casts
-- to uuid) while every RLS read (`tenant_id::text = …`) saw nothing.

create function conveyor.pre_request() returns void
language plpgsql
set search_path = ''
as $$
declare
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_tenant text;
begin
  v_tenant := coalesce(v_claims ->> 'tenant_id', v_claims -> 'app_metadata' ->> 'tenant_id');
  -- Only a well-formed uuid becomes the tenant, in the form RLS compares (uuid::text);
  -- anything else means "no tenant", which every policy answers with no rows.
  if v_tenant is not null
     and v_tenant ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    v_tenant := v_tenant::uuid::text;
  else
    v_tenant := null;
  end if;
  perform set_config('app.current_tenant', coalesce(v_tenant, ''), true);
end
$$;

comment on function conveyor.pre_request() is
  'PostgREST db-pre-request: app.current_tenant := the verified JWT claim tenant_id.';

-- The API roles run it (PostgREST calls it after switching role); its schema stays
-- unexposed, so it is not an RPC.
revoke all on function conveyor.pre_request() from public;
grant usage on schema conveyor to anon, authenticated, service_role;
grant execute on function conveyor.pre_request() to anon, authenticated, service_role;

-- Hosted Supabase: PostgREST reads its pre-request function from the authenticator role's
-- settings; `notify pgrst, 'reload config'` makes it take effect without a restart.
alter role authenticator set pgrst.db_pre_request = 'conveyor.pre_request';
notify pgrst, 'reload config';

-- ---------------------------------------------------------------------------------------
-- Per-tenant enqueue limits (public.rate_limits, scope 'enqueue'): a fixed window of
-- `window_seconds` in which a tenant's `authenticated` callers may create at most
-- `max_requests` jobs. No row = no limit (service_role configures one per tenant).
--
-- Checked by a trigger on public.jobs, so every way in (queue_job, fn_pgqueuer_enqueue,
-- whatever comes next) is covered without touching those functions, and only a NEW job
-- counts: an idempotent replay returns the existing job and costs nothing.
--
-- Trusted callers (service_role, SQL, pg_cron) are never checked: the trigger's WHEN clause
-- skips them without even entering PL/pgSQL. That is deliberate. The counter is one row
-- per tenant, locked until the enqueueing transaction commits; for a tenant's own API
-- traffic that serialises only that tenant's concurrent enqueues (the price of an exact
-- limit), but service_role traffic (workers, schedules, bulk loads) would all queue on it.
-- A refused enqueue raises SQLSTATE PT429 (HTTP 429 through PostgREST); the whole
-- transaction rolls back, so the refused call is not counted and writes nothing.
-- ---------------------------------------------------------------------------------------
create function conveyor.check_enqueue_rate_limit() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_lim record;
begin
  -- The enqueue inserts with ON CONFLICT on the idempotency key, and a BEFORE INSERT trigger
  -- runs before the conflict is seen: a replay of an existing key is not a new job.
  if exists (select 1 from public.jobs j
             where j.tenant_id = new.tenant_id and j.idempotency_key = new.idempotency_key) then
    return new;
  end if;
  update public.rate_limits r
  set window_started_at = case
        when v_now >= r.window_started_at + make_interval(secs => r.window_seconds)
          then v_now
        else r.window_started_at
      end,
      request_count = case
        when v_now >= r.window_started_at + make_interval(secs => r.window_seconds) then 1
        else r.request_count + 1
      end
  where r.tenant_id = new.tenant_id and r.scope = 'enqueue'
  returning r.request_count, r.max_requests, r.window_seconds, r.window_started_at
  into v_lim;
  if found and v_lim.request_count > v_lim.max_requests then
    raise exception 'enqueue rate limit exceeded: at most % jobs per % seconds for this tenant',
      v_lim.max_requests, v_lim.window_seconds
      using errcode = 'PT429',
            hint = format('retry after %s seconds', ceil(extract(epoch from
              v_lim.window_started_at + make_interval(secs => v_lim.window_seconds) - v_now)));
  end if;
  return new;
end
$$;

revoke all on function conveyor.check_enqueue_rate_limit() from public;

create trigger jobs_enqueue_rate_limit
  before insert on public.jobs
  for each row
  when (current_setting('role', true) = 'authenticated')
  execute function conveyor.check_enqueue_rate_limit();

comment on trigger jobs_enqueue_rate_limit on public.jobs is
  'Per-tenant enqueue limit (rate_limits scope enqueue) for authenticated callers only.';
