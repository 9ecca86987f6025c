-- Operator views (20251101000000_operator_views.sql): the panels' numbers, the monotonic
-- totals behind the Prometheus counters, pause/resume/scale, input checks and privileges.
begin;
select plan(16);

-- A kind of this test's own, dispatch off, with jobs in three states.
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('t_opviews', 'q_t_opviews', 'test', 'operator views test', false);
select conveyor.ensure_kind_queues('t_opviews');
select public.queue_job(jsonb_build_object('idempotency_key', 'opv-' || g, 'kind', 't_opviews',
                                           'payload', jsonb_build_object('g', g)))
from generate_series(1, 4) g;
select public.queue_job('{"idempotency_key":"opv-late","kind":"t_opviews","delay_seconds":600}');
create temporary table claimed on commit drop as
select * from public.claim_jobs('t_opviews', 'opv-test', 2, 600);
select public.complete_job((select job_id from claimed order by job_id limit 1),
                           (select lease_id from claimed order by job_id limit 1));

select is(
  (select jsonb_build_object('ready', ready, 'delayed', delayed, 'in_flight', in_flight,
                             'processed', processed, 'failed', failed, 'enabled', kind_enabled)
   from public.operator_queues(60) where queue = 'q_t_opviews'),
  '{"ready": 2, "delayed": 1, "in_flight": 1, "processed": 1, "failed": 0, "enabled": false}'::jsonb,
  'operator_queues: ready, delayed, in flight and processed of a queue');
select is(
  (select array_length(processed_series, 1) from public.operator_queues(30) where queue = 'q_t_opviews'),
  30, 'the per-minute series has one bucket per minute of the window');
select is(
  (select processed_series[30] from public.operator_queues(30) where queue = 'q_t_opviews'),
  1::bigint, 'a job finished now is in the last bucket');
select is(
  (select count(*)::int from public.operator_queues(60) where kind = 't_opviews'), 3,
  'one row per tier');

-- Snapshots: the throughput stays the same before and after one, and the totals grow by it.
-- A snapshot counts whole minutes (conveyor.job_counts): one taken when this minute has closed.
select public.capture_queue_metrics(date_trunc('minute', now()) + interval '1 minute 1 second');
select is(
  (select processed from public.operator_queues(60) where queue = 'q_t_opviews'), 1::bigint,
  'after a snapshot the window still counts the job once');
select is(
  (select processed from conveyor.queue_totals
   where queue_name = 'q_t_opviews' and tenant_id = conveyor.default_tenant_id()),
  1::bigint, 'a snapshot adds its processed jobs to conveyor.queue_totals');
select is(
  (select value from public.operator_metrics()
   where metric = 'conveyor_queue_processed_jobs_total' and labels ->> 'queue' = 'q_t_opviews'),
  1::float8, 'the counter is the totals plus what finished since the last snapshot, no double count');

-- Stage totals survive the deletion of the events they count.
create temporary table before_totals on commit drop as
select errors_total from public.operator_stages(60) where stage = 'qa';
insert into public.content_jobs (id, idempotency_key, brief, max_attempts)
values ('00000000-0000-4000-8000-00000000e001', 'opv-content', '{"topic":"t"}', 3);
insert into public.content_job_events (job_id, stage, status, message)
values ('00000000-0000-4000-8000-00000000e001', 'qa', 'error', 'opv <b>boom</b>');
select is(
  (select errors_total from public.operator_stages(60) where stage = 'qa'),
  (select errors_total + 1 from before_totals), 'an error event counts');
select is(
  (select message from public.operator_stage_errors(5) where job_id = '00000000-0000-4000-8000-00000000e001'),
  'opv <b>boom</b>', 'operator_stage_errors returns the event (escaping is the page''s job)');
delete from public.content_jobs where id = '00000000-0000-4000-8000-00000000e001';
select is(
  (select errors_total from public.operator_stages(60) where stage = 'qa'),
  (select errors_total + 1 from before_totals), 'deleting the job and its events keeps the count');

-- Pause, resume, scale.
select is(
  public.operator_configure_target('qa', false, 5, 2) - 'kicked',
  '{"source":"content","target":"qa","enabled":false,"max_concurrency":5,"trigger_batch_size":2}'::jsonb,
  'a content stage is paused and scaled');
select is(
  (select jsonb_build_object('enabled', enabled, 'max', max_concurrency)
   from public.content_stage_config where stage = 'qa'),
  '{"enabled": false, "max": 5}'::jsonb, 'in content_stage_config');
select is(
  public.operator_configure_target('t_opviews', p_max_concurrency => 7) ->> 'source', 'queue',
  'a job kind is a target too');
select throws_ok($$select public.operator_configure_target('nope')$$, 'P0002',
  'operator_configure_target: no content stage or job kind named nope', 'an unknown target');
select throws_ok($$select * from public.operator_queues(0)$$, 'P0001',
  'operator_queues: p_minutes must be between 1 and 1440', 'a bad window');

select is(
  array(select p.oid::regprocedure::text from pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.proname like 'operator\_%'
          and (has_function_privilege('anon', p.oid, 'execute')
               or has_function_privilege('authenticated', p.oid, 'execute')
               or not has_function_privilege('service_role', p.oid, 'execute'))
        order by 1),
  '{}'::text[], 'every operator_* function is service_role only');

select * from finish();
rollback;
