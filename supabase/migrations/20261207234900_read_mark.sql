-- A claim's read starts past what the session's last read went by (issue 16).
--
-- A drained queue's head is dead: messages deleted at settle, whose primary-key entries and
-- heap tuples stay until vacuum removes them (autovacuum looks at a table once a minute at
-- most), and messages in flight. The read (`order by msg_id ... for update skip locked`)
-- walks all of it from the start of the index on every claim. Measured on a 100k-message
-- queue drained in batches of ten with autovacuum off: after 10k jobs one read of the empty
-- queue touched 130 buffers, after 50k 1,498 (7–20 ms); `perf` on the bench's b10 drain put
-- 17 % of the cluster's CPU under that walk (`_bt_first` under the read's subquery).
--
-- Now each session keeps a read mark per tier queue (session setting
-- conveyor.read_mark_<tier> = '<msg_id> <until, epoch ms>'): the message after the last one
-- its read returned. conveyor.q_read takes the lower bound p_from (an index condition: the
-- read starts there); conveyor.claim reads from the mark, and from the head again
--   * when the mark is older than read_rescan_ms (new setting, 250), and
--   * when the read from the mark comes back short (for the rest of the batch),
-- so a message below the mark (a retry or a delayed job come due, a commit that came late)
-- is read at most read_rescan_ms late, and never missed. Everything the read passes over
-- between the old mark and the new one was taken by this read, held by another claim, not
-- yet visible, or dead. Only the plain read has a mark; the fair read and a rate-limited
-- kind's read go by tenant and are unchanged.
--
-- The functions are their current definitions (supabase/schema.sql) with these changes only:
-- generate_queue_sql (q_read's p_from), then the queue functions generated again, and claim.

insert into conveyor.settings (key, value, description) values
  ('read_rescan_ms', '250',
   'a session reading a queue for claims starts past its last read for this many milliseconds, then from the head again (a retry or delayed job that came due below its mark waits at most this long)')
on conflict (key) do nothing;

drop function conveyor.q_read(text, int, int);

create or replace function conveyor.generate_queue_sql() returns void
language plpgsql
set search_path = ''
as $function$
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
      where q.msg_id >= p_from and q.vt <= clock_timestamp()
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
create or replace function conveyor.q_read(p_queue text, p_vt int, p_qty int, p_from bigint default 0)
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

  revoke all on function conveyor.q_read(text, int, int, bigint),
    conveyor.q_put(text, bigint, timestamptz, jsonb, jsonb),
    conveyor.q_delete(text, bigint[]),
    conveyor.q_tenants(text, int),
    conveyor.q_read_fair(text, text[], numeric[], numeric[], timestamptz[], boolean[], int, int)
    from public;
end
$function$;

select conveyor.generate_queue_sql();

create or replace function conveyor.claim(
  p_kind conveyor.job_kinds, p_worker text, p_qty int, p_vt int, p_now timestamptz, p_max int,
  p_full boolean, p_invocation uuid
) returns setof conveyor.claimed_job
language plpgsql
set search_path = ''
as $function$
declare
  c_uuid constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  v_tiers text[] := array[p_kind.queue_name || '_fast', p_kind.queue_name,
                          p_kind.queue_name || '_bulk'];
  v_from timestamptz[];
  v_open boolean[] := array[false, false, false];
  v_left int := p_qty;
  v_asked int;
  v_msgs pgmq.message_record[];
  v_rows conveyor.claimed_job[];
  v_n int;
  v_reads int;
  v_fair boolean := p_kind.fair_share;
  v_target text := 'queue:' || p_kind.kind;
  -- Fair share: per tier, the tenants with ready messages and their earliest vt; then per
  -- candidate tenant (v_cand), its earliest vt over the tiers and its ready count per tier.
  v_ten text[];
  v_vts timestamptz[];
  v_all_ten text[] := '{}';
  v_all_vt timestamptz[] := '{}';
  v_cand uuid[];
  v_all uuid[];
  v_oldest timestamptz[];
  v_ev numeric[];
  v_w numeric[];
  v_pull bigint[];
  v_m1 pgmq.message_record[];
  v_m2 pgmq.message_record[];
  v_m3 pgmq.message_record[];
  v_got int;
  v_t uuid;
  v_out uuid[] := '{}';
  v_round int := 0;
  v_served uuid[] := '{}';
  v_solo text;
  v_max_ten int;
  v_recheck bigint;
  v_mark text;
  v_lo bigint;
  v_until bigint;
  v_void text;
begin
  if p_invocation is not null and not conveyor.invocation_alive(p_invocation, p_now) then
    perform set_config('conveyor.invocation_lost', 'on', true);
    return;
  end if;
  select array[coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[1]), '-infinity'),
               coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[2]), '-infinity'),
               coalesce(max(h.visible_from) filter (where h.queue_name = v_tiers[3]), '-infinity')]
  into v_from
  from conveyor.queue_hints h where h.queue_name = any (v_tiers);
  for i in 1 .. 3 loop
    v_open[i] := v_from[i] <= clock_timestamp();
  end loop;

  -- A tenant alone a moment ago (this session's last look at the kind, less than
  -- fair_share_recheck_ms ago) is still taken to be alone: the plain claim, without looking.
  -- A second tenant's jobs wait at most that long for the first session that looks again
  -- (sessions look again at different times: each from its own last look); a tenant alone
  -- saves the look on most claims. conveyor.fair_solo = '<kind> <until, epoch ms>'.
  v_solo := current_setting('conveyor.fair_solo', true);
  if v_fair and split_part(v_solo, ' ', 1) = p_kind.kind
     and nullif(split_part(v_solo, ' ', 2), '')::bigint > floor(extract(epoch from clock_timestamp()) * 1000) then
    v_fair := false;
  elsif v_fair then
    -- Who has ready work, tier by tier. The hint of a tier with no ready tenant is raised at
    -- the end of the transaction (conveyor.raise_hints, which checks the tier itself: a
    -- message without a tenant, an orphan, keeps it low, and the plain read below, with one
    -- tenant or none, disposes of it).
    -- Both settings of the look in one statement (conveyor.setting_int, a SQL function with
    -- a SET clause, is planned again on every call: twice per look).
    select coalesce(max((s.value #>> '{}')::bigint)
                      filter (where s.key = 'fair_share_max_tenants'), 1000)::int,
           coalesce(max((s.value #>> '{}')::bigint) filter (where s.key = 'fair_share_recheck_ms'), 25)
    into v_max_ten, v_recheck
    from conveyor.settings s where s.key in ('fair_share_max_tenants', 'fair_share_recheck_ms');
    for i in 1 .. 3 loop
      continue when not v_open[i];
      select coalesce(array_agg(t.tenant_key), '{}'), coalesce(array_agg(t.first_vt), '{}')
      into v_ten, v_vts
      from conveyor.q_tenants(v_tiers[i], v_max_ten) t
      where t.first_vt <= clock_timestamp() and t.tenant_key ~* c_uuid;
      if cardinality(v_ten) = 0 then
        perform set_config('conveyor.empty_tiers',
          concat_ws(',', nullif(current_setting('conveyor.empty_tiers', true), ''), v_tiers[i]), true);
      else
        v_all_ten := v_all_ten || v_ten;
        v_all_vt := v_all_vt || v_vts;
      end if;
    end loop;
    select coalesce(array_agg(x.tenant order by x.tenant), '{}'),
           coalesce(array_agg(x.oldest order by x.tenant), '{}')
    into v_cand, v_oldest
    from (select u.tenant::uuid as tenant, min(u.vt) as oldest
          from unnest(v_all_ten, v_all_vt) as u(tenant, vt)
          group by u.tenant::uuid) x;
    v_fair := cardinality(v_cand) > 1;
    -- Remembered for this session for fair_share_recheck_ms.
    perform set_config('conveyor.fair_solo', case when v_fair then '' else p_kind.kind || ' ' ||
      (floor(extract(epoch from clock_timestamp()) * 1000)
       + v_recheck)::bigint::text end,
      false);
  end if;

  if not v_fair then
    -- Oldest first, fast before normal before bulk.
    for i in 1 .. 3 loop
      exit when v_left <= 0;
      continue when not v_open[i];
      v_reads := 0;
      loop
        v_reads := v_reads + 1;
        v_asked := v_left;
        begin
          if p_kind.service_name is null then
            -- From this session's read mark on the tier, past the messages its last read went
            -- by: a busy queue's drained head is dead index entries and messages in flight,
            -- which every read from the start walks again until vacuum removes them. The mark
            -- holds for read_rescan_ms from a read from the start; after that, or when the
            -- read from the mark comes back short, the read starts at the head again, so a
            -- message below the mark (a retry or a delayed job come due, a late commit) waits
            -- at most that long. conveyor.read_mark_<tier> = '<msg_id> <until, epoch ms>'.
            v_mark := current_setting('conveyor.read_mark_' || v_tiers[i], true);
            v_lo := 0;
            if split_part(v_mark, ' ', 2) <> ''
               and split_part(v_mark, ' ', 2)::bigint > floor(extract(epoch from clock_timestamp()) * 1000) then
              v_lo := split_part(v_mark, ' ', 1)::bigint;
            end if;
            select coalesce(array_agg(m), '{}') into v_msgs
            from conveyor.q_read(v_tiers[i], p_vt, v_asked, v_lo) m;
            if v_lo > 0 and cardinality(v_msgs) < v_asked then
              select v_msgs || coalesce(array_agg(m), '{}') into v_msgs
              from conveyor.q_read(v_tiers[i], p_vt, v_asked - cardinality(v_msgs), 0) m;
              v_lo := 0;
            end if;
            if cardinality(v_msgs) = 0 then
              v_mark := '';
            else
              if v_lo = 0 then
                select floor(extract(epoch from clock_timestamp()) * 1000)
                       + coalesce(max((s.value #>> '{}')::bigint), 250)
                into v_until
                from conveyor.settings s where s.key = 'read_rescan_ms';
              else
                v_until := split_part(v_mark, ' ', 2)::bigint;
              end if;
              v_mark := (select max(m.msg_id) + 1 from unnest(v_msgs) m) || ' ' || v_until;
            end if;
            v_void := set_config('conveyor.read_mark_' || v_tiers[i], v_mark, false);
          else
            select coalesce(array_agg(m), '{}') into v_msgs
            from conveyor.read_queue(v_tiers[i], p_vt, v_asked, p_kind.service_name, p_now) m;
          end if;
        exception when deadlock_detected then
          v_msgs := '{}';
        end;
        v_n := cardinality(v_msgs);
        if v_n < v_asked and coalesce(current_setting('conveyor.throttled', true), '') <> 'on' then
          -- Raised by conveyor.raise_hints at the end of the transaction.
          perform set_config('conveyor.empty_tiers',
            concat_ws(',', nullif(current_setting('conveyor.empty_tiers', true), ''), v_tiers[i]), true);
        end if;
        exit when v_n = 0;
        v_rows := conveyor.claim_messages(p_kind, v_tiers[i], v_msgs, p_worker, p_now, p_max, p_full);
        if cardinality(v_rows) > 0 then
          return query select * from unnest(v_rows);
          v_left := v_left - cardinality(v_rows);
        end if;
        -- Again only when keys held jobs back from a full read: the next read gets the jobs
        -- behind the parked ones.
        exit when v_left <= 0 or v_n < v_asked or v_reads >= 4 or cardinality(v_rows) = v_n
          or not exists (select 1 from unnest(v_msgs) m where m.message ? 'concurrency_key');
      end loop;
    end loop;
  else
    -- Where each candidate stands: virtual time, weight, pull (in v_cand's tenant order).
    select array_agg(f.ev order by f.tenant_id), array_agg(f.weight order by f.tenant_id),
           array_agg(f.pull order by f.tenant_id)
    into v_ev, v_w, v_pull
    from conveyor.fair_state(v_target, v_cand) f;
    v_all := v_cand;
    if p_kind.service_name is not null then
      -- Every limiter row this claim may take tokens from, at once and in tenant order, as
      -- read_queue's first call does (0053): claimers never wait on each other in opposite
      -- orders. Holding some already (an earlier claim in this transaction): never wait, and
      -- a tenant whose row another claim holds gets nothing this time.
      if coalesce(current_setting('conveyor.limiter_locks_held', true), '') = '' then
        perform 1 from (select r.tenant_id from public.rate_limiters r
                        where r.service_name = p_kind.service_name and r.tenant_id = any (v_cand)
                        order by r.tenant_id
                        for update) l;
        perform set_config('conveyor.limiter_locks_held', 'on', true);
      else
        select coalesce(array_agg(c.t order by c.t), '{}'), coalesce(array_agg(c.o order by c.t), '{}'),
               coalesce(array_agg(c.e order by c.t), '{}'), coalesce(array_agg(c.w order by c.t), '{}'),
               coalesce(array_agg(c.p order by c.t), '{}')
        into v_cand, v_oldest, v_ev, v_w, v_pull
        from unnest(v_cand, v_oldest, v_ev, v_w, v_pull) as c(t, o, e, w, p)
        where not exists (select 1 from public.rate_limiters r
                          where r.service_name = p_kind.service_name and r.tenant_id = c.t)
           or exists (select 1 from (select r.tenant_id from public.rate_limiters r
                                     where r.service_name = p_kind.service_name
                                       and r.tenant_id = c.t
                                     for update skip locked) l);
      end if;
    end if;
    loop
      exit when v_left <= 0 or v_round >= 3;
      v_round := v_round + 1;
      v_got := 0;
      if p_kind.service_name is null then
        -- The batch shared in one statement, each tenant's share from its own messages.
        begin
          select coalesce(array_agg(row(r.msg_id, r.read_ct, r.enqueued_at, r.vt, r.message,
                                        r.headers)::pgmq.message_record order by r.msg_id)
                            filter (where r.tier = 1), '{}'),
                 coalesce(array_agg(row(r.msg_id, r.read_ct, r.enqueued_at, r.vt, r.message,
                                        r.headers)::pgmq.message_record order by r.msg_id)
                            filter (where r.tier = 2), '{}'),
                 coalesce(array_agg(row(r.msg_id, r.read_ct, r.enqueued_at, r.vt, r.message,
                                        r.headers)::pgmq.message_record order by r.msg_id)
                            filter (where r.tier = 3), '{}')
          into v_m1, v_m2, v_m3
          from conveyor.q_read_fair(p_kind.queue_name, array(select c::text from unnest(v_cand) c),
                                    v_ev, v_w, v_oldest, v_open, v_left, p_vt) r;
        exception when deadlock_detected then
          v_m1 := '{}'; v_m2 := '{}'; v_m3 := '{}';
        end;
      else
        -- Tenant by tenant: each one's share by the same slot order (its ready jobs unknown: up
        -- to the batch), read through its rate limit, fast before normal before bulk, and each
        -- read claimed at once: its service slots (conveyor.service_leases) are then counted
        -- busy by the tenant's next read. A tenant that gives less than its share (throttled,
        -- or out of ready jobs) is out of the next round.
        v_m1 := '{}'; v_m2 := '{}'; v_m3 := '{}';
        for v_t, v_n in
          select x.t, count(*)::int
          from (select c.t, c.o, c.e + k / c.w as at
                from unnest(v_cand, v_oldest, v_ev, v_w) as c(t, o, e, w)
                cross join generate_series(0, v_left - 1) as k
                order by 3, 2, 1
                limit v_left) x
          group by x.t
          order by min(x.at), min(x.o), x.t
        loop
          for i in 1 .. 3 loop
            exit when v_n <= 0;
            continue when not v_open[i];
            begin
              select coalesce(array_agg(m), '{}') into v_msgs
              from conveyor.read_queue_tenant(v_tiers[i], v_t::text, p_vt, v_n,
                                              p_kind.service_name, p_now) m;
            exception when deadlock_detected then
              v_msgs := '{}';
            end;
            v_n := v_n - cardinality(v_msgs);
            continue when cardinality(v_msgs) = 0;
            v_rows := conveyor.claim_messages(p_kind, v_tiers[i], v_msgs, p_worker, p_now,
                                              p_max, p_full);
            continue when cardinality(v_rows) = 0;
            return query select * from unnest(v_rows);
            v_left := v_left - cardinality(v_rows);
            v_got := v_got + cardinality(v_rows);
            v_served := v_served || array(select r.tenant_id from unnest(v_rows) r);
            v_m1 := v_m1 || v_msgs;
          end loop;
          if v_n > 0 then
            v_out := v_out || v_t;
          end if;
        end loop;
      end if;
      v_msgs := v_m1 || v_m2 || v_m3;
      exit when cardinality(v_msgs) = 0;
      -- (A rate-limited kind's reads were claimed as they were read; v_m1 holds all of them.)
      for i in 1 .. case when p_kind.service_name is null then 3 else 0 end loop
        continue when cardinality(case i when 1 then v_m1 when 2 then v_m2 else v_m3 end) = 0;
        v_rows := conveyor.claim_messages(p_kind, v_tiers[i],
          case i when 1 then v_m1 when 2 then v_m2 else v_m3 end,
          p_worker, p_now, p_max, p_full);
        continue when cardinality(v_rows) = 0;
        return query select * from unnest(v_rows);
        v_left := v_left - cardinality(v_rows);
        v_got := v_got + cardinality(v_rows);
        v_served := v_served || array(select r.tenant_id from unnest(v_rows) r);
      end loop;
      -- Again when keys parked jobs out of what was read (the next read gets the jobs behind
      -- them), or, for a rate-limited kind, for the tenants that could take more.
      if p_kind.service_name is not null and cardinality(v_out) > 0 then
        select coalesce(array_agg(c.t order by c.t), '{}'), coalesce(array_agg(c.o order by c.t), '{}'),
               coalesce(array_agg(c.e order by c.t), '{}'), coalesce(array_agg(c.w order by c.t), '{}')
        into v_cand, v_oldest, v_ev, v_w
        from unnest(v_cand, v_oldest, v_ev, v_w) as c(t, o, e, w)
        where not (c.t = any (v_out));
        v_out := '{}';
        continue when cardinality(v_cand) > 0;
        exit;
      end if;
      exit when v_got = cardinality(v_msgs)
        or not exists (select 1 from unnest(v_msgs) m where m.message ? 'concurrency_key');
    end loop;
    perform conveyor.fair_account(v_target, v_all,
      array(select coalesce(c.pull, 0) + (select count(*) from unnest(v_served) s where s = c.t)
            from unnest(v_all, v_pull) with ordinality as c(t, pull, o)
            order by c.o));
  end if;

  if v_left = p_qty and exists (select 1 from conveyor.key_waiters w where w.kind = p_kind.kind) then
    perform conveyor.wake_free_keys(p_kind, p_now);
  end if;
end
$function$;
