-- Every table whose rows belong to a tenant (public.tenants itself is in 0010): the job
-- ledger, the rest of seed 004's tables and what the job handlers write, each with its
-- indexes, row-level security and grants. The functions that write them are in the files of
-- their concern (enqueue 0050, consume 0053, handlers 0054, schedules 0071, ...).
--
-- The ledger (seed 002's jobs/job_events/dlq_jobs, seed 004's jobs/idempotency_keys/
-- critical_jobs/dead_letter_jobs) and the pgmq queues are written in the same transaction
-- (transactional publish): no message without a row, no row without a message.
--
-- Rules for every table here: tenant_id → tenants ON DELETE RESTRICT; RLS forced with seed
-- 004's tenant_isolation_policy; `authenticated` reads its own tenant's rows, anon nothing;
-- clients never write directly (RPCs do, as service_role or as the definer).

-- Job ids in time order (the UUIDv7 layout: 48-bit Unix milliseconds, version 7, then
-- random bits). Index entries keyed by the job id (jobs_pkey, job_events_job_id_idx) of jobs
-- enqueued together then land on the same pages, as the queue drains them in about that
-- order; with random ids a drain of a large backlog dirtied a different page per job in
-- indexes far larger than shared_buffers, each first touch after a checkpoint a full-page
-- image in the WAL (9.6 kB of WAL per job with 1M jobs waiting, against 3.9 kB with 10k).
-- Retention also deletes by id range (conveyor.job_id_floor). Still uuids, still unique (74
-- random bits per millisecond); they reveal when a job was enqueued, which created_at says
-- anyway, and tenancy never rests on the secrecy of an id (RLS enforces it).
--
-- Bytes 0-5 the Unix time in ms (big-endian), the version nibble 7, and the rest random:
-- bytes 6-15 of one gen_random_uuid() (whose variant bits 10 stay), the low nibble of byte 6
-- from another. Inlined into the INSERTs whose default it is (no SET clause: see
-- conveyor.default_tenant_id, 0010); every name in it is pg_catalog's.
create function conveyor.new_job_id() returns uuid
language sql volatile parallel safe
as $$
  select pg_catalog.encode(
    pg_catalog.set_byte(
      pg_catalog.substring(pg_catalog.int8send(pg_catalog.floor(
        pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) operator(pg_catalog.*) 1000)::pg_catalog.int8), 3, 6)
        operator(pg_catalog.||) pg_catalog.substring(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 7),
      6,
      (pg_catalog.get_byte(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 6) operator(pg_catalog.&) 15)
        operator(pg_catalog.|) 112),
    'hex')::pg_catalog.uuid
$$;

-- The smallest job id created at p_at or later: ranges of public.jobs by creation time read
-- jobs_pkey (retention). Inlined, as new_job_id.
create function conveyor.job_id_floor(p_at timestamptz) returns uuid
language sql stable parallel safe
as $$
  select pg_catalog.encode(
    pg_catalog.substring(pg_catalog.int8send(pg_catalog.floor(
      pg_catalog.date_part('epoch', p_at) operator(pg_catalog.*) 1000)::pg_catalog.int8), 3, 6)
      operator(pg_catalog.||) '\x00000000000000000000'::pg_catalog.bytea, 'hex')::pg_catalog.uuid
$$;

revoke all on function conveyor.new_job_id(), conveyor.job_id_floor(timestamptz) from public;

-- The job number: one sequence for the messages of every Conveyor queue (every tier of every
-- kind), so a message id names exactly one job across kinds and tiers. queue_job returns it,
-- jobs.msg_id keeps it, and a job keeps its number for life (a redrive moves the same
-- message back).
create sequence conveyor.job_number_seq as bigint;

