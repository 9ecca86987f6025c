-- Redriving a failed content job (issue 19, items 5 and 6): redrive_content_job's exact
-- refusals, the transition (the failed stage ready again with its attempts reset, the job
-- running, a `redriven` event, the history kept), last_error cleared once the stages and
-- the job complete, and who may call it. The jobs are written in the states under test
-- directly, so the stack's own workers and other tests' jobs stay out of it; push kicks
-- are off inside this transaction (the push itself: tests/content_redrive_test.ts).
begin;
select plan(25);

update conveyor.settings set value = 'false' where key = 'push_kicks';

-- c001 failed at qa on its last attempt; c002 completed; c003 running; c004 failed, but its
-- stage rows were edited by hand (none failed).
insert into public.content_jobs (id, idempotency_key, brief, max_attempts, status,
                                 current_stage, last_error, started_at, finished_at)
values
  ('00000000-0000-4000-8000-00000000c001', 'pgtap-redrive-1', '{"topic":"gardening"}', 2,
   'failed', 'qa', 'boom 2', now(), now()),
  ('00000000-0000-4000-8000-00000000c002', 'pgtap-redrive-2', '{"topic":"t"}', 2,
   'completed', 'complete', null, now(), now()),
  ('00000000-0000-4000-8000-00000000c003', 'pgtap-redrive-3', '{"topic":"t"}', 2,
   'running', 'draft', null, now(), null),
  ('00000000-0000-4000-8000-00000000c004', 'pgtap-redrive-4', '{"topic":"t"}', 2,
   'failed', 'qa', 'lost', now(), now());
insert into public.content_job_stages (job_id, stage, status, attempts, max_attempts, output,
                                       last_error, errors, started_at, finished_at)
select '00000000-0000-4000-8000-00000000c001'::uuid, s, 'completed', 1, 2,
       jsonb_build_object('stage', s), null, '[]'::jsonb, now(), now()
from unnest(array['research', 'outline', 'draft']) s
union all
select '00000000-0000-4000-8000-00000000c001', 'qa', 'failed', 2, 2, null, 'boom 2',
       '[{"message":"boom 1","attempt":1},{"message":"boom 2","attempt":2}]', now(), now()
union all
select '00000000-0000-4000-8000-00000000c003', 'draft', 'ready', 0, 2, null, null, '[]', now(),
       null
union all
select '00000000-0000-4000-8000-00000000c004', 'qa', 'completed', 1, 2, '{}', null, '[]', now(),
       now();

-- The panel shows the failed job with the stage it failed at.
select is(
  (select x - 'failed_at' from jsonb_array_elements(public.operator_failed_content_jobs(1000) -> 'latest') x
   where x ->> 'job_id' = '00000000-0000-4000-8000-00000000c001'),
  '{"job_id": "00000000-0000-4000-8000-00000000c001", "topic": "gardening", "stage": "qa",
    "attempts": 2, "max_attempts": 2, "last_error": "boom 2"}'::jsonb,
  'operator_failed_content_jobs lists a failed job with its failed stage and error');

-- Refusals, each with its own message.
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c0ff')$$,
  'P0002', 'redrive_content_job: no content job 00000000-0000-4000-8000-00000000c0ff',
  'an unknown id is refused');
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c002')$$,
  'P0001',
  'redrive_content_job: content job 00000000-0000-4000-8000-00000000c002 is completed, only failed jobs can be redriven',
  'a completed job is refused');
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c003')$$,
  'P0001',
  'redrive_content_job: content job 00000000-0000-4000-8000-00000000c003 is running, only failed jobs can be redriven',
  'a running job is refused');
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c004')$$,
  'P0001',
  'redrive_content_job: content job 00000000-0000-4000-8000-00000000c004 has no failed stage to retry from',
  'a failed job without a failed stage is refused');
select is(
  (select status from public.content_jobs where id = '00000000-0000-4000-8000-00000000c004'),
  'failed', 'a refused redrive changes nothing');

-- The redrive.
select results_eq(
  $$select job_id, stage, workers_started
    from public.redrive_content_job('00000000-0000-4000-8000-00000000c001')$$,
  $$values ('00000000-0000-4000-8000-00000000c001'::uuid, 'qa'::text, 0)$$,
  'redrive_content_job returns the stage it runs again from (no worker: push kicks off)');
select is(
  (select jsonb_build_object('status', status, 'attempts', attempts, 'finished_at', finished_at,
                             'last_error', last_error, 'errors', jsonb_array_length(errors),
                             'available', available_at <= clock_timestamp())
   from public.content_job_stages
   where job_id = '00000000-0000-4000-8000-00000000c001' and stage = 'qa'),
  '{"status": "ready", "attempts": 0, "finished_at": null, "last_error": "boom 2", "errors": 2,
    "available": true}'::jsonb,
  'the failed stage is ready now with its attempts reset; its errors are kept');
select is(
  (select array_agg(stage || ':' || status || ':' || (output ->> 'stage') order by id)
   from public.content_job_stages
   where job_id = '00000000-0000-4000-8000-00000000c001' and stage <> 'qa'),
  array['research:completed:research', 'outline:completed:outline', 'draft:completed:draft'],
  'the stages before it keep their status and outputs');
select is(
  (select jsonb_build_object('status', status, 'current_stage', current_stage,
                             'finished_at', finished_at, 'last_error', last_error)
   from public.content_jobs where id = '00000000-0000-4000-8000-00000000c001'),
  '{"status": "running", "current_stage": "qa", "finished_at": null, "last_error": null}'::jsonb,
  'the job is running again, with no last_error');
