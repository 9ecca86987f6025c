-- Lean queue tables (issue 16; tools/bench/notes.md, item 14). A drained job wrote more WAL
-- into its queue's table and indexes than it needs to. A read sets the message's vt, so its
-- UPDATE is never HOT: it writes a new version of the row and an entry in each index of the
-- queue. Two changes, same reads, same guarantees:
--
-- * No pgmq vt index on Conveyor's queues. pgmq.create makes `q_<queue>_vt_idx` on (vt) and
--   every message took an entry in it at its INSERT and at each read (66 B per drained job,
--   as much again per enqueue), but no read of ours uses it: the plain read (conveyor.q_read)
--   walks the primary key in msg_id order and tests vt, the fair read and the tenant look walk
--   the tenant index, set_vt/delete/archive go by msg_id. Its one user was
--   conveyor.raise_hints (`select min(vt)`, when a claim found a tier empty): it now takes the
--   same minimum from the tenant index, one descent per tenant with a message in the tier
--   (conveyor.q_tenants without a limit) and one for the messages without a tenant. The
--   dead-letter queue (no tenant index) and queues made with pgmq.create directly keep it.
-- * The tenant index, ((message ->> 'tenant_id'), vt), took 112 B per drained job: its key
--   was the tenant's id as text (37 bytes, where a uuid is 16), a 56-byte index tuple against
--   32, and as many more page splits. It is now keyed by the tenant as a uuid (null when the
--   message has none or it is not a uuid, which the fair look already ignored: claim keeps
--   only keys matching its uuid pattern), and vt: 84 B. The expression is written out
--   wherever it is used (the index, the tenant list, the fair read, a rate-limited kind's
--   per-tenant read, raise_hints) so that the planner matches them. Not a function: an index
--   expression runs with the rights of whoever writes the message (pgmq.send by
--   service_role), and the API roles execute no function of conveyor's.
--
-- Tried and not kept: fillfactor 50 on the queue tables, so that a read's new message version
-- stays on its page and its WAL leaves the message out (a drained job 1,168 → 1,047 B); the
-- doubled table made a 1M backlog drain slower (backlog ratio 0.88 → 0.77 in back-to-back
-- runs), which the lean path must not make worse.
--
-- conveyor.ensure_queue makes new queues so; the queues made so far are changed at the end
-- (their tenant index built again under the same name). conveyor.fair_read_sql and
-- conveyor.generate_queue_sql (q_tenants) and conveyor.read_queue_tenant read by the new key;
-- q_tenants still returns the tenant as text. Then the per-queue functions are generated again. Each function is its
-- current definition (supabase/schema.sql) with these changes only.

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
    execute format('create index if not exists %I on pgmq.%I ('
                   '(case when (message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (message ->> ''tenant_id'')::uuid end), vt)',
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
      '  (select q.vt from pgmq.%I q where '
      '(case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end) is null'
      '   order by (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end), q.vt limit 1))',
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
        where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) >= a.t::uuid
          and (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) <= a.t::uuid
          and q.vt <= clock_timestamp()
        order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[1]
      union all
      select 2, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%10$s q
        where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) >= a.t::uuid
          and (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) <= a.t::uuid
          and q.vt <= clock_timestamp()
        order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[2]
      union all
      select 3, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%11$s q
        where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) >= a.t::uuid
          and (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) <= a.t::uuid
          and q.vt <= clock_timestamp()
        order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
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

create or replace function conveyor.generate_queue_sql() returns void
language plpgsql
set search_path = ''
as $_$
declare
  v_queue text;
  v_kw text := 'if';
  v_read text := '';
  v_put text := '';
  v_delete text := '';
  v_tenants text := '';
  v_fair text := '';
  v_fkw text := 'if';
  v_kq text;
  v_end text;
