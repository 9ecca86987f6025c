-- Observability of the job queues: stats and health on demand (queue_stats, conveyor_health:
-- the worker functions' health answers, the doctor, dashboards), and two pg_cron jobs that run
-- every minute: metric snapshots (public.queue_metrics) and alert rules (public.alert_history).
-- service_role only: they aggregate across tenants.

-- ---------------------------------------------------------------------------------------
-- Where the numbers come from (issue 16: the ledger has no index on status or finished_at,
-- so that claims and settles stay HOT updates):
--   * live jobs are the messages in the kinds' tier queues (a job's message exists while it
--     is pending or processing): conveyor.live_jobs counts them per queue and tenant (the
--     tenant is the one thing a message carries). A message is ready when visible; an
--     invisible one is in flight when its job is processing (looked up by number, for those
--     invisible messages that were read: leases and retry backoffs), else waiting (a delay,
--     a backoff, a snooze). One scan of each queue table: pgmq's own price, and small,
--     since messages leave the queue when settled.
--   * counts over a window (enqueued, claimed, completed, retried, failed) are the
--     per-minute rows of conveyor.job_counts (0050).
-- ---------------------------------------------------------------------------------------

create function conveyor.live_jobs(p_now timestamptz default null)
returns table (queue_name text, tenant_id uuid, ready bigint, waiting bigint, in_flight bigint,
               oldest_ready timestamptz)
language plpgsql
stable
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_queue text;
begin
  for v_queue in
    select h.queue_name from conveyor.queue_hints h
    where to_regclass(format('pgmq.%I', 'q_' || h.queue_name)) is not null
    order by 1
  loop
    return query execute format(
      $q$with q as materialized (
           select (m.message ->> 'tenant_id')::uuid as tenant_id, m.msg_id, m.vt, m.read_ct
           from pgmq.%I m
         ), a as (
           select q.tenant_id, count(*) filter (where q.vt <= $1) as ready,
                  count(*) filter (where q.vt > $1) as invisible,
                  min(q.vt) filter (where q.vt <= $1) as oldest
           from q group by q.tenant_id
         ), f as (
           select q.tenant_id, count(*) as n
           from q join public.jobs j on j.msg_id = q.msg_id
           where q.vt > $1 and q.read_ct > 0 and j.status = 'processing'
           group by q.tenant_id
         )
         select %L::text, a.tenant_id, a.ready, a.invisible - coalesce(f.n, 0), coalesce(f.n, 0),
                a.oldest
         from a left join f on f.tenant_id is not distinct from a.tenant_id$q$,
      'q_' || v_queue, v_queue) using v_now;
  end loop;
end
$$;

comment on function conveyor.live_jobs(timestamptz) is
  'Live jobs per tier queue and tenant, from the queues: ready, waiting (delayed or backing off), in flight, oldest ready since.';

-- The job_counts of [p_from, p_to), per queue and tenant.
create function conveyor.counted_jobs(p_from timestamptz, p_to timestamptz)
returns table (queue_name text, tenant_id uuid, enqueued bigint, claimed bigint,
               completed bigint, retried bigint, failed bigint)
language sql
stable
set search_path = ''
as $$
  select c.queue_name, c.tenant_id, sum(c.enqueued)::bigint, sum(c.claimed)::bigint,
         sum(c.completed)::bigint, sum(c.retried)::bigint, sum(c.failed)::bigint
  from conveyor.job_counts c
  where c.minute >= p_from and c.minute < p_to
  group by c.queue_name, c.tenant_id
$$;

-- ---------------------------------------------------------------------------------------
-- Stats and health (seed 002: publishes, claims, completes, retries, failures per queue)
--
-- depth/visible/oldest come from pgmq.metrics (one scan of each queue table), in flight from
-- conveyor.live_jobs, the counters from conveyor.job_counts over the whole minutes since
-- p_since (minute granularity).
-- ---------------------------------------------------------------------------------------