select is(
  (select jsonb_build_object('stage', stage, 'status', status, 'message', message,
                             'details', details)
   from public.content_job_events
   where job_id = '00000000-0000-4000-8000-00000000c001' order by id desc limit 1),
  '{"stage": "qa", "status": "redriven",
    "message": "qa runs again: attempts reset (it failed after 2 of 2)",
    "details": {"attempts": 2, "max_attempts": 2, "last_error": "boom 2"}}'::jsonb,
  'a redriven event records it, with the error it failed with');
select is(
  (select count(*)::int from jsonb_array_elements(public.operator_failed_content_jobs(1000) -> 'latest') x
   where x ->> 'job_id' = '00000000-0000-4000-8000-00000000c001'),
  0, 'the redriven job is no longer listed as failed');
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c001')$$,
  'P0001',
  'redrive_content_job: content job 00000000-0000-4000-8000-00000000c001 is running, only failed jobs can be redriven',
  'a second redrive is refused');

-- The retried stages complete (a worker's claim, written directly, then its settle):
-- last_error is gone from the stages and the job, the history stays.
create function pg_temp.finish(p_stage text, p_output jsonb) returns text language plpgsql as $$
declare
  v_lease uuid := gen_random_uuid();
begin
  update public.content_job_stages
  set status = 'in_progress', attempts = attempts + 1, lease_id = v_lease, lease_owner = 'pgtap',
      lease_expires_at = clock_timestamp() + interval '1 minute'
  where job_id = '00000000-0000-4000-8000-00000000c001' and stage = p_stage;
  return (select outcome from public.settle_content_stages('pgtap', jsonb_build_array(
    jsonb_build_object('job_id', '00000000-0000-4000-8000-00000000c001', 'stage', p_stage,
                       'lease_id', v_lease, 'status', 'completed', 'output', p_output))));
end
$$;
select is(pg_temp.finish('qa', '{"passed": true}'), 'completed', 'qa completes on its retry');
select is(
  (select jsonb_build_object('status', status, 'attempts', attempts, 'last_error', last_error,
                             'errors', errors -> 1 ->> 'message')
   from public.content_job_stages
   where job_id = '00000000-0000-4000-8000-00000000c001' and stage = 'qa'),
  '{"status": "completed", "attempts": 1, "last_error": null, "errors": "boom 2"}'::jsonb,
  'a completed stage shows no stale last_error; its errors array keeps the failures');
select is(pg_temp.finish('export', '{"title": "T", "markdown": "# T", "html": "<h1>T</h1>"}'),
  'completed', 'export completes');
select is(pg_temp.finish('complete', '{}'), 'completed', 'complete completes');
select is(
  (select jsonb_build_object('status', status, 'last_error', last_error)
   from public.content_jobs where id = '00000000-0000-4000-8000-00000000c001'),
  '{"status": "completed", "last_error": null}'::jsonb,
  'the completed job shows no stale last_error');
select is(
  (select array_agg(status order by id) from public.content_job_events
   where job_id = '00000000-0000-4000-8000-00000000c001'),
  array['redriven', 'completed', 'ready', 'completed', 'ready', 'completed', 'job_completed'],
  'the events keep the redrive in the job''s history');

-- The bulk form and the inspection check their arguments.
select throws_ok($$select * from public.redrive_content_jobs('nope')$$, 'P0001',
  'redrive_content_jobs: unknown stage nope', 'redrive_content_jobs: an unknown stage');
select throws_ok($$select * from public.redrive_content_jobs(null, 0)$$, 'P0001',
  'redrive_content_jobs: p_limit must be between 1 and 1000', 'redrive_content_jobs: a bad limit');
select throws_ok(
  $$select public.inspect_content_job('00000000-0000-4000-8000-00000000c0ff')$$,
  'P0002', 'inspect_content_job: no content job 00000000-0000-4000-8000-00000000c0ff',
  'inspect_content_job: an unknown id');

-- Operators only: SECURITY DEFINER with an empty search_path, service_role may execute,
-- anon and authenticated may not (and are refused when they try).
select is(
  array(select p.oid::regprocedure::text from pg_proc p
        where p.oid in ('public.redrive_content_job(uuid)'::regprocedure,
                        'public.redrive_content_jobs(text, int)'::regprocedure,
                        'public.inspect_content_job(uuid)'::regprocedure,
                        'public.operator_failed_content_jobs(int)'::regprocedure)
          and not (p.prosecdef and p.proconfig @> array['search_path=""']
                   and has_function_privilege('service_role', p.oid, 'execute')
                   and not has_function_privilege('public', p.oid, 'execute')
                   and not has_function_privilege('anon', p.oid, 'execute')
                   and not has_function_privilege('authenticated', p.oid, 'execute'))
        order by 1),
  '{}'::text[], 'the redrive functions are definer, search_path = '''', service_role only');
set local role anon;
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c004')$$,
  '42501', 'permission denied for function redrive_content_job', 'anon cannot redrive');
reset role;
set local role authenticated;
select throws_ok(
  $$select * from public.redrive_content_job('00000000-0000-4000-8000-00000000c004')$$,
  '42501', 'permission denied for function redrive_content_job',
  'authenticated cannot redrive');
reset role;

select * from finish();
rollback;
