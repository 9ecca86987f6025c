-- Consuming the job queues (seed 002 on pgmq): claim, settle (complete / fail / snooze /
-- cancel), extend, release, redrive, and the rescue of lost jobs. Each is ONE SQL call in one
-- transaction, batch-shaped so a worker makes one round trip per batch, not per message.
-- Called by the worker runtime (service_role) through PostgREST RPC.
--
-- Leases: a claim gives every job a fresh lease_id and locked_until (= the message's vt).
-- A settle is accepted only with the current lease_id while the lease is live; anything
-- else (expired visibility, another worker re-claimed it) is refused and recorded as a
-- `settle_refused` event: the double-processing guard.
--
-- What a healthy job costs here (issue 16): the claim reads its message (pgmq's read, through
-- the per-queue statement of 0052) and updates its ledger row; the settle updates the row
-- again and deletes the message (the ledger is the record; archive_completed keeps it in
-- pgmq's archive instead). Both ledger updates are HOT (0011_tenant_tables.sql). Claim and
-- success write no job_events row unless the 'audit' setting is 'full'; retries, failures,
-- dead letters, snoozes, lost leases and refused settles always do. Counters per minute go to
-- conveyor.job_counts, one row per batch.
--
-- Order: each function after the ones it calls.
--   rate limits        service_leases, take_rate_limit, read_queue (a rate-limited kind's read)
--   slots              invocation_alive (the worker invocation's heartbeat)
--   failing for good   backoff_ms, release_job_holds, dead_letter, dispose_unclaimed
--   the rescue tick    maintenance_runs, rescue_lost_jobs (pg_cron, every minute)
--   claim and settle   claim, claim_jobs, complete_jobs, settle_jobs, complete_job, fail_job,
--                      settle_and_claim_jobs
--   the rest           extend_jobs, release_jobs, redrive_dead_job, queue_next_due_at

-- The row a claim hands to a worker.
create type conveyor.claimed_job as (
  job_id uuid,
  lease_id uuid,
  kind text,
  queue_name text,
  msg_id bigint,
  tenant_id uuid,
  priority text,
  attempt int,
  max_attempts int,
  payload jsonb,
  headers jsonb,
  enqueued_at timestamptz,
  locked_until timestamptz
);

-- ---------------------------------------------------------------------------------------
-- Rate limits
-- ---------------------------------------------------------------------------------------

-- Live leases of jobs whose kind calls a rate-limited service: the busy slots of
-- rate_limiters.max_concurrent. Written only for those jobs (claim in; settle, release and
-- dead-letter out; extend moves expires_at), so the ledger needs no index on live jobs. A
-- crashed worker's slot comes back when its lease expires.
create table conveyor.service_leases (
  job_id uuid primary key references public.jobs (id) on delete cascade,
  tenant_id uuid not null,
  service_name text not null,
  expires_at timestamptz not null
);
create index service_leases_tenant_service_idx on conveyor.service_leases (tenant_id, service_name);

-- Takes tokens and concurrency slots for up to p_want jobs of one tenant and service.
-- Returns how many were granted. The limiter row lock serialises concurrent claimers of
-- the same bucket, so slots and tokens can never be over-granted.
create function conveyor.take_rate_limit(
  p_tenant_id uuid,
  p_service text,
  p_want int,
  p_now timestamptz
) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_lim public.rate_limiters;
  v_tokens numeric;
  v_busy int;
  v_grant int;
begin
  select * into v_lim from public.rate_limiters r
  where r.tenant_id = p_tenant_id and r.service_name = p_service
  for update;
  if not found then
    return p_want; -- no bucket configured for this tenant: not limited
  end if;
  v_tokens := least(v_lim.capacity, v_lim.tokens_available
    + v_lim.refill_per_sec * greatest(0, extract(epoch from p_now - v_lim.refilled_at)));
  select count(*) into v_busy
  from conveyor.service_leases l
  where l.tenant_id = p_tenant_id and l.service_name = p_service and l.expires_at > p_now;
  v_grant := greatest(0, least(p_want, floor(v_tokens)::int, v_lim.max_concurrent - v_busy));
  update public.rate_limiters r
  set tokens_available = v_tokens - v_grant,
      refilled_at = greatest(p_now, r.refilled_at)
  where r.tenant_id = p_tenant_id and r.service_name = p_service;
  return v_grant;
end
$$;

-- A rate-limited kind's read: locks up to p_qty visible messages of one pgmq queue and makes
-- invisible, for p_vt seconds, only those whose tenant gets a token and a slot; the rest stay
-- visible with read_ct unchanged, which pgmq.read cannot do (it makes every row it returns
-- invisible). Candidates are locked as pgmq.read locks them (FOR UPDATE SKIP LOCKED) on
-- pgmq 1.5.1's documented table layout. When it holds visible messages back it sets the
-- transaction-local conveyor.throttled, so the worker comes back soon instead of stopping.
--
-- Limiter rows are locked in one global order, so concurrent claimers cannot deadlock. The
-- claim calls this once per priority tier in one transaction; locking each tenant's row as
-- its messages came up would let two claimers that met tenants A and B in opposite orders
-- each hold one row and wait for the other's (tests/rate_limiters_test.ts: 8 claimers, two
-- tenants, two tiers). So the first call of a transaction locks every limiter row it needs
-- at once, sorted by tenant_id; a later call (the next tier), which already holds rows,
-- never waits: it takes the rows it can with SKIP LOCKED, and a tenant whose bucket another
-- claimer is serving gets nothing from this claim (its messages stay visible for that
-- claimer or the next call). The marker is the transaction-local setting
-- conveyor.limiter_locks_held, which only this function sets.
create function conveyor.read_queue(
  p_queue text,
  p_vt int,
  p_qty int,
  p_service text,
  p_now timestamptz
) returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
declare
  v_msg_ids bigint[] := '{}';
  v_msg_tenants uuid[] := '{}';
  v_tenants uuid[];
  v_limited uuid[];
  v_locked uuid[];
  v_tenant uuid;
  v_group bigint[];
  v_ids bigint[] := '{}';
  v_granted int;
begin
  if p_qty <= 0 then
    return;
  end if;

  -- Candidates: visible messages, locked as pgmq.read locks them (SKIP LOCKED), in a
  -- window larger than the batch so one throttled tenant at the head does not starve the
  -- others behind it. pgmq 1.5.1's documented table layout (msg_id, read_ct, vt, message).
  execute format(
    $q$select coalesce(array_agg(c.msg_id order by c.msg_id), '{}'),
              coalesce(array_agg((c.message ->> 'tenant_id')::uuid order by c.msg_id), '{}')
       from (select msg_id, message from pgmq.%I
             where vt <= clock_timestamp()
             order by msg_id
             limit $1
             for update skip locked) c$q$, 'q_' || p_queue)
    into v_msg_ids, v_msg_tenants
    using p_qty * 4 + 10;
  if cardinality(v_msg_ids) = 0 then
    return;
  end if;

  select array_agg(distinct t order by t) into v_tenants from unnest(v_msg_tenants) as t;
  select coalesce(array_agg(r.tenant_id), '{}') into v_limited
  from public.rate_limiters r
  where r.service_name = p_service and r.tenant_id = any (v_tenants);

  if coalesce(current_setting('conveyor.limiter_locks_held', true), '') = '' then
    -- Holding no limiter row yet: wait for them, in tenant_id order.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update) l;
  else
    -- Already holding some (an earlier tier of this claim): never wait while holding.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update skip locked) l;
  end if;
  if cardinality(v_locked) > 0 then
    perform set_config('conveyor.limiter_locks_held', 'on', true);
  end if;

  -- Grants, tenant by tenant in the order of their oldest candidate.
  for v_tenant, v_group in
    select m.tenant, array_agg(m.id order by m.id)
    from unnest(v_msg_ids, v_msg_tenants) as m(id, tenant)
    group by m.tenant
    order by min(m.id)
  loop
    exit when cardinality(v_ids) >= p_qty;
    if v_tenant = any (v_limited) and not (v_tenant = any (v_locked)) then
      continue; -- its bucket is being served by another claimer right now
    end if;
    -- take_rate_limit's own FOR UPDATE finds the row already locked by us: no wait.
    -- A tenant without a bucket for this service is not limited (it returns p_want).
    v_granted := conveyor.take_rate_limit(v_tenant, p_service,
      least(cardinality(v_group), p_qty - cardinality(v_ids)), p_now);
    if v_granted > 0 then
      v_ids := v_ids || v_group[1:v_granted];
    end if;
  end loop;
  if cardinality(v_ids) < least(p_qty, cardinality(v_msg_ids)) then
    perform set_config('conveyor.throttled', 'on', true);
  end if;
  if cardinality(v_ids) = 0 then
    return;
  end if;
  return query execute format(
    $q$update pgmq.%I q
       set vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
       where q.msg_id = any($1)
       returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$q$,
    'q_' || p_queue) using v_ids, p_vt;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Slots: a worker invocation's heartbeat
-- ---------------------------------------------------------------------------------------

-- True while the invocation may go on claiming. A running queue worker holds its dispatch
-- slot for invocation_lease_sec past its last heartbeat (its claims and extends beat): a
-- worker that stops heart-beating (killed, out of memory, recycled by the platform) gives the
-- slot back within that time, and a worker whose invocation lapsed may not claim again, so
-- max_concurrency holds either way. Writes at most once per half lease; most calls only read.
create function conveyor.invocation_alive(p_invocation uuid, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_expires timestamptz;
  v_lease int;
begin
  select i.expires_at into v_expires from conveyor.worker_invocations i
  where i.id = p_invocation and i.status = 'running';
  if v_expires is null or v_expires <= p_now then
    return false;
  end if;
  v_lease := conveyor.setting_int('invocation_lease_sec')::int;
  if v_expires < p_now + make_interval(secs => v_lease / 2.0) then
    update conveyor.worker_invocations i
    set expires_at = p_now + make_interval(secs => v_lease)
    where i.id = p_invocation and i.status = 'running' and i.expires_at > p_now;
  end if;
  return true;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Failing for good
-- ---------------------------------------------------------------------------------------

-- Exponential backoff in milliseconds for the attempt that just failed (1-based).
create function conveyor.backoff_ms(p_attempt int, p_base_ms bigint, p_max_ms bigint)
returns bigint
language sql immutable
set search_path = ''
as $$
  select least(p_max_ms, (p_base_ms * power(2::numeric, greatest(p_attempt - 1, 0)))::numeric)::bigint
$$;

-- What a job no longer running gives back: its dedupe key (when finished) and its service slot.
create function conveyor.release_job_holds(p_job_ids uuid[], p_finished boolean) returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_finished then
    delete from conveyor.dedupe_keys d where d.job_id = any (p_job_ids);
  end if;
  delete from conveyor.service_leases l where l.job_id = any (p_job_ids);
end
$$;

-- Moves a job to the dead-letter queue: archive its message (redrive_dead_job moves it back),
-- send a copy to q_dlq, record dead_letter_jobs, mark it failed. (What happens to dead
-- letters next: 0061_dead_letters.sql.)
create function conveyor.dead_letter(
  p_job public.jobs,
  p_reason text,
  p_errors jsonb,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_dlq_msg bigint;
begin
  perform pgmq.archive(p_job.queue_name, p_job.msg_id);
  select m into v_dlq_msg from pgmq.send(
    queue_name => conveyor.dlq_name(),
    msg => jsonb_build_object('job_id', p_job.id, 'msg_id', p_job.msg_id,
                              'tenant_id', p_job.tenant_id, 'kind', p_job.kind,
                              'reason', p_reason, 'attempts', p_job.attempts,
                              'payload', p_job.payload),
    headers => p_job.headers
  ) as m;
  insert into public.dead_letter_jobs (tenant_id, job_id, kind, queue_name, payload, reason,
                                       errors, attempts, dlq_msg_id)
  values (p_job.tenant_id, p_job.id, p_job.kind, p_job.queue_name, p_job.payload, p_reason,
          p_errors, p_job.attempts, v_dlq_msg);
  update public.jobs
  set status = 'failed', finished_at = p_now, updated_at = p_now, lease_id = null,
      locked_by = null, locked_until = null, last_error = p_reason, errors = p_errors
  where id = p_job.id;
  perform conveyor.release_job_holds(array[p_job.id], true);
  perform conveyor.count_jobs(p_job.tenant_id, p_job.queue_name, p_now, p_failed => 1);
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (p_job.id, p_job.tenant_id, 'dead_lettered',
          jsonb_build_object('reason', p_reason, 'attempts', p_job.attempts,
                             'dlq_msg_id', v_dlq_msg));
end
$$;

-- Sends a message that no job is numbered by (sent to a Conveyor queue with pgmq.send, not
-- queue_job) to q_dlq with the reason, and archives it: it never runs, and never wakes a
-- worker again. The dead-letter consumer reports it like any dead letter.
create function conveyor.dead_letter_orphan(p_queue text, p_msg pgmq.message_record) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pgmq.send(conveyor.dlq_name(), jsonb_build_object(
    'reason', format('orphan message: no job numbered %s in the ledger (queue %s)',
                     p_msg.msg_id, p_queue),
    'kind', p_msg.message ->> 'kind', 'tenant_id', p_msg.message ->> 'tenant_id',
    'queue', p_queue, 'msg_id', p_msg.msg_id, 'message', p_msg.message));
  perform pgmq.archive(p_queue, p_msg.msg_id);
end
$$;

-- Messages a claim read but did not claim: an orphan (no job has that number) goes to the
-- DLQ; a job whose last allowed attempt was lost (its lease expired without a settle) is
-- dead-lettered instead of running again; a finished job's leftover message is deleted;
-- anything else (a settle raced the read) is made visible again at once.
create function conveyor.dispose_unclaimed(
  p_queue text,
  p_msgs pgmq.message_record[],
  p_max int,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_m pgmq.message_record;
  v_job public.jobs;
  v_limit int;
begin
  foreach v_m in array p_msgs loop
    select * into v_job from public.jobs j where j.msg_id = v_m.msg_id for update;
    if not found then
      perform conveyor.dead_letter_orphan(p_queue, v_m);
    elsif v_job.status in ('completed', 'failed') then
      perform pgmq.delete(p_queue, v_m.msg_id);
    else
      select coalesce(v_job.max_attempts, q.max_attempts, p_max) into v_limit
      from (select 1) one
      left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;
      if v_job.attempts >= v_limit then
        perform conveyor.dead_letter(
          v_job,
          format('worker lost: the lease of attempt %s expired without a settle', v_job.attempts),
          v_job.errors || jsonb_build_array(jsonb_build_object(
            'message', 'lease expired without a settle (worker lost)',
            'stack', null, 'attempt', v_job.attempts, 'at', p_now)),
          p_now);
      else
        perform pgmq.set_vt(p_queue, v_m.msg_id, 0);
      end if;
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The rescue tick
-- ---------------------------------------------------------------------------------------

create table conveyor.maintenance_runs (
  task text primary key,
  last_run_at timestamptz not null
);
comment on table conveyor.maintenance_runs is 'When each maintenance task last ran (the rescue tick reads its own).';

-- Lost jobs and orphan messages, found without any claim running (pg_cron, every minute):
-- the messages that became visible since the previous tick (minus a minute of margin) are
-- checked against the ledger, through pgmq's vt index, so a tick costs what arrived since
-- the last one, never a scan of the ledger.
--   * a job whose lease expired without a settle (its worker was lost) goes back to pending,
--     the loss recorded in its errors and a 'lease_expired' event (its message is visible:
--     the next claim runs it); on its last attempt it is dead-lettered instead;
--   * an orphan (no job has that number) goes to q_dlq with the reason and is archived.
-- Claims do the same for what they read (dispose_unclaimed), so a lost job never runs past
-- its attempts whichever comes first. Locks are taken with SKIP LOCKED, message first, then
-- job, as a claim takes them: what a claim is busy with is left to it. The attempts limit
-- here is the setting max_attempts (a tick cannot know a worker's QUEUE_MAX_ATTEMPTS), or
-- the job's or its tenant queue's own.
create function conveyor.rescue_lost_jobs(p_now timestamptz default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_since timestamptz;
  v_max int := conveyor.setting_int('max_attempts')::int;
  v_queue text;
  v_m pgmq.message_record;
  v_job public.jobs;
  v_limit int;
  v_lost int := 0;
  v_dead int := 0;
  v_orphans int := 0;
begin
  select r.last_run_at - interval '1 minute' into v_since
  from conveyor.maintenance_runs r where r.task = 'rescue' for update;
  v_since := coalesce(v_since, '-infinity');
  for v_queue in
    select h.queue_name from conveyor.queue_hints h
    where to_regclass(format('pgmq.%I', 'q_' || h.queue_name)) is not null
  loop
    for v_m in execute format(
      $q$select q.* from pgmq.%I q
         where q.vt <= $1 and q.vt > $2
           and (q.read_ct > 0 or not exists (select 1 from public.jobs j where j.msg_id = q.msg_id))
         order by q.vt
         limit 1000
         for update skip locked$q$, 'q_' || v_queue) using v_now, v_since
    loop
      select * into v_job from public.jobs j where j.msg_id = v_m.msg_id for update skip locked;
      if not found then
        if not exists (select 1 from public.jobs j where j.msg_id = v_m.msg_id) then
          perform conveyor.dead_letter_orphan(v_queue, v_m);
          v_orphans := v_orphans + 1;
        end if;
        continue;
      end if;
      continue when v_job.status <> 'processing' or v_job.locked_until > v_now;
      select coalesce(v_job.max_attempts, q.max_attempts, v_max) into v_limit
      from (select 1) one
      left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;
      if v_job.attempts >= v_limit then
        perform conveyor.dead_letter(
          v_job,
          format('worker lost: the lease of attempt %s expired without a settle', v_job.attempts),
          v_job.errors || jsonb_build_array(jsonb_build_object(
            'message', 'lease expired without a settle (worker lost)',
            'stack', null, 'attempt', v_job.attempts, 'at', v_now)),
          v_now);
        v_dead := v_dead + 1;
      else
        update public.jobs
        set status = 'pending', lease_id = null, locked_by = null, locked_until = null,
            updated_at = v_now, last_error = 'lease expired without a settle (worker lost)',
            errors = v_job.errors || jsonb_build_array(jsonb_build_object(
              'message', 'lease expired without a settle (worker lost)',
              'stack', null, 'attempt', v_job.attempts, 'at', v_now))
        where id = v_job.id;
        perform conveyor.release_job_holds(array[v_job.id], false);
        insert into public.job_events (job_id, tenant_id, type, payload)
        values (v_job.id, v_job.tenant_id, 'lease_expired', jsonb_build_object(
          'attempt', v_job.attempts, 'worker', v_job.locked_by));
        v_lost := v_lost + 1;
      end if;
    end loop;
  end loop;
  insert into conveyor.maintenance_runs (task, last_run_at) values ('rescue', v_now)
  on conflict (task) do update set last_run_at = excluded.last_run_at;
  return jsonb_build_object('lost', v_lost, 'dead_lettered', v_dead, 'orphans', v_orphans);
end
$$;

-- Every minute, where pg_cron exists (only in cron.database_name). cron.schedule upserts by
-- name, so re-running this file is harmless.
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-rescue', '* * * * *', 'select conveyor.rescue_lost_jobs()');
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Claim and settle
-- ---------------------------------------------------------------------------------------

-- Raises the hints of the tiers a claim found empty (0050's protocol): when each can next
-- hold a visible message. Called as the LAST thing a claiming transaction does
-- (settle_and_claim_jobs, claim_jobs): the EXCLUSIVE lock it takes is held to commit, so a
-- writer that makes a message visible waits for this commit and then sees the raised hint
-- (and lowers it), and holding it costs nothing, since nothing is waited for after it. Taken
-- earlier, a claim that then settled a retry (a shared lock on another queue) could wait on a
-- second claim doing the same the other way round ("deadlock detected" on the advisory
-- locks, seen under 4 concurrent workers). A try-lock, and a row update that skips a locked
-- row: this never waits.
create function conveyor.raise_hints() returns void
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_next timestamptz;
begin
  foreach v_queue in array coalesce(string_to_array(
    nullif(current_setting('conveyor.empty_tiers', true), ''), ','), '{}') loop
    continue when not pg_try_advisory_xact_lock(conveyor.hint_lock_key(v_queue));
    -- A statement of its own: its snapshot is taken with the lock held.
    execute format('select min(vt) from pgmq.%I', 'q_' || v_queue) into v_next;
    v_next := coalesce(v_next, 'infinity');
    if v_next > clock_timestamp() then
      update conveyor.queue_hints h set visible_from = v_next
      where h.queue_name = v_queue and h.visible_from < v_next
        and h.ctid = (select x.ctid from conveyor.queue_hints x
                      where x.queue_name = v_queue for update skip locked);
    end if;
  end loop;
  perform set_config('conveyor.empty_tiers', '', true);
end
$$;

-- Claims up to p_qty jobs of one kind, fast tier before normal before bulk; attempts are
-- counted at claim. A tier whose hint says nothing can be visible yet is not read. Each read
-- is a statement of its own, so the ledger UPDATE after it runs with a later snapshot and
-- sees the row of every message the read returned (an enqueue commits both together). The
-- UPDATE changes no indexed column: a HOT update. A message that cannot be claimed is
-- disposed of (dispose_unclaimed). With p_invocation, a lapsed invocation claims nothing
-- (conveyor.invocation_lost is set) and a live one's heart beats.
create function conveyor.claim(
  p_kind conveyor.job_kinds,
  p_worker text,
  p_qty int,
  p_vt int,
  p_now timestamptz,
  p_max int,
  p_full boolean,
  p_invocation uuid
) returns setof conveyor.claimed_job
language plpgsql
set search_path = ''
as $$
declare
  v_tiers text[] := array[p_kind.queue_name || '_fast', p_kind.queue_name,
                          p_kind.queue_name || '_bulk'];
  v_from timestamptz[];
  v_queue text;
  v_msgs pgmq.message_record[];
  v_rows conveyor.claimed_job[];
  v_left int := p_qty;
begin
  if p_invocation is not null and not conveyor.invocation_alive(p_invocation, p_now) then
    perform set_config('conveyor.invocation_lost', 'on', true);
    return;
  end if;
  select array[coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[1]), '-infinity'),
               coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[2]), '-infinity'),
               coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[3]), '-infinity')]
  into v_from
  from conveyor.queue_hints h where h.queue_name = any (v_tiers);

  for i in 1 .. 3 loop
    exit when v_left <= 0;
    continue when v_from[i] > clock_timestamp();
    v_queue := v_tiers[i];
    -- The read runs in a subtransaction. FOR UPDATE SKIP LOCKED skips locked rows, but where
    -- a row's newer version (left by a concurrent read, being deleted by that worker's settle)
    -- is in the way, PostgreSQL follows the update chain and waits, and three such claims can
    -- wait on each other ("deadlock detected ... while locking updated version of tuple",
    -- seen under 10 concurrent workers with every version of this claim). The victim reads
    -- nothing from this tier this time instead of failing the whole call.
    begin
      if p_kind.service_name is null then
        select coalesce(array_agg(m), '{}') into v_msgs from conveyor.q_read(v_queue, p_vt, v_left) m;
      else
        select coalesce(array_agg(m), '{}') into v_msgs
        from conveyor.read_queue(v_queue, p_vt, v_left, p_kind.service_name, p_now) m;
      end if;
    exception when deadlock_detected then
      v_msgs := '{}';
    end;
    if cardinality(v_msgs) < v_left
       and coalesce(current_setting('conveyor.throttled', true), '') <> 'on' then
      -- Raised by conveyor.raise_hints at the end of the transaction.
      perform set_config('conveyor.empty_tiers',
        concat_ws(',', nullif(current_setting('conveyor.empty_tiers', true), ''), v_queue), true);
    end if;
    continue when cardinality(v_msgs) = 0;

    with claimed as (
      update public.jobs j
      set status = 'processing',
          attempts = j.attempts + 1,
          lease_id = gen_random_uuid(),
          locked_by = p_worker,
          locked_until = m.vt,
          started_at = coalesce(j.started_at, p_now),
          updated_at = p_now
      from unnest(v_msgs) m
      where j.msg_id = m.msg_id
        and j.status in ('pending', 'processing')
        -- a job whose last attempt was lost does not run again: dispose_unclaimed
        and case when j.attempts = 0 then true
                 else j.attempts < coalesce(j.max_attempts,
                   (select q.max_attempts from public.queues q
                    where q.tenant_id = j.tenant_id and q.kind = j.kind), p_max) end
      returning j.id, j.lease_id, j.kind, j.queue_name, j.msg_id, j.tenant_id, j.priority,
                j.attempts, j.max_attempts, j.payload, j.headers, m.enqueued_at, j.locked_until
    )
    select coalesce(array_agg(row(c.*)::conveyor.claimed_job), '{}') into v_rows from claimed c;
    if cardinality(v_rows) < cardinality(v_msgs) then
      perform conveyor.dispose_unclaimed(v_queue,
        array(select m from unnest(v_msgs) m
              where m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))),
        p_max, p_now);
    end if;
    continue when cardinality(v_rows) = 0;

    insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, claimed)
    select date_trunc('minute', p_now), pg_backend_pid(), r.tenant_id, v_queue, count(*)
    from unnest(v_rows) r group by r.tenant_id
    on conflict (minute, backend, tenant_id, queue_name) do update
    set claimed = c.claimed + excluded.claimed;
    if p_kind.service_name is not null then
      insert into conveyor.service_leases (job_id, tenant_id, service_name, expires_at)
      select r.job_id, r.tenant_id, p_kind.service_name, r.locked_until from unnest(v_rows) r
      on conflict (job_id) do update set expires_at = excluded.expires_at;
    end if;
    if p_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select r.job_id, r.tenant_id, 'claimed',
             jsonb_build_object('attempt', r.attempt, 'worker', p_worker, 'msg_id', r.msg_id,
                                'lease_id', r.lease_id, 'locked_until', r.locked_until)
      from unnest(v_rows) r;
    end if;
    return query select * from unnest(v_rows);
    v_left := v_left - cardinality(v_rows);
  end loop;
