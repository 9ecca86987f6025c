-- Seed 001: the PlanPerfect content pipeline and its dispatcher.
--
--   queue_content_job(body) ─► content_jobs + research stage ready ─► kick (debounced) ─►
--   content-queue-dispatcher ─► trigger_content_worker ─► net.http_post ─► research-worker
--   research-worker: claim_content_stage → handler → settle_content_stages
--     └─ completed: next stage ready + push trigger of the next stage's worker
--   … outline → draft → qa → export (content_exports) → complete (job completed)
--   cron planperfect-content-queue-dispatcher (every minute) = the safety net.
--
-- Concurrency invariant, per stage: live leases + triggered (unexpired, not yet claimed)
-- invocations ≤ effective max_concurrency. Every function that raises either side
-- (trigger_content_workers, claim_content_stage) checks it under a lock on the stage's
-- content_stage_config row. The effective max is the env override the calling function
-- passes (CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY, 0 disables), else the table value;
-- enabled = false makes it 0. A worker holds one lease at a time, so concurrent handler
-- executions of a stage = its live leases ≤ max.
--
-- States: docs/state-machine.md (content stages). Tables are in public because the seed
-- names them there; RLS is on with no policies and the API roles' default grants are
-- revoked, so only service_role (and SQL) reach them.

insert into conveyor.settings (key, value, description) values
  ('content_max_attempts', '3', 'attempts of a content stage before the job fails (a body may say max_attempts)'),
  ('content_backoff_base_ms', '1000', 'first retry delay of a failed content stage'),
  ('content_backoff_max_ms', '60000', 'largest retry delay of a failed content stage'),
  ('content_lease_sec', '60', 'default lease of a claimed content stage'),
  ('content_brief_max_bytes', '65536', 'largest accepted content brief (bytes of its JSON text)')
on conflict (key) do nothing;

-- The pipeline, in order. The stage names are the seed's.
create function conveyor.content_stages() returns text[]
language sql immutable
set search_path = ''
as $$ select array['research', 'outline', 'draft', 'qa', 'export', 'complete']::text[] $$;

-- The stage after p_stage, NULL after the last.
create function conveyor.content_next_stage(p_stage text) returns text
language sql immutable
set search_path = ''
as $$
  select (conveyor.content_stages())[array_position(conveyor.content_stages(), p_stage) + 1]
$$;

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------
create table public.content_stage_config (
  stage text primary key check (stage = any (conveyor.content_stages())),
  queue text not null default 'content',
  worker_endpoint text not null,
  max_concurrency int not null default 2 check (max_concurrency >= 0),
  trigger_batch_size int not null default 1 check (trigger_batch_size between 1 and 100),
  enabled boolean not null default true,
  last_updated_at timestamptz not null default now()
);
comment on table public.content_stage_config is
  'One row per content stage: where its worker is and how many may run. Read at every dispatch, so updates take effect on the next cycle.';
comment on column public.content_stage_config.queue is 'the queue the stage belongs to (reported by the dispatcher)';
comment on column public.content_stage_config.worker_endpoint is
  'the stage worker: a path such as /functions/v1/research-worker is resolved against the Vault secret project_url; a full http(s) URL is used as is';
comment on column public.content_stage_config.max_concurrency is
  'most workers of this stage at once (live leases + triggered invocations); CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY overrides it, 0 disables';
comment on column public.content_stage_config.trigger_batch_size is 'workers to start per dispatch cycle';
comment on column public.content_stage_config.enabled is 'false pauses the stage: no workers are started and claims are refused';
comment on column public.content_stage_config.last_updated_at is 'set by a trigger on every update';

create function conveyor.touch_last_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.last_updated_at := now();
  return new;
end
$$;

create trigger content_stage_config_last_updated_at
  before update on public.content_stage_config
  for each row execute function conveyor.touch_last_updated_at();

insert into public.content_stage_config (stage, queue, worker_endpoint, max_concurrency, trigger_batch_size) values
  ('research', 'content', '/functions/v1/research-worker', 4, 1),
  ('outline', 'content', '/functions/v1/outline-worker', 3, 1),
  ('draft', 'content', '/functions/v1/draft-worker', 3, 1),
  ('qa', 'content', '/functions/v1/qa-worker', 2, 1),
  ('export', 'content', '/functions/v1/export-worker', 2, 1),
  ('complete', 'content', '/functions/v1/complete-worker', 2, 1)
on conflict (stage) do nothing;

create table public.content_jobs (
  id uuid primary key default gen_random_uuid(),
  idempotency_key text not null unique,
  brief jsonb not null,
  status text not null default 'pending'
    check (status in ('pending', 'running', 'completed', 'failed')),
  current_stage text,
  max_attempts int not null check (max_attempts between 1 and 10),
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  constraint content_jobs_finished_iff_terminal
    check ((status in ('completed', 'failed')) = (finished_at is not null))
);
comment on table public.content_jobs is
  'A content brief going through research → outline → draft → qa → export → complete.';
create index content_jobs_status_idx on public.content_jobs (status);
create index content_jobs_finished_at_idx on public.content_jobs (finished_at)
  where finished_at is not null;

create table public.content_job_stages (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.content_jobs (id) on delete cascade,
  stage text not null references public.content_stage_config (stage),
  status text not null default 'ready'
    check (status in ('ready', 'in_progress', 'completed', 'failed')),
  attempts int not null default 0 check (attempts >= 0),
  max_attempts int not null check (max_attempts between 1 and 10),
  -- a ready stage is claimable from then on (retry backoff)
  available_at timestamptz not null default now(),
  lease_id uuid,
  lease_owner text,
  lease_expires_at timestamptz,
  -- the worker invocation that claimed it last (conveyor.worker_invocations: who triggered it)
  invocation_id uuid,
  output jsonb,
  last_error text,
  errors jsonb not null default '[]',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  constraint content_job_stages_job_stage unique (job_id, stage),
  constraint content_job_stages_lease_iff_in_progress
    check ((status = 'in_progress') = (lease_id is not null and lease_owner is not null
                                        and lease_expires_at is not null)),
  constraint content_job_stages_finished_iff_terminal
    check ((status in ('completed', 'failed')) = (finished_at is not null))
);
comment on table public.content_job_stages is
  'One row per job and stage reached: ready → in_progress (lease) → completed | failed.';
