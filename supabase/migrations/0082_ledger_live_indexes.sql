-- Fewer index writes per job: the ledger's indexes on status cover live jobs only.
--
-- Why (tools/bench/notes.md, item 6): a job's claim (pending -> processing) and its settle
-- (-> completed) are non-HOT UPDATEs of public.jobs (status is indexed), and a non-HOT
-- update adds an entry to every index whose predicate the new row version satisfies. The
-- two full indexes on (tenant_id, status) and (kind, status) took an entry at every
-- transition, for every job that ever ran, although what reads them only wants live jobs
-- (pending, processing): 1M completed jobs sat in both forever. Each job_events row also
-- fed an index on tenant_id that nothing reads (see below). Measured with pg_walinspect
-- around a drain of 20,000 jobs (batch 10 x 10 workers over SQL; tools/bench/profile.ts
-- ab-sql), the four indexes dropped here wrote 587 of the 3,996 bytes of WAL per job, and
-- their replacement writes 90: 3,996 -> 3,486 bytes per job drained.
--
-- Index entries per job, enqueue + claim + complete:
--   jobs:       pkey 3, tenant_status 3, kind_status 3, processing_queue 1, finished_at 1 = 11
--            -> pkey 3, live 2 (enqueue, claim), finished_at 1                            = 6
--   job_events: 4 indexes x 3 events = 12 -> 3 x 3 = 9
--
-- Every query that reads public.jobs / public.job_events, and what serves it now (EXPLAIN
-- ANALYZE at 1M jobs, 99 % completed, 3M events; before -> after):
--   rescue_lost_jobs (every claim: kind, processing, lease expired)   jobs_live_idx   0.24 -> 0.24 ms
--   queue_next_due_at (kind, pending, min run_at > now)              jobs_live_idx (index only) 0.33 -> 0.14 ms
--   queue_stats in_flight, operator_rate_limiters (processing)       jobs_live_idx   0.04 -> 0.13 ms
--   capture_queue_metrics / operator_dashboard / operator_metrics
--     live set (status in (pending, processing))                     jobs_live_idx   2.7 -> 1.7 ms
--   alerts queue_depth / oldest_age (pending)                        jobs_live_idx   1.3 -> 1.2 ms
--   metrics, alerts, dashboard "finished in the window"; prune       jobs_finished_at_idx (unchanged)
--   enqueue's dedupe check                                           jobs_live_dedupe_key (unchanged)
--   claim / settle / extend / release / redrive / CLI / inspect      jobs_pkey (unchanged)
--   queue_stats' event counters                                      job_events_created_at_idx (unchanged)
--   inspect_dead_letter_job, ON DELETE CASCADE from prune            job_events_job_id_idx (unchanged)
--   operator_events                                                  job_events_pkey (unchanged)
--   a tenant's RLS reads (tenant_id::text = app.current_tenant)      no index served the ::text
--     form before either; with a status = pending|processing filter they now use jobs_live_idx.
--
-- The price, accepted: deleting a tenant. tenant_id's foreign keys (ON DELETE RESTRICT) on
-- jobs and job_events are no longer backed by an index, so `delete from public.tenants`
-- checks them with a sequential scan of each table (at 1M jobs / 3M events: 1.6 ms ->
-- 0.2 s warm, seconds cold). Deleting a tenant is a rare operator action, possible only once
-- retention has removed all its jobs; the scans take no lock that blocks the queue. Paying
-- an index entry on every transition of every job for it is the worse deal.
--
-- Plain CREATE INDEX (a migration runs in a transaction, where CONCURRENTLY is refused): it
-- locks public.jobs against writes while it reads the live rows' part of the table once. On
-- a large ledger, create jobs_live_idx CONCURRENTLY by hand first; `if not exists` then
-- skips it here.

-- The live jobs, by state, then kind, then due time: rescue_lost_jobs (status, kind),
-- queue_next_due_at (status, kind, run_at range), and every aggregate over the live set
-- (`status in ('pending', 'processing')` matches the predicate exactly; status = 'pending'
-- or 'processing' is a prefix). A job takes an entry at enqueue and at claim, and none when
-- it finishes.
create index if not exists jobs_live_idx on public.jobs (status, kind, run_at)
  where status in ('pending', 'processing');

-- Replaced by jobs_live_idx: nothing reads finished jobs through them (finished jobs are
-- found by finished_at, or by id).
drop index if exists public.jobs_tenant_status_idx;
drop index if exists public.jobs_kind_status_idx;
drop index if exists public.jobs_processing_queue_idx;

-- No query filters job_events on tenant_id: tenants read it through RLS on tenant_id::text,
-- which this index cannot serve, and operators go by job, time or id. It served only the
-- tenant foreign key's check at tenant delete (see above).
drop index if exists public.job_events_tenant_id_idx;