create function public.queue_stats(p_since interval default '1 hour')
returns table (
  kind text,
  tier text,
  queue text,
  depth bigint,
  visible bigint,
  in_flight bigint,
  oldest_age_sec int,
  publishes bigint,
  claims bigint,
  completes bigint,
  retries bigint,
  failures bigint
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_since timestamptz := date_trunc('minute', now() - coalesce(p_since, interval '1 hour'));
begin
  if p_since is not null and p_since < interval '0' then
    raise exception 'queue_stats: p_since must not be negative';
  end if;
  return query
  with queues as (
    select k.kind, t.tier, conveyor.tier_queue(k.queue_name, t.tier) as queue, t.ord
    from conveyor.job_kinds k
    cross join (values ('fast', 1), ('normal', 2), ('bulk', 3)) as t(tier, ord)
    union all
    select null, 'dead_letter', conveyor.dlq_name(), 4
  ), present as (
    select q.*, exists (select 1 from pgmq.meta m where m.queue_name = q.queue) as exists_
    from queues q
  ), flight as (
    select l.queue_name, sum(l.in_flight)::bigint as n
    from conveyor.live_jobs(clock_timestamp()) l
    group by l.queue_name
  ), ev as (
    select c.queue_name, sum(c.enqueued)::bigint as publishes, sum(c.claimed)::bigint as claims,
           sum(c.completed)::bigint as completes, sum(c.retried)::bigint as retries,
           sum(c.failed)::bigint as failures
    from conveyor.counted_jobs(v_since, 'infinity') c
    group by c.queue_name
  )
  select p.kind, p.tier, p.queue,
         m.queue_length, m.queue_visible_length, coalesce(f.n, 0), m.oldest_msg_age_sec,
         coalesce(ev.publishes, 0), coalesce(ev.claims, 0), coalesce(ev.completes, 0),
         coalesce(ev.retries, 0), coalesce(ev.failures, 0)
  from present p
  left join lateral (
    select * from pgmq.metrics(p.queue::text) where p.exists_
  ) m on true
  left join flight f on f.queue_name = p.queue
  left join ev on ev.queue_name = p.queue
  order by p.kind nulls last, p.ord;
end
$$;

comment on function public.queue_stats(interval) is
  'Per kind and priority tier: depth, visible, in_flight, oldest_age_sec, and publishes/claims/completes/retries/failures over the whole minutes since p_since.';

-- conveyor_health: what a health check needs in one call. `ok` is false when an extension
-- the queues need is missing or a queue table is gone.
create function public.conveyor_health()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_ext jsonb;
  v_expected text[];
  v_missing text[];
begin
  select coalesce(jsonb_object_agg(n.name, e.extversion), '{}')
  into v_ext
  from unnest(array['pgmq', 'pg_net', 'pg_cron', 'supabase_vault']) as n(name)
  left join pg_catalog.pg_extension e on e.extname = n.name;

  select array_agg(q order by q) into v_expected
  from (
    select conveyor.tier_queue(k.queue_name, t.tier) as q
    from conveyor.job_kinds k
    cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    union all
    select conveyor.dlq_name()
  ) s;

  if v_ext ->> 'pgmq' is null then
    v_missing := v_expected;
  else
    select coalesce(array_agg(q order by q), '{}') into v_missing
    from unnest(v_expected) as q
    where not exists (select 1 from pgmq.meta m where m.queue_name = q)
       or to_regclass(format('pgmq.%I', 'q_' || q)) is null;
  end if;

  return jsonb_build_object(
    'ok', v_ext ->> 'pgmq' is not null and cardinality(v_missing) = 0,
    'db', 'ok',
    'now', now(),
    'extensions', v_ext,
    'queues', cardinality(v_expected) - cardinality(v_missing),
    'queues_expected', cardinality(v_expected),
    'missing_queues', to_jsonb(v_missing)
  );
end
$$;

comment on function public.conveyor_health() is
  'Health of the queue layer: db reachable, time, extensions and versions, queues present.';

revoke all on function conveyor.live_jobs(timestamptz),
  conveyor.counted_jobs(timestamptz, timestamptz) from public;
revoke all on function public.queue_stats(interval), public.conveyor_health()
  from public, anon, authenticated;
grant execute on function public.queue_stats(interval), public.conveyor_health()
  to service_role;

-- ---------------------------------------------------------------------------------------
-- Metric snapshots: public.queue_metrics (seed 004), one row per pgmq queue and tenant every
-- minute (pg_cron), or on demand with an explicit clock: depth (pending jobs: ready and
-- waiting), in_flight (processing), the age of the oldest job that is ready and waiting
-- (conveyor.live_jobs), and the jobs that finished in the whole minutes since the previous
-- snapshot (conveyor.job_counts: processed = completed, failed = dead-lettered/cancelled).
-- A (queue, tenant) with nothing live and nothing finished writes no row: an idle system
-- writes nothing.
-- ---------------------------------------------------------------------------------------

insert into conveyor.settings (key, value, description) values
  ('metrics_retention_hours', '168', 'queue_metrics snapshots older than this are pruned')
on conflict (key) do nothing;

-- When snapshots were taken (also for idle minutes, so the next interval starts there).
create table conveyor.metric_snapshots (
  captured_at timestamptz primary key,
  interval_sec int not null,
  rows_written int not null
);

create function public.capture_queue_metrics(p_now timestamptz default null)
returns int
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
  v_prev timestamptz;
  v_rows int;
begin
  -- Two concurrent calls (cron + an operator) must not both count the same interval.
  perform pg_advisory_xact_lock(hashtext('conveyor.capture_queue_metrics'));
  if exists (select 1 from conveyor.metric_snapshots s where s.captured_at >= v_now) then
    return 0; -- this instant (or a later one) is already captured
  end if;
  select max(s.captured_at) into v_prev from conveyor.metric_snapshots s;
  v_prev := coalesce(v_prev, v_now - interval '1 minute');

  with live as (
    select l.tenant_id, l.queue_name, l.ready + l.waiting as depth, l.in_flight,
           l.oldest_ready as oldest
    from conveyor.live_jobs(v_now) l
  ), done as (
    select c.tenant_id, c.queue_name, c.completed as processed, c.failed
    from conveyor.counted_jobs(date_trunc('minute', v_prev), date_trunc('minute', v_now)) c
    where c.completed > 0 or c.failed > 0
  )
  insert into public.queue_metrics (tenant_id, queue_name, captured_at, depth, in_flight,
                                    oldest_age_sec, processed, failed, interval_sec)
  select coalesce(l.tenant_id, d.tenant_id), coalesce(l.queue_name, d.queue_name), v_now,
         coalesce(l.depth, 0), coalesce(l.in_flight, 0),
         greatest(0, floor(extract(epoch from v_now - l.oldest)))::int,
         coalesce(d.processed, 0), coalesce(d.failed, 0),
         ceil(extract(epoch from v_now - v_prev))::int
  from live l
  full join done d on d.tenant_id = l.tenant_id and d.queue_name = l.queue_name;
  get diagnostics v_rows = row_count;

  insert into conveyor.metric_snapshots (captured_at, interval_sec, rows_written)
  values (v_now, ceil(extract(epoch from v_now - v_prev))::int, v_rows);

  -- Retention: through the captured_at indexes.
  delete from public.queue_metrics m
  where m.captured_at < v_now - make_interval(hours => conveyor.setting_int('metrics_retention_hours')::int);
  delete from conveyor.metric_snapshots s
  where s.captured_at < v_now - make_interval(hours => conveyor.setting_int('metrics_retention_hours')::int);
  return v_rows;
end
$$;

comment on function public.capture_queue_metrics(timestamptz) is
  'Writes one queue_metrics snapshot per (tenant, queue) with activity; returns the rows written.';

revoke all on function public.capture_queue_metrics(timestamptz) from public, anon, authenticated;
grant execute on function public.capture_queue_metrics(timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------
-- Alert rules: public.alert_history (seed 004), rules evaluated every minute by pg_cron (or
-- on demand with an explicit clock). A rule that holds for a (tenant, subject) raises ONE open alert (the
-- alert_history_one_open unique index deduplicates; later evaluations refresh its value);
-- when it no longer holds, the open alert is resolved. A rule that holds again later opens
-- a new alert, so the history shows each episode.
--
-- Rules (subject = the pgmq queue, or the kind for dlq_growth):
--   queue_depth   pending jobs in a queue                       >  threshold
--   oldest_age    seconds the oldest ready job has waited       >  threshold
--   dlq_growth    jobs dead-lettered in the last window_sec     >= threshold
--   failure_rate  failed / (completed + failed) in the window   >= threshold, once at least
--                 min_samples jobs finished in the window
-- Thresholds live in conveyor.alert_rules (defaults) and conveyor.tenant_alert_rules
-- (per-tenant overrides). The `dead_letter` alerts that process_dead_letters (0061) raises
-- per dead-lettered message are that consumer's, and are left alone here.
-- ---------------------------------------------------------------------------------------

create table conveyor.alert_rules (
  rule text primary key
    check (rule in ('queue_depth', 'oldest_age', 'dlq_growth', 'failure_rate')),
  threshold numeric not null check (threshold >= 0),
  window_sec int not null default 300 check (window_sec > 0),
  min_samples int not null default 0 check (min_samples >= 0),
  severity text not null default 'warning' check (severity in ('info', 'warning', 'critical')),
  enabled boolean not null default true,
  description text not null
);

insert into conveyor.alert_rules (rule, threshold, window_sec, min_samples, severity, description)
values
  ('queue_depth', 1000, 300, 0, 'warning', 'more than `threshold` pending jobs in one queue'),
  ('oldest_age', 300, 300, 0, 'warning', 'the oldest ready job has waited more than `threshold` seconds'),
  ('dlq_growth', 5, 300, 0, 'critical', 'at least `threshold` jobs dead-lettered in `window_sec`'),
  ('failure_rate', 0.2, 300, 10, 'warning',
   'at least `threshold` of the jobs that finished in `window_sec` failed (min_samples finished)')
on conflict (rule) do nothing;

create table conveyor.tenant_alert_rules (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  rule text not null references conveyor.alert_rules (rule) on delete cascade,
  threshold numeric check (threshold >= 0),
  window_sec int check (window_sec > 0),
  min_samples int check (min_samples >= 0),
  enabled boolean,
  primary key (tenant_id, rule)
);

-- Deleting a rule checks the overrides that name it through this index.
create index tenant_alert_rules_rule_idx on conveyor.tenant_alert_rules (rule);

create function public.evaluate_alerts(p_now timestamptz default null)
returns table (raised int, updated int, resolved int)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
  v_raised int := 0;
  v_updated int := 0;
  v_resolved int := 0;
begin
  perform pg_advisory_xact_lock(hashtext('conveyor.evaluate_alerts'));

  -- One statement: the breaches, then raise and resolve from the same set (no temp table:
  -- this runs as a SECURITY DEFINER function every minute).
  with rules as (
    select t.id as tenant_id, r.rule, r.severity,
           coalesce(o.threshold, r.threshold) as threshold,
           coalesce(o.window_sec, r.window_sec) as window_sec,
           coalesce(o.min_samples, r.min_samples) as min_samples
    from public.tenants t
    cross join conveyor.alert_rules r
    left join conveyor.tenant_alert_rules o on o.tenant_id = t.id and o.rule = r.rule
    where coalesce(o.enabled, r.enabled)
  ), live as (
    select l.tenant_id, l.queue_name, l.ready + l.waiting as depth,
           extract(epoch from v_now - l.oldest_ready) as oldest
    from conveyor.live_jobs(v_now) l
    where l.ready + l.waiting > 0
  ), dead as (
    select d.tenant_id, d.kind, count(*) as n, r.threshold, r.severity, r.window_sec
    from rules r
    join public.dead_letter_jobs d
      on d.tenant_id = r.tenant_id
     and d.created_at > v_now - make_interval(secs => r.window_sec)
     and d.created_at <= v_now
    where r.rule = 'dlq_growth'
    group by d.tenant_id, d.kind, r.threshold, r.severity, r.window_sec
  ), finished as (
    -- The whole minutes of the window (job_counts' granularity), the current one included.
    select c.tenant_id, c.queue_name, sum(c.failed) as failed,
           sum(c.completed + c.failed) as total, r.threshold, r.severity, r.window_sec,
           r.min_samples
    from rules r
    join conveyor.job_counts c
      on c.tenant_id = r.tenant_id
     and c.minute >= date_trunc('minute', v_now - make_interval(secs => r.window_sec))
     and c.minute <= v_now
    where r.rule = 'failure_rate'
    group by c.tenant_id, c.queue_name, r.threshold, r.severity, r.window_sec, r.min_samples
    having sum(c.completed + c.failed) > 0
  ), breaches as (
    select l.tenant_id, r.rule, l.queue_name as subject, r.severity, l.depth::numeric as value,
           r.threshold,
           format('%s pending jobs in %s (threshold %s)', l.depth, l.queue_name, r.threshold)
             as message
    from live l join rules r on r.tenant_id = l.tenant_id and r.rule = 'queue_depth'
    where l.depth > r.threshold
    union all
    select l.tenant_id, r.rule, l.queue_name, r.severity, round(l.oldest), r.threshold,
           format('the oldest ready job in %s has waited %s s (threshold %s s)',
                  l.queue_name, round(l.oldest), r.threshold)
    from live l join rules r on r.tenant_id = l.tenant_id and r.rule = 'oldest_age'
    where l.oldest > r.threshold
    union all
    select d.tenant_id, 'dlq_growth', d.kind, d.severity, d.n, d.threshold,
           format('%s %s jobs dead-lettered in the last %s s (threshold %s)',
                  d.n, d.kind, d.window_sec, d.threshold)
    from dead d
    where d.n >= d.threshold
    union all
    select f.tenant_id, 'failure_rate', f.queue_name, f.severity,
           round(f.failed::numeric / f.total, 4), f.threshold,
           format('%s of %s jobs finished in %s in the last %s s failed (threshold %s)',
                  f.failed, f.total, f.queue_name, f.window_sec, f.threshold)
    from finished f
    where f.total >= greatest(f.min_samples, 1)
      and f.failed::numeric / f.total >= f.threshold
  ), up as (
    -- Raise: one open alert per (tenant, rule, subject); an open one gets the latest value.
    insert into public.alert_history as a (tenant_id, rule, subject, severity, message, value,
                                           threshold, raised_at)
    select b.tenant_id, b.rule, b.subject, b.severity, b.message, b.value, b.threshold, v_now
    from breaches b
    on conflict (tenant_id, rule, subject) where status = 'open'
    do update set value = excluded.value, message = excluded.message,
                  threshold = excluded.threshold, severity = excluded.severity
      where a.value is distinct from excluded.value
         or a.threshold is distinct from excluded.threshold
    returning a.xmax::text = '0' as is_new
  ), res as (
    -- Resolve: open alerts of these rules whose condition no longer holds.
    update public.alert_history a
    set status = 'resolved', resolved_at = v_now
    where a.status = 'open'
      and a.rule in (select r.rule from conveyor.alert_rules r)
      and not exists (
        select 1 from breaches b
        where b.tenant_id = a.tenant_id and b.rule = a.rule and b.subject = a.subject)
    returning a.id
  )
  select (select count(*) filter (where up.is_new) from up),
         (select count(*) filter (where not up.is_new) from up),
         (select count(*) from res)
  into v_raised, v_updated, v_resolved;

  return query select v_raised, v_updated, v_resolved;
end
$$;

comment on function public.evaluate_alerts(timestamptz) is
  'Raises one open alert per breached (tenant, rule, subject) and resolves those that cleared.';

revoke all on function public.evaluate_alerts(timestamptz) from public, anon, authenticated;
grant execute on function public.evaluate_alerts(timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------
-- Every minute, where pg_cron exists (only in cron.database_name: the test template and
-- other scratch databases built from these migrations have no scheduler). cron.schedule
-- (name, …) upserts, so re-running this is harmless.
-- ---------------------------------------------------------------------------------------
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-queue-metrics', '* * * * *',
                          'select public.capture_queue_metrics()');
    perform cron.schedule('conveyor-alerts', '* * * * *',
                          'select * from public.evaluate_alerts()');
  end if;
end
$$;
