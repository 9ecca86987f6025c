-- After 20251020120000_content_dispatcher.sql (lexical order = apply order): the
-- content tables this file reads and triggers on must exist.
--
-- Operator views (issue 8): what the dashboard (conveyor-dashboard), the Prometheus endpoint
-- (conveyor-metrics) and the ops CLI (tools/conveyor.ts) read and change. One function per
-- panel, each ONE set-based statement (no per-queue or per-stage loops), plus
-- operator_dashboard() that returns every panel in one round trip. All of them aggregate
-- across tenants, so they are service_role only.
--
-- Sources and their cost:
--   * live queue state (ready, delayed, in flight, oldest ready job) comes from the queues
--     (conveyor.live_jobs, 0055): the live set, never the history;
--   * throughput per minute comes from conveyor.job_counts (0050), one row per minute and
--     backend: at most p_minutes of rows;
--   * counters for Prometheus must never go down, but retention deletes history. So:
--     queue counters = conveyor.queue_totals (summed from every snapshot as it is written)
--     + the minutes counted since the last snapshot; stage counters =
--     conveyor.stage_event_totals (what retention deleted) + the events still present.
--
-- "Now" is clock_timestamp(), not the transaction's start: a panel read late in a long
-- transaction (the SQL editor, a test) still shows what is true when it is read.
--
-- Changes: operator_configure_target() pauses, resumes and scales a content stage or a job
-- kind (the dispatcher reads both at every cycle) and kicks the dispatcher when work may
-- be waiting.

-- ---------------------------------------------------------------------------------------
-- Monotonic totals
-- ---------------------------------------------------------------------------------------
create table conveyor.queue_totals (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  queue_name text not null,
  processed bigint not null default 0,
  failed bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (tenant_id, queue_name)
);
comment on table conveyor.queue_totals is
  'Jobs completed / failed per tenant and pgmq queue, summed from every queue_metrics snapshot (never pruned): the base of the Prometheus counters.';

-- A row trigger (a snapshot writes one row per active tenant and queue, so a few rows a
-- minute); SECURITY DEFINER because service_role may insert snapshots but cannot reach the
-- conveyor schema.
create function conveyor.accumulate_queue_totals() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into conveyor.queue_totals as t (tenant_id, queue_name, processed, failed, updated_at)
  values (new.tenant_id, new.queue_name, new.processed, new.failed, now())
  on conflict (tenant_id, queue_name) do update
  set processed = t.processed + excluded.processed,
      failed = t.failed + excluded.failed,
      updated_at = excluded.updated_at;
  return null;
end
$$;

create trigger queue_metrics_accumulate_totals
  after insert on public.queue_metrics
  for each row execute function conveyor.accumulate_queue_totals();

create table conveyor.stage_event_totals (
  stage text not null,
  status text not null,
  n bigint not null default 0,
  primary key (stage, status)
);
comment on table conveyor.stage_event_totals is
  'content_job_events (completed, error) that retention or a delete removed, per stage: stage counters = this + the events still present.';

-- Fires only for deletes (retention, an operator cleaning up), never on the hot path.
create function conveyor.accumulate_stage_event_totals() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into conveyor.stage_event_totals as t (stage, status, n)
  values (old.stage, old.status, 1)
  on conflict (stage, status) do update set n = t.n + 1;
  return null;
end
$$;

create trigger content_job_events_accumulate_totals
  after delete on public.content_job_events
  for each row
  when (old.stage is not null and old.status in ('completed', 'error'))
  execute function conveyor.accumulate_stage_event_totals();

-- ---------------------------------------------------------------------------------------
-- Queues
-- ---------------------------------------------------------------------------------------

