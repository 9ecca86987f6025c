-- Job references (issue 19, item 1), and a retry's wake-up (item 7). The first forward
-- migration after the frozen baseline: it adds a function and redefines three;
-- supabase/schema.sql holds the current definition of each.
--
-- A queue job's id is time-ordered (conveyor.new_job_id, 0011): its first 8 hex digits are
-- the same for every job created within about a minute, so a short id cut from its head
-- names nothing. Operators see instead:
--   * a queue job as its number, `#1234` (jobs.msg_id: what queue_job returned, unique
--     across kinds and tiers, kept for life);
--   * a uuid shown short (a content job, a dead letter) as its LAST 8 hex digits: random in
--     every id we make (gen_random_uuid for those two; the tail of a job id is random too).
-- and every tool that takes a job accepts any of these (operator_find_jobs below).

-- ---------------------------------------------------------------------------------------
-- operator_find_jobs: what a reference an operator typed names
-- ---------------------------------------------------------------------------------------
-- p_ref is one of
--   * `#1234`: the queue job numbered 1234;
--   * `1234` (digits only): the same when a job has that number; otherwise, with 4 digits or
--     more, a hex fragment as below (a number is what the tools show for a queue job, so it
--     wins over the rarer uuid that happens to start or end with those digits);
--   * 4 to 32 hex digits, dashes anywhere or none, any case: the start or the end of the id
--     of a queue job, a dead letter or a content job (32 digits: the whole id).
-- Anything else is refused (22023: HTTP 400 over the API) and reads nothing.
--
-- Returns the matches, newest first, at most p_limit, each with `total`: how many there are
-- (counted up to 1001; 1001 means "more than 1000"). None: no rows. For a queue job,
-- dead_letter_id is its newest dead letter (what `conveyor dlq show` opens); for a dead
-- letter, its own id.
--
-- Cost: a number reads jobs_msg_id_key. A prefix is a range of each primary key (hex digits
-- padded with 0s and fs are the lowest and highest uuid that start with them; uuids compare
-- byte by byte, as their hex reads), so a prefix costs an index probe however large the
-- table. A suffix has no index (an index on the random tail of the job id would put every
-- enqueue on a random page of it: the write cost 0011 avoids), so it is a bounded scan: the
-- newest 100,000 queue jobs (a backward scan of jobs_pkey, ids being time-ordered), and every
-- dead letter and content job (both kept only for the retention, 72 h by default, and far
-- fewer than jobs). An older queue job is found by its number, a prefix or its full id.
-- SECURITY INVOKER: service_role reads these tables itself; it is the only role granted.
create function public.operator_find_jobs(p_ref text, p_limit int default 10)
returns table (
  source text,
  id uuid,
  job_number bigint,
  job_id uuid,
  dead_letter_id uuid,
  kind text,
  status text,
  created_at timestamptz,
  matched text,
  total bigint
)
language plpgsql
stable
set search_path = ''
as $$
#variable_conflict use_column
declare
  c_cap constant int := 1001;
  c_suffix_scan constant int := 100000;
  v_ref text := btrim(coalesce(p_ref, ''));
  v_number bigint;
  v_hex text;
  v_lo uuid;
  v_hi uuid;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_find_jobs: p_limit must be between 1 and 1000';
  end if;
  if v_ref ~ '^#[0-9]{1,18}$' then
    v_number := substr(v_ref, 2)::bigint;
  elsif v_ref ~ '^[0-9]{1,18}$'
        and exists (select 1 from public.jobs j where j.msg_id = v_ref::bigint) then
    v_number := v_ref::bigint;
  elsif v_ref ~ '^[0-9A-Fa-f-]+$'
        and length(replace(v_ref, '-', '')) between 4 and 32 then
    v_hex := lower(replace(v_ref, '-', ''));
  elsif v_ref ~ '^[0-9]{1,3}$' then
    return; -- a number no job has, too short to be a fragment: nothing
  else
    raise exception 'operator_find_jobs: "%" is not a job reference', left(v_ref, 100)
      using errcode = '22023',
            hint = 'give a job number (1234 or #1234), a uuid, or 4 to 32 of its hex digits (its start or its end)';
  end if;

  if v_hex is not null then
    v_lo := rpad(v_hex, 32, '0')::uuid;
    v_hi := rpad(v_hex, 32, 'f')::uuid;
  end if;

  return query
  with found as (
    select 'job'::text as source, j.id, 'number'::text as matched
    from public.jobs j where j.msg_id = v_number
    union all
    (select 'job', j.id, 'prefix' from public.jobs j
     where j.id between v_lo and v_hi order by j.id desc limit c_cap)
    union all
    (select 'dead_letter', d.id, 'prefix' from public.dead_letter_jobs d
     where d.id between v_lo and v_hi limit c_cap)
    union all
    (select 'content_job', c.id, 'prefix' from public.content_jobs c
     where c.id between v_lo and v_hi limit c_cap)
    union all
    (select 'job', r.id, 'suffix'
     from (select j.id from public.jobs j
           where length(v_hex) < 32 order by j.id desc limit c_suffix_scan) r
     where right(replace(r.id::text, '-', ''), length(v_hex)) = v_hex
     limit c_cap)
    union all
    (select 'dead_letter', d.id, 'suffix' from public.dead_letter_jobs d
     where length(v_hex) < 32 and right(replace(d.id::text, '-', ''), length(v_hex)) = v_hex
     limit c_cap)
    union all
    (select 'content_job', c.id, 'suffix' from public.content_jobs c
     where length(v_hex) < 32 and right(replace(c.id::text, '-', ''), length(v_hex)) = v_hex
     limit c_cap)
  ), distinct_found as (
    -- An id that both starts and ends with the fragment is one match.
    select distinct on (f.source, f.id) f.source, f.id,
           case when length(v_hex) = 32 then 'id' else f.matched end as matched
    from found f
    order by f.source, f.id, f.matched
  ), capped as (
    select f.*, count(*) over () as total
    from (select * from distinct_found limit c_cap) f
  ), described as (
    select f.source, f.id, j.msg_id as job_number, j.id as job_id,
           (select d.id from public.dead_letter_jobs d where d.job_id = j.id
            order by d.created_at desc limit 1) as dead_letter_id,
           j.kind, j.status, j.created_at, f.matched, f.total
    from capped f join public.jobs j on j.id = f.id
    where f.source = 'job'
    union all
    select f.source, f.id, j.msg_id, d.job_id, d.id, d.kind,
           case when d.redriven_at is null then 'dead' else 'redriven' end,
           d.created_at, f.matched, f.total
    from capped f
    join public.dead_letter_jobs d on d.id = f.id
    join public.jobs j on j.id = d.job_id
    where f.source = 'dead_letter'
    union all
    select f.source, f.id, null::bigint, null::uuid, null::uuid, 'content', c.status,
           c.created_at, f.matched, f.total
    from capped f join public.content_jobs c on c.id = f.id
    where f.source = 'content_job'
  )
  select * from described x
  order by x.created_at desc, x.job_number desc nulls last, x.id desc
  limit p_limit;
