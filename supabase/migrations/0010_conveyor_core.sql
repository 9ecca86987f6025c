-- Conveyor's core: the private `conveyor` schema (settings, job kind registry, helpers) and
-- the job ledger in `public` that seeds 002 and 004 name: tenants, jobs, job_events,
-- idempotency_keys, critical_jobs, dead_letter_jobs. Every ledger row belongs to a tenant
-- (seed 004); callers without a tenant (service_role, SQL, cron) use the default tenant.
--
-- The ledger and the pgmq queues are written in the same transaction by the functions in
-- 0051/0053 (transactional publish): no message without a row, no row without a message.

create schema if not exists conveyor;
comment on schema conveyor is
  'Conveyor internals: not exposed through the API; reached only through SECURITY DEFINER RPCs.';
revoke all on schema conveyor from public;
-- Functions get EXECUTE for PUBLIC by default; none in this schema should.
alter default privileges in schema conveyor revoke execute on functions from public;

-- ---------------------------------------------------------------------------------------
-- Settings: defaults for what SQL decides when the caller does not say (payload limit,
-- retention, retry policy). Workers pass their own env-configured values per call.
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
  ('max_delay_sec', '2592000', 'longest accepted delay of a job (30 days)')
on conflict (key) do nothing;

create function conveyor.setting_int(p_key text) returns bigint
language sql stable
set search_path = ''
as $$
  select (value #>> '{}')::bigint from conveyor.settings where key = p_key
$$;

-- ---------------------------------------------------------------------------------------
-- Tenants. The default tenant owns work enqueued without one (service_role, SQL, cron).
-- ---------------------------------------------------------------------------------------
create table public.tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null unique,
  created_at timestamptz not null default now()
);

insert into public.tenants (id, name)
values ('00000000-0000-0000-0000-000000000000', 'default')
on conflict do nothing;

create function conveyor.default_tenant_id() returns uuid
language sql immutable
set search_path = ''
as $$ select '00000000-0000-0000-0000-000000000000'::uuid $$;

-- The tenant of the current API request: copied from the verified JWT by the pre-request
-- function (0020), never from anything the client sends. NULL outside requests.
create function conveyor.request_tenant_id() returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v text := nullif(current_setting('app.current_tenant', true), '');
begin
  if v is null then
    return null;
  end if;
  return v::uuid;
exception when invalid_text_representation then
  return null;
end
$$;

-- Who is calling, as PostgREST switched to it: the `role` setting survives SECURITY
-- DEFINER (current_user does not), so definer functions can still tell a tenant's
-- `authenticated` request from a trusted `service_role` or SQL caller.
create function conveyor.caller_role() returns text
language sql stable
set search_path = ''
as $$
  select case
    when current_setting('role') in ('none', '') then session_user::text
    else current_setting('role')
  end
$$;

-- The tenant a call acts for: an `authenticated` caller is bound to the tenant of its
-- token (an explicit different tenant is refused); trusted callers may name any tenant
-- and default to the default tenant.
create function conveyor.resolve_tenant(p_requested uuid, p_fn text) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  v_role text := conveyor.caller_role();
  v_tenant uuid;
begin
  if v_role = 'anon' then
    raise exception '%: permission denied for anon', p_fn using errcode = '42501';
  elsif v_role = 'authenticated' then
    v_tenant := conveyor.request_tenant_id();
    if v_tenant is null then
      raise exception '%: the token has no tenant_id claim', p_fn using errcode = '42501';
    end if;
    if p_requested is not null and p_requested <> v_tenant then
      raise exception '%: tenant_id does not match the token', p_fn using errcode = '42501';
    end if;
    return v_tenant;
  end if;
  return coalesce(p_requested, conveyor.request_tenant_id(), conveyor.default_tenant_id());
end
$$;

-- ---------------------------------------------------------------------------------------
-- Job kinds: the allow-list queue_job validates against. `queue_name` is the normal-tier
-- pgmq queue (the seed's name); fast and bulk tiers are `<queue>_fast` / `<queue>_bulk`.
-- `service_name` names the rate limiter (rate_limiters) a job of this kind needs.
-- ---------------------------------------------------------------------------------------
create table conveyor.job_kinds (
  kind text primary key check (kind ~ '^[a-z][a-z0-9_]{0,30}$'),
  queue_name text not null unique check (queue_name ~ '^[a-z][a-z0-9_]{0,30}$'),
  service_name text,
  worker_slug text not null,
  description text not null default '',
  created_at timestamptz not null default now()
);

insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description) values
  ('enrich', 'q_enrich', null, 'enrich-worker', 'normalise a contact record and derive fields'),
  ('outreach', 'q_outreach', 'sendgrid', 'outreach-worker', 'render a message into the outbox'),
  ('enforce', 'q_enforce', null, 'enforce-worker', 'evaluate policy rules and record a decision')
on conflict (kind) do nothing;

-- The pgmq queue of a kind's priority tier.
create function conveyor.tier_queue(p_queue text, p_priority text) returns text
language sql immutable
set search_path = ''
as $$
  select case p_priority
    when 'fast' then p_queue || '_fast'
    when 'bulk' then p_queue || '_bulk'
    else p_queue
  end
$$;

-- The dead-letter queue every kind shares.
create function conveyor.dlq_name() returns text
language sql immutable
set search_path = ''
as $$ select 'q_dlq'::text $$;

