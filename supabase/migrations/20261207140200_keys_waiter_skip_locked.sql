-- A claim could deadlock with a waker of parked jobs (fair.keys in the benchmark: one call in
-- three runs failed with "deadlock detected" in conveyor.lower_hint). conveyor.wake_waiters
-- locks the waiter rows it deletes, then lowers the tier's hint (a row lock on
-- conveyor.queue_hints). conveyor.admit_keyed, in a claim, deleted or re-parked the waiter
-- rows of the messages it read and waited for any a waker held, while its transaction could
-- already hold the hint's row from an earlier lower_hint (the settle of
-- settle_and_claim_jobs wakes waiters too). Each waited for the other.
-- Now admit_keyed takes the waiter rows of a key's messages with SKIP LOCKED first; a message
-- whose row another transaction holds is put back for 100 ms, as the messages of a key whose
-- advisory lock is busy already were, and is admitted by a later claim once the waker is
-- done. The function is its current definition (supabase/schema.sql) with that change only.

create or replace function conveyor.admit_keyed(
  p_kind conveyor.job_kinds, p_queue text, p_msgs pgmq.message_record[], p_now timestamptz
) returns pgmq.message_record[]
language plpgsql
set search_path = ''
as $_$
declare
  v_out pgmq.message_record[];
  v_key record;
  v_group pgmq.message_record[];
  v_m pgmq.message_record;
  v_tenant uuid;
  v_override int;
  v_live int;
  v_first timestamptz;
  v_limit int;
  v_grant bigint[];
  v_grant_vt timestamptz;
  v_park bigint[];
  v_park_limit int[];
  v_back bigint[] := '{}';
  v_ids bigint[];
  v_mine bigint[];
  v_busy bigint[];
begin
  v_out := array(select m from unnest(p_msgs) m where not (m.message ? 'concurrency_key'));
  for v_key in
    select m.message ->> 'tenant_id' as tenant, m.message ->> 'concurrency_key' as ckey
    from unnest(p_msgs) m
    where m.message ? 'concurrency_key'
    group by 1, 2
    order by 1, 2
  loop
    v_group := array(select m from unnest(p_msgs) m
                     where m.message ->> 'tenant_id' is not distinct from v_key.tenant
                       and m.message ->> 'concurrency_key' = v_key.ckey
                     order by m.msg_id);
    if coalesce(v_key.tenant, '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      -- Not a job's message (no job has this number): the claim's dispose handles it.
      v_out := v_out || v_group;
      continue;
    end if;
    v_tenant := v_key.tenant::uuid;
    if not pg_try_advisory_xact_lock(hashtextextended(
         'conveyor.key:' || p_kind.kind || ':' || v_key.tenant || ':' || v_key.ckey, 0)) then
      v_back := v_back || array(select m.msg_id from unnest(v_group) m);
      continue;
    end if;
    -- Parked jobs whose waiter row another transaction holds: a waker (conveyor.wake_waiters)
    -- is deleting the row and will lower the tier's hint next. Waiting for it here deadlocks
    -- when this transaction already holds the hint's row (an earlier lower_hint, e.g. in the
    -- settle before this claim). Those messages go back for 100 ms, as a busy key's do; the
    -- rest of the key's jobs are admitted as usual.
    v_ids := array(select m.msg_id from unnest(v_group) m);
    v_mine := array(select w.msg_id from conveyor.key_waiters w
                    where w.msg_id = any (v_ids) for update skip locked);
    v_busy := array(select w.msg_id from conveyor.key_waiters w
                    where w.msg_id = any (v_ids) and w.msg_id <> all (v_mine));
    if cardinality(v_busy) > 0 then
      v_back := v_back || v_busy;
      v_group := array(select m from unnest(v_group) m where m.msg_id <> all (v_busy));
      continue when cardinality(v_group) = 0;
    end if;
    select c.max_running into v_override from conveyor.concurrency_key_limits c
    where c.tenant_id = v_tenant and c.kind = p_kind.kind and c.concurrency_key = v_key.ckey;
    -- A statement of its own, after the lock: its snapshot sees every lease committed by the
    -- claims that held the lock before.
    select count(*)::int, min(l.expires_at) into v_live, v_first
    from conveyor.key_leases l
    where l.tenant_id = v_tenant and l.kind = p_kind.kind and l.concurrency_key = v_key.ckey
      and l.expires_at > p_now
      and l.msg_id <> all (v_ids);
    v_grant := '{}';
    v_grant_vt := null;
    v_park := '{}';
    v_park_limit := '{}';
    foreach v_m in array v_group loop
      v_limit := coalesce(v_override, (v_m.message ->> 'concurrency_limit')::int,
                          p_kind.concurrency_key_limit);
      if v_live < v_limit then
        v_live := v_live + 1;
        v_grant := v_grant || v_m.msg_id;
        v_grant_vt := least(v_grant_vt, v_m.vt);
        v_out := v_out || v_m;
      else
        v_park := v_park || v_m.msg_id;
        v_park_limit := v_park_limit || v_limit;
      end if;
    end loop;
    if cardinality(v_grant) > 0 then
      insert into conveyor.key_leases (msg_id, tenant_id, kind, concurrency_key, expires_at)
      select m.msg_id, v_tenant, p_kind.kind, v_key.ckey, m.vt
      from unnest(v_group) m where m.msg_id = any (v_grant)
      on conflict (msg_id) do update
      set tenant_id = excluded.tenant_id, kind = excluded.kind,
          concurrency_key = excluded.concurrency_key, expires_at = excluded.expires_at;
      delete from conveyor.key_waiters w where w.msg_id = any (v_grant);
    end if;
    if cardinality(v_park) > 0 then
      execute format('update pgmq.%I q set vt = $2 where q.msg_id = any ($1)', 'q_' || p_queue)
        using v_park, least(v_first, v_grant_vt);
      insert into conveyor.key_waiters (msg_id, queue_name, tenant_id, kind, concurrency_key,
                                        max_running, parked_at)
      select u.id, p_queue, v_tenant, p_kind.kind, v_key.ckey, u.lim, p_now
      from unnest(v_park, v_park_limit) as u(id, lim)
      on conflict (msg_id) do update set max_running = excluded.max_running;
    end if;
  end loop;
  if cardinality(v_back) > 0 then
    execute format(
      $q$update pgmq.%I q set vt = clock_timestamp() + interval '100 milliseconds'
         where q.msg_id = any ($1)$q$, 'q_' || p_queue) using v_back;
    perform conveyor.lower_hint(p_queue, clock_timestamp() + interval '100 milliseconds');
  end if;
  return v_out;
end
$_$;
