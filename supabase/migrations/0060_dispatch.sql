-- Shared dispatch infrastructure: how workers are started, for every source of backlog
-- (content stages, 20251020120000_content_dispatcher.sql, and the pgmq job kinds), and how
-- the dispatcher and the dead-letter consumer are called (cron, debounced kicks).
--
-- A worker invocation is the unit of concurrency. Starting a worker = one row in
-- conveyor.worker_invocations + one net.http_post to the worker function, in the caller's
-- transaction (pg_net sends only after COMMIT, so a rolled-back trigger starts nothing).
-- Invocation states:
--   triggered --worker starts (start_invocation / content claim)--> running --finish_invocation--> finished
--   triggered --expires_at passes (request lost: pg_net's queue is UNLOGGED)--> counts no more
--   running   --expires_at passes (worker died without finishing)--> counts no more
-- Expired rows are marked finished lazily (by the next trigger of the same target) and by
-- retention; they stop counting as in flight the moment expires_at passes.
--
-- URLs and keys come from Vault (secrets `project_url` and `service_role_key`), never from
-- literals in migrations: docs/operations.md has the one-time SQL for hosted projects, the
-- local stack stores both at start.

insert into conveyor.settings (key, value, description) values
  ('push_kicks', 'true',
   'false = no kicks on enqueue and no push triggers between content stages: only cron dispatches'),
  ('kick_debounce_ms', '250', 'at most one dispatcher kick per target in this many ms'),
  ('invocation_ttl_sec', '30',
   'a triggered worker invocation not started after this long is presumed lost and frees its slot'),
  ('invocation_run_sec', '300',
   'a started content stage worker not finished after this long is presumed dead (its slots are its leases)'),
  ('invocation_lease_sec', '15',
   'a running queue worker holds its dispatch slot this long past its last heartbeat (its claims and extends beat)'),
  ('invocation_retention_hours', '24', 'finished worker invocations older than this are pruned'),
  ('worker_request_timeout_ms', '5000',
   'pg_net timeout of a worker trigger (workers answer 202 at once and work in the background)'),
  ('dispatcher_endpoint', '"/functions/v1/content-queue-dispatcher"',
   'the dispatcher function: a path (resolved against Vault project_url) or a full URL'),
  ('dispatcher_sweep_ms', '45000',
   'with push_kicks off, how long a cron-started dispatcher keeps cycling while work is in flight'),
  ('dlq_worker_endpoint', '"/functions/v1/dlq-worker"',
   'the dead-letter consumer function (a path resolves against Vault project_url)')
on conflict (key) do nothing;

-- Push kicks and push triggers are on unless the setting says otherwise.
create function conveyor.push_enabled() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce((select (s.value #>> '{}')::boolean from conveyor.settings s
                   where s.key = 'push_kicks'), true)
$$;

-- ---------------------------------------------------------------------------------------
-- Worker invocations
-- ---------------------------------------------------------------------------------------
create table conveyor.worker_invocations (
  id uuid primary key,
  source text not null check (source in ('content', 'queue')),
  -- the content stage or the job kind
  target text not null,
  status text not null default 'triggered' check (status in ('triggered', 'running', 'finished')),
  -- who asked: dispatch:<cron|manual|kick|…>, push (previous content stage completed),
  -- follow_up (a worker stopped with work left), manual (SQL)
  reason text not null,
  request_id bigint,
  worker text,
  summary jsonb,
  created_at timestamptz not null,
  started_at timestamptz,
  finished_at timestamptz,
  expires_at timestamptz not null,
  constraint worker_invocations_running_started
    check (status <> 'running' or started_at is not null),
  constraint worker_invocations_finished_iff_finished_at
    check ((status = 'finished') = (finished_at is not null))
);
comment on table conveyor.worker_invocations is
  'One row per worker started over pg_net: the unit the dispatcher counts against max_concurrency.';
-- In-flight counts and lazy expiry look only at live rows: keep that index small.
create index worker_invocations_live_idx on conveyor.worker_invocations (source, target, status, expires_at)
  where status <> 'finished';
create index worker_invocations_finished_at_idx on conveyor.worker_invocations (finished_at)
  where status = 'finished';

-- ---------------------------------------------------------------------------------------
-- Vault: the project URL and the service key workers and the dispatcher are called with.
-- ---------------------------------------------------------------------------------------
create function conveyor.vault_secret(p_name text) returns text
language sql stable
set search_path = ''
as $$
  select s.decrypted_secret from vault.decrypted_secrets s
  where s.name = p_name
  order by s.created_at desc
  limit 1
$$;

-- A path ("/functions/v1/research-worker") resolves against Vault project_url; a full
-- http(s) URL is used as is (e.g. a worker hosted elsewhere, or a test server).
create function conveyor.endpoint_url(p_endpoint text) returns text
language plpgsql stable
set search_path = ''
as $$
declare
  v_base text;
begin
  if p_endpoint ~* '^https?://' then
    return p_endpoint;
  end if;
  v_base := btrim(coalesce(conveyor.vault_secret('project_url'), ''));
  if v_base = '' then
    raise exception 'Vault secret "project_url" is missing, so % cannot be called', p_endpoint
      using hint = 'run once: select vault.create_secret(''https://<project-ref>.supabase.co'', ''project_url''); see docs/operations.md';
  end if;
  return rtrim(v_base, '/') || case when left(p_endpoint, 1) = '/' then '' else '/' end || p_endpoint;
end
$$;

create function conveyor.service_headers() returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_key text := btrim(coalesce(conveyor.vault_secret('service_role_key'), ''));
begin
  if v_key = '' then
    raise exception 'Vault secret "service_role_key" is missing, so workers cannot be called'
      using hint = 'run once: select vault.create_secret(''<service role key>'', ''service_role_key''); see docs/operations.md';
  end if;
  return jsonb_build_object('Content-Type', 'application/json', 'Authorization', 'Bearer ' || v_key);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Starting workers
-- ---------------------------------------------------------------------------------------

-- Records and sends p_n invocations of one target. The caller has checked capacity under
-- the target's lock. The body is what every worker function accepts:
-- {"invocation_id", "stage" | "kind", "async": true, "source"}.
create function conveyor.post_workers(
  p_source text,
  p_target text,
  p_endpoint text,
  p_n int,
  p_reason text,
  p_now timestamptz
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_url text := conveyor.endpoint_url(p_endpoint);
  v_headers jsonb := conveyor.service_headers();
  v_ttl int := conveyor.setting_int('invocation_ttl_sec')::int;
  v_timeout int := conveyor.setting_int('worker_request_timeout_ms')::int;
  v_id uuid;
  v_request bigint;
begin
  for i in 1 .. p_n loop
    v_id := gen_random_uuid();
    v_request := net.http_post(
      url := v_url,
      body := jsonb_build_object(
        'invocation_id', v_id,
        case when p_source = 'content' then 'stage' else 'kind' end, p_target,
        'async', true,
        'source', p_source),
      headers := v_headers,
      timeout_milliseconds := v_timeout);
    insert into conveyor.worker_invocations (id, source, target, status, reason, request_id,
                                             created_at, expires_at)
    values (v_id, p_source, p_target, 'triggered', p_reason, v_request,
            p_now, p_now + make_interval(secs => v_ttl));
  end loop;
  return p_n;
end
$$;

-- Marks a target's expired live invocations finished, so the live index stays small.
create function conveyor.expire_invocations(p_source text, p_target text, p_now timestamptz)
returns int
language plpgsql
set search_path = ''
as $$
declare
  v_n int;
begin
  update conveyor.worker_invocations i
  set status = 'finished', finished_at = p_now,
      summary = coalesce(i.summary, '{}'::jsonb) || jsonb_build_object('expired', true, 'was', i.status)
  where i.source = p_source and i.target = p_target and i.status <> 'finished'
    and i.expires_at <= p_now;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

-- Visible messages of a kind across its tiers, counted with a LIMIT (never a full scan:
-- pgmq.metrics() would count the whole table). Only messages of a job: an orphan (sent with
-- pgmq.send, no job has its number) is no work and must not wake workers; a claim or the
-- rescue tick removes it. Messages of a tenant that paused the kind (public.queues.paused)
-- are not ready: pausing is enforced here, at dispatch.
create function conveyor.queue_ready_count(p_kind text, p_limit int default 1000) returns int
language plpgsql stable
set search_path = ''
as $$
declare
  v_queue text;
  v_tier text;
  v_n int := 0;
  v_part int;
begin
  select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    return 0;
  end if;
  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    exit when v_n >= p_limit;
    -- A kind whose queues are being dropped (its row goes last) has nothing ready.
    continue when to_regclass(format('pgmq.%I', 'q_' || conveyor.tier_queue(v_queue, v_tier))) is null;
    execute format(
      $q$select count(*)::int from (
           select 1 from pgmq.%I q
           where q.vt <= clock_timestamp()
             and exists (select 1 from public.jobs j where j.msg_id = q.msg_id)
             and not exists (select 1 from public.queues p
                             where p.kind = $2 and p.paused
                               and p.tenant_id::text = q.message ->> 'tenant_id')
           limit $1) x$q$,
      'q_' || conveyor.tier_queue(v_queue, v_tier))
      into v_part using p_limit - v_n, p_kind;
    v_n := v_n + v_part;
  end loop;
  return v_n;
end
$$;

-- Starts up to p_count workers for a job kind. Capacity is checked under a lock on the
-- kind's row (FOR NO KEY UPDATE: it does not conflict with the KEY SHARE locks of foreign
-- keys pointing at job_kinds), so racing dispatchers can never exceed max_concurrency:
--   in flight (triggered + running, unexpired) + started ≤ max_concurrency,
--   started ≤ ready messages − invocations already on their way.
create function conveyor.trigger_queue_workers(
  p_kind text,
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
  v_kind conveyor.job_kinds;
  v_max int;
  v_triggered int;
  v_running int;
  v_ready int;
  v_n int;
begin
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind for no key update;
  if not found then
    raise exception 'trigger_queue_worker: unknown kind %', p_kind;
  end if;
  v_max := case when v_kind.enabled then coalesce(p_max_concurrency, v_kind.max_concurrency) else 0 end;
  if v_max <= 0 or coalesce(p_count, 0) <= 0 then
    return 0;
  end if;
  perform conveyor.expire_invocations('queue', p_kind, v_now);
  select count(*) filter (where i.status = 'triggered'), count(*) filter (where i.status = 'running')
  into v_triggered, v_running
  from conveyor.worker_invocations i
  where i.source = 'queue' and i.target = p_kind and i.status <> 'finished' and i.expires_at > v_now;
  v_ready := conveyor.queue_ready_count(p_kind, 1000);
  v_n := least(p_count, v_max - v_triggered - v_running, v_ready - v_triggered);
  if v_n <= 0 then
    return 0;
  end if;
  return conveyor.post_workers('queue', p_kind, '/functions/v1/' || v_kind.worker_slug, v_n,
                               p_reason, v_now);
end
$$;

-- The capacity-checked trigger of any source (content stages are defined in
-- 20251020120000_content_dispatcher.sql).
create function conveyor.trigger_workers(
  p_source text,
  p_target text,
  p_count int,
  p_max_concurrency int,
  p_reason text,
  p_now timestamptz default null
) returns int
language plpgsql
set search_path = ''
as $$
begin
  if p_source = 'queue' then
    return conveyor.trigger_queue_workers(p_target, p_count, p_max_concurrency, p_reason, p_now);
  elsif p_source = 'content' then
    return conveyor.trigger_content_workers(p_target, p_count, p_max_concurrency, p_reason, p_now);
  end if;
  raise exception 'trigger_workers: unknown source %', p_source;
end
$$;

-- Takes the lock every capacity check of a target takes (its config row). Returns the
-- target's table max_concurrency (0 when disabled), or NULL for an unknown target.
create function conveyor.lock_dispatch_target(p_source text, p_target text) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_max int;
begin
  if p_source = 'queue' then
    select case when k.enabled then k.max_concurrency else 0 end into v_max
    from conveyor.job_kinds k where k.kind = p_target for no key update;
  elsif p_source = 'content' then
    select case when c.enabled then c.max_concurrency else 0 end into v_max
    from public.content_stage_config c where c.stage = p_target for no key update;
  end if;
  return v_max;
end
$$;

create function public.trigger_queue_worker(
  p_kind text,
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
    raise exception 'trigger_queue_worker: p_count must be between 0 and 100';
  end if;
  if p_max_concurrency is not null and p_max_concurrency < 0 then
    raise exception 'trigger_queue_worker: p_max_concurrency must not be negative';
  end if;
  return conveyor.trigger_queue_workers(p_kind, p_count, p_max_concurrency,
                                        coalesce(p_reason, 'manual'));
end
$$;
comment on function public.trigger_queue_worker(text, int, int, text) is
  'Starts up to p_count workers of a job kind over pg_net, within max_concurrency (p_max_concurrency overrides the table). Returns how many were started.';

-- ---------------------------------------------------------------------------------------
-- The worker side of an invocation. Queue workers call start_invocation before draining and
-- finish_invocation after. Content stage workers need not start: their first claim consumes
-- the invocation (claim_content_stage), which keeps the slot reserved until a lease holds it.
-- ---------------------------------------------------------------------------------------

-- true: run. false: do not (unknown id; a repeated delivery of an invocation that already
-- ran, since pg_net may re-send; or it expired before starting and no slot is free now).
create function public.start_invocation(p_invocation_id uuid, p_worker text) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_inv conveyor.worker_invocations;
  v_max int;
  v_busy int;
begin
  select * into v_inv from conveyor.worker_invocations i where i.id = p_invocation_id;
  if not found then
    return false;
  end if;
  -- Lock order everywhere: the target's config row, then invocation rows.
  v_max := conveyor.lock_dispatch_target(v_inv.source, v_inv.target);
  select * into v_inv from conveyor.worker_invocations i where i.id = p_invocation_id for update;
  if v_inv.started_at is not null then
    return false;
  end if;
  if not (v_inv.status = 'triggered' and v_inv.expires_at > v_now) and v_inv.source = 'queue' then
    -- It expired before starting: its slot was given back. Run only if one is free now.
    select count(*) into v_busy
    from conveyor.worker_invocations i
    where i.source = v_inv.source and i.target = v_inv.target and i.id <> v_inv.id
      and i.status <> 'finished' and i.expires_at > v_now;
    if v_busy + 1 > coalesce(v_max, 0) then
      return false;
    end if;
  end if;
  update conveyor.worker_invocations
  set status = 'running', started_at = v_now, finished_at = null, worker = p_worker,
      -- A queue worker's slot is a lease its heartbeats renew (conveyor.invocation_alive,
      -- 0053): a worker that dies gives it back within invocation_lease_sec.
      expires_at = v_now + make_interval(secs => conveyor.setting_int(
        case when v_inv.source = 'queue' then 'invocation_lease_sec' else 'invocation_run_sec' end))
  where id = p_invocation_id;
  return true;
end
$$;

-- Records the end of an invocation (its slot is free at once). A worker that stopped with
-- work left (summary stopped_by/stoppedBy = 'budget' or 'shutdown') asks for a successor
-- through the same capacity-checked trigger, with its own max_concurrency overrides
-- (summary.max_concurrency_overrides: {"<target>": n}; SQL never guesses a worker's env).
-- Unknown or already finished invocations are ignored.
create function public.finish_invocation(p_invocation_id uuid, p_summary jsonb) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_inv conveyor.worker_invocations;
  v_stop text := coalesce(p_summary ->> 'stopped_by', p_summary ->> 'stoppedBy');
  v_override int;
begin
  select * into v_inv from conveyor.worker_invocations i where i.id = p_invocation_id;
  if not found or v_inv.status = 'finished' then
    return;
  end if;
  perform conveyor.lock_dispatch_target(v_inv.source, v_inv.target);
  update conveyor.worker_invocations
  set status = 'finished', finished_at = v_now, summary = p_summary
  where id = p_invocation_id and status <> 'finished';
  if not found or v_stop is null or v_stop not in ('budget', 'shutdown')
     or not conveyor.push_enabled() then
    return;
  end if;
  begin
    if jsonb_typeof(p_summary -> 'max_concurrency_overrides' -> v_inv.target) = 'number' then
      v_override := (p_summary -> 'max_concurrency_overrides' ->> v_inv.target)::int;
    end if;
    perform conveyor.trigger_workers(v_inv.source, v_inv.target, 1, v_override, 'follow_up', v_now);
  exception when others then
    -- Never lose the finish over a follow-up: cron's dispatcher picks the work up.
    raise warning 'finish_invocation: no follow-up worker for % %: %', v_inv.source, v_inv.target, sqlerrm;
  end;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Calling the dispatcher and the dead-letter consumer: cron, and debounced kicks (on
-- enqueue, on a content stage ready, on a dead letter).
-- ---------------------------------------------------------------------------------------

-- POSTs to the dispatcher (URL and key from Vault). A kick asks for one re-check once the
-- debounce window has closed (work enqueued while a kick was suppressed); with pushes off,
-- a cron call asks the dispatcher to keep cycling while work is in flight, since pg_cron
-- 1.4.2 cannot fire more often than once a minute.
create function conveyor.invoke_dispatcher(p_source text, p_target text default null) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_body jsonb := jsonb_build_object('source', p_source);
begin
  if p_target is not null then
    v_body := v_body || jsonb_build_object('target', p_target);
  end if;
  if p_source = 'kick' then
    v_body := v_body || jsonb_build_object('recheck_ms', conveyor.setting_int('kick_debounce_ms') + 50);
  elsif p_source = 'cron' and not conveyor.push_enabled() then
    v_body := v_body || jsonb_build_object('sweep_ms', conveyor.setting_int('dispatcher_sweep_ms'));
  end if;
  return net.http_post(
    url := conveyor.endpoint_url(conveyor.setting_text('dispatcher_endpoint')),
    body := v_body,
    headers := conveyor.service_headers(),
    timeout_milliseconds := 10000);
end
$$;

-- POSTs {"async": true, "source"} to the dead-letter consumer, dlq-worker (URL and key from
-- Vault). q_dlq is not a job kind, so the dispatcher never starts it: a dead letter kicks it
-- directly (0061_dead_letters.sql), and a per-minute cron sweep is the safety net.
create function conveyor.invoke_dead_letter_worker(p_source text) returns bigint
language plpgsql
set search_path = ''
as $$
begin
  return net.http_post(
    url := conveyor.endpoint_url(conveyor.setting_text('dlq_worker_endpoint')),
    body := jsonb_build_object('async', true, 'source', p_source),
    headers := conveyor.service_headers(),
    timeout_milliseconds := conveyor.setting_int('worker_request_timeout_ms')::int);
end
$$;

-- One row per kick target ('queue:<kind>', 'content:<stage>', 'dlq'), pre-inserted, so a
-- kick is a plain UPDATE of an existing row.
create table conveyor.dispatch_kicks (
  target text primary key,
  last_kick_at timestamptz not null default '-infinity',
  kicks bigint not null default 0
);
comment on table conveyor.dispatch_kicks is
  'Debounce state of dispatcher kicks: one row per target, updated at most once per kick_debounce_ms.';
insert into conveyor.dispatch_kicks (target)
select 'queue:' || k.kind from conveyor.job_kinds k
on conflict (target) do nothing;
insert into conveyor.dispatch_kicks (target) values ('dlq') on conflict (target) do nothing;

-- Debounced kick: at most one call per target per kick_debounce_ms, sent by pg_net after
-- the caller commits: 'dlq' calls the dead-letter consumer, every other target the
-- dispatcher. It runs in every enqueue, so the common case is one plain read: inside the
-- window (nearly always, under load) it returns without a lock or a write. The first caller
-- after the window takes the row; SKIP LOCKED: while another transaction holds this
-- window's kick uncommitted, we do not wait for it (a long transaction that enqueued would
-- otherwise stall every other enqueue); its kick goes out at its commit. Never fails the
-- caller: without Vault secrets it warns and cron picks the work up.
create function conveyor.kick(p_target text) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_window interval;
  v_last timestamptz;
  v_push boolean;
  v_won boolean;
begin
  select coalesce(bool_and((s.value #>> '{}')::boolean) filter (where s.key = 'push_kicks'), true),
         make_interval(secs => coalesce(max((s.value #>> '{}')::numeric)
                                          filter (where s.key = 'kick_debounce_ms'), 250) / 1000.0),
         (select k.last_kick_at from conveyor.dispatch_kicks k where k.target = p_target)
  into v_push, v_window, v_last
  from conveyor.settings s where s.key in ('push_kicks', 'kick_debounce_ms');
  if not v_push or v_last >= v_now - v_window then
    return false;
  end if;
  with c as (
    select k.target from conveyor.dispatch_kicks k
    where k.target = p_target and k.last_kick_at < v_now - v_window
    for update skip locked
  )
  update conveyor.dispatch_kicks k
  set last_kick_at = v_now, kicks = k.kicks + 1
  from c
  where k.target = c.target;
  v_won := found;
  if not v_won and v_last is null then
    insert into conveyor.dispatch_kicks (target, last_kick_at, kicks) values (p_target, v_now, 1)
    on conflict (target) do nothing;
    v_won := found;
  end if;
  if not v_won then
    return false;
  end if;
  begin
    if p_target = 'dlq' then
      perform conveyor.invoke_dead_letter_worker('kick');
    else
      perform conveyor.invoke_dispatcher('kick', p_target);
    end if;
  exception when others then
    raise warning 'conveyor.kick: % not called (%); cron picks the work up',
      case when p_target = 'dlq' then 'dlq-worker' else 'the dispatcher' end, sqlerrm;
    return false;
  end;
  return true;
end
$$;

-- Retention of invocations: expired live rows are finished, finished rows older than
-- invocation_retention_hours deleted. Returns the number deleted.
create function conveyor.prune_invocations(p_now timestamptz default null) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_n int;
begin
  update conveyor.worker_invocations i
  set status = 'finished', finished_at = v_now,
      summary = coalesce(i.summary, '{}'::jsonb) || jsonb_build_object('expired', true, 'was', i.status)
  where i.status <> 'finished' and i.expires_at <= v_now;
  delete from conveyor.worker_invocations i
  where i.status = 'finished'
    and i.finished_at < v_now - make_interval(hours => conveyor.setting_int('invocation_retention_hours')::int);
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

revoke all on function conveyor.push_enabled(),
  conveyor.vault_secret(text), conveyor.endpoint_url(text), conveyor.service_headers(),
  conveyor.post_workers(text, text, text, int, text, timestamptz),
  conveyor.expire_invocations(text, text, timestamptz),
  conveyor.queue_ready_count(text, int),
  conveyor.trigger_queue_workers(text, int, int, text, timestamptz),
  conveyor.trigger_workers(text, text, int, int, text, timestamptz),
  conveyor.lock_dispatch_target(text, text),
  conveyor.invoke_dispatcher(text, text),
  conveyor.invoke_dead_letter_worker(text),
  conveyor.kick(text),
  conveyor.prune_invocations(timestamptz)
  from public;
revoke all on function public.trigger_queue_worker(text, int, int, text),
  public.start_invocation(uuid, text),
  public.finish_invocation(uuid, jsonb)
  from public, anon, authenticated;
grant execute on function public.trigger_queue_worker(text, int, int, text),
  public.start_invocation(uuid, text),
  public.finish_invocation(uuid, jsonb)
  to service_role;