-- The claim and the backlog read only these two partial indexes.
create index content_job_stages_ready_idx on public.content_job_stages (stage, available_at)
  where status = 'ready';
create index content_job_stages_leased_idx on public.content_job_stages (stage, lease_expires_at)
  where status = 'in_progress';

create table public.content_job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.content_jobs (id) on delete cascade,
  stage text,
  status text not null check (status in ('queued', 'ready', 'claimed', 'completed', 'error',
    'retry_scheduled', 'failed', 'lease_expired', 'released', 'snoozed', 'settle_refused',
    'job_completed', 'job_failed', 'redriven')),
  message text,
  details jsonb not null default '{}',
  -- clock_timestamp(): events of one transaction keep their order
  created_at timestamptz not null default clock_timestamp()
);
comment on table public.content_job_events is
  'What happened to content jobs, stage by stage; status = ''error'' rows carry the failure message.';
create index content_job_events_stage_status_idx
  on public.content_job_events (stage, status, created_at desc);
create index content_job_events_job_id_idx on public.content_job_events (job_id, id);

create table public.content_exports (
  job_id uuid primary key references public.content_jobs (id) on delete cascade,
  title text not null,
  markdown text not null,
  html text not null,
  word_count int not null check (word_count >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.content_exports is 'The final document of a content job, as Markdown and HTML.';

do $$
declare
  t text;
begin
  foreach t in array array['content_stage_config', 'content_jobs', 'content_job_stages',
                           'content_job_events', 'content_exports']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on public.%I from anon, authenticated, public', t);
    execute format('grant select, insert, update, delete on public.%I to service_role', t);
  end loop;
end
$$;
revoke all on sequence public.content_job_stages_id_seq, public.content_job_events_id_seq
  from anon, authenticated, public;
grant usage, select on sequence public.content_job_stages_id_seq, public.content_job_events_id_seq
  to service_role;

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------
create function conveyor.content_event(
  p_job_id uuid,
  p_stage text,
  p_status text,
  p_message text,
  p_details jsonb default '{}'
) returns void
language sql
set search_path = ''
as $$
  insert into public.content_job_events (job_id, stage, status, message, details)
  values (p_job_id, p_stage, p_status, p_message, coalesce(p_details, '{}'::jsonb))
$$;

-- A stage fails for good, and its job with it.
create function conveyor.content_fail_stage(
  p_row public.content_job_stages,
  p_message text,
  p_errors jsonb,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.content_job_stages
  set status = 'failed', finished_at = p_now, updated_at = p_now, lease_id = null,
      lease_owner = null, lease_expires_at = null, last_error = p_message, errors = p_errors
  where id = p_row.id;
  update public.content_jobs
  set status = 'failed', finished_at = p_now, updated_at = p_now, last_error = p_message
  where id = p_row.job_id and status not in ('completed', 'failed');
  perform conveyor.content_event(p_row.job_id, p_row.stage, 'failed',
    format('%s failed after %s attempt(s): %s', p_row.stage, p_row.attempts, p_message),
    jsonb_build_object('attempts', p_row.attempts, 'max_attempts', p_row.max_attempts));
  perform conveyor.content_event(p_row.job_id, null, 'job_failed',
    format('the job failed at stage %s', p_row.stage), '{}');
end
$$;

-- Ready work of a stage: ready rows that are available, and expired leases (reclaimable).
create function conveyor.content_ready_count(p_stage text, p_now timestamptz) returns bigint
language sql stable
set search_path = ''
as $$
  select (select count(*) from public.content_job_stages s
          where s.stage = p_stage and s.status = 'ready' and s.available_at <= p_now)
       + (select count(*) from public.content_job_stages s
          where s.stage = p_stage and s.status = 'in_progress' and s.lease_expires_at <= p_now)
$$;

create function conveyor.content_leased_count(p_stage text, p_now timestamptz) returns bigint
language sql stable
set search_path = ''
as $$
  select count(*) from public.content_job_stages s
  where s.stage = p_stage and s.status = 'in_progress' and s.lease_expires_at > p_now
$$;

-- Invocations of a target triggered but not yet started or claimed, and not expired.
create function conveyor.triggered_count(p_source text, p_target text, p_now timestamptz)
returns bigint
language sql stable
set search_path = ''
as $$
  select count(*) from conveyor.worker_invocations i
  where i.source = p_source and i.target = p_target and i.status = 'triggered'
    and i.expires_at > p_now
$$;

-- ---------------------------------------------------------------------------------------
-- queue_content_job: the way in. UNNAMED jsonb parameter: PostgREST hands the whole body
-- only to a single unnamed json/jsonb parameter.
--   {"idempotency_key": "...", "brief": {"topic": "...", "audience"?, "keywords"?,
--    "length"?, "title"?, "banned_words"?, …}, "max_attempts"?: 1..10}
-- Unknown brief fields are kept for the stage handlers. The same key returns the same id,
-- also under concurrency. Every rejected body raises its own P0001 (HTTP 400) and writes
-- nothing.
-- ---------------------------------------------------------------------------------------
create function public.queue_content_job(jsonb) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  p alias for $1;
  c_fields constant text[] := array['idempotency_key', 'brief', 'max_attempts'];
  v_key text;
  v_brief jsonb;
  v_extra text;
  v_size int;
  v_limit bigint := conveyor.setting_int('content_brief_max_bytes');
  v_max int := conveyor.setting_int('content_max_attempts')::int;
  v_id uuid;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_content_job: the body must be a JSON object';
  end if;
  select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
  if v_extra is not null then
    raise exception 'queue_content_job: unknown field "%"', v_extra
      using hint = 'accepted fields: ' || array_to_string(c_fields, ', ');
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_content_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';
  if length(v_key) > 255 then
    raise exception 'queue_content_job: idempotency_key is longer than 255 characters';
  end if;
  if coalesce(jsonb_typeof(p -> 'brief'), 'null') = 'null' then
    raise exception 'queue_content_job: missing brief';
  end if;
  v_brief := p -> 'brief';
  if jsonb_typeof(v_brief) <> 'object' then
    raise exception 'queue_content_job: brief must be a JSON object';
  end if;
  v_size := octet_length(v_brief::text);
  if v_size > v_limit then
    raise exception 'queue_content_job: brief too large (% bytes, the limit is % bytes)', v_size, v_limit;
  end if;
  if jsonb_typeof(v_brief -> 'topic') is distinct from 'string' or (v_brief ->> 'topic') !~ '\S' then
    raise exception 'queue_content_job: brief.topic is required (a non-empty string)';
  end if;
  if length(v_brief ->> 'topic') > 300 then
    raise exception 'queue_content_job: brief.topic is longer than 300 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'audience'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'audience') <> 'string' or (v_brief ->> 'audience') !~ '\S'
          or length(v_brief ->> 'audience') > 200) then
    raise exception 'queue_content_job: brief.audience must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'title'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'title') <> 'string' or (v_brief ->> 'title') !~ '\S'
          or length(v_brief ->> 'title') > 200) then
    raise exception 'queue_content_job: brief.title must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'keywords'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'keywords') <> 'array'
          or jsonb_array_length(v_brief -> 'keywords') > 25
          or exists (select 1 from jsonb_array_elements(v_brief -> 'keywords') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.keywords must be an array of at most 25 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'banned_words'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'banned_words') <> 'array'
          or jsonb_array_length(v_brief -> 'banned_words') > 100
          or exists (select 1 from jsonb_array_elements(v_brief -> 'banned_words') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.banned_words must be an array of at most 100 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'length'), 'null') <> 'null'
     and not (
       (jsonb_typeof(v_brief -> 'length') = 'string' and v_brief ->> 'length' in ('short', 'medium', 'long'))
       or (jsonb_typeof(v_brief -> 'length') = 'number'
           and (v_brief ->> 'length')::numeric = trunc((v_brief ->> 'length')::numeric)
           and (v_brief ->> 'length')::numeric between 100 and 5000)) then
    raise exception 'queue_content_job: brief.length must be "short", "medium", "long" or a whole number of words between 100 and 5000';
  end if;
  if p ? 'max_attempts' then
    if jsonb_typeof(p -> 'max_attempts') <> 'number'
       or (p ->> 'max_attempts')::numeric <> trunc((p ->> 'max_attempts')::numeric)
       or (p ->> 'max_attempts')::numeric not between 1 and 10 then
      raise exception 'queue_content_job: max_attempts must be a whole number between 1 and 10';
    end if;
    v_max := (p ->> 'max_attempts')::int;
  end if;

  -- Claim the key first: ON CONFLICT waits for a concurrent holder of the same key to commit
  -- or roll back, so of N identical calls exactly one creates the job (race-free at READ
  -- COMMITTED) and the others return its id.
  insert into public.content_jobs (idempotency_key, brief, max_attempts)
  values (v_key, v_brief, v_max)
  on conflict (idempotency_key) do nothing
  returning id into v_id;
  if v_id is null then
    select j.id into v_id from public.content_jobs j where j.idempotency_key = v_key;
    return v_id;
  end if;

  insert into public.content_job_stages (job_id, stage, max_attempts)
  values (v_id, 'research', v_max);
  update public.content_jobs set current_stage = 'research' where id = v_id;
  perform conveyor.content_event(v_id, 'research', 'queued', 'job created; research is ready',
    jsonb_build_object('idempotency_key', v_key));
  perform conveyor.kick('content:research');
  return v_id;
