-- A lost wakeup of the debounced dispatcher kicks, closed with a lock handshake.
--
-- conveyor.kick debounces: inside kick_debounce_ms of the target's last winning kick it does
-- nothing and relies on the winner's dispatcher call, whose recheck (recheck_ms later) runs
-- one more cycle for the work enqueued meanwhile. That was a timing assumption: a suppressed
-- kick whose transaction commits after the recheck's backlog read (slow commit, lock wait, a
-- loaded machine, a client holding its transaction) was seen by no one, and its job waited
-- for the cron tick, forever with cron off (found in a benchmark run: content job 77,
-- enqueued 140 ms after job 76's winning kick, was started only by cron 100 s later).
--
-- Now a kick that would be suppressed (or loses the race to a concurrent winner) first takes
-- the target's shared transaction advisory lock (conveyor.kick_lock_key, held to its commit),
-- then reads last_kick_at again in a new statement, and is suppressed only if a window is
-- still open; else it competes to win as before. The dispatcher's recheck calls the new
-- public.close_kick_window(target) before its backlog read: the exclusive lock on the same
-- key waits for every suppressed kick of the target in flight, and last_kick_at is reset so
-- any later kick wins and makes its own call. The recheck's backlog read, a later
-- transaction, sees every job whose kick was suppressed. The fast path (window closed: the
-- kick wins) takes no lock.
--
-- conveyor.kick, conveyor.enqueue and public.queue_job are their current definitions
-- (supabase/schema.sql) with only that change; the last two made the kick's window check
-- themselves and now take the shared lock and check again when it finds the window open.

-- The family of conveyor.hint_lock_key with its own prefix, so the keys never collide.
create or replace function conveyor.kick_lock_key(p_target text) returns bigint
language sql immutable parallel safe
as $$ select pg_catalog.hashtextextended('conveyor.kick:' operator(pg_catalog.||) p_target, 0) $$;
revoke all on function conveyor.kick_lock_key(text) from public;

create or replace function conveyor.kick(p_target text) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_window interval;
  v_last timestamptz;
  v_push boolean;
  v_won boolean;
  v_locked boolean := false;
begin
  select coalesce(bool_and((s.value #>> '{}')::boolean) filter (where s.key = 'push_kicks'), true),
         make_interval(secs => coalesce(max((s.value #>> '{}')::numeric)
                                          filter (where s.key = 'kick_debounce_ms'), 250) / 1000.0),
         (select k.last_kick_at from conveyor.dispatch_kicks k where k.target = p_target)
  into v_push, v_window, v_last
  from conveyor.settings s where s.key in ('push_kicks', 'kick_debounce_ms');
  if not v_push then
    return false;
  end if;
  -- At most two rounds: the second under the target's shared kick lock. A kick returns false
  -- only holding it, so the recheck of the window's winner (public.close_kick_window) waits
  -- for this transaction before it reads the backlog.
  loop
    if v_last >= v_now - v_window then
      -- Another kick's window is open.
      if v_locked then
        return false;
      end if;
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
      -- Lost to a concurrent winner: under the lock, its row is still locked (it has not
      -- committed, so its recheck comes after this commit) or its window is open.
      if v_locked then
        return false;
      end if;
    end if;
    perform pg_advisory_xact_lock_shared(conveyor.kick_lock_key(p_target));
    v_locked := true;
    -- A new statement, so a new snapshot: a window closed meanwhile is seen.
    v_now := clock_timestamp();
    select k.last_kick_at into v_last from conveyor.dispatch_kicks k where k.target = p_target;
  end loop;
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
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now;
  -- its first check is made here, so a kick inside the debounce window costs one read, then
  -- (conveyor.kick's handshake) the target's shared kick lock and a second read.
  if v_run_at <= now() then
    if not exists (
      select 1 from conveyor.dispatch_kicks k
      where k.target = 'queue:' || p_kind
        and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
          (select (s.value #>> '{}')::numeric from conveyor.settings s where s.key = 'kick_debounce_ms'),
          250) / 1000.0)) then
      perform conveyor.kick('queue:' || p_kind);
    else
      perform pg_advisory_xact_lock_shared(conveyor.kick_lock_key('queue:' || p_kind));
      if not exists (
        select 1 from conveyor.dispatch_kicks k
        where k.target = 'queue:' || p_kind
          and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
            (select (s.value #>> '{}')::numeric from conveyor.settings s where s.key = 'kick_debounce_ms'),
            250) / 1000.0)) then
        perform conveyor.kick('queue:' || p_kind);
      end if;
    end if;
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
                  'push_kicks', 'kick_debounce_ms');
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
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now;
  -- its first check is made here, so a kick inside the debounce window costs one read, then
  -- (conveyor.kick's handshake) the target's shared kick lock and a second read, and none
  -- when push kicks are off (conveyor.kick would do nothing).
  if v.run_at <= now() and coalesce((v_settings ->> 'push_kicks')::boolean, true) then
    if not exists (
      select 1 from conveyor.dispatch_kicks k
      where k.target = 'queue:' || v.kind
        and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
          (v_settings ->> 'kick_debounce_ms')::numeric, 250) / 1000.0)) then
      perform conveyor.kick('queue:' || v.kind);
    else
      v_void := pg_advisory_xact_lock_shared(conveyor.kick_lock_key('queue:' || v.kind));
      if not exists (
        select 1 from conveyor.dispatch_kicks k
        where k.target = 'queue:' || v.kind
          and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
            (v_settings ->> 'kick_debounce_ms')::numeric, 250) / 1000.0)) then
        perform conveyor.kick('queue:' || v.kind);
      end if;
    end if;
  end if;
  return v_msg;
end
$_$;

-- Called by the dispatcher's recheck of a kick, before its backlog read.
create or replace function public.close_kick_window(p_target text) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_target is null or btrim(p_target) = '' then
    raise exception 'close_kick_window: target must not be blank';
  end if;
  if not exists (select 1 from conveyor.dispatch_kicks k where k.target = p_target) then
    raise exception 'close_kick_window: unknown target %', p_target;
  end if;
  -- Waits for every kick of the target that was suppressed (they hold the shared lock to
  -- their commit); kicks that come for the lock meanwhile wait too, then see the window
  -- closed.
  perform pg_advisory_xact_lock(conveyor.kick_lock_key(p_target));
  -- SKIP LOCKED: a row locked here belongs to a winner that has not committed; its window is
  -- its own, and its own recheck closes it.
  update conveyor.dispatch_kicks k set last_kick_at = '-infinity'
  from (select k2.target from conveyor.dispatch_kicks k2
        where k2.target = p_target for update skip locked) c
  where k.target = c.target;
end
$$;
comment on function public.close_kick_window(text) is
  'Closes the kick debounce window of a dispatch target (e.g. content:research, queue:<kind>) after every kick it suppressed has committed, so the dispatcher''s recheck sees their work.';
revoke all on function public.close_kick_window(text) from public, anon, authenticated;
grant execute on function public.close_kick_window(text) to service_role;