end
$$;

-- The arguments of a claim, checked once for claim_jobs and settle_and_claim_jobs; returns
-- the kind's row. The attempts limit: the policy's, else the setting.
create function conveyor.claim_args(
  p_kind text, p_worker text, p_qty int, p_vt int, p_policy jsonb
) returns conveyor.job_kinds
language plpgsql
set search_path = ''
as $$
declare
  v_kind conveyor.job_kinds;
begin
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind;
  if not found then
    raise exception 'claim_jobs: unsupported kind %', p_kind;
  end if;
  if p_qty is null or p_qty < 1 or p_qty > 1000 then
    raise exception 'claim_jobs: p_qty must be between 1 and 1000';
  end if;
  if p_vt < 1 or p_vt > 43200 then
    raise exception 'claim_jobs: p_vt must be between 1 and 43200 seconds';
  end if;
  if coalesce(btrim(p_worker), '') = '' then
    raise exception 'claim_jobs: p_worker must name the worker';
  end if;
  if p_policy is not null and jsonb_typeof(p_policy) <> 'object' then
    raise exception 'claim_jobs: p_policy must be a JSON object';
  end if;
  return v_kind;
end
$$;

-- claim_jobs: the claim on its own (the worker loop claims through settle_and_claim_jobs).
create function public.claim_jobs(
  p_kind text,
  p_worker text,
  p_qty int default 10,
  p_vt int default null,
  p_now timestamptz default null,
  p_policy jsonb default '{}'
) returns setof conveyor.claimed_job
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_kind conveyor.job_kinds := conveyor.claim_args(p_kind, p_worker, p_qty, v_vt, p_policy);
begin
  return query select * from conveyor.claim(v_kind, p_worker, p_qty, v_vt,
    coalesce(p_now, clock_timestamp()),
    coalesce((p_policy ->> 'max_attempts')::int, conveyor.setting_int('max_attempts')::int),
    conveyor.audit_full(), null);
  perform conveyor.raise_hints();