-- ---------------------------------------------------------------------------------------
-- The ledger (seed 002 jobs/job_events/dlq_jobs, seed 004 jobs/idempotency_keys/
-- critical_jobs/dead_letter_jobs).
--
-- Job states (docs/state-machine.md):
--   pending --claim--> processing --complete--> completed
--                         |--fail (attempts left)--> pending (visible again after backoff)
--                         '--fail (no attempts left) / cancel--> failed (dead-lettered)
--   failed --redrive--> pending
-- finished_at is set exactly when the state is terminal (CHECK below).
-- ---------------------------------------------------------------------------------------
create table public.jobs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  kind text not null,
  queue_name text not null,
  priority text not null default 'normal' check (priority in ('fast', 'normal', 'bulk')),
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'completed', 'failed')),
  payload jsonb not null default '{}',
  headers jsonb,
  idempotency_key text not null,
  dedupe_key text,
  msg_id bigint not null,
  attempts int not null default 0 check (attempts >= 0),
  max_attempts int check (max_attempts between 1 and 100),
  last_error text,
  errors jsonb not null default '[]',
  output jsonb,
  lease_id uuid,
  locked_by text,
  locked_until timestamptz,
  run_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  constraint jobs_finished_iff_terminal
    check ((status in ('completed', 'failed')) = (finished_at is not null)),
  constraint jobs_lease_iff_processing
    check ((status = 'processing') = (lease_id is not null))
);
comment on table public.jobs is
  'The job ledger: one row per enqueued job, written in the same transaction as its pgmq message.';

create index jobs_tenant_status_idx on public.jobs (tenant_id, status);
create index jobs_finished_at_idx on public.jobs (finished_at) where finished_at is not null;
create index jobs_kind_status_idx on public.jobs (kind, status);
-- PGQueuer-style dedupe: one live job per key; a finished job frees the key (seed 003).
create unique index jobs_live_dedupe_key on public.jobs (tenant_id, dedupe_key)
  where dedupe_key is not null and status in ('pending', 'processing');

create table public.job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.jobs (id) on delete cascade,
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  type text not null,
  payload jsonb not null default '{}',
  created_at timestamptz not null default now()
);
create index job_events_job_id_idx on public.job_events (job_id);
create index job_events_created_at_idx on public.job_events (created_at);
create index job_events_tenant_id_idx on public.job_events (tenant_id);

-- Idempotency: the authority for "same key, same job" (unique per tenant). A key lives as
-- long as its job (retention prunes both), so a late retry gets the same answer until then.
create table public.idempotency_keys (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  key text not null,
  -- Deferred: conveyor.enqueue claims the key before it writes the job (same transaction).
  job_id uuid not null references public.jobs (id) on delete cascade
    deferrable initially deferred,
  created_at timestamptz not null default now(),
  constraint idempotency_keys_tenant_key unique (tenant_id, key)
);
create index idempotency_keys_job_id_idx on public.idempotency_keys (job_id);

-- Critical jobs: more attempts (critical_max_attempts, 5) and always an idempotency key.
create table public.critical_jobs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null unique references public.jobs (id) on delete cascade,
  idempotency_key text not null,
  max_attempts int not null,
  created_at timestamptz not null default now()
);
create index critical_jobs_tenant_id_idx on public.critical_jobs (tenant_id);

-- Jobs that used up their attempts (or were cancelled), with the message moved to q_dlq.
create table public.dead_letter_jobs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null references public.jobs (id) on delete cascade,
  kind text not null,
  queue_name text not null,
  payload jsonb not null,
  reason text not null,
  errors jsonb not null default '[]',
  attempts int not null,
  dlq_msg_id bigint,
  created_at timestamptz not null default now(),
  redriven_at timestamptz,
  acknowledged_at timestamptz
);
create index dead_letter_jobs_tenant_created_idx on public.dead_letter_jobs (tenant_id, created_at);
create index dead_letter_jobs_job_id_idx on public.dead_letter_jobs (job_id);

-- ---------------------------------------------------------------------------------------
-- Row-level security: seed 004's policy on every tenant table, forced so the table owner
-- obeys it too (SECURITY DEFINER functions run as a BYPASSRLS owner: postgres).
-- Clients read through RLS; they never write the ledger directly (RPCs do).
-- ---------------------------------------------------------------------------------------
alter table public.tenants enable row level security;
alter table public.tenants force row level security;
create policy tenant_isolation_policy on public.tenants
  using (id::text = current_setting('app.current_tenant', true));

do $$
declare
  t text;
begin
  foreach t in array array['jobs', 'job_events', 'idempotency_keys', 'critical_jobs',
                           'dead_letter_jobs']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('alter table public.%I force row level security', t);
    execute format(
      'create policy tenant_isolation_policy on public.%I
         using (tenant_id::text = current_setting(''app.current_tenant'', true))', t);
  end loop;
end
$$;

-- Supabase grants everything in public to the API roles by default: take it back, then
-- grant what each role needs. anon: nothing. authenticated: read its tenant's rows.
revoke all on public.tenants, public.jobs, public.job_events, public.idempotency_keys,
  public.critical_jobs, public.dead_letter_jobs from anon, authenticated, public;
grant select on public.tenants, public.jobs, public.job_events, public.idempotency_keys,
  public.critical_jobs, public.dead_letter_jobs to authenticated;
grant select, insert, update, delete on public.tenants, public.jobs, public.job_events,
  public.idempotency_keys, public.critical_jobs, public.dead_letter_jobs to service_role;

-- Helpers in `conveyor` are internal: nobody but their owner runs them directly.
revoke all on all functions in schema conveyor from public;
