-- Fix (0053): claims of a rate-limited kind deadlocked under concurrency.
--
-- read_queue locked each tenant's rate_limiters row (in take_rate_limit, FOR UPDATE) in
-- the order the tenants appeared among the claimer's candidate messages, and claim_jobs
-- calls read_queue once per priority tier inside one transaction. Two claimers that met
-- tenants A and B in opposite orders (within a tier, or across tiers) each held one row
-- and waited for the other's: "deadlock detected", and one claim failed. Found by
-- tests/rate_limiters_test.ts (8 claimers, two tenants, two tiers).
--
-- Now: the first read_queue of a transaction locks all the limiter rows it needs at once,
-- sorted by tenant_id (a global order, so waiters cannot form a cycle). A later read_queue
-- of the same transaction (the next tier), which already holds limiter rows, never waits:
-- it takes the rows it can with SKIP LOCKED, and a tenant whose bucket another claimer is
-- serving gets nothing from this claim (its messages stay visible; the other claimer or
-- the next call serves them). Marker: the transaction-local setting
-- conveyor.limiter_locks_held, which only this function sets.
--
-- Unchanged: a token and a slot are taken in the claim's transaction; slots are counted
-- from live leases (processing jobs whose lock has not expired), so completing, failing or
-- releasing a job frees its slot, and a crashed worker's slot heals when its lease ends.

create or replace function conveyor.read_queue(
  p_queue text,
  p_vt int,
  p_qty int,
  p_service text,
  p_now timestamptz
) returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
declare
  v_msg_ids bigint[] := '{}';
  v_msg_tenants uuid[] := '{}';
  v_tenants uuid[];
  v_limited uuid[];
  v_locked uuid[];
  v_tenant uuid;
  v_group bigint[];
  v_ids bigint[] := '{}';
  v_granted int;
begin
  if p_qty <= 0 then
    return;
  end if;
  if p_service is null then
    return query select * from pgmq.read(p_queue, p_vt, p_qty);
    return;
  end if;

  -- Candidates: visible messages, locked as pgmq.read locks them (SKIP LOCKED), in a
  -- window larger than the batch so one throttled tenant at the head does not starve the
  -- others behind it. pgmq 1.5.1's documented table layout (msg_id, read_ct, vt, message).
  execute format(
    $q$select coalesce(array_agg(c.msg_id order by c.msg_id), '{}'),
              coalesce(array_agg((c.message ->> 'tenant_id')::uuid order by c.msg_id), '{}')
       from (select msg_id, message from pgmq.%I
             where vt <= clock_timestamp()
             order by msg_id
             limit $1
             for update skip locked) c$q$, 'q_' || p_queue)
    into v_msg_ids, v_msg_tenants
    using p_qty * 4 + 10;
  if cardinality(v_msg_ids) = 0 then
    return;
  end if;

  select array_agg(distinct t order by t) into v_tenants from unnest(v_msg_tenants) as t;
  select coalesce(array_agg(r.tenant_id), '{}') into v_limited
  from public.rate_limiters r
  where r.service_name = p_service and r.tenant_id = any (v_tenants);

  if coalesce(current_setting('conveyor.limiter_locks_held', true), '') = '' then
    -- Holding no limiter row yet: wait for them, in tenant_id order.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update) l;
  else
    -- Already holding some (an earlier tier of this claim): never wait while holding.
    select coalesce(array_agg(l.tenant_id), '{}') into v_locked
    from (select r.tenant_id from public.rate_limiters r
          where r.service_name = p_service and r.tenant_id = any (v_limited)
          order by r.tenant_id
          for update skip locked) l;
  end if;
  if cardinality(v_locked) > 0 then
    perform set_config('conveyor.limiter_locks_held', 'on', true);
  end if;

  -- Grants, tenant by tenant in the order of their oldest candidate.
  for v_tenant, v_group in
    select m.tenant, array_agg(m.id order by m.id)
    from unnest(v_msg_ids, v_msg_tenants) as m(id, tenant)
    group by m.tenant
    order by min(m.id)
  loop
    exit when cardinality(v_ids) >= p_qty;
    if v_tenant = any (v_limited) and not (v_tenant = any (v_locked)) then
      continue; -- its bucket is being served by another claimer right now
    end if;
    -- take_rate_limit's own FOR UPDATE finds the row already locked by us: no wait.
    -- A tenant without a bucket for this service is not limited (it returns p_want).
    v_granted := conveyor.take_rate_limit(v_tenant, p_service,
      least(cardinality(v_group), p_qty - cardinality(v_ids)), p_now);
    if v_granted > 0 then
      v_ids := v_ids || v_group[1:v_granted];
    end if;
  end loop;
  if cardinality(v_ids) = 0 then
    return;
  end if;
  return query execute format(
    $q$update pgmq.%I q
       set vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
       where q.msg_id = any($1)
       returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$q$,
    'q_' || p_queue) using v_ids, p_vt;
end
$$;

revoke all on function conveyor.read_queue(text, int, int, text, timestamptz) from public;