end
$$;

-- Completions, set-based (the hot path of a settle): the ledger rows, only with the live
-- lease; then their messages deleted (or archived, p_archive), dedupe keys and service slots
-- given back, the minute's counts, and 'completed' events when auditing everything. The last
-- error goes: the history stays in errors and the events. Returns the accepted job ids.
create function conveyor.complete_jobs(
  p_worker text, p_results jsonb, p_now timestamptz, p_archive boolean, p_full boolean
) returns uuid[]
language plpgsql
set search_path = ''
as $$
declare
  v_done public.jobs[];
  v_ids uuid[];
  v_queue text;
begin
  with ok as (
    update public.jobs j
    set status = 'completed', finished_at = p_now, updated_at = p_now, output = r.output,
        lease_id = null, locked_by = null, locked_until = null, last_error = null
    from jsonb_to_recordset(p_results) as r(job_id uuid, lease_id uuid, status text, output jsonb)
    where r.status = 'completed' and j.id = r.job_id and j.lease_id = r.lease_id
      and j.status = 'processing' and j.locked_until > p_now
    returning j.*
  )
  select array_agg(ok) into v_done from ok;
  if v_done is null then
    return '{}';
  end if;
  for v_queue in select distinct d.queue_name from unnest(v_done) d loop
    if p_archive then
      perform pgmq.archive(v_queue, array(select d.msg_id from unnest(v_done) d
                                          where d.queue_name = v_queue));
    else
      perform conveyor.q_delete(v_queue, array(select d.msg_id from unnest(v_done) d
                                               where d.queue_name = v_queue));
    end if;
  end loop;
  select array_agg(d.id) into v_ids from unnest(v_done) d;
  if exists (select 1 from unnest(v_done) d where d.dedupe_key is not null) then
    delete from conveyor.dedupe_keys k where k.job_id = any (v_ids);
  end if;
  delete from conveyor.service_leases l where l.job_id = any (v_ids);
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, completed)
  select date_trunc('minute', p_now), pg_backend_pid(), d.tenant_id, d.queue_name, count(*)
  from unnest(v_done) d group by d.tenant_id, d.queue_name
  on conflict (minute, backend, tenant_id, queue_name) do update
  set completed = c.completed + excluded.completed;
  if p_full then
    insert into public.job_events (job_id, tenant_id, type, payload)
    select d.id, d.tenant_id, 'completed', jsonb_build_object('attempt', d.attempts, 'worker', p_worker)
    from unnest(v_done) d;
  end if;
  return v_ids;
