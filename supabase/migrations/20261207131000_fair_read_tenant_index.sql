-- The fair read (conveyor.q_read_fair) walked tenant A's whole ready backlog to find tenant B's
-- one job. Its per-tenant read said `tenant = a.t` and ordered by (tenant, vt): with the tenant
-- an equality, pgmq's vt index yields that order too (filtering on the tenant), and the planner
-- took it whenever its estimates made the two look alike (the generated statement's plan is
-- cached per session, so a session kept whichever it got). The row comparison meant to pin the
-- tenant index holds clock_timestamp(), which is volatile, so it was never an index condition.
-- Noisy neighbour (A with 100,000 ready jobs, B and C with a few): auto_explain showed the vt
-- index with "Rows Removed by Filter: 39189" per tenant, 28 ms a tenant, 84 ms per fair read
-- (median), against 5 ms for a plain read of the same queue; the fair claims' reads were
-- 60 % of the statements' time, and B's and C's jobs waited for them.
-- Now the tenant is bounded from both sides (`>= a.t and <= a.t`, not an equality): only the
-- tenant index gives (tenant, vt) order under that condition (the vt index would need a sort of
-- every matching message), and its scan stays within the tenant's entries. Readiness
-- (vt <= clock_timestamp()) is a filter, as in the plain read. Only the per-tenant reads change;
-- the statement is regenerated for every kind (conveyor.generate_queue_sql, unchanged).
-- supabase/schema.sql holds the current definition.

create or replace function conveyor.fair_read_sql(p_queue text, p_dynamic boolean) returns text
language plpgsql immutable
set search_path = ''
as $_$
declare
  v_sql text := $q$
    with a as (
      select * from unnest(%1$s, %2$s, %3$s, %4$s) as a(t, ev, w, oldest)
    ), c as (
      select 1 as tier, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%9$s q
        where (q.message ->> 'tenant_id') >= a.t and (q.message ->> 'tenant_id') <= a.t
          and q.vt <= clock_timestamp()
        order by (q.message ->> 'tenant_id'), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[1]
      union all
      select 2, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%10$s q
        where (q.message ->> 'tenant_id') >= a.t and (q.message ->> 'tenant_id') <= a.t
          and q.vt <= clock_timestamp()
        order by (q.message ->> 'tenant_id'), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[2]
      union all
      select 3, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%11$s q
        where (q.message ->> 'tenant_id') >= a.t and (q.message ->> 'tenant_id') <= a.t
          and q.vt <= clock_timestamp()
        order by (q.message ->> 'tenant_id'), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[3]
    ), pick as (
      select c.tier, c.msg_id
      from c
      order by c.ev + (row_number() over (partition by c.t order by c.tier, c.vt, c.msg_id) - 1) / c.w,
               c.oldest, c.t
      limit %6$s
    ), u1 as (
      update pgmq.%9$s m set vt = clock_timestamp() + make_interval(secs => %7$s), read_ct = m.read_ct + 1
      where m.msg_id = any (array(select p.msg_id from pick p where p.tier = 1))
      returning 1 as tier, m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    ), u2 as (
      update pgmq.%10$s m set vt = clock_timestamp() + make_interval(secs => %7$s), read_ct = m.read_ct + 1
      where m.msg_id = any (array(select p.msg_id from pick p where p.tier = 2))
      returning 2 as tier, m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    ), u3 as (
      update pgmq.%11$s m set vt = clock_timestamp() + make_interval(secs => %7$s), read_ct = m.read_ct + 1
      where m.msg_id = any (array(select p.msg_id from pick p where p.tier = 3))
      returning 3 as tier, m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    )
    select * from u1 union all select * from u2 union all select * from u3$q$;
begin
  if p_dynamic then
    -- For EXECUTE: parameters $1 to $7, and %1$I to %3$I for the three tables, which the
    -- caller's format() fills in.
    return format(v_sql, '$1', '$2', '$3', '$4', '$5', '$6', '$7', null,
                  '%1$I', '%2$I', '%3$I');
  end if;
  return format(v_sql, 'p_tenants', 'p_ev', 'p_weight', 'p_oldest', 'p_tiers', 'p_qty', 'p_vt',
                null, quote_ident('q_' || p_queue || '_fast'), quote_ident('q_' || p_queue),
                quote_ident('q_' || p_queue || '_bulk'));
end
$_$;

revoke all on function conveyor.fair_read_sql(text, boolean) from public;

select conveyor.generate_queue_sql();
