-- public.queue_jobs(jsonb) (0051_queue_job_expose.sql): batch enqueue, one transaction.
begin;
select plan(9);

select is(
  (select count(*)::int from public.queue_jobs(
     '[{"idempotency_key":"qjb-1","kind":"enrich","payload":{"i":1}},
       {"idempotency_key":"qjb-2","kind":"enforce","payload":{"i":2},"priority":"fast"},
       {"idempotency_key":"qjb-3","kind":"enrich"}]'::jsonb)),
  3, 'three bodies give three message ids');
select is(
  (select array_agg(j.kind || ':' || j.priority order by j.idempotency_key)
   from public.jobs j where j.idempotency_key like 'qjb-%'),
  array['enrich:normal', 'enforce:fast', 'enrich:normal'],
  'each element is enqueued as queue_job would (kind, priority)');
select is(
  (select array_agg(x order by o)
   from public.queue_jobs('[{"idempotency_key":"qjb-2","kind":"enforce","payload":{"i":2},"priority":"fast"},
                            {"idempotency_key":"qjb-1","kind":"enrich","payload":{"i":1}}]'::jsonb)
        with ordinality as t(x, o)),
  (select array_agg(j.msg_id order by j.idempotency_key desc)
   from public.jobs j where j.idempotency_key in ('qjb-1', 'qjb-2')),
  'ids come back in array order; a known key returns its job''s id (idempotent)');
select is((select count(*)::int from public.jobs where idempotency_key like 'qjb-%'), 3,
  'the replay enqueued nothing new');

select throws_ok(
  $$select * from public.queue_jobs('[{"idempotency_key":"qjb-4","kind":"enrich"},
                                     {"idempotency_key":"qjb-5"}]'::jsonb)$$,
  'P0001', 'queue_job: missing kind in payload',
  'a bad element fails the call with queue_job''s error');
select is((select count(*)::int from public.jobs where idempotency_key in ('qjb-4', 'qjb-5')), 0,
  'and nothing of the array is written (one transaction)');
select throws_ok($$select * from public.queue_jobs('{"kind":"enrich"}'::jsonb)$$,
  'P0001', 'queue_jobs: the body must be a JSON array of queue_job bodies',
  'an object body is refused');
select is((select count(*)::int from public.queue_jobs('[]'::jsonb)), 0, 'an empty array enqueues nothing');
select ok(not has_function_privilege('authenticated', 'public.queue_jobs(jsonb)', 'execute')
          and not has_function_privilege('anon', 'public.queue_jobs(jsonb)', 'execute')
          and has_function_privilege('service_role', 'public.queue_jobs(jsonb)', 'execute'),
  'service_role only');

select * from finish();
rollback;
