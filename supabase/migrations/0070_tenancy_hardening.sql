-- Tenancy hardening after a review of 0010/0011/0020 (issue 7), and per-tenant enqueue
-- limits (public.rate_limits, scope 'enqueue').
--
-- What the review found, and what this file changes:
-- * conveyor.pre_request() was executable by PUBLIC (0020 granted the API roles but never
--   revoked PUBLIC; `alter default privileges in schema conveyor revoke execute … from
--   public` in 0010 is a no-op: per-schema default privileges can only add to the global
--   ones, so every function still gets PUBLIC EXECUTE unless it is revoked one by one).
--   Harmless for this SECURITY INVOKER function, but it is the rule, and the security lint
--   test (supabase/tests/security_lints.test.sql) now checks every function in conveyor
--   against an allow-list, so a forgotten revoke is caught at once.
-- * pre_request stored the claim as written. A uuid in upper case passed its check, so
--   queue_job (which casts to uuid) enqueued into that tenant while every RLS read
--   (`tenant_id::text = …`, lower case) saw nothing. It now stores the canonical text form.
-- * job_events' identity sequence kept Supabase's default grants to anon and
--   authenticated. Nothing uses them: the API roles never insert events.
-- * Tenants read the big tenant tables through RLS; the seed's policy compares
--   `tenant_id::text`, which no index on tenant_id can serve. An expression index on
--   `(tenant_id::text)` lets the planner use the policy itself as the index condition
--   (current_setting is stable), so a tenant's read does not scan every tenant's rows.
--   Added here for the cold, append-mostly tables; jobs and job_events belong to the queue
--   hot path and are left to its owners (see docs/tenancy.md).

create or replace function conveyor.pre_request() returns void
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

revoke all on function conveyor.pre_request() from public;
grant execute on function conveyor.pre_request() to anon, authenticated, service_role;

revoke all on sequence public.job_events_id_seq from anon, authenticated, public;
grant usage, select on sequence public.job_events_id_seq to service_role;

create index if not exists dead_letter_jobs_tenant_text_idx
  on public.dead_letter_jobs ((tenant_id::text), created_at);
create index if not exists queue_metrics_tenant_text_idx
  on public.queue_metrics ((tenant_id::text), captured_at);
create index if not exists alert_history_tenant_text_idx
  on public.alert_history ((tenant_id::text), raised_at);

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