end
$$;

-- settle_jobs: the outcome of a batch, in one call. p_results is an array of
--   {"job_id", "lease_id", "status": "completed"|"failed"|"cancelled"|"snoozed",
--    "output"?: {...}, "error"?: {"message", "stack"?}, "snooze_seconds"?: n}
-- p_policy carries the worker's retry settings: {"max_attempts", "backoff_base_ms",
-- "backoff_max_ms"} (defaults from conveyor.settings). A job's own max_attempts (critical
-- jobs: 5; a tenant's queues.max_attempts) wins over the policy's.
-- Returns one row per result: accepted or refused, and what happened.
create function public.settle_jobs(
  p_worker text,
  p_results jsonb,
  p_policy jsonb default '{}',
  p_now timestamptz default null
) returns table (job_id uuid, accepted boolean, outcome text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_max int;
  v_base bigint;
  v_cap bigint;
  v_row record;
  v_job public.jobs;
  v_errors jsonb;
  v_limit int;
  v_delay_ms bigint;
  v_vt timestamptz;
  v_done uuid[];
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;
  v_done := conveyor.complete_jobs(p_worker, p_results, v_now,
    conveyor.setting_text('archive_completed') = 'true', conveyor.audit_full());
  return query select d, true, 'completed'::text from unnest(v_done) d;

  -- Everything else, one by one (rare compared to completions).
  for v_row in
    select x.job_id, x.lease_id, x.status, x.error, x.snooze_seconds
    from jsonb_to_recordset(p_results)
      as x(job_id uuid, lease_id uuid, status text, error jsonb, snooze_seconds int)
  loop
    if v_row.status = 'completed' and v_row.job_id = any (v_done) then
      continue; -- accepted above
    end if;
    if v_row.status is null
       or v_row.status not in ('completed', 'failed', 'cancelled', 'snoozed') then
      raise exception 'settle_jobs: unknown status % for job %', v_row.status, v_row.job_id;
    end if;
    select * into v_job from public.jobs j where j.id = v_row.job_id for update;
    if not found then
      return query select v_row.job_id, false, 'unknown job'::text;
      continue;
    end if;
    if v_job.status <> 'processing' or v_job.lease_id is distinct from v_row.lease_id
       or v_job.locked_until <= v_now then
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'settle_refused', jsonb_build_object(
        'worker', p_worker, 'wanted', v_row.status, 'lease_id', v_row.lease_id,
        'reason', case
          when v_job.status <> 'processing' then 'job is ' || v_job.status
          when v_job.lease_id is distinct from v_row.lease_id then 'lease is held by another claim'
          else 'lease expired' end));
      return query select v_job.id, false, 'refused'::text;
      continue;
    end if;

    v_errors := v_job.errors;
    if v_row.status in ('failed', 'cancelled') then
      v_errors := v_errors || jsonb_build_array(jsonb_build_object(
        'message', coalesce(v_row.error ->> 'message', 'unknown error'),
        'stack', v_row.error ->> 'stack',
        'attempt', v_job.attempts,
        'at', v_now));
    end if;

    if v_row.status = 'snoozed' then
      -- Reschedule without spending the attempt.
      v_vt := v_now + make_interval(secs => greatest(0, coalesce(v_row.snooze_seconds, 0)));
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id,
        greatest(0, coalesce(v_row.snooze_seconds, 0)));
      perform conveyor.lower_hint(v_job.queue_name, v_vt);
      update public.jobs
      set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
          locked_until = null, updated_at = v_now, run_at = v_vt
      where id = v_job.id;
      perform conveyor.release_job_holds(array[v_job.id], false);
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'snoozed',
              jsonb_build_object('seconds', v_row.snooze_seconds, 'worker', p_worker));
      return query select v_job.id, true, 'snoozed'::text;
      continue;
    end if;

    v_max := coalesce(v_max, (p_policy ->> 'max_attempts')::int,
                      conveyor.setting_int('max_attempts')::int);
    select coalesce(v_job.max_attempts, q.max_attempts, v_max) into v_limit
    from (select 1) one
    left join public.queues q on q.tenant_id = v_job.tenant_id and q.kind = v_job.kind;

    if v_row.status = 'cancelled' or v_job.attempts >= v_limit then
      perform conveyor.dead_letter(v_job,
        case when v_row.status = 'cancelled'
          then 'cancelled: ' || coalesce(v_row.error ->> 'message', 'no reason given')
          else coalesce(v_row.error ->> 'message', 'unknown error') end,
        v_errors, v_now);
      return query select v_job.id, true, 'dead_lettered'::text;
    else
      v_base := coalesce(v_base, (p_policy ->> 'backoff_base_ms')::bigint,
                         conveyor.setting_int('backoff_base_ms'));
      v_cap := coalesce(v_cap, (p_policy ->> 'backoff_max_ms')::bigint,
                        conveyor.setting_int('backoff_max_ms'));
      v_delay_ms := conveyor.backoff_ms(v_job.attempts, v_base, v_cap);
      v_vt := v_now + make_interval(secs => ceil(v_delay_ms / 1000.0));
      -- pgmq's visibility API is in whole seconds: round the backoff up.
      perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, ceil(v_delay_ms / 1000.0)::int);
      perform conveyor.lower_hint(v_job.queue_name, v_vt);
      update public.jobs
      set status = 'pending', lease_id = null, locked_by = null, locked_until = null,
          last_error = v_row.error ->> 'message', errors = v_errors, updated_at = v_now,
          run_at = v_vt
      where id = v_job.id;
      perform conveyor.release_job_holds(array[v_job.id], false);
      perform conveyor.count_jobs(v_job.tenant_id, v_job.queue_name, v_now, p_retried => 1);
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'retry_scheduled', jsonb_build_object(
        'attempt', v_job.attempts, 'max_attempts', v_limit, 'delay_ms', v_delay_ms,
        'error', v_row.error ->> 'message', 'worker', p_worker));
      return query select v_job.id, true, 'retry_scheduled'::text;
    end if;
  end loop;
