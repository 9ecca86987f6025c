-- A lost wakeup of the debounced dispatcher kicks, closed with a lock handshake (issue 16;
-- tools/bench/notes.md, item 16).
--
-- conveyor.kick debounces: inside kick_debounce_ms of the target's last winning kick it does
-- nothing and relies on the winner's dispatcher call, whose recheck (recheck_ms later) runs
-- one more cycle for the work enqueued meanwhile. That was a timing assumption: a suppressed
-- kick whose transaction commits after the recheck's backlog read (slow commit, lock wait, a
-- loaded machine, a client holding its transaction) was seen by no one, and its job waited
-- for the cron tick, forever with cron off (found in a benchmark run: content job 77,
-- enqueued 156 ms after job 76's winning kick, was started only by cron 106 s later).
--
-- Every winning kick opens a window, numbered by dispatch_kicks.kicks (the winner's count).
-- A kick that lands inside window n takes the shared transaction advisory lock of (target, n)
-- (conveyor.kick_lock_key, held to its commit), reads the row again in a new statement, and
-- is suppressed only if window n is still open; else it competes to win as before (or, if a
-- newer window opened meanwhile, takes that one's lock). A kick that loses the race to a
-- winner that has not committed takes the lock of the window that winner opens. The winner's
-- dispatcher call carries its window's number (conveyor.invoke_dispatcher), and its recheck
-- calls the new public.close_kick_window(target, n) before its backlog read: the exclusive
-- lock of (target, n) waits for every kick suppressed in window n, then the window is reset
-- (last_kick_at = -infinity) if it is still the target's newest, so any later kick wins and
-- makes its own call. The backlog read, a later transaction, sees every such job.
--
-- One lock per window, not per target: kicks suppressed in a newer window take another key,
-- so they never queue behind a recheck that waits for an older window's kicks. That wait is
-- bounded by the setting kick_close_wait_ms (10 s): a suppressed kick's transaction open for
-- longer is not waited for (close_kick_window returns false and the dispatcher logs it); its
-- job is seen by the dispatcher call of the next kick, which wins once the window is reset, or
-- by the cron tick. The fast path (no window open: the kick wins) takes no lock.
--
-- conveyor.kick, conveyor.invoke_dispatcher, conveyor.enqueue and public.queue_job are their
-- current definitions (supabase/schema.sql) with only that change. The last two made the
-- window check themselves, to skip the call of conveyor.kick inside a window; they now call
-- it whenever a job is due (and, in queue_job, push kicks are on), so that the handshake has
-- one definition.

insert into conveyor.settings (key, value, description) values
  ('kick_close_wait_ms', '10000',
   'the dispatcher''s recheck of a kick waits at most this long for the kicks its window suppressed to commit')
on conflict (key) do nothing;

-- The family of conveyor.hint_lock_key with its own prefix, so the keys never collide.
create or replace function conveyor.kick_lock_key(p_target text, p_window bigint) returns bigint
language sql immutable parallel safe
as $$
  select pg_catalog.hashtextextended(
    'conveyor.kick:' operator(pg_catalog.||) p_target operator(pg_catalog.||) '#'
    operator(pg_catalog.||) p_window::pg_catalog.text, 0)
$$;
revoke all on function conveyor.kick_lock_key(text, bigint) from public;

create or replace function conveyor.kick(p_target text) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_window interval;
  v_last timestamptz;
  v_n bigint;
  v_push boolean;
  v_won boolean := false;
  v_held bigint;
begin
  select coalesce(bool_and((s.value #>> '{}')::boolean) filter (where s.key = 'push_kicks'), true),
         make_interval(secs => coalesce(max((s.value #>> '{}')::numeric)
                                          filter (where s.key = 'kick_debounce_ms'), 250) / 1000.0),
         (select k.last_kick_at from conveyor.dispatch_kicks k where k.target = p_target),
         (select k.kicks from conveyor.dispatch_kicks k where k.target = p_target)
  into v_push, v_window, v_last, v_n
  from conveyor.settings s where s.key in ('push_kicks', 'kick_debounce_ms');
  if not v_push then
    return false;
  end if;
  -- v_held: the window whose shared kick lock this transaction holds. A kick returns false
  -- only holding the lock of the window it falls in, so that window's recheck
  -- (public.close_kick_window) waits for this transaction before it reads the backlog. Each
  -- round after the first needs another kick to have won meanwhile: a few at most.
  for i in 1 .. 4 loop
    if v_last >= v_now - v_window then
      -- Inside window v_n.
      if v_held = v_n then
        return false;
      end if;
      v_held := v_n;
    else
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
      exit when v_won;
      -- Lost to a winner that has not committed (its row is locked, or its insert is not
      -- seen): its window will be the next one.
      if v_held = coalesce(v_n, 0) + 1 then
        return false;
      end if;
      v_held := coalesce(v_n, 0) + 1;
    end if;
    perform pg_advisory_xact_lock_shared(conveyor.kick_lock_key(p_target, v_held));
    -- A new statement, so a new snapshot: a window closed or opened meanwhile is seen.
    v_now := clock_timestamp();
    select k.last_kick_at, k.kicks into v_last, v_n
    from conveyor.dispatch_kicks k where k.target = p_target;
  end loop;
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

-- A kick's call names its window, for the recheck's close_kick_window.
create or replace function conveyor.invoke_dispatcher(p_source text, p_target text default null)
returns bigint
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
    v_body := v_body || jsonb_build_object(
      'recheck_ms', conveyor.setting_int('kick_debounce_ms') + 50,
      'window', (select k.kicks from conveyor.dispatch_kicks k where k.target = p_target));
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

create or replace function conveyor.enqueue(p_tenant_id uuid, p_kind text, p_payload jsonb, p_idempotency_key text, p_priority text DEFAULT 'normal'::text, p_run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_headers jsonb DEFAULT NULL::jsonb, p_critical boolean DEFAULT false, p_dedupe_key text DEFAULT NULL::text, p_concurrency_key text DEFAULT NULL::text, p_concurrency_limit integer DEFAULT NULL::integer, p_source text DEFAULT 'queue_job'::text, p_fn text DEFAULT 'queue_job'::text) RETURNS TABLE(job_id uuid, msg_id bigint, created boolean)
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_queue text;
  v_job public.jobs;
  v_run_at timestamptz := coalesce(p_run_at, now());
  v_max_attempts int;
begin
  select case p_priority when 'fast' then k.queue_name || '_fast'
                         when 'bulk' then k.queue_name || '_bulk' else k.queue_name end
  into v_queue
  from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  -- ON CONFLICT waits for a concurrent holder of the same key to commit or roll back, so of
  -- N identical calls exactly one inserts and the others read its job (race-free at READ
  -- COMMITTED: the SELECT below is a statement of its own, with a snapshot that sees it).
  insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                           dedupe_key, max_attempts, payload, headers, run_at,
                           concurrency_key, concurrency_limit)
  values (p_tenant_id, nextval('conveyor.job_number_seq'), p_kind, v_queue, p_priority,
          p_idempotency_key, p_dedupe_key, v_max_attempts, p_payload, p_headers, v_run_at,
          p_concurrency_key, p_concurrency_limit)
  on conflict (tenant_id, idempotency_key) do nothing
  returning * into v_job;
  if v_job.id is null then
    select * into v_job from public.jobs j
    where j.tenant_id = p_tenant_id and j.idempotency_key = p_idempotency_key;
    perform conveyor.check_same_request(v_job, p_kind, p_payload, p_priority, p_headers,
                                        p_critical, p_concurrency_key, p_concurrency_limit, p_fn);
    return query select v_job.id, v_job.msg_id, false;
    return;
  end if;

  if p_dedupe_key is not null then
    -- ON CONFLICT again: a racing call with the same key waits, then sees it taken.
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (p_tenant_id, p_dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
        using errcode = '23505',
              hint = 'the key can be reused once that job has finished';
    end if;
  end if;

  perform conveyor.q_put(v_queue, v_job.msg_id, v_run_at,
                         conveyor.job_message(p_tenant_id, p_concurrency_key, p_concurrency_limit),
                         p_headers);
  -- conveyor.lower_hint and conveyor.count_jobs, written out: this runs for every job.
  perform pg_advisory_xact_lock_shared(conveyor.hint_lock_key(v_queue));
  update conveyor.queue_hints h set visible_from = v_run_at
  where h.queue_name = v_queue and h.visible_from > v_run_at;
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
  values (date_trunc('minute', now()), pg_backend_pid(), p_tenant_id, v_queue, 1)
  on conflict (minute, backend, tenant_id, queue_name) do update set enqueued = c.enqueued + 1;

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job.id, p_idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (p_tenant_id, p_idempotency_key, v_job.id);
  end if;
  if p_source = 'fn_pgqueuer_enqueue'
     or exists (select 1 from conveyor.settings s where s.key = 'audit' and s.value = '"full"') then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_job.id, p_tenant_id, 'enqueued', jsonb_strip_nulls(jsonb_build_object(
      'msg_id', v_job.msg_id, 'queue', v_queue, 'priority', p_priority,
      'run_at', v_run_at, 'source', p_source, 'critical', p_critical,
      'concurrency_key', p_concurrency_key)));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now.
  -- Inside another kick's window, conveyor.kick takes that window's shared kick lock, so the
  -- window's recheck waits for this transaction.
  if v_run_at <= now() then
    perform conveyor.kick('queue:' || p_kind);
  end if;

  return query select v_job.id, v_job.msg_id, true;
end
$$;

create or replace function public.queue_job(jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  c_fn constant text := 'queue_job';
  v conveyor.queue_job_item;
  v_tenant uuid;
  v_max_attempts int;
  v_settings jsonb;
  v_id uuid;
  v_msg bigint;
  v_job public.jobs;
  v_void text;
begin
  -- Every setting this call reads, in one statement (one aggregate: each one more is work at
  -- every executor start).
  select jsonb_object_agg(s.key, s.value) into v_settings
  from conveyor.settings s
  where s.key in ('payload_max_bytes', 'max_delay_sec', 'critical_max_attempts', 'audit',
                  'push_kicks');
  v := conveyor.parse_queue_job($1, (v_settings ->> 'payload_max_bytes')::bigint,
                                (v_settings ->> 'max_delay_sec')::bigint);

  -- The tenant: the token's (conveyor.queue_job_tenant).
  v_tenant := conveyor.resolve_tenant(v.tenant_id, c_fn);
  if v.critical then
    v_max_attempts := (v_settings ->> 'critical_max_attempts')::int;
  end if;

  -- conveyor.enqueue's work for one queue_job call. ON CONFLICT waits for a concurrent
  -- holder of the same key to commit or roll back, so of N identical calls exactly one
  -- inserts and the others read its job (race-free at READ COMMITTED: the SELECT below is a
  -- statement of its own, with a snapshot that sees it).
  insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                           max_attempts, payload, headers, run_at, concurrency_key,
                           concurrency_limit)
  select v_tenant, nextval('conveyor.job_number_seq'), v.kind, v.queue_name, v.priority,
         v.idempotency_key, v_max_attempts, v.payload, v.headers, v.run_at, v.concurrency_key,
         v.concurrency_limit
  from public.tenants t where t.id = v_tenant
  on conflict (tenant_id, idempotency_key) do nothing
  returning id, msg_id into v_id, v_msg;
  if v_id is null then
    select * into v_job from public.jobs j
    where j.tenant_id = v_tenant and j.idempotency_key = v.idempotency_key;
    -- No row from public.tenants: the check conveyor.queue_job_tenant makes, after the fact
    -- (a tenant's jobs keep it from being deleted, so a job found means the tenant exists).
    if v_job.id is null and not exists (select 1 from public.tenants t where t.id = v_tenant) then
      raise exception 'queue_job: unknown tenant %', v_tenant;
    end if;
    perform conveyor.check_same_request(v_job, v.kind, v.payload, v.priority, v.headers,
                                        v.critical, v.concurrency_key, v.concurrency_limit, c_fn);
    return v_job.msg_id;
  end if;

  -- Assignments, not PERFORM: a void call as an expression skips an executor pass.
  v_void := conveyor.q_put(v.queue_name, v_msg, v.run_at,
                           conveyor.job_message(v_tenant, v.concurrency_key, v.concurrency_limit),
                           v.headers);
  -- conveyor.lower_hint, written out.
  v_void := pg_advisory_xact_lock_shared(conveyor.hint_lock_key(v.queue_name));
  -- With conveyor.count_jobs in the same statement, UPDATE first (this backend's row for the
  -- minute is there but for the first job of a minute).
  with h as (
    update conveyor.queue_hints h set visible_from = v.run_at
    where h.queue_name = v.queue_name and h.visible_from > v.run_at
  )
  update conveyor.job_counts c set enqueued = c.enqueued + 1
  where c.minute = date_trunc('minute', now()) and c.backend = pg_backend_pid()
    and c.tenant_id = v_tenant and c.queue_name = v.queue_name;
  if not found then
    insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
    values (date_trunc('minute', now()), pg_backend_pid(), v_tenant, v.queue_name, 1)
    on conflict (minute, backend, tenant_id, queue_name) do update set enqueued = c.enqueued + 1;
  end if;

  if v.critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (v_tenant, v_id, v.idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (v_tenant, v.idempotency_key, v_id);
  end if;
  if v_settings ->> 'audit' = 'full' then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_id, v_tenant, 'enqueued', jsonb_strip_nulls(jsonb_build_object(
      'msg_id', v_msg, 'queue', v.queue_name, 'priority', v.priority,
      'run_at', v.run_at, 'source', c_fn, 'critical', v.critical,
      'concurrency_key', v.concurrency_key)));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now,
  -- unless push kicks are off (conveyor.kick would do nothing). Inside another kick's window,
  -- conveyor.kick takes that window's shared kick lock, so the window's recheck waits for
  -- this transaction.
  if v.run_at <= now() and coalesce((v_settings ->> 'push_kicks')::boolean, true) then
    perform conveyor.kick('queue:' || v.kind);
  end if;
  return v_msg;
end
$_$;

-- Called by the dispatcher's recheck of a kick, before its backlog read. True when every kick
-- the window suppressed had committed or rolled back by then.
create or replace function public.close_kick_window(p_target text, p_window bigint default null)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_n bigint;
  v_lock_timeout text := current_setting('lock_timeout');
  v_waited boolean := true;
begin
  if p_target is null or btrim(p_target) = '' then
    raise exception 'close_kick_window: target must not be blank';
  end if;
  select k.kicks into v_n from conveyor.dispatch_kicks k where k.target = p_target;
  if not found then
    raise exception 'close_kick_window: unknown target %', p_target;
  end if;
  if p_window is not null and (p_window < 1 or p_window > v_n) then
    raise exception 'close_kick_window: no window % of %', p_window, p_target
      using hint = format('its windows are numbered 1 to %s (the target''s kicks)', v_n);
  end if;
  -- From here v_n is the window to close.
  v_n := coalesce(p_window, v_n);
  -- The kicks suppressed in the window hold its shared lock until they commit. Kicks of newer
  -- windows take other keys, so they do not queue behind this wait.
  perform set_config('lock_timeout', conveyor.setting_int('kick_close_wait_ms') || 'ms', true);
  begin
    perform pg_advisory_xact_lock(conveyor.kick_lock_key(p_target, v_n));
  exception when lock_not_available then
    v_waited := false;
  end;
  perform set_config('lock_timeout', v_lock_timeout, true);
  -- Reset only the target's newest window (a newer one is closed by its own recheck); SKIP
  -- LOCKED: a row locked here belongs to a winner that has not committed, whose window is
  -- the next one.
  update conveyor.dispatch_kicks k set last_kick_at = '-infinity'
  from (select k2.target from conveyor.dispatch_kicks k2
        where k2.target = p_target and k2.kicks = v_n
        for update skip locked) c
  where k.target = c.target;
  return v_waited;
end
$$;
comment on function public.close_kick_window(text, bigint) is
  'Closes a kick debounce window of a dispatch target (e.g. content:research, queue:<kind>; the window: the winning kick''s number, default the newest) once every kick it suppressed has committed (waiting at most kick_close_wait_ms; false if it stopped waiting), so the dispatcher''s recheck sees their work.';
revoke all on function public.close_kick_window(text, bigint) from public, anon, authenticated;
grant execute on function public.close_kick_window(text, bigint) to service_role;