end
$$;
comment on function public.operator_find_jobs(text, int) is
  'The queue jobs, dead letters and content jobs a reference names: #1234 / 1234 (a job number), a uuid, or 4-32 hex digits of its start or end; newest first, with the total (capped at 1001).';

revoke all on function public.operator_find_jobs(text, int) from public, anon, authenticated;
grant execute on function public.operator_find_jobs(text, int) to service_role;

-- ---------------------------------------------------------------------------------------
-- The dead-letter panel with each letter's job number
-- ---------------------------------------------------------------------------------------
-- As in 20251101000000_operator_views.sql, plus `job_number` in `latest`: the dashboard
-- shows a dead job as #1234, the number `conveyor dlq show|redrive` takes.
create or replace function public.operator_dead_letters(p_limit int default 10)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_dead_letters: p_limit must be between 1 and 1000';
  end if;
  return jsonb_build_object(
    'size', (select count(*) from public.dead_letter_jobs d where d.redriven_at is null),
    'by_kind', coalesce((
      select jsonb_agg(jsonb_build_object('kind', k.kind, 'size', k.n, 'newest', k.newest)
                       order by k.n desc, k.kind)
      from (select d.kind, count(*) as n, max(d.created_at) as newest
            from public.dead_letter_jobs d
            where d.redriven_at is null
            group by d.kind) k), '[]'::jsonb),
    'latest', coalesce((
      select jsonb_agg(jsonb_build_object(
               'id', d.id, 'job_id', d.job_id, 'job_number', j.msg_id,
               'tenant_id', d.tenant_id, 'tenant', t.name,
               'kind', d.kind, 'queue', d.queue_name, 'reason', d.reason,
               'attempts', d.attempts, 'errors', jsonb_array_length(d.errors),
               'created_at', d.created_at, 'acknowledged_at', d.acknowledged_at)
             order by d.created_at desc, d.id)
      from (select * from public.dead_letter_jobs x
            where x.redriven_at is null
            order by x.created_at desc, x.id
            limit p_limit) d
      join public.tenants t on t.id = d.tenant_id
      join public.jobs j on j.id = d.job_id), '[]'::jsonb));