-- ---------------------------------------------------------------------------------------
-- jobs: one row per enqueued job: the record of a job (issue 16). Its pgmq message exists
-- while the job is live (pending or processing) and carries only the tenant; the ledger
-- carries the rest.
--
-- Job states (docs/state-machine.md):
--   pending --claim--> processing --complete--> completed
--                         |--fail (attempts left)--> pending (visible again after backoff)
--                         |--lease expires (worker lost)--> pending (or failed: last attempt)
--                         '--fail (no attempts left) / cancel--> failed (dead-lettered)
--   failed --redrive--> pending
-- finished_at is set exactly when the state is terminal (CHECK below).
--
-- Built for HOT updates. A claim and a settle are the two updates every job gets; both
-- change only columns that no index covers, so with free room on the page each writes a
-- heap-only tuple and no index entry. fillfactor 50 keeps that room for a page's claims and
-- settles until pruning takes the old versions back: at 70, one update in five moved to
-- another page (a lock record, a new tuple and three index entries), at 50 one in seventy,
-- and a drained job's WAL fell from 1.32 to 1.14 kB (tools/bench/notes.md, "fillfactor").
-- The three indexes are on columns set once at enqueue: the id, the job number and the
-- tenant's idempotency key. Nothing indexes status, finished_at or a dedupe key: the live
-- jobs are their pgmq messages (which is where the dashboard, the metrics, the alerts and
-- the rescue tick count them), finished jobs are counted per minute in conveyor.job_counts,
-- and live dedupe keys have a table of their own
-- (conveyor.dedupe_keys). The columns a claim or settle changes come last: where the WAL
-- is not logical (wal_level replica), a same-page update's record leaves out the unchanged
-- prefix of the row.
--
-- What reads jobs through which index:
--   claim / settle / extend / release / redrive / CLI / inspect    jobs_pkey, jobs_msg_id_key
--   "look a job up by the number queue_job returned"               jobs_msg_id_key
--   enqueue's idempotency (ON CONFLICT)                            jobs_tenant_idempotency_key
--   retention (created before the cutoff, then finished_at)        jobs_pkey range
-- A tenant's own reads go through RLS, which compares tenant_id::text and can use no index:
-- filter by id or msg_id. No index starts with tenant_id, so deleting a tenant checks its
-- ON DELETE RESTRICT foreign keys with a sequential scan: a rare operator action, possible
-- only once retention has removed the tenant's jobs.
-- ---------------------------------------------------------------------------------------
create table public.jobs (
  id uuid primary key default conveyor.new_job_id(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  msg_id bigint not null,
  kind text not null,
  queue_name text not null,
  priority text not null default 'normal' check (priority in ('fast', 'normal', 'bulk')),
  idempotency_key text not null,
  dedupe_key text,
  max_attempts int check (max_attempts between 1 and 100),
  created_at timestamptz not null default now(),
  payload jsonb not null default '{}',
  headers jsonb,
  -- What a claim or a settle changes:
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'completed', 'failed')),
  attempts int not null default 0 check (attempts >= 0),
  run_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  lease_id uuid,
  locked_by text,
  locked_until timestamptz,
  finished_at timestamptz,
  last_error text,
  errors jsonb not null default '[]',
  output jsonb,
  constraint jobs_finished_iff_terminal
    check ((status in ('completed', 'failed')) = (finished_at is not null)),
  constraint jobs_lease_iff_processing
    check ((status = 'processing') = (lease_id is not null))
) with (fillfactor = 50);
comment on table public.jobs is
  'The job ledger: one row per enqueued job, written in the same transaction as its pgmq message.';
comment on column public.jobs.msg_id is
  'The job''s number: what queue_job returns, unique across kinds and tiers, and its pgmq message id while the job is live.';

create unique index jobs_msg_id_key on public.jobs (msg_id);
-- Same key, same job (seed 004's idempotency; ON CONFLICT in conveyor.enqueue). A key lives
-- as long as its job (retention prunes both), so a late retry gets the same answer until then.
create unique index jobs_tenant_idempotency_key on public.jobs (tenant_id, idempotency_key);

create table public.job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.jobs (id) on delete cascade,
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  type text not null,
  payload jsonb not null default '{}',
  created_at timestamptz not null default now()
);
-- tenant_id backs the tenant foreign key (a tenant delete's RESTRICT check, Supabase's
-- unindexed_foreign_keys lint): affordable now that a healthy job writes no events.
create index job_events_job_id_idx on public.job_events (job_id);
create index job_events_tenant_id_idx on public.job_events (tenant_id);
create index job_events_created_at_idx on public.job_events (created_at);

