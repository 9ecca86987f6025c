-- The per-minute pg_cron jobs of seed 004's service (0055, 0071): schedules, queue_metrics
-- snapshots and alert evaluation, registered in the database pg_cron serves (pg_prove runs
-- against it) and pointing at the functions the suites test with an injected clock.
begin;
select plan(4);

select ok(exists (select 1 from pg_extension where extname = 'pg_cron'),
  'pg_cron is installed in this database');
select is(
  (select array_agg(format('%s | %s | %s | %s', jobname, schedule, command, active)
                    order by jobname)::text[]
   from cron.job
   where jobname in ('conveyor-schedules', 'conveyor-queue-metrics', 'conveyor-alerts')),
  array['conveyor-alerts | * * * * * | select * from public.evaluate_alerts() | t',
        'conveyor-queue-metrics | * * * * * | select public.capture_queue_metrics() | t',
        'conveyor-schedules | * * * * * | select count(*) from public.materialise_schedules() | t'],
  'schedules, metrics and alerts run every minute');
select is(
  (select count(*)::int from cron.job
   where jobname in ('conveyor-schedules', 'conveyor-queue-metrics', 'conveyor-alerts')
     and database = current_database()),
  3, 'in this database');
select is(
  (select count(*)::int from cron.job_run_details d join cron.job j using (jobid)
   where j.jobname in ('conveyor-schedules', 'conveyor-queue-metrics', 'conveyor-alerts')
     and d.status = 'failed'),
  0, 'none of their runs so far has failed');

select * from finish();
rollback;
