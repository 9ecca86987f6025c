-- The worker's steady state (public.settle_and_claim_jobs: settle a batch, claim the next)
-- wrote more WAL and spent more Postgres CPU per job than it needs to (issue 16; figures in
-- tools/bench/notes.md, item 10). Same guarantees, same results; what changes:
--
-- * public.jobs fillfactor 50 → 30. A job's claim and settle are HOT updates only while its
--   page has room for the new version. At 50 a page had room for one more version of each
--   row, and the settle's needed pruning first; with ten workers on the same pages pruning
--   often could not take the page (another backend had it pinned), so about three updates in
--   ten moved to another page and took an entry in each of the three ledger indexes. At 30
--   a page holds all three versions of its rows (pending, processing, finished) and no
--   ledger update takes an index entry. The price is space: finished jobs fill their pages
--   to about a third until retention (retention_hours) deletes them. New pages only: the
--   pages written so far keep their rows.
-- * conveyor.complete_jobs returns the columns it uses from the completed rows instead of
--   whole rows (payload, output, errors copied into an array of public.jobs), and hands a
--   one-queue batch (a worker's) to the delete or archive without splitting it by queue.
-- * conveyor.complete_jobs and conveyor.claim_messages count into conveyor.job_counts with an
--   UPDATE first (the INSERT .. ON CONFLICT only when this backend has no row for the minute
--   yet): an upsert that finds its row locks it before updating it, a WAL record more.
-- * public.settle_and_claim_jobs calls conveyor.raise_hints only when a tier was found empty.
--
-- Each function is its current definition (supabase/schema.sql) with these changes only.

create or replace function conveyor.complete_jobs(p_worker text, p_results jsonb,
  p_now timestamptz, p_archive boolean, p_full boolean) returns uuid[]
language plpgsql
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_msgs bigint[];
  v_queues text[];
  v_tenants uuid[];
  v_attempts int[];
  v_dedupe boolean;
  v_keyed bigint[];
  v_queue text;
  v_list text[];
  v_part bigint[];
begin
  -- Only the columns the rest needs (not whole ledger rows: payload, output, errors).
  with ok as (
    update public.jobs j
    set status = 'completed', finished_at = p_now, updated_at = p_now, output = r.output,
        lease_id = null, locked_by = null, locked_until = null, last_error = null
    from jsonb_to_recordset(p_results) as r(job_id uuid, lease_id uuid, status text, output jsonb)
    where r.status = 'completed' and j.id = r.job_id and j.lease_id = r.lease_id
      and j.status = 'processing' and j.locked_until > p_now
    returning j.id, j.msg_id, j.queue_name, j.tenant_id, j.attempts, j.dedupe_key, j.concurrency_key
  )
  select array_agg(ok.id), array_agg(ok.msg_id), array_agg(ok.queue_name),
         array_agg(ok.tenant_id), array_agg(ok.attempts), bool_or(ok.dedupe_key is not null),
         array_agg(ok.msg_id) filter (where ok.concurrency_key is not null)
  into v_ids, v_msgs, v_queues, v_tenants, v_attempts, v_dedupe, v_keyed
  from ok;
  if v_ids is null then
    return '{}';
  end if;
  -- A worker's batch is one queue's: its messages go in one call, without splitting them.
  if v_queues[1] = all (v_queues) then
    v_list := array[v_queues[1]];
  else
    v_list := array(select distinct q from unnest(v_queues) q);
  end if;
  foreach v_queue in array v_list loop
    if cardinality(v_list) > 1 then
      v_part := array(select x.m from unnest(v_msgs, v_queues) as x(m, q) where x.q = v_queue);
    else
      v_part := v_msgs;
    end if;
    begin
      if p_archive then
        perform pgmq.archive(v_queue, v_part);
      else
        perform conveyor.q_delete(v_queue, v_part);
      end if;
    exception when deadlock_detected then
      null;
    end;
  end loop;
  if v_dedupe then
    delete from conveyor.dedupe_keys k where k.job_id = any (v_ids);
  end if;
  if v_keyed is not null then
    perform conveyor.release_keys(v_keyed);
  end if;
  delete from conveyor.service_leases l where l.job_id = any (v_ids);
  -- An UPDATE first: an upsert that finds its row locks it first (a WAL record of its own),
  -- and this backend's row for the minute is there but for the first batch of a minute.
  with g as (
    select x.t, x.q, count(*) as n from unnest(v_tenants, v_queues) as x(t, q) group by x.t, x.q
  ), u as (
    update conveyor.job_counts c set completed = c.completed + g.n
    from g
    where c.minute = date_trunc('minute', p_now) and c.backend = pg_backend_pid()
      and c.tenant_id = g.t and c.queue_name = g.q
    returning c.tenant_id, c.queue_name
  )
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, completed)
  select date_trunc('minute', p_now), pg_backend_pid(), g.t, g.q, g.n from g
  where not exists (select 1 from u where u.tenant_id = g.t and u.queue_name = g.q)
  on conflict (minute, backend, tenant_id, queue_name) do update
  set completed = c.completed + excluded.completed;
  if p_full then
    insert into public.job_events (job_id, tenant_id, type, payload)
    select x.id, x.tenant_id, 'completed', jsonb_build_object('attempt', x.attempts, 'worker', p_worker)
    from unnest(v_ids, v_tenants, v_attempts) as x(id, tenant_id, attempts);
  end if;
  return v_ids;