-- Seed 004's idempotency keys. The ledger's unique index (jobs_tenant_idempotency_key) is what
-- makes a key give the same job; this table records the keys of critical jobs (seed 004:
-- "critical jobs with idempotency keys"), next to their critical_jobs row.
create table public.idempotency_keys (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  key text not null,
  job_id uuid not null references public.jobs (id) on delete cascade,
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
-- A tenant's reads through RLS (see "Row-level security" below).
create index dead_letter_jobs_tenant_text_idx
  on public.dead_letter_jobs ((tenant_id::text), created_at);
-- The dead-letter queue as operators see it (20251101000000_operator_views.sql): not yet
-- redriven, newest first.
create index dead_letter_jobs_open_created_idx
  on public.dead_letter_jobs (created_at desc) where redriven_at is null;

-- ---------------------------------------------------------------------------------------
-- Per-tenant queue settings (a row overrides the defaults for one kind) and statistics,
-- which are derived (queue_stats()), not stored, so enqueue/claim never contend on a row.
-- ---------------------------------------------------------------------------------------
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

-- ---------------------------------------------------------------------------------------
-- Recurring jobs: a 5-field cron expression (UTC) and the job to enqueue. pg_cron
-- materialises due runs once per due time (schedule_runs is unique on schedule + time);
-- 0071_schedules.sql has the matcher, the trigger that keeps next_run_at and the
-- materialiser.
-- ---------------------------------------------------------------------------------------
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
  materialised_through timestamptz,
  last_error text,
  constraint schedules_tenant_name unique (tenant_id, name),
  constraint schedules_payload_object check (jsonb_typeof(payload) = 'object')
);
comment on column public.schedules.cron is
  '5-field cron expression, UTC: minute hour day-of-month month day-of-week (*, lists, ranges, steps).';
comment on column public.schedules.last_run_at is 'The latest due time that was enqueued.';
comment on column public.schedules.next_run_at is 'The next due time (the materialiser''s index).';
comment on column public.schedules.materialised_through is
  'Every due time at or before this was enqueued or skipped (paused, or beyond the catch-up bound).';
create index schedules_kind_idx on public.schedules (kind);
create index schedules_next_run_at_idx on public.schedules (next_run_at);

create table conveyor.schedule_runs (
  schedule_id uuid not null references public.schedules (id) on delete cascade,
  run_at timestamptz not null,
  job_id uuid references public.jobs (id) on delete set null,
  created_at timestamptz not null default now(),
  error text,
  primary key (schedule_id, run_at)
);
create index schedule_runs_job_id_idx on conveyor.schedule_runs (job_id);

-- ---------------------------------------------------------------------------------------
-- Per-tenant request limits on the ways in (enqueue calls per window; enforced by the
-- trigger in 0020_tenancy_pre_request.sql).
-- ---------------------------------------------------------------------------------------
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

-- ---------------------------------------------------------------------------------------
-- Token buckets for the external services job handlers call (seed 004). One row per
-- tenant and service: a claim of a job whose kind declares the service takes a token and
-- a concurrency slot in the claim's transaction (conveyor.read_queue, 0053_queue_consume.sql).
-- Seed 004 gives service_name as the key; per tenant it is (tenant_id, service_name).
-- ---------------------------------------------------------------------------------------
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

-- Every new tenant gets the default buckets.
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

-- The tenants that exist already (the default tenant, 0010_conveyor_core.sql).
insert into public.rate_limiters (tenant_id, service_name, tokens_available, max_concurrent,
                                  capacity, refill_per_sec)
select t.id, d.service_name, d.tokens_available, d.max_concurrent, d.tokens_available,
       d.refill_per_sec
from public.tenants t cross join conveyor.rate_limiter_defaults d
on conflict do nothing;

revoke all on function conveyor.seed_rate_limiters() from public;

-- ---------------------------------------------------------------------------------------
-- Periodic snapshots per queue and tenant (pg_cron, every minute; 0055_queue_observability.sql).
-- ---------------------------------------------------------------------------------------
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
-- A tenant's reads through RLS (see "Row-level security" below).
create index queue_metrics_tenant_text_idx
  on public.queue_metrics ((tenant_id::text), captured_at);