end
$$;

-- Single-job forms of settle_jobs, for SQL callers and tests.
create function public.complete_job(p_job_id uuid, p_lease_id uuid, p_output jsonb default null)
returns boolean
language sql
security definer
set search_path = ''
as $$
  select coalesce(bool_and(s.accepted), false)
  from public.settle_jobs('sql', jsonb_build_array(jsonb_build_object(
    'job_id', p_job_id, 'lease_id', p_lease_id, 'status', 'completed', 'output', p_output))) s
$$;

create function public.fail_job(p_job_id uuid, p_lease_id uuid, p_error text,
                                 p_policy jsonb default '{}')
returns text
language sql
security definer
set search_path = ''
as $$
  select s.outcome
  from public.settle_jobs('sql', jsonb_build_array(jsonb_build_object(
    'job_id', p_job_id, 'lease_id', p_lease_id, 'status', 'failed',
    'error', jsonb_build_object('message', p_error))), p_policy) s
$$;

-- settle_and_claim_jobs: a worker's steady state in ONE call and ONE transaction: settle the
-- batch it just ran (as settle_jobs) and claim its next batch (as claim_jobs); with an empty
-- p_results, it is the worker's claim. Over HTTP every round trip is a request, so the
-- worker loop makes one per batch.
--
-- Order: for a kind without a rate-limited service, claim first: the claim's read then never
-- steps over this transaction's own not-yet-committed deletes at the head of the queue
-- (settle first drained batches of 100 ~20 % slower); the jobs being settled are still
-- leased to this worker, their messages invisible, so the claim cannot take them again. For
-- a rate-limited kind, settle first: the slots of the jobs just finished are free for the
-- claim (claiming first counted them busy, and a worker holding max_concurrent leases claimed
-- nothing and stopped).
--
-- Returns {"settled": [{"job_id","accepted","outcome"}…], "claimed": [conveyor.claimed_job…],
-- "throttled": true when visible jobs were held back by a rate limit (come back soon),
-- "invocation_lost": true when p_invocation's slot has lapsed (claim no more)}. A refused
-- settle (lease lost) is reported as settle_jobs reports it; an error rolls back both.
create function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null,
  p_invocation uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_kind conveyor.job_kinds := conveyor.claim_args(p_kind, p_worker, p_qty, v_vt, p_policy);
  v_archive boolean;
  v_full boolean;
  v_n int;
  v_done uuid[] := '{}';
  v_settled jsonb := '[]';
  v_claimed jsonb;
  v_rest jsonb;
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;
  v_n := jsonb_array_length(p_results);
  select coalesce(bool_or(s.key = 'archive_completed' and s.value = 'true'), false),
         coalesce(bool_or(s.key = 'audit' and s.value = '"full"'), false)
  into v_archive, v_full
  from conveyor.settings s where s.key in ('archive_completed', 'audit');

  if v_kind.service_name is not null and v_n > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;
  select coalesce(jsonb_agg(to_jsonb(c)), '[]') into v_claimed
  from conveyor.claim(v_kind, p_worker, p_qty, v_vt, v_now,
    coalesce((p_policy ->> 'max_attempts')::int, conveyor.setting_int('max_attempts')::int),
    v_full, p_invocation) c;
  if v_kind.service_name is null and v_n > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;

  if v_n > 0 then
    select coalesce(jsonb_agg(jsonb_build_object('job_id', d, 'accepted', true,
                                                 'outcome', 'completed')), '[]')
    into v_settled from unnest(v_done) d;
  end if;
  if v_n > cardinality(v_done) then
    -- What is not an accepted completion (failures, snoozes, refusals) is rare: settle_jobs
    -- takes it one by one.
    select jsonb_agg(e) into v_rest
    from jsonb_array_elements(p_results) e
    where not (e ->> 'status' = 'completed' and (e ->> 'job_id')::uuid = any (v_done));
    select v_settled || coalesce(jsonb_agg(jsonb_build_object(
             'job_id', s.job_id, 'accepted', s.accepted, 'outcome', s.outcome)), '[]')
    into v_settled
    from public.settle_jobs(p_worker, v_rest, coalesce(p_policy, '{}'::jsonb), p_now) s;
  end if;
  perform conveyor.raise_hints();
  return jsonb_build_object(
    'settled', v_settled,
    'claimed', v_claimed,
    'throttled', coalesce(current_setting('conveyor.throttled', true), '') = 'on',
    'invocation_lost', coalesce(current_setting('conveyor.invocation_lost', true), '') = 'on');
end
$$;

comment on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid) is
  'The worker loop''s steady state in one round trip: settle a batch and claim the next (claim first, or settle first for a rate-limited kind).';