-- Per pgmq queue (kind × tier): live state, throughput over the last p_minutes (per-minute
-- series, oldest first, the last bucket is the current minute) and the kind's dispatch
-- settings. Snapshots are put in the minute of their interval's midpoint; jobs finished
-- since the last snapshot in the minute they finished.
create function public.operator_queues(p_minutes int default 60)
returns table (
  "position" int,
  kind text,
  tier text,
  queue text,
  kind_enabled boolean,
  max_concurrency int,
  workers bigint,
  ready bigint,
  delayed bigint,
  in_flight bigint,
  oldest_ready_age_sec int,
  processed bigint,
  failed bigint,
  series_start timestamptz,
  processed_series bigint[],
  failed_series bigint[]
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := clock_timestamp();
  v_start timestamptz;
begin
  if p_minutes is null or p_minutes < 1 or p_minutes > 1440 then
    raise exception 'operator_queues: p_minutes must be between 1 and 1440';
  end if;
  v_start := date_trunc('minute', v_now) - make_interval(mins => p_minutes - 1);
  return query
  with queues as (
    select (row_number() over (order by k.kind, t.ord))::int as pos, k.kind, t.tier,
           conveyor.tier_queue(k.queue_name, t.tier) as queue, k.enabled, k.max_concurrency
    from conveyor.job_kinds k
    cross join (values ('fast', 1), ('normal', 2), ('bulk', 3)) as t(tier, ord)
  ), live as (
    select l.queue_name, sum(l.ready)::bigint as ready, sum(l.waiting)::bigint as delayed,
           sum(l.in_flight)::bigint as in_flight, min(l.oldest_ready) as oldest
    from conveyor.live_jobs(v_now) l
    group by l.queue_name
  ), points as (
    select c.queue_name, c.minute as bucket, c.completed as processed, c.failed
    from conveyor.job_counts c
    where c.minute >= v_start and c.minute <= v_now
  ), per_minute as (
    select p.queue_name, p.bucket, sum(p.processed) as processed, sum(p.failed) as failed
    from points p
    where p.bucket >= v_start
    group by p.queue_name, p.bucket
  ), series as (
    select q.queue,
           array_agg(coalesce(pm.processed, 0)::bigint order by b.bucket) as processed_series,
           array_agg(coalesce(pm.failed, 0)::bigint order by b.bucket) as failed_series
    from queues q
    cross join generate_series(v_start, date_trunc('minute', v_now), interval '1 minute') as b(bucket)
    left join per_minute pm on pm.queue_name = q.queue and pm.bucket = b.bucket
    group by q.queue
  ), workers as (
    select i.target as kind, count(*) as n
    from conveyor.worker_invocations i
    where i.source = 'queue' and i.status <> 'finished' and i.expires_at > v_now
    group by i.target
  )
  select q.pos, q.kind, q.tier, q.queue, q.enabled, q.max_concurrency, coalesce(w.n, 0),
         coalesce(l.ready, 0), coalesce(l.delayed, 0), coalesce(l.in_flight, 0),
         greatest(0, floor(extract(epoch from v_now - l.oldest)))::int,
         (select coalesce(sum(x), 0)::bigint from unnest(s.processed_series) x),
         (select coalesce(sum(x), 0)::bigint from unnest(s.failed_series) x),
         v_start, s.processed_series, s.failed_series
  from queues q
  join series s on s.queue = q.queue
  left join live l on l.queue_name = q.queue
  left join workers w on w.kind = q.kind
  order by q.pos;
end
$$;
comment on function public.operator_queues(int) is
  'Per pgmq queue (kind × tier): ready, delayed, in flight, oldest ready age, processed/failed over p_minutes with per-minute series, dispatch settings.';

-- ---------------------------------------------------------------------------------------
-- Content stages
-- ---------------------------------------------------------------------------------------

-- Per content stage, in pipeline order: the same ready / in-flight numbers the dispatcher
-- uses (ready = claimable now incl. expired leases; in_flight = live leases + triggered
-- invocations not yet claimed), items waiting for a retry, and completions and errors over
-- the last p_minutes and in total.
create function public.operator_stages(p_minutes int default 60)
returns table (
  "position" int,
  stage text,
  queue text,
  enabled boolean,
  max_concurrency int,
  trigger_batch_size int,
  ready bigint,
  waiting_retry bigint,
  leased bigint,
  triggered bigint,
  in_flight bigint,
  completed bigint,
  errors bigint,
  completed_total bigint,
  errors_total bigint,
  last_error_at timestamptz,
  worker_endpoint text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := clock_timestamp();
  v_since timestamptz;
begin
  if p_minutes is null or p_minutes < 1 or p_minutes > 1440 then
    raise exception 'operator_stages: p_minutes must be between 1 and 1440';
  end if;
  v_since := v_now - make_interval(mins => p_minutes);
  return query
  with st as (
    select s.stage,
           count(*) filter (where s.status = 'ready' and s.available_at <= v_now)
             + count(*) filter (where s.status = 'in_progress' and s.lease_expires_at <= v_now) as ready,
           count(*) filter (where s.status = 'ready' and s.available_at > v_now) as waiting,
           count(*) filter (where s.status = 'in_progress' and s.lease_expires_at > v_now) as leased
    from public.content_job_stages s
    where s.status in ('ready', 'in_progress')
    group by s.stage
  ), inv as (
    select i.target as stage, count(*) as n
    from conveyor.worker_invocations i
    where i.source = 'content' and i.status = 'triggered' and i.expires_at > v_now
    group by i.target
  ), ev as (
    select e.stage,
           count(*) filter (where e.status = 'completed' and e.created_at > v_since) as completed,
           count(*) filter (where e.status = 'error' and e.created_at > v_since) as errors,
           count(*) filter (where e.status = 'completed') as completed_all,
           count(*) filter (where e.status = 'error') as errors_all,
           max(e.created_at) filter (where e.status = 'error') as last_error_at
    from public.content_job_events e
    where e.stage is not null and e.status in ('completed', 'error')
    group by e.stage
  ), tot as (
    select t.stage,
           coalesce(sum(t.n) filter (where t.status = 'completed'), 0) as completed,
           coalesce(sum(t.n) filter (where t.status = 'error'), 0) as errors
    from conveyor.stage_event_totals t
    group by t.stage
  )
  select coalesce(array_position(conveyor.content_stages(), c.stage), 100), c.stage, c.queue,
         c.enabled, c.max_concurrency, c.trigger_batch_size,
         coalesce(st.ready, 0), coalesce(st.waiting, 0), coalesce(st.leased, 0),
         coalesce(inv.n, 0), coalesce(st.leased, 0) + coalesce(inv.n, 0),
         coalesce(ev.completed, 0), coalesce(ev.errors, 0),
         (coalesce(ev.completed_all, 0) + coalesce(tot.completed, 0))::bigint,
         (coalesce(ev.errors_all, 0) + coalesce(tot.errors, 0))::bigint,
         ev.last_error_at, c.worker_endpoint
  from public.content_stage_config c
  left join st on st.stage = c.stage
  left join inv on inv.stage = c.stage
  left join ev on ev.stage = c.stage
  left join tot on tot.stage = c.stage
  order by 1, c.stage;
end
$$;
comment on function public.operator_stages(int) is
  'Per content stage: config, ready / waiting_retry / leased / triggered / in_flight, completions and errors over p_minutes and in total.';

-- The latest `error` events of the content pipeline, newest first: the newest p_limit of
-- each stage through content_job_events_stage_status_idx, then merged.
create function public.operator_stage_errors(p_limit int default 20)
returns table (
  id bigint,
  job_id uuid,
  stage text,
  message text,
  attempt int,
  max_attempts int,
  created_at timestamptz,
  topic text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_stage_errors: p_limit must be between 1 and 1000';
  end if;
  return query
  select e.id, e.job_id, e.stage, e.message, (e.details ->> 'attempt')::int,
         (e.details ->> 'max_attempts')::int, e.created_at, j.brief ->> 'topic'
  from public.content_stage_config c
  cross join lateral (
    select x.* from public.content_job_events x
    where x.stage = c.stage and x.status = 'error'
    order by x.created_at desc
    limit p_limit
  ) e
  join public.content_jobs j on j.id = e.job_id
  order by e.created_at desc, e.id desc
  limit p_limit;
end
$$;
comment on function public.operator_stage_errors(int) is
  'The latest p_limit content_job_events with status error (message, attempt, the job''s topic).';

-- ---------------------------------------------------------------------------------------
-- Dead letters, rate limiters, alerts
-- ---------------------------------------------------------------------------------------

-- The dead-letter queue as operators see it (not yet redriven): its size, per kind, and the
-- latest p_limit entries with their last error.
create function public.operator_dead_letters(p_limit int default 10)
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
               'id', d.id, 'job_id', d.job_id, 'tenant_id', d.tenant_id, 'tenant', t.name,
               'kind', d.kind, 'queue', d.queue_name, 'reason', d.reason,
               'attempts', d.attempts, 'errors', jsonb_array_length(d.errors),
               'created_at', d.created_at, 'acknowledged_at', d.acknowledged_at)
             order by d.created_at desc, d.id)
      from (select * from public.dead_letter_jobs x
            where x.redriven_at is null
            order by x.created_at desc, x.id
            limit p_limit) d
      join public.tenants t on t.id = d.tenant_id), '[]'::jsonb));
