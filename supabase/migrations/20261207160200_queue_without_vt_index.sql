-- A drained job wrote 66 B of WAL (and a job enqueued as much again) into an index that no
-- read of Conveyor's queues uses (issue 16; tools/bench/notes.md, item 14): pgmq.create makes
-- `q_<queue>_vt_idx` on (vt), and every message takes an entry in it at its INSERT and at each
-- read (the read sets vt, so its UPDATE is never HOT and each index of the table gets an
-- entry). Conveyor's reads do not use it: the plain read (conveyor.q_read) walks the primary
-- key in msg_id order and tests vt, the fair read and the tenant look walk the tenant index
-- ((message ->> 'tenant_id'), vt), set_vt/delete/archive go by msg_id. Its one user was
-- conveyor.raise_hints (`select min(vt)`, when a claim found a tier empty): it now takes the
-- same minimum from the tenant index, one descent per tenant with a message in the tier
-- (conveyor.q_tenants without a limit) and one for the messages without a tenant.
--
-- * conveyor.ensure_queue drops the vt index of each queue it creates (not of the dead-letter
--   queue, which has no tenant index either); the queues made so far lose theirs below.
-- * conveyor.raise_hints as said.
--
-- Each function is its current definition (supabase/schema.sql) with these changes only.
-- Queues made with pgmq.create directly (not through Conveyor) keep pgmq's indexes.

create or replace function conveyor.ensure_queue(p_queue text) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pgmq.meta m where m.queue_name = p_queue) then
    perform pgmq.create(p_queue);
    if p_queue <> conveyor.dlq_name() then
      execute format('alter table pgmq.%I alter column msg_id restart with 1125899906842624',
                     'q_' || p_queue);
    end if;
  end if;
  if p_queue <> conveyor.dlq_name() then
    insert into conveyor.queue_hints (queue_name) values (p_queue) on conflict do nothing;
    execute format('create index if not exists %I on pgmq.%I ((message ->> ''tenant_id''), vt)',
                   'q_' || p_queue || '_tenant_vt_idx', 'q_' || p_queue);
    -- No read of ours uses pgmq's vt index, and every message takes an entry in it at each
    -- write (the tenant index above gives conveyor.raise_hints its minimum).
    execute format('drop index if exists pgmq.%I', 'q_' || p_queue || '_vt_idx');
  end if;
  -- With "Expose Queues via PostgREST" (pgmq_public) on, a queue table without RLS is
  -- readable by the API roles (Supabase lint 0019). No policies: only service_role and
  -- the table owner (both bypass RLS) touch our queues, through our RPCs.
  execute format('alter table pgmq.%I enable row level security', 'q_' || p_queue);
  execute format('alter table pgmq.%I enable row level security', 'a_' || p_queue);
end
$$;

create or replace function conveyor.raise_hints() returns void
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_next timestamptz;
begin
  foreach v_queue in array coalesce(string_to_array(
    nullif(current_setting('conveyor.empty_tiers', true), ''), ','), '{}') loop
    continue when not pg_try_advisory_xact_lock(conveyor.hint_lock_key(v_queue));
    -- A statement of its own: its snapshot is taken with the lock held. The earliest vt from
    -- the tenant index (the queue has no vt index): each tenant's first, and the first of the
    -- messages without a tenant.
    execute format(
      'select least((select min(t.first_vt) from conveyor.q_tenants($1, null) t),'
      '  (select q.vt from pgmq.%I q where (q.message ->> ''tenant_id'') is null'
      '   order by (q.message ->> ''tenant_id''), q.vt limit 1))',
      'q_' || v_queue) into v_next using v_queue;
    v_next := coalesce(v_next, 'infinity');
    if v_next > clock_timestamp() then
      update conveyor.queue_hints h set visible_from = v_next
      where h.queue_name = v_queue and h.visible_from < v_next
        and h.ctid = (select x.ctid from conveyor.queue_hints x
                      where x.queue_name = v_queue for update skip locked);
    end if;
  end loop;
  perform set_config('conveyor.empty_tiers', '', true);
end
$$;

do $$
declare
  v_queue text;
begin
  for v_queue in
    select h.queue_name from conveyor.queue_hints h
    where to_regclass(format('pgmq.%I', 'q_' || h.queue_name)) is not null
  loop
    execute format('drop index if exists pgmq.%I', 'q_' || v_queue || '_vt_idx');
  end loop;
end
$$;