-- ---------------------------------------------------------------------------------------
-- The rest
-- ---------------------------------------------------------------------------------------

-- extend_jobs: the heartbeat of a worker holding jobs ([{"job_id","lease_id"}]). Beats
-- p_invocation's heart, and pushes visibility and the lease to p_vt seconds from now for
-- every live lease with less than half of p_vt left (a heartbeat every few seconds writes the
-- jobs' rows about twice per visibility timeout); returns the extended ids.
create function public.extend_jobs(p_worker text, p_leases jsonb, p_vt int default null,
                                   p_invocation uuid default null)
returns table (job_id uuid, locked_until timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_job record;
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'extend_jobs: p_leases must be a JSON array';
  end if;
  if p_invocation is not null then
    perform conveyor.invocation_alive(p_invocation, clock_timestamp());
  end if;
  for v_job in
    select j.id, j.queue_name, j.msg_id
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing' and j.locked_until > clock_timestamp()
      and j.locked_until < clock_timestamp() + make_interval(secs => v_vt / 2.0)
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, v_vt);
    update conveyor.service_leases l
    set expires_at = clock_timestamp() + make_interval(secs => v_vt)
    where l.job_id = v_job.id;
    return query
    update public.jobs j
    set locked_until = clock_timestamp() + make_interval(secs => v_vt), locked_by = p_worker,
        updated_at = now()
    where j.id = v_job.id
    returning j.id, j.locked_until;
  end loop;
end
$$;

-- release_jobs: graceful shutdown. Hands back jobs the worker will not run: visible again
-- now, and the attempt is not spent.
create function public.release_jobs(p_worker text, p_leases jsonb)
returns table (job_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job record;
  v_full boolean := conveyor.audit_full();
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'release_jobs: p_leases must be a JSON array';
  end if;
  for v_job in
    select j.id, j.tenant_id, j.queue_name, j.msg_id
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing'
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, 0);
    perform conveyor.lower_hint(v_job.queue_name, clock_timestamp());
    update public.jobs
    set status = 'pending', attempts = attempts - 1, lease_id = null, locked_by = null,
        locked_until = null, updated_at = now()
    where id = v_job.id;
    perform conveyor.release_job_holds(array[v_job.id], false);
    if v_full then
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_job.id, v_job.tenant_id, 'released', jsonb_build_object('worker', p_worker));
    end if;
    return query select v_job.id;
  end loop;
