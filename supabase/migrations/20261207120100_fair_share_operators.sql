-- What operators see and change of fair share and concurrency keys (issue 21; the mechanism is
-- 20261207120000_fair_share.sql, the design docs/fairness.md): per-tenant backlog and running
-- jobs with a starving flag, the concurrency keys at their limit, tenant weights and key
-- limits. Read by the dashboard, Prometheus (conveyor-metrics), `deno task conveyor status`
-- and `deno task doctor`; service_role only, as every operator_* function (they aggregate
-- across tenants).

-- ---------------------------------------------------------------------------------------
-- Tenants
-- ---------------------------------------------------------------------------------------

-- Per job kind or content stage and tenant with live work: ready, waiting (delayed, backing
-- off, or parked behind a concurrency key), running, how long its oldest ready job has
-- waited, its weight and share of what was claimed over the last p_minutes, and whether it
-- is starving: it has ready work whose oldest job has waited at least starving_factor (10)
-- times the median of the other tenants' oldest ready jobs of the same kind or stage (and at
-- least starving_min_sec, 60 s), and none of its jobs of that kind or stage was claimed in
-- the current or the previous minute. A tenant with a deep backlog that is being served is
-- not starving; one whose jobs wait while the others' run is.
create function public.operator_tenants(p_minutes int default 5)
returns table (
  source text,
  target text,
  tenant_id uuid,
  tenant text,
  weight numeric,
  ready bigint,
  waiting bigint,
  running bigint,
  oldest_ready_age_sec int,
  others_median_age_sec int,
  claimed bigint,
  claimed_share numeric,
  recently_claimed bigint,
  starving boolean
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := clock_timestamp();
  v_factor numeric := coalesce((select (s.value #>> '{}')::numeric from conveyor.settings s
                                where s.key = 'starving_factor'), 10);
  v_min numeric := coalesce((select (s.value #>> '{}')::numeric from conveyor.settings s
                             where s.key = 'starving_min_sec'), 60);
begin
  if p_minutes is null or p_minutes < 1 or p_minutes > 1440 then
    raise exception 'operator_tenants: p_minutes must be between 1 and 1440';
  end if;
  return query
  with tiers as (
    select k.kind, conveyor.tier_queue(k.queue_name, t.tier) as queue
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
  ), live as (
    select 'queue'::text as source, q.kind as target, l.tenant_id,
           sum(l.ready)::bigint as ready, sum(l.waiting)::bigint as waiting,
           sum(l.in_flight)::bigint as running, min(l.oldest_ready) as oldest
    from conveyor.live_jobs(v_now) l
    join tiers q on q.queue = l.queue_name
    group by q.kind, l.tenant_id
    union all
    select 'content', s.stage, s.tenant_id,
           count(*) filter (where (s.status = 'ready' and s.available_at <= v_now)
                              or (s.status = 'in_progress' and s.lease_expires_at <= v_now)),
           count(*) filter (where s.status = 'ready' and s.available_at > v_now),
           count(*) filter (where s.status = 'in_progress' and s.lease_expires_at > v_now),
           min(case when s.status = 'ready' and s.available_at <= v_now then s.available_at
                    when s.status = 'in_progress' and s.lease_expires_at <= v_now
                      then s.lease_expires_at end)
    from public.content_job_stages s
    where s.status in ('ready', 'in_progress')
    group by s.stage, s.tenant_id
  ), counted as (
    -- Claims per kind and tenant: over the window, and in the current and previous minute.
    select 'queue'::text as source, q.kind as target, c.tenant_id,
           sum(c.claimed) filter (where c.minute >= date_trunc('minute', v_now) - make_interval(mins => p_minutes - 1)) as claimed,
           sum(c.claimed) filter (where c.minute >= date_trunc('minute', v_now) - interval '1 minute') as recent
    from conveyor.job_counts c
    join tiers q on q.queue = c.queue_name
    where c.minute >= date_trunc('minute', v_now) - make_interval(mins => greatest(p_minutes - 1, 1))
    group by q.kind, c.tenant_id
    union all
    select 'content', e.stage, j.tenant_id,
           count(*) filter (where e.created_at >= date_trunc('minute', v_now) - make_interval(mins => p_minutes - 1)),
           count(*) filter (where e.created_at >= date_trunc('minute', v_now) - interval '1 minute')
    from public.content_stage_config c
    cross join lateral (
      select x.job_id, x.stage, x.created_at from public.content_job_events x
      where x.stage = c.stage and x.status = 'claimed'
        and x.created_at >= date_trunc('minute', v_now) - make_interval(mins => greatest(p_minutes - 1, 1))) e
    join public.content_jobs j on j.id = e.job_id
    group by e.stage, j.tenant_id
  ), rows_ as (
    select coalesce(l.source, c.source) as source, coalesce(l.target, c.target) as target,
           coalesce(l.tenant_id, c.tenant_id) as tenant_id,
           coalesce(l.ready, 0) as ready, coalesce(l.waiting, 0) as waiting,
           coalesce(l.running, 0) as running,
           case when coalesce(l.ready, 0) > 0
                then greatest(0, floor(extract(epoch from v_now - l.oldest)))::int end as age,
           coalesce(c.claimed, 0)::bigint as claimed, coalesce(c.recent, 0)::bigint as recent
    from live l
    full join counted c on c.source = l.source and c.target = l.target and c.tenant_id = l.tenant_id
  ), judged as (
    select r.*,
           (select percentile_cont(0.5) within group (order by o.age)
            from rows_ o
            where o.source = r.source and o.target = r.target and o.tenant_id <> r.tenant_id
              and o.age is not null) as others
    from rows_ r
  )
  select j.source, j.target, j.tenant_id, t.name, coalesce(w.weight, 1), j.ready, j.waiting,
         j.running, j.age, round(j.others)::int, j.claimed,
         case when sum(j.claimed) over (partition by j.source, j.target) > 0
              then round(j.claimed::numeric / sum(j.claimed) over (partition by j.source, j.target), 4)
         end,
         j.recent,
         coalesce(j.age is not null and j.others is not null and j.recent = 0
                  and j.age >= greatest(v_min, v_factor * greatest(j.others, 1)), false)
  from judged j
  join public.tenants t on t.id = j.tenant_id
  left join conveyor.tenant_weights w on w.tenant_id = j.tenant_id
  where j.ready + j.waiting + j.running + j.claimed > 0
  order by j.source desc, j.target, j.ready desc, t.name;
end
$$;
comment on function public.operator_tenants(int) is
  'Per job kind or content stage and tenant: ready, waiting, running, oldest ready age, weight, claims over p_minutes and their share, starving.';

-- ---------------------------------------------------------------------------------------
-- Concurrency keys
-- ---------------------------------------------------------------------------------------

-- Keys with parked jobs or as many running jobs as their limit, most parked first: running
-- (live leases), the limit (an operator's override, else the limit the oldest parked job
-- asked for, else the kind's default), parked jobs and how long the oldest has waited.
create function public.operator_concurrency_keys(p_limit int default 100)
returns table (
  kind text,
  tenant_id uuid,
  tenant text,
  concurrency_key text,
  running bigint,
  max_running int,
  waiting bigint,
  oldest_waiting_age_sec int,
  at_limit boolean
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
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    raise exception 'operator_concurrency_keys: p_limit must be between 1 and 10000';
  end if;
  return query
  with leases as (
    select l.kind, l.tenant_id, l.concurrency_key, count(*) as n
    from conveyor.key_leases l where l.expires_at > v_now
    group by l.kind, l.tenant_id, l.concurrency_key
  ), waiters as (
    select w.kind, w.tenant_id, w.concurrency_key, count(*) as n, min(w.parked_at) as since,
           (array_agg(w.max_running order by w.msg_id))[1] as asked
    from conveyor.key_waiters w
    group by w.kind, w.tenant_id, w.concurrency_key
  ), keys as (
    select coalesce(l.kind, w.kind) as kind, coalesce(l.tenant_id, w.tenant_id) as tenant_id,
           coalesce(l.concurrency_key, w.concurrency_key) as concurrency_key,
           coalesce(l.n, 0) as running, coalesce(w.n, 0) as waiting, w.since, w.asked
    from leases l
    full join waiters w on w.kind = l.kind and w.tenant_id = l.tenant_id
                       and w.concurrency_key = l.concurrency_key
  ), limited as (
    select k.*, coalesce(o.max_running, k.asked, jk.concurrency_key_limit) as max_running
    from keys k
    join conveyor.job_kinds jk on jk.kind = k.kind
    left join conveyor.concurrency_key_limits o
      on o.tenant_id = k.tenant_id and o.kind = k.kind and o.concurrency_key = k.concurrency_key
  )
  select k.kind, k.tenant_id, t.name, k.concurrency_key, k.running, k.max_running, k.waiting,
         greatest(0, floor(extract(epoch from v_now - k.since)))::int,
         k.running >= k.max_running
  from limited k
  join public.tenants t on t.id = k.tenant_id
  where k.waiting > 0 or k.running >= k.max_running
  order by k.waiting desc, k.running desc, k.kind, t.name, k.concurrency_key
  limit p_limit;
end
$$;
comment on function public.operator_concurrency_keys(int) is
  'Concurrency keys with parked jobs or at their limit: running, max_running, waiting (parked), oldest parked age.';

-- ---------------------------------------------------------------------------------------
-- Changing weights and limits
-- ---------------------------------------------------------------------------------------

-- A tenant's fair share weight (1 removes the row: the default). Returns the tenant's
-- setting.
create function public.operator_set_tenant_weight(p_tenant uuid, p_weight numeric)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_weight is null or p_weight <= 0 or p_weight > 1000 then
    raise exception 'operator_set_tenant_weight: weight must be greater than 0 and at most 1000';
  end if;
  if p_tenant is null or not exists (select 1 from public.tenants t where t.id = p_tenant) then
    raise exception 'operator_set_tenant_weight: no tenant %', coalesce(p_tenant::text, 'null')
      using errcode = 'P0002';
  end if;
  if p_weight = 1 then
    delete from conveyor.tenant_weights w where w.tenant_id = p_tenant;
  else
    insert into conveyor.tenant_weights as w (tenant_id, weight, updated_at)
    values (p_tenant, p_weight, now())
    on conflict (tenant_id) do update set weight = excluded.weight, updated_at = excluded.updated_at;
  end if;
  return jsonb_build_object('tenant_id', p_tenant,
                            'tenant', (select t.name from public.tenants t where t.id = p_tenant),
                            'weight', p_weight);
end
$$;
comment on function public.operator_set_tenant_weight(uuid, numeric) is
  'Sets a tenant''s fair share weight (greater than 0, at most 1000; 1 is the default).';

-- A concurrency key limit: without p_key, the kind's default (conveyor.job_kinds); with
-- p_key, the override for that key of p_tenant (default tenant when NULL), which NULL
-- p_limit removes. Parked jobs of keys with free slots now are woken at once.
create function public.operator_set_concurrency_limit(
  p_kind text,
  p_limit int,
  p_key text default null,
  p_tenant uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_kind conveyor.job_kinds;
  v_tenant uuid := coalesce(p_tenant, conveyor.default_tenant_id());
  v_out jsonb;
begin
  if p_limit is not null and (p_limit < 1 or p_limit > 1000) then
    raise exception 'operator_set_concurrency_limit: limit must be between 1 and 1000';
  end if;
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind;
  if not found then
    raise exception 'operator_set_concurrency_limit: no job kind named %', coalesce(p_kind, 'null')
      using errcode = 'P0002',
            hint = 'kinds: ' || (select string_agg(k.kind, ', ' order by k.kind) from conveyor.job_kinds k);
  end if;
  if p_key is null then
    if p_limit is null then
      raise exception 'operator_set_concurrency_limit: limit must be between 1 and 1000';
    end if;
    update conveyor.job_kinds k set concurrency_key_limit = p_limit where k.kind = p_kind;
    v_out := jsonb_build_object('kind', p_kind, 'concurrency_key', null, 'limit', p_limit);
  else
    if p_key !~ '\S' then
      raise exception 'operator_set_concurrency_limit: concurrency_key must be a non-empty string';
    end if;
    if length(p_key) > 255 then
      raise exception 'operator_set_concurrency_limit: concurrency_key is longer than 255 characters';
    end if;
    if not exists (select 1 from public.tenants t where t.id = v_tenant) then
      raise exception 'operator_set_concurrency_limit: no tenant %', v_tenant using errcode = 'P0002';
    end if;
    if p_limit is null then
      delete from conveyor.concurrency_key_limits c
      where c.tenant_id = v_tenant and c.kind = p_kind and c.concurrency_key = p_key;
    else
      insert into conveyor.concurrency_key_limits as c (tenant_id, kind, concurrency_key, max_running)
      values (v_tenant, p_kind, p_key, p_limit)
      on conflict (tenant_id, kind, concurrency_key) do update
      set max_running = excluded.max_running, updated_at = now();
    end if;
    v_out := jsonb_build_object('kind', p_kind, 'tenant_id', v_tenant,
                                'concurrency_key', p_key, 'limit', p_limit);
  end if;
  select * into v_kind from conveyor.job_kinds k where k.kind = p_kind;
  return v_out || jsonb_build_object('woken', conveyor.wake_free_keys(v_kind, clock_timestamp()));
end
$$;
comment on function public.operator_set_concurrency_limit(text, int, text, uuid) is
  'Sets a kind''s default concurrency key limit (no p_key) or one key''s override for a tenant (NULL p_limit removes it); wakes parked jobs that may run now.';

-- ---------------------------------------------------------------------------------------
-- The dashboard and Prometheus (20251101000000_operator_views.sql), with the tenants and the
-- concurrency keys.
-- ---------------------------------------------------------------------------------------
create or replace function public.operator_dashboard(p_minutes int default 60, p_limit int default 10)
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
                        from public.operator_alerts(p_limit) a), '[]'::jsonb),
    'tenants', coalesce((select jsonb_agg(to_jsonb(t))
                         from public.operator_tenants(least(greatest(p_minutes, 1), 1440)) t), '[]'::jsonb),
    'concurrency_keys', coalesce((select jsonb_agg(to_jsonb(k))
                                  from public.operator_concurrency_keys(50) k), '[]'::jsonb))
$$;
comment on function public.operator_dashboard(int, int) is
  'Every dashboard panel as one JSON document: queues, stages, stage_errors, dead_letters, failed_content_jobs, rate_limiters, alerts, tenants, concurrency_keys.';

create or replace function public.operator_metrics()
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
  ), tenants as (
    select * from public.operator_tenants(5)
  ), ckeys as (
    select k.kind, k.tenant_id, k.tenant, count(*) filter (where k.at_limit) as at_limit,
           sum(k.waiting) as waiting
    from public.operator_concurrency_keys(10000) k
    group by k.kind, k.tenant_id, k.tenant
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
  select m.metric,
         jsonb_build_object('source', t.source, 'target', t.target, 'tenant', t.tenant,
                            'tenant_id', t.tenant_id::text),
         m.value
  from tenants t
  cross join lateral (values
    ('conveyor_tenant_ready_jobs', t.ready::float8),
    ('conveyor_tenant_waiting_jobs', t.waiting::float8),
    ('conveyor_tenant_running_jobs', t.running::float8),
    ('conveyor_tenant_oldest_ready_age_seconds', coalesce(t.oldest_ready_age_sec, 0)::float8),
    ('conveyor_tenant_weight', t.weight::float8),
    ('conveyor_tenant_starving', (t.starving::int)::float8)
  ) as m(metric, value)
  union all
  select m.metric,
         jsonb_build_object('kind', k.kind, 'tenant', k.tenant, 'tenant_id', k.tenant_id::text),
         m.value
  from ckeys k
  cross join lateral (values
    ('conveyor_concurrency_keys_at_limit', k.at_limit::float8),
    ('conveyor_concurrency_key_waiting_jobs', k.waiting::float8)
  ) as m(metric, value)
  union all
  select 'conveyor_metrics_snapshot_age_seconds', '{}'::jsonb,
         extract(epoch from v_now - v_last)::float8
  where v_last is not null;
end
$$;
comment on function public.operator_metrics() is
  'Prometheus samples (metric, labels, value) for queues, dead letters, content stages, rate limiters, open alerts, worker invocations, tenants and concurrency keys.';

revoke all on function public.operator_tenants(int),
  public.operator_concurrency_keys(int),
  public.operator_set_tenant_weight(uuid, numeric),
  public.operator_set_concurrency_limit(text, int, text, uuid)
  from public, anon, authenticated;
grant execute on function public.operator_tenants(int),
  public.operator_concurrency_keys(int),
  public.operator_set_tenant_weight(uuid, numeric),
  public.operator_set_concurrency_limit(text, int, text, uuid)
  to service_role;
