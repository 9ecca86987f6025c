-- Seed 004's remaining tenant tables: queues, schedules, rate_limits, queue_metrics,
-- rate_limiters, alert_history (jobs, critical_jobs, idempotency_keys and dead_letter_jobs
-- are in 0010). Same rules: tenant_id → tenants ON DELETE RESTRICT, RLS forced,
-- tenant_isolation_policy, clients read their own rows and never write directly.

-- Per-tenant queue settings (a row overrides the defaults for one kind) and statistics,
-- which are derived (queue_stats()), not stored, so enqueue/claim never contend on a row.
create table public.queues (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  kind text not null references conveyor.job_kinds (kind) on delete cascade,
  paused boolean not null default false,
  max_attempts int check (max_attempts between 1 and 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint queues_tenant_kind unique (tenant_id, kind)
);
create index queues_kind_idx on public.queues (kind);

-- Recurring jobs: a 5-field cron expression (UTC) and the job to enqueue. pg_cron
-- materialises due runs once per due time (schedule_runs is unique on schedule + time).
create table public.schedules (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  name text not null,
  cron text not null,
  kind text not null references conveyor.job_kinds (kind) on delete restrict,
  payload jsonb not null default '{}',
  priority text not null default 'normal' check (priority in ('fast', 'normal', 'bulk')),
  enabled boolean not null default true,
  last_run_at timestamptz,
  next_run_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint schedules_tenant_name unique (tenant_id, name)
);
create index schedules_kind_idx on public.schedules (kind);

create table conveyor.schedule_runs (
  schedule_id uuid not null references public.schedules (id) on delete cascade,
  run_at timestamptz not null,
  job_id uuid references public.jobs (id) on delete set null,
  created_at timestamptz not null default now(),
  primary key (schedule_id, run_at)
);
create index schedule_runs_job_id_idx on conveyor.schedule_runs (job_id);

-- Per-tenant request limits on the ways in (enqueue calls per window).
create table public.rate_limits (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  scope text not null check (scope in ('enqueue')),
  max_requests int not null check (max_requests > 0),
  window_seconds int not null check (window_seconds > 0),
  window_started_at timestamptz not null default now(),
  request_count int not null default 0,
  constraint rate_limits_tenant_scope unique (tenant_id, scope)
);

-- Token buckets for the external services job handlers call (seed 004). One row per
-- tenant and service: a claim of a job whose kind declares the service takes a token and
-- a concurrency slot in the claim's transaction (see claim_jobs in 0053).
-- Seed 004 gives service_name as the key; per tenant it is (tenant_id, service_name).
create table public.rate_limiters (
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  service_name text not null,
  tokens_available numeric not null check (tokens_available >= 0),
  max_concurrent int not null check (max_concurrent > 0),
  capacity numeric not null check (capacity > 0),
  refill_per_sec numeric not null check (refill_per_sec >= 0),
  refilled_at timestamptz not null default now(),
  primary key (tenant_id, service_name),
  constraint rate_limiters_tokens_le_capacity check (tokens_available <= capacity)
);

-- Seed 004's services: tokens_available / max_concurrent, refilling to capacity in 10 s.
create table conveyor.rate_limiter_defaults (
  service_name text primary key,
  tokens_available numeric not null,
  max_concurrent int not null,
  refill_per_sec numeric not null
);
insert into conveyor.rate_limiter_defaults values
  ('stripe', 100, 10, 10),
  ('twilio', 10, 5, 1),
  ('sendgrid', 50, 10, 5),
  ('solana_rpc', 25, 5, 2.5)
on conflict do nothing;

create function conveyor.seed_rate_limiters() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.rate_limiters (tenant_id, service_name, tokens_available, max_concurrent,
                                    capacity, refill_per_sec)
  select new.id, d.service_name, d.tokens_available, d.max_concurrent, d.tokens_available,
         d.refill_per_sec
  from conveyor.rate_limiter_defaults d
  on conflict do nothing;
  return new;
end
$$;

create trigger tenants_seed_rate_limiters after insert on public.tenants
  for each row execute function conveyor.seed_rate_limiters();

insert into public.rate_limiters (tenant_id, service_name, tokens_available, max_concurrent,
                                  capacity, refill_per_sec)
select t.id, d.service_name, d.tokens_available, d.max_concurrent, d.tokens_available,
       d.refill_per_sec
from public.tenants t cross join conveyor.rate_limiter_defaults d
on conflict do nothing;

-- Periodic snapshots per queue and tenant (pg_cron, every minute).
create table public.queue_metrics (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  queue_name text not null,
  captured_at timestamptz not null default now(),
  depth bigint not null,
  in_flight bigint not null,
  oldest_age_sec int,
  processed bigint not null,
  failed bigint not null,
  interval_sec int not null
);
create index queue_metrics_tenant_captured_idx on public.queue_metrics (tenant_id, captured_at);
create index queue_metrics_captured_idx on public.queue_metrics (captured_at);

-- Alerts raised by rules (depth, oldest age, DLQ growth, failure rate); one open alert per
-- rule and subject, resolved when the condition clears.
create table public.alert_history (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  rule text not null,
  subject text not null,
  severity text not null default 'warning' check (severity in ('info', 'warning', 'critical')),
  message text not null,
  value numeric,
  threshold numeric,
  status text not null default 'open' check (status in ('open', 'resolved')),
  raised_at timestamptz not null default now(),
  resolved_at timestamptz,
  constraint alert_history_resolved_iff check ((status = 'resolved') = (resolved_at is not null))
);
create unique index alert_history_one_open on public.alert_history (tenant_id, rule, subject)
  where status = 'open';
create index alert_history_raised_idx on public.alert_history (tenant_id, raised_at);

do $$
declare
  t text;
begin
  foreach t in array array['queues', 'schedules', 'rate_limits', 'rate_limiters',
                           'queue_metrics', 'alert_history']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('alter table public.%I force row level security', t);
    execute format(
      'create policy tenant_isolation_policy on public.%I
         using (tenant_id::text = current_setting(''app.current_tenant'', true))', t);
    execute format('revoke all on public.%I from anon, authenticated, public', t);
    execute format('grant select on public.%I to authenticated', t);
    execute format('grant select, insert, update, delete on public.%I to service_role', t);
  end loop;
end
$$;

revoke all on function conveyor.seed_rate_limiters() from public;