end
$$;
comment on function public.queue_content_job(jsonb) is
  'Creates a content job: {"idempotency_key","brief":{"topic",…}} (+ max_attempts). Returns its id; the same key returns the same id.';

-- ---------------------------------------------------------------------------------------
-- Backlog
-- ---------------------------------------------------------------------------------------

-- Per stage: its config and its counts. ready_count = claimable stages (ready and available,
-- or with an expired lease); in_flight_count = live leases (leased_count) + triggered
-- invocations not yet claimed (triggered_count). What the dispatcher needs in one call.
create function public.get_content_stage_backlog(p_now timestamptz default null)
returns table (
  stage text,
  queue text,
  enabled boolean,
  max_concurrency int,
  trigger_batch_size int,
  ready_count bigint,
  in_flight_count bigint,
  leased_count bigint,
  triggered_count bigint,
  worker_endpoint text
)
language sql stable
security definer
set search_path = ''
as $$
  select c.stage, c.queue, c.enabled, c.max_concurrency, c.trigger_batch_size,
         conveyor.content_ready_count(c.stage, n.now),
         conveyor.content_leased_count(c.stage, n.now)
           + conveyor.triggered_count('content', c.stage, n.now),
         conveyor.content_leased_count(c.stage, n.now),
         conveyor.triggered_count('content', c.stage, n.now),
         c.worker_endpoint
  from public.content_stage_config c
  cross join (select coalesce(p_now, clock_timestamp()) as now) n
$$;
comment on function public.get_content_stage_backlog(timestamptz) is
  'Per content stage: config, ready_count and in_flight_count (live leases + triggered invocations).';

