-- Metrics and health of the Dragonfly queues (seed 002: publishes, claims, completes,
-- retries, failures per queue), for the worker functions' health answers, the doctor and
-- dashboards. service_role only: they aggregate across tenants.
--
-- Cost: depth/visible/oldest come from pgmq.metrics (one scan of each queue table, which is
-- pgmq's own price and small: messages leave the queue when settled). Everything else reads
-- the ledger through indexes: in-flight jobs through a partial index on processing jobs, the
-- counters through job_events' created_at index (only the window's events are touched, not
-- the whole history), so a 1M-row ledger costs what the last hour costs.

create index if not exists jobs_processing_queue_idx on public.jobs (queue_name)
  where status = 'processing';

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
  v_since timestamptz := now() - coalesce(p_since, interval '1 hour');
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
    select j.queue_name, count(*) as n
    from public.jobs j
    where j.status = 'processing'
    group by j.queue_name
  ), ev as (
    select j.queue_name,
           count(*) filter (where e.type = 'enqueued') as publishes,
           count(*) filter (where e.type = 'claimed') as claims,
           count(*) filter (where e.type = 'completed') as completes,
           count(*) filter (where e.type = 'retry_scheduled') as retries,
           count(*) filter (where e.type = 'dead_lettered') as failures
    from public.job_events e
    join public.jobs j on j.id = e.job_id
    where e.created_at >= v_since
      and e.type in ('enqueued', 'claimed', 'completed', 'retry_scheduled', 'dead_lettered')
    group by j.queue_name
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
  'Per kind and priority tier: depth, visible, in_flight, oldest_age_sec, and publishes/claims/completes/retries/failures over p_since.';

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

revoke all on function public.queue_stats(interval), public.conveyor_health()
  from public, anon, authenticated;
grant execute on function public.queue_stats(interval), public.conveyor_health()
  to service_role;