end
$$;

-- redrive_dead_job: a dead job runs again under its number: its message moves back from the
-- archive to its tier queue (written anew if retention already pruned the archive), its
-- attempts reset, its dedupe key taken again (refused, 23505, while another live job holds
-- it); the DLQ copy is archived. Returns the job's number.
create function public.redrive_dead_job(p_job_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.jobs;
  v_dead public.dead_letter_jobs;
begin
  select * into v_job from public.jobs j where j.id = p_job_id for update;
  if not found then
    raise exception 'redrive_dead_job: no job %', p_job_id using errcode = 'P0002';
  end if;
  if v_job.status <> 'failed' then
    raise exception 'redrive_dead_job: job % is %, only failed jobs can be redriven',
      p_job_id, v_job.status;
  end if;
  if v_job.dedupe_key is not null then
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (v_job.tenant_id, v_job.dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception 'redrive_dead_job: dedupe_key % is already queued or running', v_job.dedupe_key
        using errcode = '23505', hint = 'the job can be redriven once that job has finished';
    end if;
  end if;
  select * into v_dead from public.dead_letter_jobs d
  where d.job_id = p_job_id and d.redriven_at is null
  order by d.created_at desc limit 1;
  if v_dead.dlq_msg_id is not null then
    perform pgmq.archive(conveyor.dlq_name(), v_dead.dlq_msg_id);
  end if;
  update public.dead_letter_jobs set redriven_at = now() where id = v_dead.id;
  execute format('delete from pgmq.%I where msg_id = $1', 'a_' || v_job.queue_name)
    using v_job.msg_id;
  perform conveyor.q_put(v_job.queue_name, v_job.msg_id, now(),
                         jsonb_build_object('tenant_id', v_job.tenant_id), v_job.headers);
  perform conveyor.lower_hint(v_job.queue_name, now());
  update public.jobs
  set status = 'pending', attempts = 0, finished_at = null, run_at = now(),
      updated_at = now(), lease_id = null, locked_by = null, locked_until = null
  where id = v_job.id;
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job.id, v_job.tenant_id, 'redriven',
          jsonb_build_object('msg_id', v_job.msg_id, 'dead_letter_id', v_dead.id));
  perform conveyor.kick('queue:' || v_job.kind);
  return v_job.msg_id;
end
$$;

-- queue_next_due_at: when the next job of a kind that is not claimable yet becomes due (a
-- delay, a retry backoff, a snooze), or NULL when there is none. A worker whose queue ran dry
-- asks this and, for a job due within QUEUE_DUE_WAIT_MAX_MS, wakes at that time and calls
-- trigger_queue_worker (reason 'due'): capacity-checked like a dispatch. Otherwise such a job
-- waited for the next cron minute (40 s late in the soak's drain). Read from the kind's
-- queues (the live jobs, through pgmq's vt index), for messages whose job is pending.
create function public.queue_next_due_at(p_kind text) returns timestamptz
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_queue text;
  v_at timestamptz;
  v_min timestamptz;
begin
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    where k.kind = p_kind
  loop
    continue when to_regclass(format('pgmq.%I', 'q_' || v_queue)) is null;
    execute format(
      $q$select min(q.vt) from pgmq.%I q
         where q.vt > clock_timestamp()
           and exists (select 1 from public.jobs j where j.msg_id = q.msg_id and j.status = 'pending')$q$,
      'q_' || v_queue) into v_at;
    v_min := least(v_min, v_at);
  end loop;
  return v_min;
end
$$;

comment on function public.queue_next_due_at(text) is
  'When the next pending job of a kind becomes due (delay, backoff, snooze); NULL when none is waiting.';

revoke all on function conveyor.take_rate_limit(uuid, text, int, timestamptz),
  conveyor.read_queue(text, int, int, text, timestamptz),
  conveyor.invocation_alive(uuid, timestamptz),
  conveyor.backoff_ms(int, bigint, bigint),
  conveyor.release_job_holds(uuid[], boolean),
  conveyor.dead_letter(public.jobs, text, jsonb, timestamptz),
  conveyor.dead_letter_orphan(text, pgmq.message_record),
  conveyor.dispose_unclaimed(text, pgmq.message_record[], int, timestamptz),
  conveyor.rescue_lost_jobs(timestamptz),
  conveyor.raise_hints(),
  conveyor.claim(conveyor.job_kinds, text, int, int, timestamptz, int, boolean, uuid),
  conveyor.claim_args(text, text, int, int, jsonb),
  conveyor.complete_jobs(text, jsonb, timestamptz, boolean, boolean)
  from public;
revoke all on function public.claim_jobs(text, text, int, int, timestamptz, jsonb),
  public.settle_jobs(text, jsonb, jsonb, timestamptz),
  public.complete_job(uuid, uuid, jsonb),
  public.fail_job(uuid, uuid, text, jsonb),
  public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid),
  public.extend_jobs(text, jsonb, int, uuid),
  public.release_jobs(text, jsonb),
  public.redrive_dead_job(uuid),
  public.queue_next_due_at(text)
  from public, anon, authenticated;
grant execute on function public.claim_jobs(text, text, int, int, timestamptz, jsonb),
  public.settle_jobs(text, jsonb, jsonb, timestamptz),
  public.complete_job(uuid, uuid, jsonb),
  public.fail_job(uuid, uuid, text, jsonb),
  public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid),
  public.extend_jobs(text, jsonb, int, uuid),
  public.release_jobs(text, jsonb),
  public.redrive_dead_job(uuid),
  public.queue_next_due_at(text)
  to service_role;