end
$$;
comment on function public.operator_dead_letters(int) is
  'Dead letters not yet redriven: {size, by_kind: [{kind,size,newest}], latest: [{id,job_id,tenant,kind,queue,reason,attempts,errors,created_at,acknowledged_at}]}.';

-- Token buckets as they are NOW (refill applied, as take_rate_limit computes it) and the
-- slots in use (live leases of the service's kinds), most depleted first.
create function public.operator_rate_limiters(p_limit int default 1000)
returns table (
  tenant_id uuid,
  tenant text,
  service_name text,
  tokens numeric,
  capacity numeric,
  refill_per_sec numeric,
  max_concurrent int,
  in_use bigint
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := clock_timestamp();
begin
  if p_limit is null or p_limit < 1 or p_limit > 100000 then
    raise exception 'operator_rate_limiters: p_limit must be between 1 and 100000';
  end if;
  return query
  with busy as (
    select l.tenant_id, l.service_name, count(*) as n
    from conveyor.service_leases l
    where l.expires_at > v_now
    group by l.tenant_id, l.service_name
  ), lim as (
    select r.tenant_id, t.name, r.service_name,
           round(least(r.capacity, r.tokens_available
             + r.refill_per_sec * greatest(0, extract(epoch from v_now - r.refilled_at))), 2) as tokens,
           r.capacity, r.refill_per_sec, r.max_concurrent
    from public.rate_limiters r
    join public.tenants t on t.id = r.tenant_id
  )
  select l.tenant_id, l.name, l.service_name, l.tokens, l.capacity, l.refill_per_sec,
         l.max_concurrent, coalesce(b.n, 0)
  from lim l
  left join busy b on b.tenant_id = l.tenant_id and b.service_name = l.service_name
  order by l.tokens / l.capacity, l.name, l.service_name
  limit p_limit;
end
$$;
comment on function public.operator_rate_limiters(int) is
  'Token buckets per tenant and service with the refill applied, capacity, and slots in use; most depleted first.';

-- Open alerts first, then the most recent ones.
create function public.operator_alerts(p_limit int default 20)
returns table (
  id uuid,
  tenant_id uuid,
  tenant text,
  rule text,
  subject text,
  severity text,
  status text,
  message text,
  value numeric,
  threshold numeric,
  raised_at timestamptz,
  resolved_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_alerts: p_limit must be between 1 and 1000';
  end if;
  return query
  select a.id, a.tenant_id, t.name, a.rule, a.subject, a.severity, a.status, a.message,
         a.value, a.threshold, a.raised_at, a.resolved_at
  from (
    (select * from public.alert_history x where x.status = 'open'
     order by x.raised_at desc limit p_limit)
    union
    (select * from public.alert_history x order by x.raised_at desc limit p_limit)
  ) a
  join public.tenants t on t.id = a.tenant_id
  order by (a.status = 'open') desc, a.raised_at desc, a.id
  limit p_limit;
end
$$;
comment on function public.operator_alerts(int) is
  'The open alerts, then the latest resolved ones (p_limit in all), with the tenant name.';

-- ---------------------------------------------------------------------------------------
-- Failed content jobs (issue 19): the content pipeline's dead jobs, shown by the dashboard
-- and `conveyor dlq list` with the command that retries them from their failed stage
-- (redrive_content_job, 20251020120000_content_dispatcher.sql). Its own privileges below.
-- ---------------------------------------------------------------------------------------

-- {size, by_stage: [{stage, size}], latest: [{job_id, topic, stage, attempts, max_attempts,
-- last_error, failed_at}]}: the failed jobs (content_jobs_status_idx), per failed stage,
-- and the newest p_limit with the stage they failed at.
create function public.operator_failed_content_jobs(p_limit int default 10)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_failed_content_jobs: p_limit must be between 1 and 1000';
  end if;
  return jsonb_build_object(
    'size', (select count(*) from public.content_jobs j where j.status = 'failed'),
    'by_stage', coalesce((
      select jsonb_agg(jsonb_build_object('stage', k.stage, 'size', k.n)
                       order by array_position(conveyor.content_stages(), k.stage))
      from (select s.stage, count(*) as n
            from public.content_jobs j
            join public.content_job_stages s on s.job_id = j.id and s.status = 'failed'
            where j.status = 'failed'
            group by s.stage) k), '[]'::jsonb),
    'latest', coalesce((
      select jsonb_agg(jsonb_build_object(
               'job_id', j.id, 'topic', j.brief ->> 'topic', 'stage', f.stage,
               'attempts', f.attempts, 'max_attempts', f.max_attempts,
               'last_error', j.last_error, 'failed_at', j.finished_at)
             order by j.finished_at desc, j.id)
      from (select * from public.content_jobs x
            where x.status = 'failed'
            order by x.finished_at desc, x.id
            limit p_limit) j
      left join lateral (
        select s.stage, s.attempts, s.max_attempts from public.content_job_stages s
        where s.job_id = j.id and s.status = 'failed'
        order by s.id desc
        limit 1) f on true), '[]'::jsonb));
end
$$;
comment on function public.operator_failed_content_jobs(int) is
  'Failed content jobs: {size, by_stage: [{stage,size}], latest: [{job_id,topic,stage,attempts,max_attempts,last_error,failed_at}]}.';

revoke all on function public.operator_failed_content_jobs(int) from public, anon, authenticated;
grant execute on function public.operator_failed_content_jobs(int) to service_role;

-- ---------------------------------------------------------------------------------------
-- Every panel in one round trip
-- ---------------------------------------------------------------------------------------
create function public.operator_dashboard(p_minutes int default 60, p_limit int default 10)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'generated_at', clock_timestamp(),
    'window_minutes', p_minutes,
    'last_snapshot_at', (select max(s.captured_at) from conveyor.metric_snapshots s),
    'queues', coalesce((select jsonb_agg(to_jsonb(q) order by q."position")
                        from public.operator_queues(p_minutes) q), '[]'::jsonb),
    'stages', coalesce((select jsonb_agg(to_jsonb(s) order by s."position")
                        from public.operator_stages(p_minutes) s), '[]'::jsonb),
    'stage_errors', coalesce((select jsonb_agg(to_jsonb(e) order by e.created_at desc, e.id desc)
                              from public.operator_stage_errors(p_limit) e), '[]'::jsonb),
    'dead_letters', public.operator_dead_letters(p_limit),
    'failed_content_jobs', public.operator_failed_content_jobs(p_limit),
    'rate_limiters', coalesce((select jsonb_agg(to_jsonb(r))
                               from public.operator_rate_limiters(50) r), '[]'::jsonb),
    'alerts', coalesce((select jsonb_agg(to_jsonb(a) order by (a.status = 'open') desc, a.raised_at desc)
                        from public.operator_alerts(p_limit) a), '[]'::jsonb))
$$;
comment on function public.operator_dashboard(int, int) is
  'Every dashboard panel as one JSON document: queues, stages, stage_errors, dead_letters, failed_content_jobs, rate_limiters, alerts.';

-- ---------------------------------------------------------------------------------------
-- Prometheus samples
-- ---------------------------------------------------------------------------------------

-- One row per sample: the metric name, its labels and its value. HELP/TYPE and the text
-- format are the edge function's job (conveyor-metrics); the names follow Prometheus
-- conventions (units in the name, _total for counters) and are documented there.
create function public.operator_metrics()
returns table (metric text, labels jsonb, value double precision)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_last timestamptz;
begin
  select max(s.captured_at) into v_last from conveyor.metric_snapshots s;
  return query
  with queues as (
    select k.kind, t.tier, conveyor.tier_queue(k.queue_name, t.tier) as queue
    from conveyor.job_kinds k
    cross join (values ('fast'), ('normal'), ('bulk')) as t(tier)
  ), live as (
    select l.tenant_id, l.queue_name, l.ready, l.waiting as delayed, l.in_flight,
           l.oldest_ready as oldest
    from conveyor.live_jobs(v_now) l
  ), recent as (
    -- Counted since the last snapshot's whole minutes: not in queue_totals yet.
    select c.tenant_id, c.queue_name, c.completed as processed, c.failed
    from conveyor.counted_jobs(date_trunc('minute', coalesce(v_last, '-infinity')), 'infinity') c
  ), keys as (
    -- Every queue of the default tenant (so a gauge is 0, not absent, before any traffic),
    -- and every (tenant, queue) with live jobs, recent or past throughput.
    select conveyor.default_tenant_id() as tenant_id, q.queue as queue_name from queues q
    union
    select l.tenant_id, l.queue_name from live l
    union
    select r.tenant_id, r.queue_name from recent r
    union
    select t.tenant_id, t.queue_name from conveyor.queue_totals t
  ), per_queue as (
    select k.tenant_id, k.queue_name,
           coalesce(l.ready, 0) as ready, coalesce(l.delayed, 0) as delayed,
           coalesce(l.in_flight, 0) as in_flight,
           greatest(0, extract(epoch from v_now - l.oldest)) as oldest_age,
           coalesce(t.processed, 0) + coalesce(r.processed, 0) as processed,
           coalesce(t.failed, 0) + coalesce(r.failed, 0) as failed
    from keys k
    left join live l on l.tenant_id = k.tenant_id and l.queue_name = k.queue_name
    left join recent r on r.tenant_id = k.tenant_id and r.queue_name = k.queue_name
    left join conveyor.queue_totals t on t.tenant_id = k.tenant_id and t.queue_name = k.queue_name
  ), qrows as (
    select jsonb_build_object('queue', q.queue, 'kind', q.kind, 'tier', q.tier,
                              'tenant', tn.name, 'tenant_id', p.tenant_id::text) as labels, p.*
    from per_queue p
    join queues q on q.queue = p.queue_name
    join public.tenants tn on tn.id = p.tenant_id
  ), stages as (
    select * from public.operator_stages(60)
  ), dead as (
    select d.kind, d.tenant_id, count(*) as n
    from public.dead_letter_jobs d
    where d.redriven_at is null
    group by d.kind, d.tenant_id
  ), limiters as (
    select * from public.operator_rate_limiters(100000)
  ), open_alerts as (
    select a.tenant_id, a.rule, a.severity, count(*) as n
    from public.alert_history a
    where a.status = 'open'
    group by a.tenant_id, a.rule, a.severity
  ), invocations as (
    select i.source, i.target, i.status, count(*) as n
    from conveyor.worker_invocations i
    where i.status <> 'finished' and i.expires_at > v_now
    group by i.source, i.target, i.status
  )
  select 'conveyor_queue_ready_jobs', q.labels, q.ready::float8 from qrows q
  union all
  select 'conveyor_queue_delayed_jobs', q.labels, q.delayed::float8 from qrows q
  union all
  select 'conveyor_queue_in_flight_jobs', q.labels, q.in_flight::float8 from qrows q
  union all
  select 'conveyor_queue_oldest_ready_age_seconds', q.labels, floor(q.oldest_age)::float8
  from qrows q
  union all
  select 'conveyor_queue_processed_jobs_total', q.labels, q.processed::float8 from qrows q
  union all
  select 'conveyor_queue_failed_jobs_total', q.labels, q.failed::float8 from qrows q
  union all
  select 'conveyor_dead_letter_jobs',
         jsonb_build_object('kind', d.kind, 'tenant', t.name, 'tenant_id', d.tenant_id::text),
         d.n::float8
  from dead d join public.tenants t on t.id = d.tenant_id
  union all
  select m.metric, jsonb_build_object('stage', s.stage, 'queue', s.queue), m.value
  from stages s
  cross join lateral (values
    ('conveyor_stage_ready_jobs', s.ready::float8),
    ('conveyor_stage_waiting_retry_jobs', s.waiting_retry::float8),
    ('conveyor_stage_leased_jobs', s.leased::float8),
    ('conveyor_stage_in_flight_workers', s.in_flight::float8),
    ('conveyor_stage_max_concurrency_workers', s.max_concurrency::float8),
    ('conveyor_stage_enabled', (s.enabled::int)::float8),
    ('conveyor_stage_completed_total', s.completed_total::float8),
    ('conveyor_stage_errors_total', s.errors_total::float8)
  ) as m(metric, value)
  union all
  select m.metric,
         jsonb_build_object('service', l.service_name, 'tenant', l.tenant,
                            'tenant_id', l.tenant_id::text),
         m.value
  from limiters l
  cross join lateral (values
    ('conveyor_rate_limiter_tokens', l.tokens::float8),
    ('conveyor_rate_limiter_capacity_tokens', l.capacity::float8),
    ('conveyor_rate_limiter_in_use_slots', l.in_use::float8),
    ('conveyor_rate_limiter_max_concurrent_slots', l.max_concurrent::float8)
  ) as m(metric, value)
  union all
  select 'conveyor_alerts_open',
         jsonb_build_object('rule', a.rule, 'severity', a.severity, 'tenant', t.name,
                            'tenant_id', a.tenant_id::text),
         a.n::float8
  from open_alerts a join public.tenants t on t.id = a.tenant_id
  union all
  select 'conveyor_worker_invocations',
         jsonb_build_object('source', i.source, 'target', i.target, 'status', i.status),
         i.n::float8
  from invocations i
  union all
  select 'conveyor_metrics_snapshot_age_seconds', '{}'::jsonb,
         extract(epoch from v_now - v_last)::float8
  where v_last is not null;
end
$$;
comment on function public.operator_metrics() is
  'Prometheus samples (metric, labels, value) for queues, dead letters, content stages, rate limiters, open alerts and worker invocations.';

-- ---------------------------------------------------------------------------------------
-- Tail
-- ---------------------------------------------------------------------------------------

-- Events of both ledgers after the given ids (NULL: the newest p_limit), oldest first, for
-- `deno task conveyor tail`. p_filter keeps one kind or stage.
--
-- Each source has two branches, newest-first (`order by e.id desc`) and after-an-id
-- (`order by e.id`), each a backward or forward scan of the primary key that stops at p_limit
-- rows; the branch the arguments rule out is gated off by a one-time filter and costs
-- nothing. (One `order by case when … then -e.id else e.id end` would sort every event: no
-- index serves that expression, 0.9 s at 1M jobs / 3M events.)
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
  tenant text
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
           t.name as tenant
    from je e
    join public.jobs j on j.id = e.job_id
    join public.tenants t on t.id = e.tenant_id
    union all
    select 'content'::text, e.id, e.created_at, e.job_id, coalesce(e.stage, 'job'), e.status,
           e.message, null::text
    from ce e
  ) x
  order by x.created_at, x.source, x.id;
end
$$;
comment on function public.operator_events(bigint, bigint, int, text) is
  'job_events and content_job_events after the given ids (NULL: the newest p_limit of each), oldest first.';

-- ---------------------------------------------------------------------------------------
-- Pause, resume, scale
-- ---------------------------------------------------------------------------------------

-- Changes a content stage (content_stage_config) or a job kind (conveyor.job_kinds): the
-- dispatcher reads both at every cycle. NULL leaves a setting as it is. When the target can
-- run afterwards, the dispatcher is kicked (debounced, after COMMIT) so waiting work starts
-- now instead of at the next cron minute. Returns the target's settings.
create function public.operator_configure_target(
  p_target text,
  p_enabled boolean default null,
  p_max_concurrency int default null,
  p_trigger_batch_size int default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_out jsonb;
begin
  if p_max_concurrency is not null and (p_max_concurrency < 0 or p_max_concurrency > 1000) then
    raise exception 'operator_configure_target: max_concurrency must be between 0 and 1000';
  end if;
  if p_trigger_batch_size is not null and (p_trigger_batch_size < 1 or p_trigger_batch_size > 100) then
    raise exception 'operator_configure_target: trigger_batch_size must be between 1 and 100';
  end if;
  update public.content_stage_config c
  set enabled = coalesce(p_enabled, c.enabled),
      max_concurrency = coalesce(p_max_concurrency, c.max_concurrency),
      trigger_batch_size = coalesce(p_trigger_batch_size, c.trigger_batch_size)
  where c.stage = p_target
  returning jsonb_build_object('source', 'content', 'target', c.stage, 'enabled', c.enabled,
                               'max_concurrency', c.max_concurrency,
                               'trigger_batch_size', c.trigger_batch_size)
  into v_out;
  if v_out is null then
    update conveyor.job_kinds k
    set enabled = coalesce(p_enabled, k.enabled),
        max_concurrency = coalesce(p_max_concurrency, k.max_concurrency),
        trigger_batch_size = coalesce(p_trigger_batch_size, k.trigger_batch_size)
    where k.kind = p_target
    returning jsonb_build_object('source', 'queue', 'target', k.kind, 'enabled', k.enabled,
                                 'max_concurrency', k.max_concurrency,
                                 'trigger_batch_size', k.trigger_batch_size)
    into v_out;
  end if;
  if v_out is null then
    raise exception 'operator_configure_target: no content stage or job kind named %', p_target
      using errcode = 'P0002',
            hint = format('stages: %s; kinds: %s',
                          (select string_agg(c.stage, ', ' order by array_position(conveyor.content_stages(), c.stage))
                           from public.content_stage_config c),
                          (select string_agg(k.kind, ', ' order by k.kind) from conveyor.job_kinds k));
  end if;
  if (v_out ->> 'enabled')::boolean and (v_out ->> 'max_concurrency')::int > 0 then
    v_out := v_out || jsonb_build_object('kicked',
      conveyor.kick(case when v_out ->> 'source' = 'content' then 'content:' else 'queue:' end
                    || p_target));
  end if;
  return v_out;
end
$$;
comment on function public.operator_configure_target(text, boolean, int, int) is
  'Pause/resume (p_enabled) or scale (p_max_concurrency, p_trigger_batch_size) a content stage or a job kind; kicks the dispatcher when it can run.';

-- ---------------------------------------------------------------------------------------
-- Privileges: service_role only.
-- ---------------------------------------------------------------------------------------
revoke all on table conveyor.queue_totals, conveyor.stage_event_totals from public;
revoke all on function conveyor.accumulate_queue_totals(),
  conveyor.accumulate_stage_event_totals()
  from public;
revoke all on function public.operator_queues(int),
  public.operator_stages(int),
  public.operator_stage_errors(int),
  public.operator_dead_letters(int),
  public.operator_rate_limiters(int),
  public.operator_alerts(int),
  public.operator_dashboard(int, int),
  public.operator_metrics(),
  public.operator_events(bigint, bigint, int, text),
  public.operator_configure_target(text, boolean, int, int)
  from public, anon, authenticated;
grant execute on function public.operator_queues(int),
  public.operator_stages(int),
  public.operator_stage_errors(int),
  public.operator_dead_letters(int),
  public.operator_rate_limiters(int),
  public.operator_alerts(int),
  public.operator_dashboard(int, int),
  public.operator_metrics(),
  public.operator_events(bigint, bigint, int, text),
  public.operator_configure_target(text, boolean, int, int)
  to service_role;
