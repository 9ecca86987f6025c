-- The ledger's indexes as they were before 0082_ledger_live_indexes.sql (0010, 0055): the
-- `before` variant of `deno run -A tools/bench/profile.ts ab-sql
-- --variants before=tools/bench/ab/0082_before.sql,after=supabase/migrations/0082_ledger_live_indexes.sql`.
drop index if exists public.jobs_live_idx;
create index if not exists jobs_tenant_status_idx on public.jobs (tenant_id, status);
create index if not exists jobs_kind_status_idx on public.jobs (kind, status);
create index if not exists jobs_processing_queue_idx on public.jobs (queue_name)
  where status = 'processing';
create index if not exists job_events_tenant_id_idx on public.job_events (tenant_id);
