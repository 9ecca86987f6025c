-- public.queue_jobs(jsonb) set-based (0050, 0051): the same rows as queue_job per element, the
-- same errors (with the element's index), idempotency within and across calls, ids in order.
-- Concurrent calls are in tests/queue_jobs_test.ts.
begin;
select plan(32);
-- The two paths must write the same rows, the 'enqueued' events included: audit 'full'.
update conveyor.settings set value = '"full"' where key = 'audit';

-- The error a call raises, as "SQLSTATE|message|detail|hint" (NULL when it succeeds).
create function pg_temp.err(p_sql text) returns text language plpgsql as $$
declare
  v_state text;
  v_msg text;
  v_detail text;
  v_hint text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_msg = message_text,
                          v_detail = pg_exception_detail, v_hint = pg_exception_hint;
  return concat_ws('|', v_state, v_msg, nullif(v_detail, ''), nullif(v_hint, ''));
end
$$;

-- Everything an enqueue writes, counted: {jobs, events, keys (critical jobs only), critical rows,
-- messages}.
create function pg_temp.written() returns int[] language sql as $$
  select array[
    (select count(*)::int from public.jobs),
    (select count(*)::int from public.job_events),
    (select count(*)::int from public.idempotency_keys),
    (select count(*)::int from public.critical_jobs),
    (select count(*)::int from pgmq.q_q_enrich) + (select count(*)::int from pgmq.q_q_enrich_fast)
      + (select count(*)::int from pgmq.q_q_enrich_bulk) + (select count(*)::int from pgmq.q_q_enforce)
      + (select count(*)::int from pgmq.q_q_enforce_fast) + (select count(*)::int from pgmq.q_q_enforce_bulk)]
$$;

-- Same rows as queue_job ----------------------------------------------------------------
-- The same bodies through queue_job (keys s-*) and through queue_jobs (keys b-*): every
-- column of the job, its message and its event must agree but for ids, keys and times.
create temporary table bodies (i int, body jsonb);
insert into bodies values
  (0, '{"kind":"enrich","payload":{"a":1}}'),
  (1, '{"kind":"enforce","payload":{"b":[1,2]},"priority":"fast","headers":{"x-trace":"t1"}}'),
  (2, '{"kind":"enrich","priority":"bulk","delay_seconds":30}'),
  (3, '{"kind":"enrich","execute_after":"2 hours","critical":true}'),
  (4, jsonb_build_object('kind', 'enforce', 'execute_after', (now() + interval '10 days')::text,
                         'critical', false, 'headers', null)),
  (5, '{"kind":"enrich","tenant_id":"00000000-0000-0000-0000-000000000000","payload":{}}');
create temporary table single_ids as
select public.queue_job(b.body || jsonb_build_object('idempotency_key', 's-' || b.i)) as id
from bodies b order by b.i;
create temporary table batch_ids as
select t.id, t.o
from public.queue_jobs((select jsonb_agg(b.body || jsonb_build_object('idempotency_key', 'b-' || b.i)
                                         order by b.i) from bodies b))
     with ordinality as t(id, o);

create function pg_temp.shape(p_prefix text) returns setof text language sql as $$
  select concat_ws(' ', substr(j.idempotency_key, 3), j.tenant_id, j.kind, j.queue_name,
    j.priority, j.status, j.payload, j.headers, j.max_attempts, j.attempts,
    j.run_at - now(), (c.job_id is not null), c.max_attempts,
    e.type, e.payload - 'msg_id', (e.payload ->> 'msg_id')::bigint = j.msg_id,
    m.message - 'job_id', m.message ->> 'job_id' = j.id::text, m.headers, m.vt - now(),
    m.read_ct)
  from public.jobs j
  left join public.critical_jobs c on c.job_id = j.id
  join public.job_events e on e.job_id = j.id
  cross join lateral (
    select q.message, q.headers, q.vt, q.read_ct from pgmq.q_q_enrich q where q.msg_id = j.msg_id and j.queue_name = 'q_enrich'
    union all select q.message, q.headers, q.vt, q.read_ct from pgmq.q_q_enrich_bulk q where q.msg_id = j.msg_id and j.queue_name = 'q_enrich_bulk'
    union all select q.message, q.headers, q.vt, q.read_ct from pgmq.q_q_enforce q where q.msg_id = j.msg_id and j.queue_name = 'q_enforce'
    union all select q.message, q.headers, q.vt, q.read_ct from pgmq.q_q_enforce_fast q where q.msg_id = j.msg_id and j.queue_name = 'q_enforce_fast') m
  where j.idempotency_key like p_prefix || '%'
  order by 1
$$;

select is((select count(*)::int from pg_temp.shape('b-')), 6, 'six jobs, each with one event and one message');
select results_eq(
  $$select pg_temp.shape('b-')$$, $$select pg_temp.shape('s-')$$,
  'each job, its message, its critical row and its event are what queue_job writes');
select is(
  (select array_agg(t.id order by t.o) from batch_ids t),
  (select array_agg(j.msg_id order by substr(j.idempotency_key, 3)::int)
   from public.jobs j where j.idempotency_key like 'b-%'),
  'the ids are the message ids, in array order');
select is(
  (select array_agg(j.queue_name || ':' || (j.run_at > now())
                    order by substr(j.idempotency_key, 3)::int)
   from public.jobs j where j.idempotency_key like 'b-%'),
  array['q_enrich:false', 'q_enforce_fast:false', 'q_enrich_bulk:true', 'q_enrich:true',
        'q_enforce:true', 'q_enrich:false'],
  'tiers and delays are honoured');
select is(
  (select array_agg(e.id order by substr(j.idempotency_key, 3)::int) = array_agg(e.id order by e.id)
   from public.jobs j join public.job_events e on e.job_id = j.id where j.idempotency_key like 'b-%'),
  true, 'events are written in array order');

-- Idempotency -----------------------------------------------------------------------------
-- (The calls' results are kept first: a test's expected value is read in the same statement,
-- with a snapshot taken before the call wrote anything.)
create temporary table dup_ids as
select array_agg(t.id order by t.o) as ids
from public.queue_jobs('[{"idempotency_key":"d-1","kind":"enrich","payload":{"n":1}},
                         {"idempotency_key":"d-2","kind":"enrich"},
                         {"idempotency_key":"d-1","kind":"enrich","payload":{"n":1}},
                         {"idempotency_key":"d-1","kind":"enrich","payload":{"n":1},"priority":"normal"}]'::jsonb)
     with ordinality as t(id, o);
select is((select ids from dup_ids),
  (select array[a.msg_id, b.msg_id, a.msg_id, a.msg_id]
   from public.jobs a, public.jobs b where a.idempotency_key = 'd-1' and b.idempotency_key = 'd-2'),
  'a key repeated within the array with the same request: every occurrence gets the id of the first');
select is(
  (select string_agg(j.kind || ':' || j.priority || ':' || j.payload::text, ',')
   from public.jobs j where j.idempotency_key = 'd-1'),
  'enrich:normal:{"n": 1}', 'and one job');
select is(
  (select count(*)::int from public.job_events e join public.jobs j on j.id = e.job_id
   where j.idempotency_key in ('d-1', 'd-2')), 2, 'one event per job');
select matches(pg_temp.err($$select * from public.queue_jobs('[
    {"idempotency_key":"d-3","kind":"enrich","payload":{"n":1}},
    {"idempotency_key":"d-3","kind":"enrich","payload":{"n":2}}]'::jsonb)$$),
  '^23505\|queue_job: idempotency_key d-3 is already used by job \d+ with another request\|element 1 of the array \(0-based\); job \d+: kind enrich, priority normal\|send the same kind',
  'the same key with another request within the array is queue_job''s error, naming the element');

create temporary table mid as select pg_temp.written() as w;
create temporary table mixed_ids as
select array_agg(t.id order by t.o) as ids
from public.queue_jobs('[{"idempotency_key":"m-1","kind":"enrich"},
                         {"idempotency_key":"b-2","kind":"enrich","priority":"bulk"},
                         {"idempotency_key":"m-2","kind":"enforce","priority":"bulk"},
                         {"idempotency_key":"d-2","kind":"enrich"}]'::jsonb)
     with ordinality as t(id, o);
select is((select ids from mixed_ids),
  (select array[
     (select msg_id from public.jobs where idempotency_key = 'm-1'),
     (select msg_id from public.jobs where idempotency_key = 'b-2'),
     (select msg_id from public.jobs where idempotency_key = 'm-2'),
     (select msg_id from public.jobs where idempotency_key = 'd-2')]),
  'existing keys mixed with new ones: existing ids for the old, new ids for the new, in order');
select is((select array_agg(queue_name order by idempotency_key) from public.jobs
           where idempotency_key in ('m-1', 'm-2')),
  array['q_enrich', 'q_enforce_bulk'], 'the new ones as their elements say');
select is(pg_temp.written(), (select array[w[1] + 2, w[2] + 2, w[3], w[4], w[5] + 2] from mid),
  'and only the two new jobs were written (no key rows: neither is critical)');
insert into public.tenants (id, name) values ('00000000-0000-0000-0000-0000000000aa', 'qjs-other');
select is(
  (select count(distinct t.id)::int from public.queue_jobs(
     '[{"idempotency_key":"t-1","kind":"enrich"},
       {"idempotency_key":"t-1","kind":"enrich","tenant_id":"00000000-0000-0000-0000-0000000000aa"}]'::jsonb) t(id)),
  2, 'the same key in two tenants is two jobs');

-- Errors: queue_job's, naming the first bad element, nothing written ----------------------
create temporary table before_errors as select pg_temp.written() as w;
select is(pg_temp.err($$select * from public.queue_jobs('[
    {"idempotency_key":"e-0","kind":"enrich"},
    {"idempotency_key":"e-1","kind":"enrich","priority":"fast"},
    {"idempotency_key":"e-2","kind":"enrich","priority":"urgent"},
    {"idempotency_key":"e-3"}]'::jsonb)$$),
  'P0001|queue_job: unsupported priority "urgent" (use fast, normal or bulk)|element 2 of the array (0-based)',
  'a bad element in the middle: queue_job''s message, DETAIL naming it (the first bad one)');
select is(pg_temp.err($$select * from public.queue_jobs('[
    {"idempotency_key":"e-0","kind":"enrich"},
    {"idempotency_key":"e-1","kind":"enrich","colour":"red"}]'::jsonb)$$),
  'P0001|queue_job: unknown field "colour"|element 1 of the array (0-based)|accepted fields: idempotency_key, kind, payload, priority, delay_seconds, execute_after, headers, critical, concurrency_key, concurrency_limit, tenant_id',
  'queue_job''s hint is kept');
select is(pg_temp.err($$select * from public.queue_jobs('[{"idempotency_key":"e-0","kind":"enrich"}, 7]'::jsonb)$$),
  'P0001|queue_job: the body must be a JSON object|element 1 of the array (0-based)',
  'an element that is not an object');
select is(pg_temp.err($$select * from public.queue_jobs('[
    {"idempotency_key":"e-0","kind":"enrich","tenant_id":"00000000-0000-0000-0000-0000000000bb"},
    {"kind":"enrich"}]'::jsonb)$$),
  'P0001|queue_job: unknown tenant 00000000-0000-0000-0000-0000000000bb|element 0 of the array (0-based)',
  'an unknown tenant is queue_job''s error too');
select is(pg_temp.err($$select * from public.queue_jobs('[{"idempotency_key":"m-1","kind":"enrich"},
    {"idempotency_key":" \t","kind":"enrich"}]'::jsonb)$$),
  'P0001|queue_job: missing idempotency_key|element 1 of the array (0-based)',
  'a bad element after a known key');
select is(pg_temp.err($$select * from public.queue_jobs('[{"idempotency_key":"e-0","kind":"enrich","delay_seconds":1.5}]'::jsonb)$$),
  'P0001|queue_job: delay_seconds must be a whole number between 0 and 2592000|element 0 of the array (0-based)',
  'delay checks');
select is(pg_temp.err(format('select * from public.queue_jobs(%L::jsonb)',
    (select jsonb_agg(jsonb_build_object('idempotency_key', 'big-' || i, 'kind', 'enrich'))
     from generate_series(1, 10001) i))),
  'P0001|queue_jobs: at most 10000 jobs per call (got 10001)', 'the array size limit');
select is(pg_temp.written(), (select w from before_errors), 'none of the failed calls wrote anything');

-- A failure in the writes (here a critical_max_attempts out of the jobs' CHECK range) rolls
-- the set-based writes back and is reported for its element (the per-element replay).
update conveyor.settings set value = '500' where key = 'critical_max_attempts';
select matches(pg_temp.err($$select * from public.queue_jobs('[
    {"idempotency_key":"w-0","kind":"enrich"},
    {"idempotency_key":"w-1","kind":"enrich","critical":true}]'::jsonb)$$),
  '^23514\|new row for relation "jobs" violates check constraint "jobs_max_attempts_check"\|element 1 of the array \(0-based\); Failing row contains',
  'an error in the writes names its element');
select is(pg_temp.written(), (select w from before_errors), 'and writes nothing');
update conveyor.settings set value = '5' where key = 'critical_max_attempts';

-- An API role reaching queue_jobs through a definer function of its own takes the
-- per-element path: its tenant from the token, and the per-job enqueue rate limit
-- (0020_tenancy_pre_request.sql) refusing the element that goes over it.
insert into public.tenants (id, name) values ('00000000-0000-0000-0000-0000000000cc', 'qjs-api');
-- The window starts at the first element's clock (an expired one: the default, now(), is the
-- test transaction's start, which a loaded machine can leave more than a second behind, so
-- the hint said 3599).
insert into public.rate_limits (tenant_id, scope, max_requests, window_seconds, window_started_at)
values ('00000000-0000-0000-0000-0000000000cc', 'enqueue', 2, 3600, 'epoch');
create function public.qjs_test_as_api(jsonb) returns setof bigint
language sql security definer set search_path = '' as $$ select * from public.queue_jobs($1) $$;
grant execute on function public.qjs_test_as_api(jsonb) to authenticated;
set local role authenticated;
set local app.current_tenant = '00000000-0000-0000-0000-0000000000cc';
select is(pg_temp.err($$select * from public.qjs_test_as_api('[
    {"idempotency_key":"a-0","kind":"enrich"},
    {"idempotency_key":"a-1","kind":"enrich"},
    {"idempotency_key":"a-2","kind":"enrich"}]'::jsonb)$$),
  'PT429|enqueue rate limit exceeded: at most 2 jobs per 3600 seconds for this tenant|element 2 of the array (0-based)|retry after 3600 seconds',
  'an API role: the rate limit refuses the element over it');
select is((select count(*)::int from public.qjs_test_as_api('[
    {"idempotency_key":"a-0","kind":"enrich"},
    {"idempotency_key":"a-1","kind":"enrich"}]'::jsonb)), 2, 'and takes what fits');
reset role;
set local app.current_tenant = '';
select is((select array_agg(distinct tenant_id::text) from public.jobs where idempotency_key like 'a-%'),
  array['00000000-0000-0000-0000-0000000000cc'], 'in the tenant of the token');

-- queue_job itself is unchanged (its validation moved to conveyor.parse_queue_job).
select throws_ok($$select public.queue_job('{"idempotency_key":"q-1","kind":"telepathy"}')$$,
  'P0001', 'queue_job: unsupported kind telepathy', 'queue_job: same texts');
select throws_ok($$select public.queue_job('{"idempotency_key":"q-1","kind":5}')$$,
  'P0001', 'queue_job: unsupported kind 5', 'queue_job: a kind that is not a string');
select throws_ok($$select public.queue_job('{"idempotency_key":"q-1","kind":"enrich","execute_after":"soon"}')$$,
  'P0001', 'queue_job: execute_after must be an ISO timestamp or an interval such as "10 seconds"',
  'queue_job: execute_after');
select is(public.queue_job('{"idempotency_key":"b-3","kind":"enrich","critical":true}'),
  (select msg_id from public.jobs where idempotency_key = 'b-3'),
  'queue_job returns a job queue_jobs made (one idempotency space)');

-- Privileges and properties.
select ok(
  (select p.prosecdef and p.proconfig @> array['search_path=""']
   from pg_proc p where p.oid = 'public.queue_jobs(jsonb)'::regprocedure),
  'queue_jobs is SECURITY DEFINER with search_path = ''''');
select ok(not has_function_privilege('authenticated', 'conveyor.enqueue_items(conveyor.queue_job_item[], text)', 'execute')
          and not has_function_privilege('service_role', 'conveyor.parse_queue_job(jsonb, bigint, bigint)', 'execute'),
  'the helpers are not executable by the API roles');

select * from finish();
rollback;
