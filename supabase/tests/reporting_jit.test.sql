-- The operator's reports are planned from honest row estimates and never JIT-compiled
-- (20261207121000_reporting_without_jit.sql): with jit on, compiling a report costed at
-- ≈ 900,000 took 1–4 s for a 10 ms query, and the metrics endpoint hit the 8 s timeout.
begin;
select plan(7);

select is((select prorows from pg_proc where oid = 'conveyor.live_jobs(timestamptz)'::regprocedure),
  20::real, 'live_jobs is estimated at 20 rows, not 1,000');
select is((select prorows from pg_proc
           where oid = 'conveyor.counted_jobs(timestamptz, timestamptz)'::regprocedure),
  20::real, 'counted_jobs is estimated at 20 rows, not 1,000');
select ok((select 'jit=off' = any (proconfig) from pg_proc
           where oid = 'public.operator_tenants(integer)'::regprocedure),
  'operator_tenants runs with jit off');
select ok((select 'jit=off' = any (proconfig) from pg_proc
           where oid = 'public.operator_queues(integer)'::regprocedure),
  'operator_queues runs with jit off');
select ok((select 'jit=off' = any (proconfig) from pg_proc
           where oid = 'public.operator_metrics()'::regprocedure),
  'operator_metrics runs with jit off');
-- ... and still answers, keeping its search_path: the SET clauses add to it, not replace it.
select ok((select 'search_path=""' = any (proconfig) from pg_proc
           where oid = 'public.operator_metrics()'::regprocedure),
  'operator_metrics keeps its empty search_path');
set local jit = on;
set local jit_above_cost = 0;
select ok((select count(*) from public.operator_metrics()) > 0,
  'operator_metrics answers with jit forced on for everything else');

select * from finish();
rollback;