begin
  -- Two transactions replacing the same functions at once fail ("tuple concurrently
  -- updated"): one generation at a time.
  perform pg_advisory_xact_lock(hashtext('conveyor.generate_queue_sql'));
  for v_queue in
    select conveyor.tier_queue(k.queue_name, t.tier)
    from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
    where to_regclass(format('pgmq.%I', 'q_' || conveyor.tier_queue(k.queue_name, t.tier))) is not null
    order by 1
  loop
    v_read := v_read || format($f$
  %s p_queue = %L then
    return query
    update pgmq.%I m
    set vt = clock_timestamp() + make_interval(secs => p_vt), read_ct = m.read_ct + 1
    where m.msg_id = any (array(
      select q.msg_id from pgmq.%I q
      where q.vt <= clock_timestamp()
      order by q.msg_id
      limit p_qty
      for update skip locked))
    returning m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers;$f$,
      v_kw, v_queue, 'q_' || v_queue, 'q_' || v_queue);
    v_put := v_put || format($f$
  %s p_queue = %L then
    insert into pgmq.%I (msg_id, vt, message, headers) overriding system value
    values (p_msg_id, p_vt, p_message, p_headers);$f$,
      v_kw, v_queue, 'q_' || v_queue);
    v_delete := v_delete || format($f$
  %s p_queue = %L then
    delete from pgmq.%I m where m.msg_id = any (p_msg_ids);$f$,
      v_kw, v_queue, 'q_' || v_queue);
    v_tenants := v_tenants || format($f$
  %s p_queue = %L then
    return query
    with recursive t as (
      (select (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) as tenant, q.vt from pgmq.%I q
       where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) is not null
       order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
       limit 1)
      union all
      select n.tenant, n.vt
      from t cross join lateral (
        select (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) as tenant, q.vt from pgmq.%I q
        where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) > t.tenant
        order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
        limit 1) n)
    select t.tenant::text, t.vt from t limit p_limit;$f$,
      v_kw, v_queue, 'q_' || v_queue, 'q_' || v_queue);
    v_kw := 'elsif';
  end loop;
  if v_kw = 'elsif' then
    v_read := v_read || E'\n  else';
    v_put := v_put || E'\n  else';
    v_delete := v_delete || E'\n  else';
    v_tenants := v_tenants || E'\n  else';
  end if;
  v_end := case when v_kw = 'elsif' then 'end if;' else '' end;

  -- The fair read, per kind whose three tier queues exist.
  for v_kq in
    select k.queue_name from conveyor.job_kinds k
    where to_regclass(format('pgmq.%I', 'q_' || k.queue_name || '_fast')) is not null
      and to_regclass(format('pgmq.%I', 'q_' || k.queue_name)) is not null
      and to_regclass(format('pgmq.%I', 'q_' || k.queue_name || '_bulk')) is not null
    order by 1
  loop
    v_fair := v_fair || format($f$
  %1$s p_queue = %2$L then
    return query %3$s;$f$,
      v_fkw, v_kq, conveyor.fair_read_sql(v_kq, false));
    v_fkw := 'elsif';
  end loop;
  if v_fkw = 'elsif' then
    v_fair := v_fair || E'\n  else';
  end if;

  execute format($def$
create or replace function conveyor.q_read(p_queue text, p_vt int, p_qty int)
returns setof pgmq.message_record
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_sort = off
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
    return query select * from pgmq.read(p_queue, p_vt, p_qty);
  %s
end
$body$$def$, v_read, v_end);

  execute format($def$
create or replace function conveyor.q_put(
  p_queue text, p_msg_id bigint, p_vt timestamptz, p_message jsonb, p_headers jsonb
) returns void
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
    execute format('insert into pgmq.%%I (msg_id, vt, message, headers) overriding system value values ($1, $2, $3, $4)',
                   'q_' || p_queue) using p_msg_id, p_vt, p_message, p_headers;
  %s
end
$body$$def$, v_put, v_end);

  execute format($def$
create or replace function conveyor.q_delete(p_queue text, p_msg_ids bigint[])
returns void
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
    perform pgmq.delete(p_queue, p_msg_ids);
  %s
end
$body$$def$, v_delete, v_end);

  execute format($def$
create or replace function conveyor.q_tenants(p_queue text, p_limit int)
returns table (tenant_key text, first_vt timestamptz)
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_sort = off
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
    return query execute format(
      'with recursive t as ('
      '  (select (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end) as tenant, q.vt from pgmq.%%1$I q'
      '   where (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end) is not null'
      '   order by (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end), q.vt limit 1)'
      '  union all'
      '  select n.tenant, n.vt from t cross join lateral ('
      '    select (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end) as tenant, q.vt from pgmq.%%1$I q'
      '    where (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end) > t.tenant'
      '    order by (case when (q.message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (q.message ->> ''tenant_id'')::uuid end), q.vt limit 1) n)'
      ' select t.tenant::text, t.vt from t limit $1', 'q_' || p_queue) using p_limit;
  %s
end
$body$$def$, v_tenants, v_end);

  execute format($def$
create or replace function conveyor.q_read_fair(
  p_queue text, p_tenants text[], p_ev numeric[], p_weight numeric[], p_oldest timestamptz[],
  p_tiers boolean[], p_qty int, p_vt int
) returns table (tier int, msg_id bigint, read_ct int, enqueued_at timestamptz,
                 vt timestamptz, message jsonb, headers jsonb)
language plpgsql
set search_path = ''
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
#variable_conflict use_column
begin%s
    return query execute format(%L, 'q_' || p_queue || '_fast', 'q_' || p_queue,
                                'q_' || p_queue || '_bulk')
      using p_tenants, p_ev, p_weight, p_oldest, p_tiers, p_qty, p_vt;
  %s
end
$body$$def$, v_fair, conveyor.fair_read_sql(null, true),
   case when v_fkw = 'elsif' then 'end if;' else '' end);

  revoke all on function conveyor.q_read(text, int, int),
    conveyor.q_put(text, bigint, timestamptz, jsonb, jsonb),
    conveyor.q_delete(text, bigint[]),
    conveyor.q_tenants(text, int),
    conveyor.q_read_fair(text, text[], numeric[], numeric[], timestamptz[], boolean[], int, int)
    from public;
