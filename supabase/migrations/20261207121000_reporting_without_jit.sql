-- The operator's reports ran into PostgreSQL's JIT compiler. conveyor.live_jobs and
-- conveyor.counted_jobs are set-returning PL/pgSQL functions, which the planner takes for
-- 1,000 rows each; joined to the tier list (job_kinds × three tiers) and, in
-- operator_tenants, to a correlated median over the same rows, a report on an almost empty
-- database was costed at ≈ 900,000, above jit_optimize_above_cost and jit_inline_above_cost
-- (500,000). With jit = on (PostgreSQL's default, and Debian's packages ship LLVM), each call
-- then spent 1–4 s compiling for a query that runs in 10 ms: operator_tenants took 1.1–4.4 s,
-- operator_metrics (which calls it) 1.2–1.7 s, and under load the metrics endpoint hit the
-- API roles' 8 s statement timeout (tests/install_e2e_test.ts, doctor "operator endpoints").
--
-- Two changes, neither redefining a function:
-- * live estimates for the two row sources: one row per queue and tenant with live jobs or
--   counted minutes, a few dozen on most projects, not 1,000;
-- * the reports do not JIT-compile. They read the live set and a window of per-minute
--   counters, which stay small, so compiling never pays back; an estimate that grows with a
--   project's kinds and tenants can no longer turn a dashboard refresh into seconds of LLVM.

alter function conveyor.live_jobs(timestamptz) rows 20;
alter function conveyor.counted_jobs(timestamptz, timestamptz) rows 20;

alter function public.operator_tenants(integer) set jit = off;
alter function public.operator_queues(integer) set jit = off;
alter function public.operator_metrics() set jit = off;