-- Every source of backlog in one round trip: content stages and pgmq job kinds.
-- For a kind: ready_count = visible messages (counted up to 1000), in_flight_count =
-- triggered + running invocations, unexpired.
create function public.get_dispatch_backlog(p_now timestamptz default null)
returns table (
  source text,
  target text,
  queue text,
  enabled boolean,
  max_concurrency int,
  trigger_batch_size int,
  ready_count bigint,
  in_flight_count bigint
)
language sql stable
security definer
set search_path = ''
as $$
  select 'content', b.stage, b.queue, b.enabled, b.max_concurrency, b.trigger_batch_size,
         b.ready_count, b.in_flight_count
  from public.get_content_stage_backlog(p_now) b
  union all
  select 'queue', k.kind, k.queue_name, k.enabled, k.max_concurrency, k.trigger_batch_size,
         conveyor.queue_ready_count(k.kind, 1000)::bigint,
         (select count(*) from conveyor.worker_invocations i
          where i.source = 'queue' and i.target = k.kind and i.status <> 'finished'
            and i.expires_at > coalesce(p_now, clock_timestamp()))
  from conveyor.job_kinds k
$$;
comment on function public.get_dispatch_backlog(timestamptz) is
  'Backlog of every dispatch target (content stages and job kinds) with config and counts, for the dispatcher.';

-- ---------------------------------------------------------------------------------------
-- Triggering stage workers
-- ---------------------------------------------------------------------------------------

