-- alert_history (seed 004): rules evaluated every minute by pg_cron (or on demand with an
-- explicit clock). A rule that holds for a (tenant, subject) raises ONE open alert (the
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
-- (per-tenant overrides). The `dead_letter` alerts that process_dead_letters (0054) raises
-- per dead-lettered message are that consumer's, and are left alone here.

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
    select j.tenant_id, j.queue_name, count(*) as depth,
           extract(epoch from v_now - min(j.run_at) filter (where j.run_at <= v_now)) as oldest
    from public.jobs j
    where j.status = 'pending'
    group by j.tenant_id, j.queue_name
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
    select j.tenant_id, j.queue_name,
           count(*) filter (where j.status = 'failed') as failed,
           count(*) as total, r.threshold, r.severity, r.window_sec, r.min_samples
    from rules r
    join public.jobs j
      on j.tenant_id = r.tenant_id
     and j.finished_at > v_now - make_interval(secs => r.window_sec)
     and j.finished_at <= v_now
     and j.status in ('completed', 'failed')
    where r.rule = 'failure_rate'
    group by j.tenant_id, j.queue_name, r.threshold, r.severity, r.window_sec, r.min_samples
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

do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-alerts', '* * * * *',
                          'select * from public.evaluate_alerts()');
  end if;
end
$$;
