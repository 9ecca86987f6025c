-- Seed 000: the pgmq queues behind queue_job. Each kind has three priority tiers; the
-- normal tier IS the seed's queue (q_enrich, q_outreach, q_enforce), the others are
-- <queue>_fast and <queue>_bulk, and all kinds share the dead-letter queue q_dlq.
-- Idempotent: the functions are CREATE OR REPLACE, ensure_queue skips existing queues and
-- enabling RLS twice is a no-op, so re-running this file is harmless
-- (tests/queue_api_test.ts runs it a second time).

create or replace function conveyor.ensure_queue(p_queue text) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pgmq.meta m where m.queue_name = p_queue) then
    perform pgmq.create(p_queue);
  end if;
  -- With "Expose Queues via PostgREST" (pgmq_public) on, a queue table without RLS is
  -- readable by the API roles (Supabase lint 0019). No policies: only service_role and
  -- the table owner (both bypass RLS) touch our queues, through our RPCs.
  execute format('alter table pgmq.%I enable row level security', 'q_' || p_queue);
  execute format('alter table pgmq.%I enable row level security', 'a_' || p_queue);
end
$$;

-- Creates every tier of a kind's queue; used here and whenever a kind is added.
create or replace function conveyor.ensure_kind_queues(p_kind text) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_tier text;
begin
  select k.queue_name into strict v_queue from conveyor.job_kinds k where k.kind = p_kind;
  foreach v_tier in array array['fast', 'normal', 'bulk'] loop
    perform conveyor.ensure_queue(conveyor.tier_queue(v_queue, v_tier));
  end loop;
end
$$;

select conveyor.ensure_kind_queues(kind) from conveyor.job_kinds order by kind;
select conveyor.ensure_queue(conveyor.dlq_name());

revoke all on function conveyor.ensure_queue(text), conveyor.ensure_kind_queues(text) from public;
