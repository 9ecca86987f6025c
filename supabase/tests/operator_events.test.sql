-- operator_events (20251101000000_operator_views.sql): the newest p_limit events of
-- each source, or those after a given id, oldest first; the kind/stage filter; the limit
-- check.
begin;
select plan(5);
-- Every enqueue writes an event in audit 'full' (the default, 'lean', writes none for them).
update conveyor.settings set value = '"full"' where key = 'audit';

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('t_opev', 'q_t_opev', 'test', 'operator_events test', false),
       ('t_opev2', 'q_t_opev2', 'test', 'operator_events test', false);
select conveyor.ensure_kind_queues('t_opev');
select conveyor.ensure_kind_queues('t_opev2');

create temporary table before_ids on commit drop as
select coalesce(max(id), 0) as job_event, 0::bigint as content_event from public.job_events;
update before_ids set content_event = (select coalesce(max(id), 0) from public.content_job_events);

select public.queue_job(jsonb_build_object('idempotency_key', 'opev-' || g,
                                           'kind', case when g = 3 then 't_opev2' else 't_opev' end))
from generate_series(1, 4) g;
create temporary table mine on commit drop as
select id from public.job_events where id > (select job_event from before_ids) order by id;

select is(
  (select array_agg(id order by id) from mine),
  (select array_agg(id order by x.created_at, x.id)
   from public.operator_events(p_after_job_event => (select job_event from before_ids),
                               p_after_content_event => (select content_event from before_ids)) x
   where x.source = 'job'),
  'after an id: exactly the events after it, oldest first');
select is(
  (select array_agg(x.id order by x.created_at, x.id)
   from public.operator_events(p_limit => 2) x where x.source = 'job'),
  (select array_agg(id order by id) from (select id from mine order by id desc limit 2) s),
  'no id: the newest p_limit events, oldest first');
select is(
  (select array_agg(x.subject || ':' || x.event)
   from public.operator_events(p_after_job_event => (select job_event from before_ids),
                               p_after_content_event => (select content_event from before_ids),
                               p_filter => 't_opev2') x),
  array['t_opev2:enqueued'],
  'the filter keeps one kind');
select is(
  (select count(*)::int
   from public.operator_events(p_after_job_event => (select max(id) from mine),
                               p_after_content_event => (select content_event from before_ids))),
  0, 'nothing after the newest id');
select throws_ok(
  'select * from public.operator_events(p_limit => 1001)',
  'P0001', 'operator_events: p_limit must be between 1 and 1000',
  'the limit is checked');

select * from finish();
rollback;