end
$_$;

-- A rate-limited kind's fair read takes a tenant's messages through this function: it walks the
-- tenant index, so it reads by the same key (the tenant as a uuid).
create or replace function conveyor.read_queue_tenant(
  p_queue text, p_tenant text, p_vt int, p_qty int, p_service text, p_now timestamptz
) returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $_$
declare
  v_ids bigint[];
  v_granted int;
begin
  if p_qty <= 0 then
    return;
  end if;
  execute format(
    $q$select coalesce(array_agg(c.msg_id order by c.vt), '{}')
       from (select q.msg_id, q.vt from pgmq.%I q
             where (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) >= $2::uuid
               and (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end) <= $2::uuid
               and q.vt <= clock_timestamp()
             order by (case when (q.message ->> 'tenant_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then (q.message ->> 'tenant_id')::uuid end), q.vt
             limit $1
             for update skip locked) c$q$, 'q_' || p_queue)
    into v_ids using p_qty, p_tenant;
  if cardinality(v_ids) = 0 then
    return;
  end if;
  v_granted := conveyor.take_rate_limit(p_tenant::uuid, p_service, cardinality(v_ids), p_now);
  if v_granted < cardinality(v_ids) then
    perform set_config('conveyor.throttled', 'on', true);
  end if;
  if v_granted <= 0 then
    return;
  end if;
  return query execute format(
    $q$update pgmq.%I q
       set vt = clock_timestamp() + make_interval(secs => $2), read_ct = q.read_ct + 1
       where q.msg_id = any ($1)
       returning q.msg_id, q.read_ct, q.enqueued_at, q.vt, q.message, q.headers$q$,
    'q_' || p_queue) using v_ids[1:v_granted], p_vt;
end
$_$;

do $$
declare
  v_queue text;
begin
  for v_queue in
    select h.queue_name from conveyor.queue_hints h
    where to_regclass(format('pgmq.%I', 'q_' || h.queue_name)) is not null
  loop
    execute format('drop index if exists pgmq.%I', 'q_' || v_queue || '_vt_idx');
    execute format('drop index if exists pgmq.%I', 'q_' || v_queue || '_tenant_vt_idx');
    execute format('create index %I on pgmq.%I ('
                   '(case when (message ->> ''tenant_id'') ~* ''^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'' then (message ->> ''tenant_id'')::uuid end), vt)',
                   'q_' || v_queue || '_tenant_vt_idx', 'q_' || v_queue);
  end loop;
end
$$;

select conveyor.generate_queue_sql();