-- ---------------------------------------------------------------------------------------
-- Alerts raised by rules (depth, oldest age, DLQ growth, failure rate; 0055) and by dead
-- letters (0061); one open alert per rule and subject, resolved when the condition clears.
-- ---------------------------------------------------------------------------------------
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
-- A tenant's reads through RLS (see "Row-level security" below).
create index alert_history_tenant_text_idx
  on public.alert_history ((tenant_id::text), raised_at);
-- Latest alerts across tenants, for the operator panels (alert_history_raised_idx leads
-- with tenant_id).
create index alert_history_raised_at_idx on public.alert_history (raised_at desc);

-- ---------------------------------------------------------------------------------------
-- What the shipped job handlers write (their RPCs: 0054_queue_handlers.sql). job_id has no
-- foreign key on purpose: the row is an effect that outlives the ledger's retention, and
-- the pg-boss provider's job ids are not in public.jobs.
-- ---------------------------------------------------------------------------------------
create table public.outbox_messages (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null,
  channel text not null check (channel in ('email', 'sms', 'webhook')),
  recipient text not null check (length(recipient) between 1 and 320),
  subject text,
  body text not null,
  template text not null,
  provider text not null,
  provider_message_id text,
  status text not null default 'queued' check (status in ('queued', 'sent', 'failed')),
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint outbox_messages_tenant_job unique (tenant_id, job_id)
);
comment on table public.outbox_messages is
  'Messages rendered by the outreach handler; the local MessageProvider delivers by writing here.';
create index outbox_messages_tenant_created_idx on public.outbox_messages (tenant_id, created_at);

create table public.enforcement_decisions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null,
  subject text not null,
  decision text not null check (decision in ('allow', 'deny', 'review')),
  matched_rules jsonb not null default '[]' check (jsonb_typeof(matched_rules) = 'array'),
  input jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint enforcement_decisions_tenant_job unique (tenant_id, job_id)
);
comment on table public.enforcement_decisions is
  'One decision per enforce job: allow, deny or review, with the rules that matched.';
create index enforcement_decisions_tenant_created_idx
  on public.enforcement_decisions (tenant_id, created_at);

-- ---------------------------------------------------------------------------------------
-- Row-level security: seed 004's policy on every tenant table, forced so the table owner
-- obeys it too (SECURITY DEFINER functions run as a BYPASSRLS owner: postgres).
--
-- The policy compares `tenant_id::text`, which no index on tenant_id can serve. An
-- expression index on `(tenant_id::text)` lets the planner use the policy itself as the
-- index condition (current_setting is stable), so a tenant's read does not scan every
-- tenant's rows: the cold, append-mostly tables above have one; jobs and job_events, on
-- the queue's hot path, do not (docs/tenancy.md).
--
-- Supabase grants everything in public to the API roles by default: take it back, then
-- grant what each role needs. anon: nothing. authenticated: read its tenant's rows.
-- ---------------------------------------------------------------------------------------
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
         using (tenant_id::text = (select current_setting(''app.current_tenant'', true)))', t);
  end loop;
end
$$;

revoke all on public.jobs, public.job_events, public.idempotency_keys,
  public.critical_jobs, public.dead_letter_jobs from anon, authenticated, public;
grant select on public.jobs, public.job_events, public.idempotency_keys,
  public.critical_jobs, public.dead_letter_jobs to authenticated;
grant select, insert, update, delete on public.jobs, public.job_events,
  public.idempotency_keys, public.critical_jobs, public.dead_letter_jobs to service_role;
-- The API roles never insert events: job_events' identity sequence is service_role's only.
revoke all on sequence public.job_events_id_seq from anon, authenticated, public;
grant usage, select on sequence public.job_events_id_seq to service_role;

do $$
declare
  t text;
begin
  foreach t in array array['queues', 'schedules', 'rate_limits', 'rate_limiters',
                           'queue_metrics', 'alert_history', 'outbox_messages',
                           'enforcement_decisions']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('alter table public.%I force row level security', t);
    execute format(
      'create policy tenant_isolation_policy on public.%I
         using (tenant_id::text = (select current_setting(''app.current_tenant'', true)))', t);
    execute format('revoke all on public.%I from anon, authenticated, public', t);
    execute format('grant select on public.%I to authenticated', t);
    execute format('grant select, insert, update, delete on public.%I to service_role', t);
  end loop;
end
$$;