end
$$;
comment on function public.operator_dead_letters(int) is
  'Dead letters not yet redriven: {size, by_kind: [{kind,size,newest}], latest: [{id,job_id,job_number,tenant,kind,queue,reason,attempts,errors,created_at,acknowledged_at}]}.';

-- ---------------------------------------------------------------------------------------
-- Events with the job's number
-- ---------------------------------------------------------------------------------------
-- As in 20251101000000_operator_views.sql (read the comment there for the two branches per
-- source), plus `job_number`: `conveyor tail` shows a queue job's events under #1234. A new
-- result column changes the function's type, hence drop and create (and grant again).
drop function public.operator_events(bigint, bigint, int, text);
create function public.operator_events(
  p_after_job_event bigint default null,
  p_after_content_event bigint default null,
  p_limit int default 200,
  p_filter text default null
) returns table (
  source text,
  id bigint,
  created_at timestamptz,
  job_id uuid,
  subject text,
  event text,
  message text,
  tenant text,
  job_number bigint
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_events: p_limit must be between 1 and 1000';
  end if;
  return query
  with je as (
    (select e.* from public.job_events e
     where p_after_job_event is null
       and (p_filter is null
            or exists (select 1 from public.jobs j where j.id = e.job_id and j.kind = p_filter))
     order by e.id desc
     limit p_limit)
    union all
    (select e.* from public.job_events e
     where p_after_job_event is not null and e.id > p_after_job_event
       and (p_filter is null
            or exists (select 1 from public.jobs j where j.id = e.job_id and j.kind = p_filter))
     order by e.id
     limit p_limit)
  ), ce as (
    (select e.* from public.content_job_events e
     where p_after_content_event is null and (p_filter is null or e.stage = p_filter)
     order by e.id desc
     limit p_limit)
    union all
    (select e.* from public.content_job_events e
     where p_after_content_event is not null and e.id > p_after_content_event
       and (p_filter is null or e.stage = p_filter)
     order by e.id
     limit p_limit)
  )
  select * from (
    select 'job'::text as source, e.id, e.created_at, e.job_id, j.kind as subject,
           e.type as event,
           coalesce(e.payload ->> 'error', e.payload ->> 'reason',
                    case when e.payload ? 'attempt'
                         then 'attempt ' || (e.payload ->> 'attempt') end) as message,
           t.name as tenant, j.msg_id as job_number
    from je e
    join public.jobs j on j.id = e.job_id
    join public.tenants t on t.id = e.tenant_id
    union all
    select 'content'::text, e.id, e.created_at, e.job_id, coalesce(e.stage, 'job'), e.status,
           e.message, null::text, null::bigint
    from ce e
  ) x
  order by x.created_at, x.source, x.id;
end
$$;
comment on function public.operator_events(bigint, bigint, int, text) is
  'job_events (with the job''s number) and content_job_events after the given ids (NULL: the newest p_limit of each), oldest first.';

revoke all on function public.operator_events(bigint, bigint, int, text)
  from public, anon, authenticated;
grant execute on function public.operator_events(bigint, bigint, int, text) to service_role;

-- ---------------------------------------------------------------------------------------
-- A retry that falls due while its worker runs dry (issue 19, item 7)
-- ---------------------------------------------------------------------------------------
-- As in 0053_queue_consume.sql, except that a message that became visible within the last
-- second counts as next due (its wait is then 0: the worker asks for a worker at once).
-- A drain lingers QUEUE_IDLE_LINGER_MS (1 s) after its last job, and a first retry backs off
-- 1 s: the retry tended to become visible between the drain's last, empty, claim and this
-- call, which then found nothing "not yet due", so the retry waited for cron's next minute
-- (52 s in the tour) instead of 1 s. A message visible for longer was there at that claim
-- and left for a reason (a rate limit: no tokens): no reason to wake, as before. Waking for
-- one that another worker claims meanwhile starts nobody (trigger_queue_worker counts ready
-- messages).
create or replace function public.queue_next_due_at(p_kind text) returns timestamptz
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
         where q.vt > clock_timestamp() - interval '1 second'
           and exists (select 1 from public.jobs j where j.msg_id = q.msg_id and j.status = 'pending')$q$,
      'q_' || v_queue) into v_at;
    v_min := least(v_min, v_at);
  end loop;
  return v_min;
end
$$;
comment on function public.queue_next_due_at(text) is
  'When the next pending job of a kind becomes due (delay, backoff, snooze), or became due within the last second; NULL when none is waiting.';