end
$$;
create or replace function conveyor.claim_messages(p_kind conveyor.job_kinds, p_queue text,
  p_msgs pgmq.message_record[], p_worker text, p_now timestamptz, p_max int, p_full boolean)
returns conveyor.claimed_job[]
language plpgsql
set search_path = ''
as $$
declare
  v_msgs pgmq.message_record[] := p_msgs;
  v_keyed boolean := exists (select 1 from unnest(p_msgs) m where m.message ? 'concurrency_key');
  v_rows conveyor.claimed_job[];
begin
  if v_keyed then
    v_msgs := conveyor.admit_keyed(p_kind, p_queue, p_msgs, p_now);
    if cardinality(v_msgs) = 0 then
      return '{}';
    end if;
  end if;
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
    perform conveyor.dispose_unclaimed(p_queue,
      array(select m from unnest(v_msgs) m
            where m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))),
      p_max, p_now);
    if v_keyed then
      -- Granted a key slot but not claimed (finished, or its last attempt was lost).
      perform conveyor.release_keys(array(
        select m.msg_id from unnest(v_msgs) m
        where m.message ? 'concurrency_key'
          and m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))));
    end if;
  end if;
  if cardinality(v_rows) = 0 then
    return v_rows;
  end if;

  -- An UPDATE first (as conveyor.complete_jobs): no lock record for the row of the minute.
  with g as (
    select r.tenant_id as t, count(*) as n from unnest(v_rows) r group by r.tenant_id
  ), u as (
    update conveyor.job_counts c set claimed = c.claimed + g.n
    from g
    where c.minute = date_trunc('minute', p_now) and c.backend = pg_backend_pid()
      and c.tenant_id = g.t and c.queue_name = p_queue
    returning c.tenant_id
  )
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, claimed)
  select date_trunc('minute', p_now), pg_backend_pid(), g.t, p_queue, g.n from g
  where not exists (select 1 from u where u.tenant_id = g.t)
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
  return v_rows;
end
$$;
create or replace function public.settle_and_claim_jobs(p_worker text, p_results jsonb,
  p_kind text, p_qty int default 10, p_vt int default null, p_policy jsonb default '{}',
  p_now timestamptz default null, p_invocation uuid default null) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_kind conveyor.job_kinds := conveyor.claim_args(p_kind, p_worker, p_qty, v_vt, p_policy);
  v_max int := coalesce((p_policy ->> 'max_attempts')::int, conveyor.setting_int('max_attempts')::int);
  v_archive boolean;
  v_full boolean;
  v_n int;
  v_done uuid[] := '{}';
  v_settled jsonb := '[]';
  v_claimed jsonb;
  v_more jsonb;
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
  perform set_config('conveyor.woken', '', true);
  select coalesce(jsonb_agg(to_jsonb(c)), '[]') into v_claimed
  from conveyor.claim(v_kind, p_worker, p_qty, v_vt, v_now, v_max, v_full, p_invocation) c;
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
  if current_setting('conveyor.woken', true) = 'on' and jsonb_array_length(v_claimed) < p_qty
     and coalesce(current_setting('conveyor.invocation_lost', true), '') <> 'on' then
    select coalesce(jsonb_agg(to_jsonb(c)), '[]') into v_more
    from conveyor.claim(v_kind, p_worker, p_qty - jsonb_array_length(v_claimed), v_vt, v_now,
                        v_max, v_full, p_invocation) c;
    v_claimed := v_claimed || v_more;
  end if;
  if coalesce(current_setting('conveyor.empty_tiers', true), '') <> '' then
    perform conveyor.raise_hints();
  end if;
  return jsonb_build_object(
    'settled', v_settled,
    'claimed', v_claimed,
    'throttled', coalesce(current_setting('conveyor.throttled', true), '') = 'on',
    'invocation_lost', coalesce(current_setting('conveyor.invocation_lost', true), '') = 'on');
end
$$;

alter table public.jobs set (fillfactor = 30);
