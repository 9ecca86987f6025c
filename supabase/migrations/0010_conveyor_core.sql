-- Conveyor's core: the private `conveyor` schema and its settings, tenants and who a call acts
-- for, and the job kind registry with the names of the pgmq queues behind each kind.
-- The tables that hold jobs are in 0011_tenant_tables.sql.

create schema if not exists conveyor;
comment on schema conveyor is
  'Conveyor internals: not exposed through the API; reached only through SECURITY DEFINER RPCs.';
revoke all on schema conveyor from public;
-- Functions get EXECUTE for PUBLIC by default, and a per-schema default privilege cannot take
-- that away (it can only add to the global one): every function in this schema is revoked
-- from PUBLIC one by one, and supabase/tests/security_lints.test.sql checks each against an
-- allow-list.

-- ---------------------------------------------------------------------------------------
-- Settings: defaults for what SQL decides when the caller does not say (payload limit,
-- retention, retry policy). Workers pass their own env-configured values per call. Each
-- file inserts the settings of its own concern.
-- ---------------------------------------------------------------------------------------
create table conveyor.settings (
  key text primary key,
  value jsonb not null,
  description text not null
);

insert into conveyor.settings (key, value, description) values
  ('payload_max_bytes', '262144', 'largest accepted job payload (bytes of its JSON text)'),
  ('visibility_sec', '90', 'default visibility timeout of a claim (QUEUE_VISIBILITY_SEC)'),
  ('max_attempts', '3', 'default attempts before dead-lettering (QUEUE_MAX_ATTEMPTS)'),
  ('critical_max_attempts', '5', 'attempts of a critical job'),
  ('backoff_base_ms', '1000', 'first retry delay (QUEUE_RETRY_BACKOFF_MS_BASE)'),
  ('backoff_max_ms', '60000', 'largest retry delay (QUEUE_RETRY_BACKOFF_MS_MAX)'),
  ('retention_hours', '72', 'finished jobs, events and archives older than this are pruned (RETENTION_HOURS)'),
  ('max_delay_sec', '2592000', 'longest accepted delay of a job (30 days)'),
  ('audit', '"lean"',
   '''lean'': job_events records what the ledger cannot say (retries with their errors, failures, dead letters, cancels, redrives, snoozes, lost leases, refused settles, handler events); ''full'': also one event per enqueue, claim, success and release'),
  ('archive_completed', 'false',
   'true: a completed job''s pgmq message is archived (the queue''s a_ table) instead of deleted; the ledger keeps the record either way')
on conflict (key) do nothing;

create function conveyor.setting_int(p_key text) returns bigint
language sql stable
set search_path = ''
as $$
  select (value #>> '{}')::bigint from conveyor.settings where key = p_key
$$;

create function conveyor.setting_text(p_key text) returns text
language sql stable
set search_path = ''
as $$
  select value #>> '{}' from conveyor.settings where key = p_key
$$;

-- Audit mode 'full': one job_events row per transition (see the 'audit' setting).
create function conveyor.audit_full() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce((select s.value #>> '{}' from conveyor.settings s where s.key = 'audit'), 'lean') = 'full'
$$;

-- ---------------------------------------------------------------------------------------
-- Tenants. Every ledger row belongs to a tenant (seed 004); the default tenant owns work
-- enqueued without one (service_role, SQL, cron).
-- ---------------------------------------------------------------------------------------
create table public.tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  created_at timestamptz not null default now()
);

insert into public.tenants (id, name)
values ('00000000-0000-0000-0000-000000000000', 'default')
on conflict do nothing;

-- Seed 004's policy (as on every tenant table, 0011_tenant_tables.sql), forced so the table
-- owner obeys it too. A tenant sees its own row; service_role bypasses RLS. The setting is
-- read in a sub-select, so it is evaluated once per statement, not once per row (Supabase's
-- auth_rls_initplan lint); same meaning as the seed's text.
alter table public.tenants enable row level security;
alter table public.tenants force row level security;
create policy tenant_isolation_policy on public.tenants
  using (id::text = (select current_setting('app.current_tenant', true)));

-- Supabase grants everything in public to the API roles by default: take it back, then
-- grant what each role needs. anon: nothing. authenticated: read. service_role: manage.
revoke all on public.tenants from anon, authenticated, public;
grant select on public.tenants to authenticated;
grant select, insert, update, delete on public.tenants to service_role;

-- Tiny helpers the hot paths call (this one, caller_role, tier_queue, dlq_name; new_job_id
-- and job_id_floor in 0011; hint_lock_key in 0050) are SQL the planner inlines into the
-- calling query: they have no SET clause, because a SET clause stops inlining and, on
-- PostgreSQL 15, makes every call save and restore every setting and recompute the search
-- path (about 30,000 instructions a call, measured with callgrind: a third of queue_job's
-- cost once). Nothing in their bodies resolves through the search_path: every function,
-- operator and type is pg_catalog's and named so. Accepted in supabase/lints.allow.json.
create function conveyor.default_tenant_id() returns uuid
language sql immutable parallel safe
as $$ select '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid $$;

-- Who is calling, as PostgREST switched to it: the `role` setting survives SECURITY
-- DEFINER (current_user does not), so definer functions can still tell a tenant's
-- `authenticated` request from a trusted `service_role` or SQL caller. Inlined (see above).
create function conveyor.caller_role() returns text
language sql stable parallel safe
as $$
  select case
    when pg_catalog.current_setting('role') operator(pg_catalog.=) any (array['none', '']::pg_catalog.text[])
      then pg_catalog."session_user"()::pg_catalog.text
    else pg_catalog.current_setting('role')
  end
$$;

-- The tenant a call acts for: an `authenticated` caller is bound to the tenant of its
-- token (an explicit different tenant is refused); trusted callers may name any tenant
-- and default to the default tenant. The tenant of an API request is `app.current_tenant`,
-- copied from the verified JWT by the pre-request function (0020_tenancy_pre_request.sql),
-- never from anything the client sends; a value that is not a uuid counts as none.
create function conveyor.resolve_tenant(p_requested uuid, p_fn text) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_role text := conveyor.caller_role();
  v_claim text := current_setting('app.current_tenant', true);
  v_tenant uuid;
begin
  if v_claim ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    v_tenant := v_claim::uuid;
  end if;
  if v_role = 'anon' then
    raise exception '%: permission denied for anon', p_fn using errcode = '42501';
  elsif v_role = 'authenticated' then
    if v_tenant is null then
      raise exception '%: the token has no tenant_id claim', p_fn using errcode = '42501';
    end if;
    if p_requested is not null and p_requested <> v_tenant then
      raise exception '%: tenant_id does not match the token', p_fn using errcode = '42501';
    end if;
    return v_tenant;
  end if;
  return coalesce(p_requested, v_tenant, conveyor.default_tenant_id());
end
$$;

-- ---------------------------------------------------------------------------------------
-- Job kinds: the allow-list queue_job validates against, and what the dispatcher reads to
-- start a kind's workers. `queue_name` is the normal-tier pgmq queue (the seed's name); the
-- fast and bulk tiers are `<queue>_fast` / `<queue>_bulk`. `service_name` names the rate
-- limiter (rate_limiters) a job of this kind needs.
-- ---------------------------------------------------------------------------------------
create table conveyor.job_kinds (
  kind text primary key check (kind ~ '^[a-z][a-z0-9_]{0,30}$'),
  queue_name text not null unique check (queue_name ~ '^[a-z][a-z0-9_]{0,30}$'),
  service_name text,
  worker_slug text not null,
  description text not null default '',
  created_at timestamptz not null default now(),
  max_concurrency int not null default 2 check (max_concurrency >= 0),
  trigger_batch_size int not null default 1 check (trigger_batch_size between 1 and 100),
  enabled boolean not null default true
);
comment on column conveyor.job_kinds.worker_slug is
  'the worker function: triggered at /functions/v1/<worker_slug> under Vault project_url';
comment on column conveyor.job_kinds.max_concurrency is
  'most worker invocations of this kind in flight (triggered or running) at once; 0 = none';
comment on column conveyor.job_kinds.trigger_batch_size is
  'workers the dispatcher starts per cycle for this kind';
comment on column conveyor.job_kinds.enabled is
  'false = the dispatcher starts no workers for this kind (messages stay queued)';

-- Seed 000's three kinds. (`fetch`, seed 003's example, is added by 0069_pgqueuer_enqueue.sql.)
insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description) values
  ('enrich', 'q_enrich', null, 'enrich-worker', 'normalise a contact record and derive fields'),
  ('outreach', 'q_outreach', 'sendgrid', 'outreach-worker', 'render a message into the outbox'),
  ('enforce', 'q_enforce', null, 'enforce-worker', 'evaluate policy rules and record a decision')
on conflict (kind) do nothing;

-- The pgmq queue of a kind's priority tier. Inlined (see default_tenant_id).
create function conveyor.tier_queue(p_queue text, p_priority text) returns text
language sql immutable parallel safe
as $$
  select case p_priority
    when 'fast' then p_queue operator(pg_catalog.||) '_fast'
    when 'bulk' then p_queue operator(pg_catalog.||) '_bulk'
    else p_queue
  end
$$;

-- The dead-letter queue every kind shares. Inlined (see default_tenant_id).
create function conveyor.dlq_name() returns text
language sql immutable parallel safe
as $$ select 'q_dlq'::pg_catalog.text $$;

revoke all on function conveyor.setting_int(text), conveyor.setting_text(text), conveyor.audit_full(),
  conveyor.default_tenant_id(), conveyor.caller_role(),
  conveyor.resolve_tenant(uuid, text), conveyor.tier_queue(text, text), conveyor.dlq_name()
  from public;