-- Starts up to p_count workers of a stage, within the invariant (see the top of this file):
--   started ≤ max − live leases − triggered,   started ≤ ready − triggered.
create function conveyor.trigger_content_workers(
  p_stage text,
  p_count int,
  p_max_concurrency int,
  p_reason text,
  p_now timestamptz default null
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_cfg public.content_stage_config;
  v_max int;
  v_leased bigint;
  v_triggered bigint;
  v_ready bigint;
  v_n int;
begin
  -- FOR NO KEY UPDATE: serialises capacity checks of this stage without conflicting with
  -- the KEY SHARE lock the foreign key of content_job_stages takes on insert.
  select * into v_cfg from public.content_stage_config c where c.stage = p_stage
  for no key update;
  if not found then
    raise exception 'trigger_content_worker: unknown stage %', p_stage;
  end if;
  v_max := case when v_cfg.enabled then coalesce(p_max_concurrency, v_cfg.max_concurrency) else 0 end;
  if v_max <= 0 or coalesce(p_count, 0) <= 0 then
    return 0;
  end if;
  perform conveyor.expire_invocations('content', p_stage, v_now);
  v_leased := conveyor.content_leased_count(p_stage, v_now);
  v_triggered := conveyor.triggered_count('content', p_stage, v_now);
  v_ready := conveyor.content_ready_count(p_stage, v_now);
  v_n := least(p_count, v_max - v_leased - v_triggered, v_ready - v_triggered);
  if v_n <= 0 then
    return 0;
  end if;
  return conveyor.post_workers('content', p_stage, v_cfg.worker_endpoint, v_n, p_reason, v_now);
end
$$;

-- The seed's SQL wrapper around net.http_post: starts up to p_count workers of a stage
-- (URL from worker_endpoint + Vault, key from Vault), never beyond max_concurrency
-- (p_max_concurrency, e.g. the dispatcher's env override, replaces the table value).
-- Returns the number of workers triggered.
create function public.trigger_content_worker(
  p_stage text,
  p_count int default 1,
  p_max_concurrency int default null,
  p_reason text default 'manual'
) returns int
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_count is null or p_count < 0 or p_count > 100 then
    raise exception 'trigger_content_worker: p_count must be between 0 and 100';
  end if;
  if p_max_concurrency is not null and p_max_concurrency < 0 then
    raise exception 'trigger_content_worker: p_max_concurrency must not be negative';
  end if;
  return conveyor.trigger_content_workers(p_stage, p_count, p_max_concurrency,
                                          coalesce(p_reason, 'manual'));
end
$$;
comment on function public.trigger_content_worker(text, int, int, text) is
  'Starts up to p_count workers of a content stage over pg_net, within max_concurrency. Returns how many were started.';

-- ---------------------------------------------------------------------------------------
-- Stage transitions (called by the stage workers through RPC)
-- ---------------------------------------------------------------------------------------
create type conveyor.content_claim as (
  job_id uuid,
  stage text,
  lease_id uuid,
  attempt int,
  max_attempts int,
  brief jsonb,
  -- outputs of the job's completed stages, by stage name
  outputs jsonb,
  lease_expires_at timestamptz
);

-- Claims ONE stage item (one item per lease) for a worker, or nothing. With the worker's
-- invocation id, the claim consumes that invocation (triggered → running): its slot turns
-- into the lease without ever being free. The capacity check is the same for the first
-- claim and for a worker continuing with another item: after this claim,
-- live leases + triggered invocations ≤ effective max. Expired leases are taken first
-- (oldest work; a stage past its last attempt fails instead), then ready rows by availability.
create function public.claim_content_stage(
  p_stage text,
  p_worker text,
  p_invocation_id uuid default null,
  p_lease_sec int default null,
  p_max_concurrency int default null,
  p_now timestamptz default null
) returns setof conveyor.content_claim
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_lease_sec int := coalesce(p_lease_sec, conveyor.setting_int('content_lease_sec')::int);
  v_cfg public.content_stage_config;
  v_max int;
  v_row public.content_job_stages;
  v_msg text;
begin
  if coalesce(btrim(p_worker), '') = '' then
    raise exception 'claim_content_stage: p_worker must name the worker';
  end if;
  if v_lease_sec < 1 or v_lease_sec > 3600 then
    raise exception 'claim_content_stage: p_lease_sec must be between 1 and 3600';
  end if;
  select * into v_cfg from public.content_stage_config c where c.stage = p_stage
  for no key update;
  if not found then
    raise exception 'claim_content_stage: unknown stage %', p_stage;
  end if;
  if p_invocation_id is not null then
    update conveyor.worker_invocations i
    set status = 'running', started_at = v_now, worker = p_worker,
        expires_at = v_now + make_interval(secs => conveyor.setting_int('invocation_run_sec'))
    where i.id = p_invocation_id and i.source = 'content' and i.target = p_stage
      and i.status = 'triggered';
  end if;
  v_max := case when v_cfg.enabled then coalesce(p_max_concurrency, v_cfg.max_concurrency) else 0 end;
  loop
    if conveyor.content_leased_count(p_stage, v_now)
       + conveyor.triggered_count('content', p_stage, v_now) + 1 > v_max then
      return;
    end if;
    select * into v_row from public.content_job_stages s
    where s.stage = p_stage and s.status = 'in_progress' and s.lease_expires_at <= v_now
    order by s.lease_expires_at, s.id
    limit 1
    for update skip locked;
    if found then
      perform conveyor.content_event(v_row.job_id, p_stage, 'lease_expired',
        format('the lease of %s expired at %s without a settle', v_row.lease_owner, v_row.lease_expires_at),
        jsonb_build_object('attempt', v_row.attempts, 'lease_owner', v_row.lease_owner));
      if v_row.attempts >= v_row.max_attempts then
        v_msg := format('lease of %s expired on the last attempt (%s of %s)', v_row.lease_owner,
                        v_row.attempts, v_row.max_attempts);
        perform conveyor.content_event(v_row.job_id, p_stage, 'error', v_msg,
          jsonb_build_object('attempt', v_row.attempts, 'max_attempts', v_row.max_attempts));
        perform conveyor.content_fail_stage(v_row, v_msg,
          v_row.errors || jsonb_build_array(jsonb_build_object(
            'message', v_msg, 'attempt', v_row.attempts, 'at', v_now)), v_now);
        continue;
      end if;
    else
      select * into v_row from public.content_job_stages s
      where s.stage = p_stage and s.status = 'ready' and s.available_at <= v_now
      order by s.available_at, s.id
      limit 1
      for update skip locked;
      if not found then
        return;
      end if;
    end if;

    update public.content_job_stages s
    set status = 'in_progress', attempts = s.attempts + 1, lease_id = gen_random_uuid(),
        lease_owner = p_worker, lease_expires_at = v_now + make_interval(secs => v_lease_sec),
        invocation_id = p_invocation_id, started_at = coalesce(s.started_at, v_now),
        updated_at = v_now
    where s.id = v_row.id
    returning * into v_row;
    update public.content_jobs j
    set status = case when j.status = 'pending' then 'running' else j.status end,
        started_at = coalesce(j.started_at, v_now), current_stage = p_stage, updated_at = v_now
    where j.id = v_row.job_id;
    perform conveyor.content_event(v_row.job_id, p_stage, 'claimed',
      format('attempt %s of %s by %s', v_row.attempts, v_row.max_attempts, p_worker),
      jsonb_build_object('attempt', v_row.attempts, 'worker', p_worker,
                         'lease_id', v_row.lease_id, 'invocation_id', p_invocation_id));
    return query
    select v_row.job_id, v_row.stage, v_row.lease_id, v_row.attempts, v_row.max_attempts,
           j.brief,
           coalesce((select jsonb_object_agg(o.stage, o.output) from public.content_job_stages o
                     where o.job_id = v_row.job_id and o.status = 'completed'), '{}'::jsonb),
           v_row.lease_expires_at
    from public.content_jobs j where j.id = v_row.job_id;
    return;
  end loop;
end
$$;

-- The outcomes of a batch, in one call. p_results:
--   [{"job_id", "stage", "lease_id", "status": "completed"|"failed"|"cancelled"|"snoozed",
--     "output"?: {...}, "error"?: {"message", "stack"?}, "snooze_seconds"?: n}]
-- p_overrides: the worker's max_concurrency overrides by stage ({"outline": 3}), applied to
-- the push trigger of the next stage. Accepted only from the live lease; anything else is
-- refused and recorded (settle_refused). Completing the export stage writes content_exports
-- (its output must carry "title", "markdown" and "html"); completing the last stage
-- completes the job; completing any other makes the next stage ready and starts its worker
-- (push) unless push_kicks is off. A failure records an `error` event, then retries after
-- backoff or, on the last attempt (or cancelled), fails the stage and the job.
create function public.settle_content_stages(
  p_worker text,
  p_results jsonb,
  p_overrides jsonb default '{}',
  p_now timestamptz default null
) returns table (job_id uuid, stage text, accepted boolean, outcome text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_base bigint := conveyor.setting_int('content_backoff_base_ms');
  v_cap bigint := conveyor.setting_int('content_backoff_max_ms');
  v_r record;
  v_row public.content_job_stages;
  v_status text;
  v_error jsonb;
  v_msg text;
  v_next text;
  v_push jsonb := '{}'::jsonb;
  v_errors jsonb;
  v_delay_ms bigint;
  v_target text;
  v_n text;
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_content_stages: p_results must be a JSON array';
  end if;
  if p_overrides is not null and jsonb_typeof(p_overrides) <> 'object' then
    raise exception 'settle_content_stages: p_overrides must be a JSON object';
  end if;

  for v_r in
    select x.job_id, x.stage, x.lease_id, x.status, x.output, x.error, x.snooze_seconds
    from jsonb_to_recordset(p_results) as x(job_id uuid, stage text, lease_id uuid, status text,
                                              output jsonb, error jsonb, snooze_seconds int)
  loop
    v_status := v_r.status;
    v_error := v_r.error;
    if v_status is null or v_status not in ('completed', 'failed', 'cancelled', 'snoozed') then
      raise exception 'settle_content_stages: unknown status % for job %', v_status, v_r.job_id;
    end if;
    select * into v_row from public.content_job_stages s
    where s.job_id = v_r.job_id and s.stage = v_r.stage
    for update;
    if not found then
      return query select v_r.job_id, v_r.stage, false, 'unknown'::text;
      continue;
    end if;
    if v_row.status <> 'in_progress' or v_row.lease_id is distinct from v_r.lease_id
       or v_row.lease_expires_at <= v_now then
      perform conveyor.content_event(v_row.job_id, v_row.stage, 'settle_refused',
        format('%s from %s refused: %s', v_status, p_worker, case
          when v_row.status <> 'in_progress' then 'the stage is ' || v_row.status
          when v_row.lease_id is distinct from v_r.lease_id then 'the lease is held by another claim'
          else 'the lease expired' end),
        jsonb_build_object('worker', p_worker, 'wanted', v_status, 'lease_id', v_r.lease_id));
      return query select v_row.job_id, v_row.stage, false, 'refused'::text;
      continue;
    end if;

    if v_status = 'completed' and v_row.stage = 'export'
       and (jsonb_typeof(v_r.output -> 'markdown') is distinct from 'string'
            or jsonb_typeof(v_r.output -> 'html') is distinct from 'string'
            or jsonb_typeof(v_r.output -> 'title') is distinct from 'string') then
      v_status := 'failed';
      v_error := jsonb_build_object('message',
        'the export output must carry "title", "markdown" and "html" strings');
    end if;

    if v_status = 'completed' then
      -- last_error is what is wrong NOW: a stage that succeeded after failed attempts (or
      -- after a redrive) has none. The failures stay in errors and in the events.
      update public.content_job_stages s
      set status = 'completed', output = v_r.output, finished_at = v_now, updated_at = v_now,
          lease_id = null, lease_owner = null, lease_expires_at = null, last_error = null
      where s.id = v_row.id;
      perform conveyor.content_event(v_row.job_id, v_row.stage, 'completed',
        format('%s completed (attempt %s) by %s', v_row.stage, v_row.attempts, p_worker),
        jsonb_build_object('attempt', v_row.attempts, 'worker', p_worker,
                           'ms', round(extract(epoch from v_now - v_row.updated_at) * 1000)));
      if v_row.stage = 'export' then
        insert into public.content_exports as e (job_id, title, markdown, html, word_count)
        values (v_row.job_id, v_r.output ->> 'title', v_r.output ->> 'markdown', v_r.output ->> 'html',
                coalesce(array_length(regexp_split_to_array(btrim(v_r.output ->> 'markdown'), '\s+'), 1), 0))
        on conflict on constraint content_exports_pkey do update
        set title = excluded.title, markdown = excluded.markdown, html = excluded.html,
            word_count = excluded.word_count, updated_at = v_now;
      end if;
      v_next := conveyor.content_next_stage(v_row.stage);
      if v_next is null then
        update public.content_jobs j
        set status = 'completed', finished_at = v_now, updated_at = v_now, last_error = null
        where j.id = v_row.job_id and j.status not in ('completed', 'failed');
        perform conveyor.content_event(v_row.job_id, null, 'job_completed',
          'all stages completed', '{}');
      else
        insert into public.content_job_stages (job_id, stage, max_attempts, available_at)
        values (v_row.job_id, v_next, v_row.max_attempts, v_now)
        on conflict on constraint content_job_stages_job_stage do nothing;
        update public.content_jobs j set current_stage = v_next, updated_at = v_now
        where j.id = v_row.job_id;
        perform conveyor.content_event(v_row.job_id, v_next, 'ready',
          format('%s is ready', v_next), '{}');
        v_push := jsonb_set(v_push, array[v_next], to_jsonb(coalesce((v_push ->> v_next)::int, 0) + 1));
      end if;
      return query select v_row.job_id, v_row.stage, true, 'completed'::text;
      continue;
    end if;

    if v_status = 'snoozed' then
      update public.content_job_stages s
      set status = 'ready', attempts = greatest(s.attempts - 1, 0), updated_at = v_now,
          available_at = v_now + make_interval(secs => greatest(0, coalesce(v_r.snooze_seconds, 0))),
          lease_id = null, lease_owner = null, lease_expires_at = null
      where s.id = v_row.id;
      perform conveyor.content_event(v_row.job_id, v_row.stage, 'snoozed',
        format('snoozed for %s s by %s', coalesce(v_r.snooze_seconds, 0), p_worker),
        jsonb_build_object('seconds', v_r.snooze_seconds, 'worker', p_worker));
      return query select v_row.job_id, v_row.stage, true, 'snoozed'::text;
      continue;
    end if;

    -- failed or cancelled
    v_msg := coalesce(nullif(v_error ->> 'message', ''), 'unknown error');
    v_errors := v_row.errors || jsonb_build_array(jsonb_build_object(
      'message', v_msg, 'stack', v_error ->> 'stack', 'attempt', v_row.attempts, 'at', v_now));
    perform conveyor.content_event(v_row.job_id, v_row.stage, 'error', v_msg,
      jsonb_build_object('attempt', v_row.attempts, 'max_attempts', v_row.max_attempts,
                         'worker', p_worker, 'cancelled', v_status = 'cancelled'));
    if v_status = 'cancelled' or v_row.attempts >= v_row.max_attempts then
      perform conveyor.content_fail_stage(v_row, v_msg, v_errors, v_now);
      return query select v_row.job_id, v_row.stage, true, 'failed'::text;
    else
      v_delay_ms := conveyor.backoff_ms(v_row.attempts, v_base, v_cap);
      update public.content_job_stages s
      set status = 'ready', available_at = v_now + make_interval(secs => v_delay_ms / 1000.0),
          lease_id = null, lease_owner = null, lease_expires_at = null, last_error = v_msg,
          errors = v_errors, updated_at = v_now
      where s.id = v_row.id;
      perform conveyor.content_event(v_row.job_id, v_row.stage, 'retry_scheduled',
        format('attempt %s of %s in %s ms', v_row.attempts + 1, v_row.max_attempts, v_delay_ms),
        jsonb_build_object('attempt', v_row.attempts, 'delay_ms', v_delay_ms));
      return query select v_row.job_id, v_row.stage, true, 'retry_scheduled'::text;
    end if;
  end loop;

  -- Push: start the next stages' workers now, through the same capacity-checked trigger.
  -- Never fails the settle (e.g. Vault secrets missing, or a lock conflict): cron's
  -- dispatcher is the safety net.
  if v_push <> '{}'::jsonb and conveyor.push_enabled() then
    for v_target, v_n in select * from jsonb_each_text(v_push) loop
      begin
        perform conveyor.trigger_content_workers(v_target, v_n::int,
          case when jsonb_typeof(p_overrides -> v_target) = 'number'
               then (p_overrides ->> v_target)::int end,
          'push', v_now);
      exception when others then
        raise warning 'settle_content_stages: no push to %: %', v_target, sqlerrm;
      end;
    end loop;
  end if;
end
$$;

-- Graceful shutdown: hands claimed stages back (ready now, the attempt not spent).
-- p_leases: [{"job_id", "stage", "lease_id"}]. Returns what was released.
create function public.release_content_stages(p_worker text, p_leases jsonb)
returns table (job_id uuid, stage text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row record;
  v_now timestamptz := clock_timestamp();
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'release_content_stages: p_leases must be a JSON array';
  end if;
  for v_row in
    select s.id, s.job_id, s.stage
    from jsonb_to_recordset(p_leases) as x(job_id uuid, stage text, lease_id uuid)
    join public.content_job_stages s
      on s.job_id = x.job_id and s.stage = x.stage and s.lease_id = x.lease_id
    where s.status = 'in_progress'
    for update of s
  loop
    update public.content_job_stages s
    set status = 'ready', available_at = v_now, attempts = greatest(s.attempts - 1, 0),
        lease_id = null, lease_owner = null, lease_expires_at = null, updated_at = v_now
    where s.id = v_row.id;
    perform conveyor.content_event(v_row.job_id, v_row.stage, 'released',
      format('released by %s (shutdown)', p_worker), jsonb_build_object('worker', p_worker));
    return query select v_row.job_id, v_row.stage;
  end loop;
end
$$;

-- Heartbeat: pushes live leases out by p_lease_sec. p_leases: [{"job_id","stage","lease_id"}].
create function public.extend_content_stages(p_worker text, p_leases jsonb, p_lease_sec int default null)
returns table (job_id uuid, stage text, lease_expires_at timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sec int := coalesce(p_lease_sec, conveyor.setting_int('content_lease_sec')::int);
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'extend_content_stages: p_leases must be a JSON array';
  end if;
  return query
  update public.content_job_stages s
  set lease_expires_at = clock_timestamp() + make_interval(secs => v_sec), updated_at = now()
  from jsonb_to_recordset(p_leases) as x(job_id uuid, stage text, lease_id uuid)
  where s.job_id = x.job_id and s.stage = x.stage and s.lease_id = x.lease_id
    and s.status = 'in_progress' and s.lease_expires_at > clock_timestamp()
    and s.lease_owner = p_worker
  returning s.job_id, s.stage, s.lease_expires_at;
end
$$;

-- When the next ready item of a stage becomes claimable (NULL: none waiting). A worker
-- that failed an item uses it to wait for the retry within its own time budget.
create function public.content_stage_next_ready_at(p_stage text) returns timestamptz
language sql stable
security definer
set search_path = ''
as $$
  select min(s.available_at) from public.content_job_stages s
  where s.stage = p_stage and s.status = 'ready'
$$;

-- ---------------------------------------------------------------------------------------
-- Redrive: a failed job runs again from the stage that failed (operators only; the CLI's
-- `deno task conveyor dlq redrive <content job id>`). The stages it completed keep their
-- outputs, so nothing before the failed stage runs twice. The failed stage gets its
-- attempts back and its worker is started at once through the same capacity-checked
-- trigger a completed stage uses for the next one (push); when none can start (all slots
-- busy, the stage paused, push_kicks off, Vault not set up) the dispatcher runs it.
-- ---------------------------------------------------------------------------------------

-- One job. Refuses an unknown id (P0002), a job that is not failed, and a failed job with
-- no failed stage (its row removed or edited by hand: there is nothing to retry from).
-- The job is running again with last_error cleared (nothing is wrong with it until a
-- stage fails again); the stage keeps its last_error and errors (its history) until it
-- completes. Returns the stage it runs again from and how many workers started now.
create function public.redrive_content_job(p_job_id uuid)
returns table (job_id uuid, stage text, workers_started int)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_job public.content_jobs;
  v_row public.content_job_stages;
  v_started int := 0;
begin
  -- The job row's lock serialises redrives of one job: a second one waits, then finds the
  -- job running and is refused.
  select * into v_job from public.content_jobs j where j.id = p_job_id for update;
  if not found then
    raise exception 'redrive_content_job: no content job %', p_job_id using errcode = 'P0002';
  end if;
  if v_job.status <> 'failed' then
    raise exception 'redrive_content_job: content job % is %, only failed jobs can be redriven',
      p_job_id, v_job.status;
  end if;
  select * into v_row from public.content_job_stages s
  where s.job_id = p_job_id and s.status = 'failed'
  order by s.id desc
  limit 1
  for update;
  if not found then
    raise exception 'redrive_content_job: content job % has no failed stage to retry from', p_job_id
      using hint = 'its stages: select stage, status from content_job_stages where job_id = '''
                   || p_job_id || '''';
  end if;

  update public.content_job_stages s
  set status = 'ready', attempts = 0, available_at = v_now, finished_at = null,
      updated_at = v_now
  where s.id = v_row.id;
  update public.content_jobs j
  set status = 'running', current_stage = v_row.stage, finished_at = null, last_error = null,
      updated_at = v_now
  where j.id = p_job_id;
  perform conveyor.content_event(p_job_id, v_row.stage, 'redriven',
    format('%s runs again: attempts reset (it failed after %s of %s)', v_row.stage,
           v_row.attempts, v_row.max_attempts),
    jsonb_build_object('attempts', v_row.attempts, 'max_attempts', v_row.max_attempts,
                       'last_error', v_row.last_error));

  -- Push, as settle_content_stages does for the next stage: never fails the redrive.
  if conveyor.push_enabled() then
    begin
      v_started := conveyor.trigger_content_workers(v_row.stage, 1, null, 'redrive', v_now);
    exception when others then
      raise warning 'redrive_content_job: no push to %: %', v_row.stage, sqlerrm;
    end;
  end if;
  return query select p_job_id, v_row.stage, v_started;
end
$$;
comment on function public.redrive_content_job(uuid) is
  'Retries a failed content job from its failed stage (attempts reset, its worker started). Returns the stage and the workers started.';

-- Many jobs: up to p_limit failed jobs (oldest failure first), of one failed stage or of
-- any, each through redrive_content_job. Jobs another transaction is redriving are skipped.
create function public.redrive_content_jobs(p_stage text default null, p_limit int default 100)
returns table (job_id uuid, stage text, workers_started int)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job uuid;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'redrive_content_jobs: p_limit must be between 1 and 1000';
  end if;
  if p_stage is not null and not (p_stage = any (conveyor.content_stages())) then
    raise exception 'redrive_content_jobs: unknown stage %', p_stage
      using hint = 'stages: ' || array_to_string(conveyor.content_stages(), ', ');
  end if;
  for v_job in
    select j.id from public.content_jobs j
    where j.status = 'failed'
      and exists (select 1 from public.content_job_stages s
                  where s.job_id = j.id and s.status = 'failed'
                    and (p_stage is null or s.stage = p_stage))
    order by j.finished_at, j.id
    limit p_limit
    for update of j skip locked
  loop
    return query select * from public.redrive_content_job(v_job);
  end loop;
end
$$;
comment on function public.redrive_content_jobs(text, int) is
  'Retries up to p_limit failed content jobs (of one failed stage, or all) from their failed stage.';

-- One content job as an operator inspects it: the job, its stages (each with every failed
-- attempt's error) and its events, oldest first.
create function public.inspect_content_job(p_job_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_job public.content_jobs;
begin
  select * into v_job from public.content_jobs j where j.id = p_job_id;
  if not found then
    raise exception 'inspect_content_job: no content job %', p_job_id using errcode = 'P0002';
  end if;
  return jsonb_build_object(
    'job', to_jsonb(v_job),
    'stages', coalesce((
      select jsonb_agg(jsonb_build_object('stage', s.stage, 'status', s.status,
                                          'attempts', s.attempts, 'max_attempts', s.max_attempts,
                                          'last_error', s.last_error, 'errors', s.errors,
                                          'finished_at', s.finished_at) order by s.id)
      from public.content_job_stages s where s.job_id = p_job_id), '[]'::jsonb),
    'events', coalesce((
      select jsonb_agg(jsonb_build_object('stage', e.stage, 'status', e.status,
                                          'message', e.message, 'at', e.created_at) order by e.id)
      from public.content_job_events e where e.job_id = p_job_id), '[]'::jsonb));
end
$$;
comment on function public.inspect_content_job(uuid) is
  'A content job with its stages (errors of every failed attempt) and its events, for operators.';

-- ---------------------------------------------------------------------------------------
-- Retention: finished content jobs older than retention_hours (with their stages, events
-- and exports), and old worker invocations.
-- ---------------------------------------------------------------------------------------
create function conveyor.prune_content(p_retention_hours int default null, p_now timestamptz default null)
returns int
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_hours int := coalesce(p_retention_hours, conveyor.setting_int('retention_hours')::int);
  v_n int;
begin
  delete from public.content_jobs j
  where j.finished_at < v_now - make_interval(hours => v_hours);
  get diagnostics v_n = row_count;
  perform conveyor.prune_invocations(v_now);
  return v_n;
end
$$;

revoke all on function conveyor.content_stages(), conveyor.content_next_stage(text),
  conveyor.touch_last_updated_at(),
  conveyor.content_event(uuid, text, text, text, jsonb),
  conveyor.content_fail_stage(public.content_job_stages, text, jsonb, timestamptz),
  conveyor.content_ready_count(text, timestamptz),
  conveyor.content_leased_count(text, timestamptz),
  conveyor.triggered_count(text, text, timestamptz),
  conveyor.trigger_content_workers(text, int, int, text, timestamptz),
  conveyor.prune_content(int, timestamptz)
  from public;
revoke all on function public.queue_content_job(jsonb),
  public.get_content_stage_backlog(timestamptz),
  public.get_dispatch_backlog(timestamptz),
  public.trigger_content_worker(text, int, int, text),
  public.claim_content_stage(text, text, uuid, int, int, timestamptz),
  public.settle_content_stages(text, jsonb, jsonb, timestamptz),
  public.release_content_stages(text, jsonb),
  public.extend_content_stages(text, jsonb, int),
  public.content_stage_next_ready_at(text),
  public.redrive_content_job(uuid),
  public.redrive_content_jobs(text, int),
  public.inspect_content_job(uuid)
  from public, anon, authenticated;
grant execute on function public.queue_content_job(jsonb),
  public.get_content_stage_backlog(timestamptz),
  public.get_dispatch_backlog(timestamptz),
  public.trigger_content_worker(text, int, int, text),
  public.claim_content_stage(text, text, uuid, int, int, timestamptz),
  public.settle_content_stages(text, jsonb, jsonb, timestamptz),
  public.release_content_stages(text, jsonb),
  public.extend_content_stages(text, jsonb, int),
  public.content_stage_next_ready_at(text),
  public.redrive_content_job(uuid),
  public.redrive_content_jobs(text, int),
  public.inspect_content_job(uuid)
  to service_role;

-- ---------------------------------------------------------------------------------------
-- Cron, where pg_cron exists (only in cron.database_name: the test template database has
-- none). cron.schedule(name, …) upserts, so re-running this file is harmless. The command
-- POSTs to the dispatcher with net.http_post, URL and key from Vault
-- (conveyor.invoke_dispatcher); without the Vault secrets each run fails with the SQL to fix it.
-- ---------------------------------------------------------------------------------------
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('planperfect-content-queue-dispatcher', '*/1 * * * *',
      $cmd$select conveyor.invoke_dispatcher('cron')$cmd$);
    perform cron.schedule('conveyor-content-retention', '27 * * * *',
      'select conveyor.prune_content()');
  end if;
end
$$;

insert into conveyor.dispatch_kicks (target)
select 'content:' || s from unnest(conveyor.content_stages()) s
on conflict (target) do nothing;
