-- Job ids in time order (0050 used random uuids). Found by the benchmark's backlog workload
-- (tools/bench, issue 9): with 1M jobs waiting, a drain wrote 9.6 kB of WAL per job against
-- 3.9 kB with 10k waiting, and ran at 0.78x the rate. Every transition inserts index
-- entries keyed by the job id (jobs_pkey on each non-HOT update, job_events_job_id_idx on
-- each event); with random ids consecutive jobs land on random leaf pages, so a drain
-- dirties a different page per job in indexes far larger than shared_buffers, and each
-- first touch after a checkpoint is a full-page image in the WAL. Time-ordered ids (the
-- UUIDv7 layout: 48-bit Unix milliseconds, version 7, then random bits) keep jobs
-- enqueued together on the same pages, as the queue drains them in about that order.
--
-- Only the ids change: still uuids, still unique (74 random bits per millisecond), still
-- unguessable enough for what they are used for (tenancy is enforced by RLS, never by
-- the secrecy of an id). They now reveal when a job was enqueued, which created_at says
-- anyway.

-- A UUIDv7-layout id: bytes 0-5 the Unix time in ms (big-endian), the version nibble 7,
-- and the rest from gen_random_uuid() (whose variant bits 10 are kept).
create function conveyor.new_job_id() returns uuid
language sql volatile
set search_path = ''
as $$
  select encode(
    set_byte(
      substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3 for 6)
        || substring(g.r from 7),
      6,
      (get_byte(g.r, 6) & 15) | 112),
    'hex')::uuid
  from (select uuid_send(gen_random_uuid()) as r) g
$$;

revoke all on function conveyor.new_job_id() from public;

alter table public.jobs alter column id set default conveyor.new_job_id();

-- conveyor.enqueue: as in 0050, the job id from conveyor.new_job_id().
create or replace function conveyor.enqueue(
  p_tenant_id uuid,
  p_kind text,
  p_payload jsonb,
  p_idempotency_key text,
  p_priority text default 'normal',
  p_run_at timestamptz default null,
  p_headers jsonb default null,
  p_critical boolean default false,
  p_dedupe_key text default null,
  p_source text default 'queue_job',
  p_fn text default 'queue_job'
) returns table (job_id uuid, msg_id bigint, created boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_tier_queue text;
  v_job_id uuid := conveyor.new_job_id();
  v_msg_id bigint;
  v_existing record;
  v_max_attempts int;
  v_run_at timestamptz := coalesce(p_run_at, now());
begin
  select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  v_tier_queue := conveyor.tier_queue(v_queue, p_priority);

  -- Claim the key first. ON CONFLICT waits for a concurrent holder of the same key to
  -- commit or roll back, so of N identical calls exactly one proceeds and the others
  -- return its job (race-free at READ COMMITTED). The FK to jobs is deferred: the job row
  -- is written below, in this same transaction.
  insert into public.idempotency_keys (tenant_id, key, job_id)
  values (p_tenant_id, p_idempotency_key, v_job_id)
  on conflict (tenant_id, key) do nothing;
  if not found then
    select j.id, j.msg_id into v_existing
    from public.idempotency_keys ik
    join public.jobs j on j.id = ik.job_id
    where ik.tenant_id = p_tenant_id and ik.key = p_idempotency_key;
    return query select v_existing.id, v_existing.msg_id, false;
    return;
  end if;

  if p_dedupe_key is not null and exists (
    select 1 from public.jobs j
    where j.tenant_id = p_tenant_id and j.dedupe_key = p_dedupe_key
      and j.status in ('pending', 'processing')
  ) then
    raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
      using errcode = '23505',
            hint = 'the key can be reused once that job has finished';
  end if;

  select m into v_msg_id
  from pgmq.send(
    queue_name => v_tier_queue,
    msg => jsonb_build_object(
      'job_id', v_job_id,
      'tenant_id', p_tenant_id,
      'kind', p_kind,
      'payload', p_payload
    ),
    headers => p_headers,
    delay => v_run_at
  ) as m;

  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  insert into public.jobs (id, tenant_id, kind, queue_name, priority, payload, headers,
                           idempotency_key, dedupe_key, msg_id, max_attempts, run_at)
  values (v_job_id, p_tenant_id, p_kind, v_tier_queue, p_priority, p_payload, p_headers,
          p_idempotency_key, p_dedupe_key, v_msg_id, v_max_attempts, v_run_at);

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job_id, p_idempotency_key, v_max_attempts);
  end if;

  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job_id, p_tenant_id, 'enqueued', jsonb_build_object(
    'msg_id', v_msg_id, 'queue', v_tier_queue, 'priority', p_priority,
    'run_at', v_run_at, 'source', p_source, 'critical', p_critical));
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now.
  perform conveyor.kick('queue:' || p_kind) where v_run_at <= now();

  return query select v_job_id, v_msg_id, true;
end
$$;

