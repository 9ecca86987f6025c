-- Fair share across tenants and concurrency keys (issue 21). A claim takes the oldest ready
-- jobs of a kind whoever they belong to: a tenant with 100,000 queued jobs made every other
-- tenant wait behind them. Now, when several tenants have ready work, a claim shares its
-- batch between them (weighted round robin, without scanning the backlog), and a job may
-- carry a concurrency key: at most N jobs with the same key run at once ("one running job
-- per user"), the others wait without failing and without holding up other keys.
--
-- Forward-only: the functions this changes are re-created here (create or replace; the
-- three whose arguments change are dropped and created anew), so supabase/schema.sql is the
-- place to read the current definition of each. The design, with the figures, is in
-- docs/fairness.md.
--
-- Fair share (per kind, and per content stage):
--   * Discovery without a backlog scan: every tier queue gets an index on
--     ((message ->> 'tenant_id'), vt). A loose index scan (conveyor.q_tenants, generated per
--     queue) walks it one tenant at a time: one index descent per tenant with live messages,
--     which also gives that tenant's earliest vt, so whether it has a ready job.
--   * With one tenant ready (or fairness off: conveyor.job_kinds.fair_share), the claim is the
--     plain claim (oldest messages first, fast before normal before bulk) and writes nothing
--     more; a session that found a tenant alone does not look again for
--     fair_share_recheck_ms, so a tenant alone pays for discovery on a fraction of its claims.
--   * With two or more, each tenant's virtual time is what it was served divided by its
--     weight (conveyor.tenant_weights, default 1), read from conveyor.fair_served, and at most
--     fair_share_lag above the lowest (a tenant further ahead is pulled back: a tenant served
--     heavily yesterday is not starved today, and a newcomer gets at most that head start).
--     One statement (conveyor.q_read_fair, generated per kind) reads up to a batch of each
--     tenant's ready messages, gives each tenant's k-th the time virtual time + k / weight
--     (its fast messages first: priorities keep their meaning within a tenant) and keeps the
--     batch's earliest (ties: the tenant whose ready job waited longest, then tenant id).
--     Served counts are added to striped rows (a claim updates a row no concurrent claim
--     holds, so claims never wait on each other).
--
-- Concurrency keys:
--   * queue_job's optional concurrency_key (and concurrency_limit) go into the ledger
--     (public.jobs) and into the job's message, so a claim sees them without a ledger read;
--     jobs without a key carry neither and pay one `?` test per message read.
--   * The limit of a keyed job: an operator's override for the key
--     (conveyor.concurrency_key_limits) over the job's own concurrency_limit over the kind's
--     default (conveyor.job_kinds.concurrency_key_limit, 1).
--   * A claim grants a keyed job only under the key's transaction advisory lock (a try-lock:
--     claims never wait), counting the key's live leases (conveyor.key_leases, the model is
--     service_leases): a lease is the job's lease, written at claim, moved by extend_jobs,
--     deleted at settle, release, dead letter and by the rescue tick, and it expires with the
--     job's lease, so a killed worker's keys come back when its leases do.
--   * A job whose key is at its limit is parked: its message is made invisible until the
--     key's first live lease expires and recorded in conveyor.key_waiters. Whatever gives a
--     key's lease back wakes its oldest waiters (visible now), and a claim that finds nothing
--     to do wakes the waiters of keys with free slots (a wake that raced a park). Parked jobs
--     are invisible, so they are not read again and do not hold up jobs behind them.

-- ---------------------------------------------------------------------------------------
-- Settings and configuration
-- ---------------------------------------------------------------------------------------
insert into conveyor.settings (key, value, description) values
  ('fair_share_lag', '100',
   'fair share: the most a tenant''s virtual time (jobs served ÷ weight) may be above the lowest of the tenants with ready work; a claim pulls it back to that (so past service counts against a tenant for at most this many jobs, and a newcomer is at most this far ahead)'),
  ('fair_share_recheck_ms', '25',
   'fair share: a session that found one tenant with ready jobs of a kind claims oldest first for the rest of this many milliseconds without looking again (a second tenant waits at most that long to be seen)'),
  ('fair_share_max_tenants', '1000',
   'fair share: most tenants with live messages a claim looks at per tier queue (in tenant id order)'),
  ('content_fair_share', 'true',
   'fair share across tenants for the content stages (job kinds: conveyor.job_kinds.fair_share)'),
  ('starving_factor', '10',
   'a tenant is starving when its oldest ready job has waited this many times the median of the other tenants'' oldest ready jobs of the kind or stage'),
  ('starving_min_sec', '60', 'and at least this many seconds')
on conflict (key) do nothing;

alter table conveyor.job_kinds
  add column fair_share boolean not null default true,
  add column concurrency_key_limit int not null default 1
    check (concurrency_key_limit between 1 and 1000);
comment on column conveyor.job_kinds.fair_share is
  'true: when several tenants have ready jobs of this kind, claims share each batch between them by weight (docs/fairness.md); false: oldest first, whoever they belong to';
comment on column conveyor.job_kinds.concurrency_key_limit is
  'default limit of a concurrency key of this kind: jobs with the same key running at once (a job''s concurrency_limit and conveyor.concurrency_key_limits override it)';

-- Weights: a tenant with weight 2 gets twice the share of a tenant with weight 1 when both
-- have ready work. Absent = 1. Operators edit it (SQL, or operator_set_tenant_weight).
create table conveyor.tenant_weights (
  tenant_id uuid primary key references public.tenants (id) on delete cascade,
  weight numeric not null check (weight > 0 and weight <= 1000),
  updated_at timestamptz not null default now()
);
comment on table conveyor.tenant_weights is
  'Fair share weight per tenant (default 1): its share of claims while other tenants have ready work too.';

-- What each tenant was served while it shared a kind or stage with others ('queue:<kind>',
-- 'content:<stage>'), in jobs (less what a pull-back took off: conveyor.fair_account).
-- Striped: a claim adds to a row of the (target, tenant) that no concurrent claim holds (FOR
-- UPDATE SKIP LOCKED), or adds a row, so claims never wait on each other; readers sum the
-- stripes (about as many as claims ever ran at once).
create table conveyor.fair_served (
  target text not null,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  stripe int not null,
  served bigint not null default 0,
  primary key (target, tenant_id, stripe)
);
create index fair_served_tenant_idx on conveyor.fair_served (tenant_id);
comment on table conveyor.fair_served is
  'Jobs served per kind or content stage and tenant while tenants shared it (striped counters: sum the rows).';

-- ---------------------------------------------------------------------------------------
-- Concurrency keys: the ledger's columns and the tables beside it
-- ---------------------------------------------------------------------------------------

-- Set once at enqueue (no index, no CHECK: every claim and settle update re-evaluates a
-- table's CHECK constraints, and queue_job validates both). After `output`, so a claim's or
-- settle's same-page update record leaves them out with the unchanged suffix.
alter table public.jobs
  add column concurrency_key text,
  add column concurrency_limit int;
comment on column public.jobs.concurrency_key is
  'queue_job''s concurrency_key: at most the key''s limit of jobs of this kind and tenant with this key run at once (NULL: no key)';
comment on column public.jobs.concurrency_limit is
  'queue_job''s concurrency_limit: the limit this job asked for (an operator''s override for the key wins; NULL: the kind''s default)';

-- Operators' limits for one key of one tenant and kind (over the job's and the kind's).
create table conveyor.concurrency_key_limits (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  kind text not null references conveyor.job_kinds (kind) on delete cascade on update cascade,
  concurrency_key text not null check (length(concurrency_key) between 1 and 255),
  max_running int not null check (max_running between 1 and 1000),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, kind, concurrency_key)
);
create index concurrency_key_limits_kind_idx on conveyor.concurrency_key_limits (kind);
comment on table conveyor.concurrency_key_limits is
  'Per (tenant, kind, key): the most jobs with that concurrency key running at once, over the job''s own concurrency_limit and the kind''s default.';

-- The running jobs of each key: one row per leased keyed job, by job number.
create table conveyor.key_leases (
  msg_id bigint primary key,
  tenant_id uuid not null,
  kind text not null,
  concurrency_key text not null,
  expires_at timestamptz not null
);
create index key_leases_key_idx on conveyor.key_leases (tenant_id, kind, concurrency_key);
comment on table conveyor.key_leases is
  'Live leases of jobs with a concurrency key (the busy slots of each key); a lease expires with its job''s.';

-- Parked jobs: their key was at its limit when a claim read them.
create table conveyor.key_waiters (
  msg_id bigint primary key,
  queue_name text not null,
  tenant_id uuid not null,
  kind text not null,
  concurrency_key text not null,
  max_running int not null,
  parked_at timestamptz not null
);
create index key_waiters_key_idx on conveyor.key_waiters (kind, tenant_id, concurrency_key, msg_id);
comment on table conveyor.key_waiters is
  'Jobs parked because their concurrency key was at its limit: invisible until a slot of the key frees (woken) or the key''s first lease expires.';

alter type conveyor.queue_job_item
  add attribute concurrency_key text,
  add attribute concurrency_limit int;

-- The message of a job: the tenant, and for a keyed job its key and limit (what a claim
-- needs without reading the ledger). Inlined into the enqueue's INSERT (no SET clause: see
-- conveyor.default_tenant_id, 0010); every name in it is pg_catalog's.
create function conveyor.job_message(p_tenant_id uuid, p_key text, p_limit int) returns jsonb
language sql immutable parallel safe
as $$
  select case when p_key is null
    then pg_catalog.jsonb_build_object('tenant_id', p_tenant_id)
    else pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'tenant_id', p_tenant_id, 'concurrency_key', p_key, 'concurrency_limit', p_limit))
  end
$$;

-- ---------------------------------------------------------------------------------------
-- Per-queue statements: the tenant index and the fair reads
-- ---------------------------------------------------------------------------------------

-- As in 0052, plus the tenant index of every tier queue: ((message ->> 'tenant_id'), vt),
-- which the fair claim's discovery and per-tenant reads use. A message stays a plain pgmq
-- message; the index is one more entry per message write (its insert and each read).
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
  end if;
  -- With "Expose Queues via PostgREST" (pgmq_public) on, a queue table without RLS is
  -- readable by the API roles (Supabase lint 0019). No policies: only service_role and
  -- the table owner (both bypass RLS) touch our queues, through our RPCs.
  execute format('alter table pgmq.%I enable row level security', 'q_' || p_queue);
  execute format('alter table pgmq.%I enable row level security', 'a_' || p_queue);
end
$$;

-- As in 0052 (q_read, q_put, q_delete), plus the two statements of the fair claim:
--   conveyor.q_tenants(queue, limit): every tenant with a message in the tier queue and its
--     earliest vt, one index descent per tenant (a loose index scan of the tenant index);
--   conveyor.q_read_fair(queue, tenants, ev, weights, oldest, tiers, qty, vt), per kind (queue
--     = the kind's normal tier): reads up to qty ready messages of each tenant from each tier
--     (locked, FOR UPDATE SKIP LOCKED, the longest ready first), numbers each tenant's in
--     tier order (fast, normal, bulk) then by vt, gives the k-th (from 0) the time
--     ev + k ÷ weight, keeps the qty earliest (ties: the tenant whose ready job waited longest,
--     then tenant id) and makes those invisible for vt seconds: a weighted fair share of the
--     batch in one statement, each tenant getting at most what it has ready. The rows read but
--     not kept stay locked until the claim commits and are skipped by concurrent claims.
-- Readiness is written as the row comparison (tenant, vt) <= (t, now), which with the
-- tenant's equality means vt <= now: only the tenant index can serve it, so the planner
-- never reads a rare tenant's messages by walking pgmq's vt index through everyone else's
-- (with few tenants, it estimates each to hold a large share of the queue).
-- The statement of conveyor.q_read_fair for a kind's normal tier queue p_queue (its tier
-- tables named in it), or, with p_dynamic, the same statement as a format() template for
-- EXECUTE (a kind not generated yet).
create function conveyor.fair_read_sql(p_queue text, p_dynamic boolean) returns text
language plpgsql immutable
set search_path = ''
as $$
declare
  v_sql text := $q$
    with a as (
      select * from unnest(%1$s, %2$s, %3$s, %4$s) as a(t, ev, w, oldest)
    ), c as (
      select 1 as tier, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%9$s q
        where (q.message ->> 'tenant_id') = a.t
          and ((q.message ->> 'tenant_id'), q.vt) <= (a.t, clock_timestamp())
        order by (q.message ->> 'tenant_id'), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[1]
      union all
      select 2, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%10$s q
        where (q.message ->> 'tenant_id') = a.t
          and ((q.message ->> 'tenant_id'), q.vt) <= (a.t, clock_timestamp())
        order by (q.message ->> 'tenant_id'), q.vt
        limit %6$s
        for update skip locked) x
      where (%5$s)[2]
      union all
      select 3, x.msg_id, x.vt, a.t, a.ev, a.w, a.oldest
      from a cross join lateral (
        select q.msg_id, q.vt from pgmq.%11$s q
        where (q.message ->> 'tenant_id') = a.t
          and ((q.message ->> 'tenant_id'), q.vt) <= (a.t, clock_timestamp())
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
$$;

create or replace function conveyor.generate_queue_sql() returns void
language plpgsql
set search_path = ''
as $gen$
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
    from (select q.msg_id from pgmq.%I q
          where q.vt <= clock_timestamp()
          order by q.msg_id
          limit p_qty
          for update skip locked) c
    where m.msg_id = c.msg_id
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
      (select (q.message ->> 'tenant_id') as tenant, q.vt from pgmq.%I q
       where (q.message ->> 'tenant_id') is not null
       order by (q.message ->> 'tenant_id'), q.vt
       limit 1)
      union all
      select n.tenant, n.vt
      from t cross join lateral (
        select (q.message ->> 'tenant_id') as tenant, q.vt from pgmq.%I q
        where (q.message ->> 'tenant_id') > t.tenant
        order by (q.message ->> 'tenant_id'), q.vt
        limit 1) n)
    select t.tenant, t.vt from t limit p_limit;$f$,
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
as $body$
-- Generated by conveyor.generate_queue_sql(): do not edit.
begin%s
    return query execute format(
      'with recursive t as ('
      '  (select (q.message ->> ''tenant_id'') as tenant, q.vt from pgmq.%%1$I q'
      '   where (q.message ->> ''tenant_id'') is not null'
      '   order by (q.message ->> ''tenant_id''), q.vt limit 1)'
      '  union all'
      '  select n.tenant, n.vt from t cross join lateral ('
      '    select (q.message ->> ''tenant_id'') as tenant, q.vt from pgmq.%%1$I q'
      '    where (q.message ->> ''tenant_id'') > t.tenant'
      '    order by (q.message ->> ''tenant_id''), q.vt limit 1) n)'
      ' select t.tenant, t.vt from t limit $1', 'q_' || p_queue) using p_limit;
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
$gen$;

select conveyor.ensure_queue(q.name)
from (select conveyor.tier_queue(k.queue_name, t.tier) as name
      from conveyor.job_kinds k cross join unnest(array['fast', 'normal', 'bulk']) as t(tier)
      order by 1) q;
select conveyor.generate_queue_sql();

-- ---------------------------------------------------------------------------------------
-- Enqueue: concurrency_key and concurrency_limit
-- ---------------------------------------------------------------------------------------

-- queue_job's checks (0050), plus "concurrency_key" (a non-empty string of at most 255
-- characters) and "concurrency_limit" (1 to 1000, only with a key). JSON null = absent.
create or replace function conveyor.parse_queue_job(p jsonb, p_limit bigint, p_max_delay bigint)
returns conveyor.queue_job_item
language plpgsql stable
set search_path = ''
as $$
declare
  c_fields constant text[] := array['idempotency_key', 'kind', 'payload', 'priority',
    'delay_seconds', 'execute_after', 'headers', 'critical', 'concurrency_key',
    'concurrency_limit', 'tenant_id'];
  v_kind text;
  v_queue text;
  v_key text;
  v_priority text := 'normal';
  v_run_at timestamptz;
  v_size int;
  v_extra text;
  v_ckey text;
  v_climit int;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_job: the body must be a JSON object';
  end if;

  -- The seed's three checks, in the seed's order, with the seed's texts.
  if p -> 'kind' is null or jsonb_typeof(p -> 'kind') = 'null' then
    raise exception 'queue_job: missing kind in payload';
  end if;
  v_kind := p ->> 'kind';
  if jsonb_typeof(p -> 'kind') = 'string' then
    select k.queue_name into v_queue from conveyor.job_kinds k where k.kind = v_kind;
  end if;
  if v_queue is null then
    raise exception 'queue_job: unsupported kind %', v_kind;
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';

  -- Beyond the seed: every other field is checked, each with its own message.
  v_size := octet_length(p::text);
  if v_size > p_limit then
    raise exception 'queue_job: payload too large (% bytes, the limit is % bytes)', v_size, p_limit;
  end if;
  -- `p - c_fields` is a plain expression: the key query runs only when there is an extra key.
  if p - c_fields <> '{}'::jsonb then
    select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
    raise exception 'queue_job: unknown field "%"', v_extra
      using hint = 'accepted fields: ' || array_to_string(c_fields, ', ');
  end if;
  if length(v_key) > 255 then
    raise exception 'queue_job: idempotency_key is longer than 255 characters';
  end if;
  if p ? 'payload' and jsonb_typeof(p -> 'payload') <> 'object' then
    raise exception 'queue_job: payload must be a JSON object';
  end if;
  if p ? 'priority' then
    if jsonb_typeof(p -> 'priority') <> 'string'
       or p ->> 'priority' not in ('fast', 'normal', 'bulk') then
      raise exception 'queue_job: unsupported priority % (use fast, normal or bulk)', p -> 'priority';
    end if;
    v_priority := p ->> 'priority';
  end if;
  if p ? 'delay_seconds' and p ? 'execute_after' then
    raise exception 'queue_job: give either delay_seconds or execute_after, not both';
  end if;
  if p ? 'delay_seconds' then
    if jsonb_typeof(p -> 'delay_seconds') <> 'number'
       or (p ->> 'delay_seconds')::numeric <> trunc((p ->> 'delay_seconds')::numeric)
       or (p ->> 'delay_seconds')::numeric not between 0 and p_max_delay then
      raise exception 'queue_job: delay_seconds must be a whole number between 0 and %', p_max_delay;
    end if;
    v_run_at := now() + make_interval(secs => (p ->> 'delay_seconds')::numeric);
  end if;
  if p ? 'execute_after' then
    if jsonb_typeof(p -> 'execute_after') = 'string' then
      v_run_at := conveyor.parse_run_at(p ->> 'execute_after');
    end if;
    if v_run_at is null then
      raise exception 'queue_job: execute_after must be an ISO timestamp or an interval such as "10 seconds"';
    end if;
    -- A past timestamp means "now"; a negative interval is a mistake (as a negative
    -- delay_seconds, or fn_pgqueuer_enqueue's negative execute_after).
    if v_run_at < now() and p ->> 'execute_after' !~ '^\s*\d{4}-\d{2}-\d{2}' then
      raise exception 'queue_job: execute_after must not be a negative interval';
    end if;
    if v_run_at > now() + make_interval(secs => p_max_delay) then
      raise exception 'queue_job: execute_after is more than % seconds away', p_max_delay;
    end if;
  end if;
  if p ? 'headers' and jsonb_typeof(p -> 'headers') not in ('object', 'null') then
    raise exception 'queue_job: headers must be a JSON object';
  end if;
  if p ? 'critical' and jsonb_typeof(p -> 'critical') <> 'boolean' then
    raise exception 'queue_job: critical must be true or false';
  end if;
  if coalesce(jsonb_typeof(p -> 'concurrency_key'), 'null') <> 'null' then
    if jsonb_typeof(p -> 'concurrency_key') <> 'string' or (p ->> 'concurrency_key') !~ '\S' then
      raise exception 'queue_job: concurrency_key must be a non-empty string';
    end if;
    v_ckey := p ->> 'concurrency_key';
    if length(v_ckey) > 255 then
      raise exception 'queue_job: concurrency_key is longer than 255 characters';
    end if;
  end if;
  if coalesce(jsonb_typeof(p -> 'concurrency_limit'), 'null') <> 'null' then
    if jsonb_typeof(p -> 'concurrency_limit') <> 'number'
       or (p ->> 'concurrency_limit')::numeric <> trunc((p ->> 'concurrency_limit')::numeric)
       or (p ->> 'concurrency_limit')::numeric not between 1 and 1000 then
      raise exception 'queue_job: concurrency_limit must be a whole number between 1 and 1000';
    end if;
    if v_ckey is null then
      raise exception 'queue_job: concurrency_limit needs a concurrency_key';
    end if;
    v_climit := (p ->> 'concurrency_limit')::int;
  end if;
  if p ? 'tenant_id' then
    if jsonb_typeof(p -> 'tenant_id') <> 'string'
       or p ->> 'tenant_id' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      raise exception 'queue_job: tenant_id must be a uuid';
    end if;
  end if;

  return row(
    (p ->> 'tenant_id')::uuid,
    v_kind,
    conveyor.tier_queue(v_queue, v_priority),
    v_key,
    v_priority,
    coalesce(v_run_at, now()),
    coalesce(p -> 'payload', '{}'::jsonb),
    nullif(p -> 'headers', 'null'::jsonb),
    coalesce((p ->> 'critical')::boolean, false),
    v_ckey,
    v_climit
  )::conveyor.queue_job_item;
end
$$;

-- "The same request" (0050) now includes the concurrency key and limit: a key reused with
-- another concurrency key would otherwise hand back a job that runs under different rules.
drop function conveyor.check_same_request(public.jobs, text, jsonb, text, jsonb, boolean, text);
create function conveyor.check_same_request(
  p_job public.jobs, p_kind text, p_payload jsonb, p_priority text, p_headers jsonb,
  p_critical boolean, p_concurrency_key text, p_concurrency_limit int, p_fn text
) returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_job.kind is distinct from p_kind or p_job.payload is distinct from p_payload
     or p_job.priority is distinct from p_priority or p_job.headers is distinct from p_headers
     or (p_job.max_attempts is not null) is distinct from p_critical
     or p_job.concurrency_key is distinct from p_concurrency_key
     or p_job.concurrency_limit is distinct from p_concurrency_limit then
    raise exception '%: idempotency_key % is already used by job % with another request',
      p_fn, p_job.idempotency_key, p_job.msg_id
      using errcode = '23505',
            detail = format('job %s: kind %s, priority %s', p_job.msg_id, p_job.kind, p_job.priority),
            hint = 'send the same kind, payload, priority, headers, critical flag and concurrency key and limit to get that job back, or use another key';
  end if;
end
$$;

-- conveyor.enqueue (0050) with a concurrency key and limit: in the ledger row and in the
-- message (conveyor.job_message).
drop function conveyor.enqueue(uuid, text, jsonb, text, text, timestamptz, jsonb, boolean, text, text, text);
create function conveyor.enqueue(
  p_tenant_id uuid,
  p_kind text,
  p_payload jsonb,
  p_idempotency_key text,
  p_priority text default 'normal',
  p_run_at timestamptz default null,
  p_headers jsonb default null,
  p_critical boolean default false,
  p_dedupe_key text default null,
  p_concurrency_key text default null,
  p_concurrency_limit int default null,
  p_source text default 'queue_job',
  p_fn text default 'queue_job'
) returns table (job_id uuid, msg_id bigint, created boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_queue text;
  v_job public.jobs;
  v_run_at timestamptz := coalesce(p_run_at, now());
  v_max_attempts int;
begin
  select case p_priority when 'fast' then k.queue_name || '_fast'
                         when 'bulk' then k.queue_name || '_bulk' else k.queue_name end
  into v_queue
  from conveyor.job_kinds k where k.kind = p_kind;
  if v_queue is null then
    raise exception '%: unsupported kind %', p_fn, p_kind;
  end if;
  if p_critical then
    v_max_attempts := conveyor.setting_int('critical_max_attempts');
  end if;

  -- ON CONFLICT waits for a concurrent holder of the same key to commit or roll back, so of
  -- N identical calls exactly one inserts and the others read its job (race-free at READ
  -- COMMITTED: the SELECT below is a statement of its own, with a snapshot that sees it).
  insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                           dedupe_key, max_attempts, payload, headers, run_at,
                           concurrency_key, concurrency_limit)
  values (p_tenant_id, nextval('conveyor.job_number_seq'), p_kind, v_queue, p_priority,
          p_idempotency_key, p_dedupe_key, v_max_attempts, p_payload, p_headers, v_run_at,
          p_concurrency_key, p_concurrency_limit)
  on conflict (tenant_id, idempotency_key) do nothing
  returning * into v_job;
  if v_job.id is null then
    select * into v_job from public.jobs j
    where j.tenant_id = p_tenant_id and j.idempotency_key = p_idempotency_key;
    perform conveyor.check_same_request(v_job, p_kind, p_payload, p_priority, p_headers,
                                        p_critical, p_concurrency_key, p_concurrency_limit, p_fn);
    return query select v_job.id, v_job.msg_id, false;
    return;
  end if;

  if p_dedupe_key is not null then
    -- ON CONFLICT again: a racing call with the same key waits, then sees it taken.
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (p_tenant_id, p_dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception '%: dedupe_key % is already queued or running', p_fn, p_dedupe_key
        using errcode = '23505',
              hint = 'the key can be reused once that job has finished';
    end if;
  end if;

  perform conveyor.q_put(v_queue, v_job.msg_id, v_run_at,
                         conveyor.job_message(p_tenant_id, p_concurrency_key, p_concurrency_limit),
                         p_headers);
  -- conveyor.lower_hint and conveyor.count_jobs, written out: this runs for every job.
  perform pg_advisory_xact_lock_shared(conveyor.hint_lock_key(v_queue));
  update conveyor.queue_hints h set visible_from = v_run_at
  where h.queue_name = v_queue and h.visible_from > v_run_at;
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
  values (date_trunc('minute', now()), pg_backend_pid(), p_tenant_id, v_queue, 1)
  on conflict (minute, backend, tenant_id, queue_name) do update set enqueued = c.enqueued + 1;

  if p_critical then
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    values (p_tenant_id, v_job.id, p_idempotency_key, v_max_attempts);
    insert into public.idempotency_keys (tenant_id, key, job_id)
    values (p_tenant_id, p_idempotency_key, v_job.id);
  end if;
  if p_source = 'fn_pgqueuer_enqueue'
     or exists (select 1 from conveyor.settings s where s.key = 'audit' and s.value = '"full"') then
    insert into public.job_events (job_id, tenant_id, type, payload)
    values (v_job.id, p_tenant_id, 'enqueued', jsonb_strip_nulls(jsonb_build_object(
      'msg_id', v_job.msg_id, 'queue', v_queue, 'priority', p_priority,
      'run_at', v_run_at, 'source', p_source, 'critical', p_critical,
      'concurrency_key', p_concurrency_key)));
  end if;
  -- Wake the dispatcher (debounced, sent after COMMIT; 0060_dispatch.sql) for work due now;
  -- its first check is made here, so a kick inside the debounce window costs one read.
  if v_run_at <= now() and not exists (
    select 1 from conveyor.dispatch_kicks k
    where k.target = 'queue:' || p_kind
      and k.last_kick_at >= clock_timestamp() - make_interval(secs => coalesce(
        (select (s.value #>> '{}')::numeric from conveyor.settings s where s.key = 'kick_debounce_ms'),
        250) / 1000.0)) then
    perform conveyor.kick('queue:' || p_kind);
  end if;

  return query select v_job.id, v_job.msg_id, true;
end
$$;

-- conveyor.enqueue_items (0050) with the concurrency key and limit of each element.
create or replace function conveyor.enqueue_items(
  p_items conveyor.queue_job_item[],
  p_source text default 'queue_job'
) returns bigint[]
language plpgsql
set search_path = ''
as $$
declare
  v_critical_attempts int := conveyor.setting_int('critical_max_attempts');
  v_new public.jobs[];
  v_queue text;
  v_ids bigint[];
begin
  -- 1. The jobs: one per distinct (tenant, key), the first element with that key being the
  -- job. As in conveyor.enqueue, ON CONFLICT waits for a concurrent holder of a key to commit
  -- or roll back, so racing calls make one job per key. The rows go in (tenant, key) order:
  -- every call takes its key locks in the same order, so two batches with overlapping keys
  -- wait for each other instead of deadlocking. Any fixed order will do, so the keys sort
  -- bytewise (COLLATE "C": equality is the same as the unique index's under any
  -- deterministic collation). Job numbers follow array order.
  with firsts as (
    select distinct on (e.tenant_id, e.idempotency_key collate "C") e.*, e.ordinality as ord
    from unnest(p_items) with ordinality as e
    order by e.tenant_id, e.idempotency_key collate "C", e.ordinality
  ), numbered as (
    select f.*, nextval('conveyor.job_number_seq') as msg_id
    from (select * from firsts order by ord) f
  ), ins as (
    insert into public.jobs (tenant_id, msg_id, kind, queue_name, priority, idempotency_key,
                             max_attempts, payload, headers, run_at, concurrency_key,
                             concurrency_limit)
    select n.tenant_id, n.msg_id, n.kind, n.queue_name, n.priority, n.idempotency_key,
           case when n.critical then v_critical_attempts end, n.payload, n.headers, n.run_at,
           n.concurrency_key, n.concurrency_limit
    from numbered n
    order by n.tenant_id, n.idempotency_key collate "C"
    on conflict (tenant_id, idempotency_key) do nothing
    returning *
  )
  select coalesce(array_agg(ins order by ins.msg_id), '{}') into v_new from ins;

  if cardinality(v_new) > 0 then
    -- 2. The messages, one INSERT per tier queue (pgmq.send_batch takes one delay for the
    -- whole batch, each element has its own run_at), under the jobs' numbers.
    for v_queue in select distinct j.queue_name from unnest(v_new) j loop
      execute format(
        $q$insert into pgmq.%I (msg_id, vt, message, headers) overriding system value
           select j.msg_id, j.run_at,
                  conveyor.job_message(j.tenant_id, j.concurrency_key, j.concurrency_limit),
                  j.headers
           from unnest($1::public.jobs[]) j
           where j.queue_name = $2
           order by j.msg_id$q$,
        'q_' || v_queue) using v_new, v_queue;
      perform conveyor.lower_hint(v_queue, (select min(j.run_at) from unnest(v_new) j
                                            where j.queue_name = v_queue));
    end loop;

    -- 3. Counts, critical jobs' rows, and the 'enqueued' events when auditing everything.
    insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, enqueued)
    select date_trunc('minute', now()), pg_backend_pid(), j.tenant_id, j.queue_name, count(*)
    from unnest(v_new) j group by j.tenant_id, j.queue_name
    on conflict (minute, backend, tenant_id, queue_name) do update
    set enqueued = c.enqueued + excluded.enqueued;
    insert into public.critical_jobs (tenant_id, job_id, idempotency_key, max_attempts)
    select j.tenant_id, j.id, j.idempotency_key, j.max_attempts
    from unnest(v_new) j where j.max_attempts is not null order by j.msg_id;
    insert into public.idempotency_keys (tenant_id, key, job_id)
    select j.tenant_id, j.idempotency_key, j.id
    from unnest(v_new) j where j.max_attempts is not null order by j.msg_id;
    if conveyor.audit_full() then
      insert into public.job_events (job_id, tenant_id, type, payload)
      select j.id, j.tenant_id, 'enqueued', jsonb_strip_nulls(jsonb_build_object(
               'msg_id', j.msg_id, 'queue', j.queue_name, 'priority', j.priority,
               'run_at', j.run_at, 'source', p_source, 'critical', j.max_attempts is not null,
               'concurrency_key', j.concurrency_key))
      from unnest(v_new) j
      order by j.msg_id;
    end if;

    -- 4. Wake the dispatcher for kinds with work due now: once per kind.
    perform conveyor.kick('queue:' || k.kind)
    from (select j.kind, min(j.msg_id) as first from unnest(v_new) j
          where j.run_at <= now() group by j.kind) k
    order by k.first;
  end if;

  -- 5. Every element's job, new or existing: a statement of its own, so under READ
  -- COMMITTED its snapshot sees the keys that concurrent callers committed while step 1
  -- waited for them. A key that names another request is refused.
  if exists (
    select 1
    from unnest(p_items) e
    join public.jobs j on j.tenant_id = e.tenant_id and j.idempotency_key = e.idempotency_key
    where j.kind is distinct from e.kind or j.payload is distinct from e.payload
       or j.priority is distinct from e.priority or j.headers is distinct from e.headers
       or (j.max_attempts is not null) is distinct from e.critical
       or j.concurrency_key is distinct from e.concurrency_key
       or j.concurrency_limit is distinct from e.concurrency_limit
  ) then
    raise exception 'queue_jobs: an idempotency_key is already used with another request'
      using errcode = '23505';
  end if;
  select array_agg(j.msg_id order by e.ordinality)
  into v_ids
  from unnest(p_items) with ordinality as e
  left join public.jobs j on j.tenant_id = e.tenant_id and j.idempotency_key = e.idempotency_key;
  return v_ids;
end
$$;

-- public.queue_job (0051), passing the concurrency key and limit on.
create or replace function public.queue_job(jsonb) returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  c_fn constant text := 'queue_job';
  v conveyor.queue_job_item;
  v_limit bigint;
  v_max_delay bigint;
  v_result record;
begin
  -- Both limits in one read (each helper call costs more than the read itself).
  select max((s.value #>> '{}')::bigint) filter (where s.key = 'payload_max_bytes'),
         max((s.value #>> '{}')::bigint) filter (where s.key = 'max_delay_sec')
  into v_limit, v_max_delay
  from conveyor.settings s where s.key in ('payload_max_bytes', 'max_delay_sec');
  v := conveyor.parse_queue_job($1, v_limit, v_max_delay);
  v.tenant_id := conveyor.queue_job_tenant(v.tenant_id);
  select * into v_result from conveyor.enqueue(
    p_tenant_id => v.tenant_id,
    p_kind => v.kind,
    p_payload => v.payload,
    p_idempotency_key => v.idempotency_key,
    p_priority => v.priority,
    p_run_at => v.run_at,
    p_headers => v.headers,
    p_critical => v.critical,
    p_concurrency_key => v.concurrency_key,
    p_concurrency_limit => v.concurrency_limit,
    p_source => c_fn,
    p_fn => c_fn
  );
  return v_result.msg_id;
end
$$;

comment on function public.queue_job(jsonb) is
  'Enqueue a job: {"idempotency_key","kind","payload"} (+ priority, delay_seconds | execute_after, headers, critical, concurrency_key, concurrency_limit). Returns the pgmq message id.';

-- ---------------------------------------------------------------------------------------
-- Concurrency keys at claim and at release
-- ---------------------------------------------------------------------------------------

-- Wakes up to p_n parked jobs of a key, oldest first: their messages visible now (the claim
-- checks the key again), their waiter rows gone. Waiters another transaction is handling are
-- skipped (SKIP LOCKED), and so are messages a claim holds right now (it decides for them).
-- Kicks the dispatcher, so a kind whose workers have all stopped gets one; sets
-- conveyor.woken so settle_and_claim_jobs claims again. Returns how many were woken.
create function conveyor.wake_waiters(p_kind text, p_tenant uuid, p_key text, p_n int)
returns int
language plpgsql
set search_path = ''
as $$
declare
  v_ids bigint[];
  v_queues text[];
  v_queue text;
begin
  if p_n <= 0 then
    return 0;
  end if;
  with w as (
    delete from conveyor.key_waiters x
    where x.msg_id in (select y.msg_id from conveyor.key_waiters y
                       where y.kind = p_kind and y.tenant_id = p_tenant
                         and y.concurrency_key = p_key
                       order by y.msg_id
                       limit p_n
                       for update skip locked)
    returning x.msg_id, x.queue_name
  )
  select array_agg(w.msg_id), array_agg(w.queue_name) into v_ids, v_queues from w;
  if v_ids is null then
    return 0;
  end if;
  for v_queue in select distinct q from unnest(v_queues) q loop
    execute format(
      $q$update pgmq.%I m set vt = clock_timestamp()
         where m.msg_id in (select x.msg_id from pgmq.%I x
                            where x.msg_id = any ($1) and x.vt > clock_timestamp()
                            for update skip locked)$q$,
      'q_' || v_queue, 'q_' || v_queue)
      using array(select u.id from unnest(v_ids, v_queues) as u(id, q) where u.q = v_queue);
    perform conveyor.lower_hint(v_queue, clock_timestamp());
  end loop;
  perform set_config('conveyor.woken', 'on', true);
  perform conveyor.kick('queue:' || p_kind);
  return cardinality(v_ids);
end
$$;

-- Gives back the key leases of these jobs (by number) and wakes as many waiters of each key
-- as leases it gave back. Returns how many waiters were woken.
create function conveyor.release_keys(p_msg_ids bigint[]) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_tenants uuid[];
  v_kinds text[];
  v_keys text[];
  v_ns int[];
  v_woken int := 0;
begin
  if coalesce(cardinality(p_msg_ids), 0) = 0 then
    return 0;
  end if;
  with gone as (
    delete from conveyor.key_leases l where l.msg_id = any (p_msg_ids)
    returning l.tenant_id, l.kind, l.concurrency_key
  ), per_key as (
    select g.tenant_id, g.kind, g.concurrency_key, count(*)::int as n
    from gone g group by g.tenant_id, g.kind, g.concurrency_key
  )
  select array_agg(k.tenant_id order by k.kind, k.tenant_id, k.concurrency_key),
         array_agg(k.kind order by k.kind, k.tenant_id, k.concurrency_key),
         array_agg(k.concurrency_key order by k.kind, k.tenant_id, k.concurrency_key),
         array_agg(k.n order by k.kind, k.tenant_id, k.concurrency_key)
  into v_tenants, v_kinds, v_keys, v_ns
  from per_key k;
  for i in 1 .. coalesce(cardinality(v_keys), 0) loop
    v_woken := v_woken + conveyor.wake_waiters(v_kinds[i], v_tenants[i], v_keys[i], v_ns[i]);
  end loop;
  return v_woken;
end
$$;

-- Wakes the parked jobs of a kind's keys that have free slots: a claim that found nothing to
-- do runs this, so a wake that raced a park (the parking claim counted a lease that was being
-- given back) or a raised limit is picked up by the next claim, not at the park's end.
create function conveyor.wake_free_keys(p_kind conveyor.job_kinds, p_now timestamptz) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_key record;
  v_woken int := 0;
begin
  for v_key in
    select w.tenant_id, w.concurrency_key,
           coalesce((select c.max_running from conveyor.concurrency_key_limits c
                     where c.tenant_id = w.tenant_id and c.kind = p_kind.kind
                       and c.concurrency_key = w.concurrency_key),
                    (array_agg(w.max_running order by w.msg_id))[1]) as max_running,
           (select count(*) from conveyor.key_leases l
            where l.tenant_id = w.tenant_id and l.kind = p_kind.kind
              and l.concurrency_key = w.concurrency_key and l.expires_at > p_now) as live
    from conveyor.key_waiters w
    where w.kind = p_kind.kind
    group by w.tenant_id, w.concurrency_key
    limit 100
  loop
    v_woken := v_woken + conveyor.wake_waiters(p_kind.kind, v_key.tenant_id,
      v_key.concurrency_key, v_key.max_running - v_key.live::int);
  end loop;
  return v_woken;
end
$$;

-- The keyed messages of a read, before their jobs are claimed: each key's jobs are granted
-- while its live leases are below the job's limit (operator override, else the job's
-- concurrency_limit, else the kind's default), under the key's advisory lock; a granted job
-- gets its key lease now (expiring with the message's visibility, i.e. the job's lease). The
-- others are parked (invisible until the key's first live lease expires; woken earlier when
-- a lease is given back). A key whose lock another claim holds is skipped: its messages are
-- visible again in 100 ms, for a later claim. Returns the messages to claim: every unkeyed
-- one and the granted ones.
create function conveyor.admit_keyed(
  p_kind conveyor.job_kinds, p_queue text, p_msgs pgmq.message_record[], p_now timestamptz
) returns pgmq.message_record[]
language plpgsql
set search_path = ''
as $$
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
    select c.max_running into v_override from conveyor.concurrency_key_limits c
    where c.tenant_id = v_tenant and c.kind = p_kind.kind and c.concurrency_key = v_key.ckey;
    -- A statement of its own, after the lock: its snapshot sees every lease committed by the
    -- claims that held the lock before.
    select count(*)::int, min(l.expires_at) into v_live, v_first
    from conveyor.key_leases l
    where l.tenant_id = v_tenant and l.kind = p_kind.kind and l.concurrency_key = v_key.ckey
      and l.expires_at > p_now
      and l.msg_id <> all (array(select m.msg_id from unnest(v_group) m));
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
$$;

-- What a job no longer running gives back: its dedupe key (when finished), its service slot,
-- and its concurrency key's slot (waking a parked job of that key).
create or replace function conveyor.release_job_holds(p_job_ids uuid[], p_finished boolean)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_finished then
    delete from conveyor.dedupe_keys d where d.job_id = any (p_job_ids);
  end if;
  delete from conveyor.service_leases l where l.job_id = any (p_job_ids);
  perform conveyor.release_keys(array(
    select j.msg_id from public.jobs j
    where j.id = any (p_job_ids) and j.concurrency_key is not null));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Fair share at claim
-- ---------------------------------------------------------------------------------------

-- Where the tenants with ready work (p_tenants) stand on the kind or stage p_target: each
-- one's virtual time `ev` (its served jobs ÷ its weight, from conveyor.fair_served and
-- conveyor.tenant_weights, counted at most fair_share_lag above the lowest), its weight, and
-- `pull`: how much to take off its served count so that the lag bound lasts
-- (conveyor.fair_account applies it). Bounded lag, made to last: past service stops counting
-- against a tenant beyond fair_share_lag, and a newcomer is at most that far ahead. A pull is
-- computed from the committed counts, so one claim of the target at a time computes pulls (a
-- transaction advisory try-lock taken before the read: the others skip it, never wait);
-- concurrent claims pulling the same tenant back from the same counts would pull it back
-- once each, and their corrections would grow without bound. Rows in tenant order.
create function conveyor.fair_state(p_target text, p_tenants uuid[])
returns table (tenant_id uuid, ev numeric, weight numeric, pull bigint)
language plpgsql
set search_path = ''
as $$
declare
  v_pull boolean := pg_try_advisory_xact_lock(hashtextextended('conveyor.fair:' || p_target, 0));
begin
  -- A statement of its own after the lock: its snapshot sees the pulls committed by the
  -- claims that held it before.
  return query
  with t as materialized (
    select u.tenant_id, coalesce(w.weight, 1) as weight,
           coalesce((select sum(s.served) from conveyor.fair_served s
                     where s.target = p_target and s.tenant_id = u.tenant_id), 0) as served
    from unnest(p_tenants) as u(tenant_id)
    left join conveyor.tenant_weights w on w.tenant_id = u.tenant_id
  ), e as (
    select t.*, t.served / t.weight as vt,
           min(t.served / t.weight) over () + coalesce(
             (select (s.value #>> '{}')::numeric from conveyor.settings s
              where s.key = 'fair_share_lag'), 100) as ceiling
    from t
  )
  select e.tenant_id, least(e.vt, e.ceiling), e.weight,
         case when v_pull and e.vt > e.ceiling
              then (floor(e.ceiling * e.weight) - e.served)::bigint else 0::bigint end
  from e
  order by e.tenant_id;
end
$$;

-- Records a fair claim on p_target: adds p_deltas[i] to p_tenants[i]'s served count (what it
-- was served, less its pull from conveyor.fair_state), each to a stripe row no concurrent
-- claim holds (FOR UPDATE SKIP LOCKED), else to a new stripe: claims never wait on each other.
create function conveyor.fair_account(p_target text, p_tenants uuid[], p_deltas bigint[])
returns void
language plpgsql
set search_path = ''
as $$
begin
  for i in 1 .. coalesce(cardinality(p_tenants), 0) loop
    continue when coalesce(p_deltas[i], 0) = 0;
    update conveyor.fair_served f set served = f.served + p_deltas[i]
    where f.ctid = (select x.ctid from conveyor.fair_served x
                    where x.target = p_target and x.tenant_id = p_tenants[i]
                    limit 1
                    for update skip locked);
    -- Every stripe is held by a concurrent claim: a new one (a random number: a fixed one,
    -- such as the backend's pid, could be a row another claim holds, and then we would wait).
    while not found loop
      insert into conveyor.fair_served (target, tenant_id, stripe, served)
      values (p_target, p_tenants[i], floor(random() * 2147483647)::int, p_deltas[i])
      on conflict do nothing;
    end loop;
  end loop;
end
$$;

-- read_queue (0053) for one tenant's messages: a rate-limited kind's read in the fair claim.
-- The fair claim has locked the limiter rows of every tenant it considers (in tenant order),
-- so take_rate_limit finds this tenant's row locked already and never waits.
create function conveyor.read_queue_tenant(
  p_queue text,
  p_tenant text,
  p_vt int,
  p_qty int,
  p_service text,
  p_now timestamptz
) returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
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
             where (q.message ->> 'tenant_id') = $2
               and ((q.message ->> 'tenant_id'), q.vt) <= ($2, clock_timestamp())
             order by (q.message ->> 'tenant_id'), q.vt
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
$$;

-- The jobs of messages a claim read, claimed: keyed messages go through admit_keyed first;
-- then the ledger rows (a HOT update: nothing indexed changes), messages that cannot be
-- claimed disposed of, the minute's counts, service slots and 'claimed' events when auditing
-- everything (0053's claim, per read).
create function conveyor.claim_messages(
  p_kind conveyor.job_kinds,
  p_queue text,
  p_msgs pgmq.message_record[],
  p_worker text,
  p_now timestamptz,
  p_max int,
  p_full boolean
) returns conveyor.claimed_job[]
language plpgsql
set search_path = ''
as $$
declare
  v_msgs pgmq.message_record[] := p_msgs;
  v_keyed boolean := exists (select 1 from unnest(p_msgs) m where m.message ? 'concurrency_key');
  v_rows conveyor.claimed_job[];
begin
  if v_keyed then
    v_msgs := conveyor.admit_keyed(p_kind, p_queue, p_msgs, p_now);
    if cardinality(v_msgs) = 0 then
      return '{}';
    end if;
  end if;
  with claimed as (
    update public.jobs j
    set status = 'processing',
        attempts = j.attempts + 1,
        lease_id = gen_random_uuid(),
        locked_by = p_worker,
        locked_until = m.vt,
        started_at = coalesce(j.started_at, p_now),
        updated_at = p_now
    from unnest(v_msgs) m
    where j.msg_id = m.msg_id
      and j.status in ('pending', 'processing')
      -- a job whose last attempt was lost does not run again: dispose_unclaimed
      and case when j.attempts = 0 then true
               else j.attempts < coalesce(j.max_attempts,
                 (select q.max_attempts from public.queues q
                  where q.tenant_id = j.tenant_id and q.kind = j.kind), p_max) end
    returning j.id, j.lease_id, j.kind, j.queue_name, j.msg_id, j.tenant_id, j.priority,
              j.attempts, j.max_attempts, j.payload, j.headers, m.enqueued_at, j.locked_until
  )
  select coalesce(array_agg(row(c.*)::conveyor.claimed_job), '{}') into v_rows from claimed c;
  if cardinality(v_rows) < cardinality(v_msgs) then
    perform conveyor.dispose_unclaimed(p_queue,
      array(select m from unnest(v_msgs) m
            where m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))),
      p_max, p_now);
    if v_keyed then
      -- Granted a key slot but not claimed (finished, or its last attempt was lost).
      perform conveyor.release_keys(array(
        select m.msg_id from unnest(v_msgs) m
        where m.message ? 'concurrency_key'
          and m.msg_id <> all (array(select r.msg_id from unnest(v_rows) r))));
    end if;
  end if;
  if cardinality(v_rows) = 0 then
    return v_rows;
  end if;

  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, claimed)
  select date_trunc('minute', p_now), pg_backend_pid(), r.tenant_id, p_queue, count(*)
  from unnest(v_rows) r group by r.tenant_id
  on conflict (minute, backend, tenant_id, queue_name) do update
  set claimed = c.claimed + excluded.claimed;
  if p_kind.service_name is not null then
    insert into conveyor.service_leases (job_id, tenant_id, service_name, expires_at)
    select r.job_id, r.tenant_id, p_kind.service_name, r.locked_until from unnest(v_rows) r
    on conflict (job_id) do update set expires_at = excluded.expires_at;
  end if;
  if p_full then
    insert into public.job_events (job_id, tenant_id, type, payload)
    select r.job_id, r.tenant_id, 'claimed',
           jsonb_build_object('attempt', r.attempt, 'worker', p_worker, 'msg_id', r.msg_id,
                              'lease_id', r.lease_id, 'locked_until', r.locked_until)
    from unnest(v_rows) r;
  end if;
  return v_rows;
end
$$;

-- Claims up to p_qty jobs of one kind; attempts are counted at claim. A tier whose hint says
-- nothing can be visible yet is not read. With p_invocation, a lapsed invocation claims
-- nothing (conveyor.invocation_lost is set) and a live one's heart beats.
--
-- Which jobs (docs/fairness.md): with the kind's fair_share on, the claim first finds the
-- tenants with ready messages in each tier (conveyor.q_tenants: one index descent per tenant
-- with live messages). With at most one, or with fair_share off, it reads oldest first, fast
-- before normal before bulk (the plain claim). With two or more, conveyor.fair_state gives
-- each one's virtual time and weight, and conveyor.q_read_fair shares the batch between them
-- in one statement: each tenant's share read from its own messages, fast before normal before
-- bulk, none getting more than it has ready; what each got is added to conveyor.fair_served.
-- (A rate-limited kind reads tenant by tenant, conveyor.read_queue_tenant, for the shares the
-- same slot order gives.) Slots left free because keys parked jobs, or because jobs could not
-- be claimed, are shared again, at most three rounds; in the plain claim a tier is read again
-- at most four times when keys parked jobs of a full read. A claim that claims nothing wakes
-- the parked jobs of keys with free slots.
--
-- Each read is a statement of its own in a subtransaction: FOR UPDATE SKIP LOCKED skips
-- locked rows, but where a row's newer version (left by a concurrent read, being deleted by
-- that worker's settle) is in the way, PostgreSQL follows the update chain and waits, and
-- three such claims can wait on each other ("deadlock detected ... while locking updated
-- version of tuple"); the victim reads nothing from that tier this time instead of failing.
create or replace function conveyor.claim(
  p_kind conveyor.job_kinds,
  p_worker text,
  p_qty int,
  p_vt int,
  p_now timestamptz,
  p_max int,
  p_full boolean,
  p_invocation uuid
) returns setof conveyor.claimed_job
language plpgsql
set search_path = ''
as $$
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
    for i in 1 .. 3 loop
      continue when not v_open[i];
      select coalesce(array_agg(t.tenant_key), '{}'), coalesce(array_agg(t.first_vt), '{}')
      into v_ten, v_vts
      from conveyor.q_tenants(v_tiers[i],
             coalesce(conveyor.setting_int('fair_share_max_tenants')::int, 1000)) t
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
       + coalesce(conveyor.setting_int('fair_share_recheck_ms'), 25))::bigint::text end,
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
            select coalesce(array_agg(m), '{}') into v_msgs from conveyor.q_read(v_tiers[i], p_vt, v_asked) m;
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
$$;

-- complete_jobs (0053), giving back the concurrency key slots of the completed jobs, and
-- deleting (or archiving) the messages in a subtransaction: a concurrent claim's read can hold
-- a lock on a message it did not take (FOR UPDATE follows a row's update chain and locks its
-- newest version before finding it invisible, and keeps the lock to its commit), and two
-- workers each settling what the other's claim holds wait on each other. The victim of such a
-- deadlock keeps its completions; the messages it could not delete are deleted by the claim
-- that reads them once their visibility ends (a finished job's message: dispose_unclaimed).
create or replace function conveyor.complete_jobs(
  p_worker text, p_results jsonb, p_now timestamptz, p_archive boolean, p_full boolean
) returns uuid[]
language plpgsql
set search_path = ''
as $$
declare
  v_done public.jobs[];
  v_ids uuid[];
  v_queue text;
begin
  with ok as (
    update public.jobs j
    set status = 'completed', finished_at = p_now, updated_at = p_now, output = r.output,
        lease_id = null, locked_by = null, locked_until = null, last_error = null
    from jsonb_to_recordset(p_results) as r(job_id uuid, lease_id uuid, status text, output jsonb)
    where r.status = 'completed' and j.id = r.job_id and j.lease_id = r.lease_id
      and j.status = 'processing' and j.locked_until > p_now
    returning j.*
  )
  select array_agg(ok) into v_done from ok;
  if v_done is null then
    return '{}';
  end if;
  for v_queue in select distinct d.queue_name from unnest(v_done) d loop
    begin
      if p_archive then
        perform pgmq.archive(v_queue, array(select d.msg_id from unnest(v_done) d
                                            where d.queue_name = v_queue));
      else
        perform conveyor.q_delete(v_queue, array(select d.msg_id from unnest(v_done) d
                                                 where d.queue_name = v_queue));
      end if;
    exception when deadlock_detected then
      null;
    end;
  end loop;
  select array_agg(d.id) into v_ids from unnest(v_done) d;
  if exists (select 1 from unnest(v_done) d where d.dedupe_key is not null) then
    delete from conveyor.dedupe_keys k where k.job_id = any (v_ids);
  end if;
  if exists (select 1 from unnest(v_done) d where d.concurrency_key is not null) then
    perform conveyor.release_keys(array(select d.msg_id from unnest(v_done) d
                                        where d.concurrency_key is not null));
  end if;
  delete from conveyor.service_leases l where l.job_id = any (v_ids);
  insert into conveyor.job_counts as c (minute, backend, tenant_id, queue_name, completed)
  select date_trunc('minute', p_now), pg_backend_pid(), d.tenant_id, d.queue_name, count(*)
  from unnest(v_done) d group by d.tenant_id, d.queue_name
  on conflict (minute, backend, tenant_id, queue_name) do update
  set completed = c.completed + excluded.completed;
  if p_full then
    insert into public.job_events (job_id, tenant_id, type, payload)
    select d.id, d.tenant_id, 'completed', jsonb_build_object('attempt', d.attempts, 'worker', p_worker)
    from unnest(v_done) d;
  end if;
  return v_ids;
end
$$;

-- settle_and_claim_jobs (0053). One change: when the settle gave a concurrency key's slot
-- back and woke its parked jobs after this call's claim ran short (claim first), the claim
-- runs again for the rest of the batch, so the woken jobs run now, in this worker.
create or replace function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null,
  p_invocation uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_kind conveyor.job_kinds := conveyor.claim_args(p_kind, p_worker, p_qty, v_vt, p_policy);
  v_max int := coalesce((p_policy ->> 'max_attempts')::int, conveyor.setting_int('max_attempts')::int);
  v_archive boolean;
  v_full boolean;
  v_n int;
  v_done uuid[] := '{}';
  v_settled jsonb := '[]';
  v_claimed jsonb;
  v_more jsonb;
  v_rest jsonb;
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    raise exception 'settle_jobs: p_results must be a JSON array';
  end if;
  v_n := jsonb_array_length(p_results);
  select coalesce(bool_or(s.key = 'archive_completed' and s.value = 'true'), false),
         coalesce(bool_or(s.key = 'audit' and s.value = '"full"'), false)
  into v_archive, v_full
  from conveyor.settings s where s.key in ('archive_completed', 'audit');

  if v_kind.service_name is not null and v_n > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;
  perform set_config('conveyor.woken', '', true);
  select coalesce(jsonb_agg(to_jsonb(c)), '[]') into v_claimed
  from conveyor.claim(v_kind, p_worker, p_qty, v_vt, v_now, v_max, v_full, p_invocation) c;
  if v_kind.service_name is null and v_n > 0 then
    v_done := conveyor.complete_jobs(p_worker, p_results, v_now, v_archive, v_full);
  end if;

  if v_n > 0 then
    select coalesce(jsonb_agg(jsonb_build_object('job_id', d, 'accepted', true,
                                                 'outcome', 'completed')), '[]')
    into v_settled from unnest(v_done) d;
  end if;
  if v_n > cardinality(v_done) then
    -- What is not an accepted completion (failures, snoozes, refusals) is rare: settle_jobs
    -- takes it one by one.
    select jsonb_agg(e) into v_rest
    from jsonb_array_elements(p_results) e
    where not (e ->> 'status' = 'completed' and (e ->> 'job_id')::uuid = any (v_done));
    select v_settled || coalesce(jsonb_agg(jsonb_build_object(
             'job_id', s.job_id, 'accepted', s.accepted, 'outcome', s.outcome)), '[]')
    into v_settled
    from public.settle_jobs(p_worker, v_rest, coalesce(p_policy, '{}'::jsonb), p_now) s;
  end if;
  if current_setting('conveyor.woken', true) = 'on' and jsonb_array_length(v_claimed) < p_qty
     and coalesce(current_setting('conveyor.invocation_lost', true), '') <> 'on' then
    select coalesce(jsonb_agg(to_jsonb(c)), '[]') into v_more
    from conveyor.claim(v_kind, p_worker, p_qty - jsonb_array_length(v_claimed), v_vt, v_now,
                        v_max, v_full, p_invocation) c;
    v_claimed := v_claimed || v_more;
  end if;
  perform conveyor.raise_hints();
  return jsonb_build_object(
    'settled', v_settled,
    'claimed', v_claimed,
    'throttled', coalesce(current_setting('conveyor.throttled', true), '') = 'on',
    'invocation_lost', coalesce(current_setting('conveyor.invocation_lost', true), '') = 'on');
end
$$;

comment on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz, uuid) is
  'The worker loop''s steady state in one round trip: settle a batch and claim the next (claim first, or settle first for a rate-limited kind).';

-- extend_jobs (0053), moving the key leases with the jobs' leases.
create or replace function public.extend_jobs(p_worker text, p_leases jsonb, p_vt int default null,
                                              p_invocation uuid default null)
returns table (job_id uuid, locked_until timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_vt int := coalesce(p_vt, conveyor.setting_int('visibility_sec')::int);
  v_job record;
  v_until timestamptz;
begin
  if p_leases is null or jsonb_typeof(p_leases) <> 'array' then
    raise exception 'extend_jobs: p_leases must be a JSON array';
  end if;
  if p_invocation is not null then
    perform conveyor.invocation_alive(p_invocation, clock_timestamp());
  end if;
  for v_job in
    select j.id, j.queue_name, j.msg_id, j.concurrency_key
    from jsonb_to_recordset(p_leases) as x(job_id uuid, lease_id uuid)
    join public.jobs j on j.id = x.job_id and j.lease_id = x.lease_id
    where j.status = 'processing' and j.locked_until > clock_timestamp()
      and j.locked_until < clock_timestamp() + make_interval(secs => v_vt / 2.0)
    for update of j
  loop
    perform pgmq.set_vt(v_job.queue_name, v_job.msg_id, v_vt);
    v_until := clock_timestamp() + make_interval(secs => v_vt);
    update conveyor.service_leases l set expires_at = v_until where l.job_id = v_job.id;
    if v_job.concurrency_key is not null then
      update conveyor.key_leases l set expires_at = v_until where l.msg_id = v_job.msg_id;
    end if;
    return query
    update public.jobs j
    set locked_until = v_until, locked_by = p_worker, updated_at = now()
    where j.id = v_job.id
    returning j.id, j.locked_until;
  end loop;
end
$$;

-- redrive_dead_job (0053): the message written anew carries the job's key and limit.
create or replace function public.redrive_dead_job(p_job_id uuid)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.jobs;
  v_dead public.dead_letter_jobs;
begin
  select * into v_job from public.jobs j where j.id = p_job_id for update;
  if not found then
    raise exception 'redrive_dead_job: no job %', p_job_id using errcode = 'P0002';
  end if;
  if v_job.status <> 'failed' then
    raise exception 'redrive_dead_job: job % is %, only failed jobs can be redriven',
      p_job_id, v_job.status;
  end if;
  if v_job.dedupe_key is not null then
    insert into conveyor.dedupe_keys (tenant_id, dedupe_key, job_id)
    values (v_job.tenant_id, v_job.dedupe_key, v_job.id)
    on conflict do nothing;
    if not found then
      raise exception 'redrive_dead_job: dedupe_key % is already queued or running', v_job.dedupe_key
        using errcode = '23505', hint = 'the job can be redriven once that job has finished';
    end if;
  end if;
  select * into v_dead from public.dead_letter_jobs d
  where d.job_id = p_job_id and d.redriven_at is null
  order by d.created_at desc limit 1;
  if v_dead.dlq_msg_id is not null then
    perform pgmq.archive(conveyor.dlq_name(), v_dead.dlq_msg_id);
  end if;
  update public.dead_letter_jobs set redriven_at = now() where id = v_dead.id;
  execute format('delete from pgmq.%I where msg_id = $1', 'a_' || v_job.queue_name)
    using v_job.msg_id;
  perform conveyor.q_put(v_job.queue_name, v_job.msg_id, now(),
    conveyor.job_message(v_job.tenant_id, v_job.concurrency_key, v_job.concurrency_limit),
    v_job.headers);
  perform conveyor.lower_hint(v_job.queue_name, now());
  update public.jobs
  set status = 'pending', attempts = 0, finished_at = null, run_at = now(),
      updated_at = now(), lease_id = null, locked_by = null, locked_until = null
  where id = v_job.id;
  insert into public.job_events (job_id, tenant_id, type, payload)
  values (v_job.id, v_job.tenant_id, 'redriven',
          jsonb_build_object('msg_id', v_job.msg_id, 'dead_letter_id', v_dead.id));
  perform conveyor.kick('queue:' || v_job.kind);
  return v_job.msg_id;
end
$$;

revoke all on function conveyor.job_message(uuid, text, int),
  conveyor.check_same_request(public.jobs, text, jsonb, text, jsonb, boolean, text, int, text),
  conveyor.enqueue(uuid, text, jsonb, text, text, timestamptz, jsonb, boolean, text, text, int, text, text),
  conveyor.wake_waiters(text, uuid, text, int),
  conveyor.release_keys(bigint[]),
  conveyor.wake_free_keys(conveyor.job_kinds, timestamptz),
  conveyor.admit_keyed(conveyor.job_kinds, text, pgmq.message_record[], timestamptz),
  conveyor.fair_state(text, uuid[]),
  conveyor.fair_read_sql(text, boolean),
  conveyor.fair_account(text, uuid[], bigint[]),
  conveyor.read_queue_tenant(text, text, int, int, text, timestamptz),
  conveyor.claim_messages(conveyor.job_kinds, text, pgmq.message_record[], text, timestamptz, int, boolean)
  from public;

-- ---------------------------------------------------------------------------------------
-- Content stages: the tenant of a content job, and fair share at claim
-- ---------------------------------------------------------------------------------------

-- A content job belongs to a tenant (queue_content_job's "tenant_id", default tenant), as
-- the job ledger's rows do; its stage rows carry the same tenant (set by the trigger below,
-- whoever inserts them), which the fair claim's index needs. Both follow seed 004's tenant
-- rules (RESTRICT, RLS forced, tenant_isolation_policy); grants are unchanged (service_role).
alter table public.content_jobs
  add column tenant_id uuid not null default conveyor.default_tenant_id()
    references public.tenants (id) on delete restrict;
alter table public.content_job_stages
  add column tenant_id uuid not null default conveyor.default_tenant_id()
    references public.tenants (id) on delete restrict;
create index content_jobs_tenant_id_idx on public.content_jobs (tenant_id);
create index content_job_stages_tenant_id_idx on public.content_job_stages (tenant_id);
-- The fair claim's discovery (a loose scan: one descent per tenant with ready items) and its
-- per-tenant read.
create index content_job_stages_ready_tenant_idx
  on public.content_job_stages (stage, tenant_id, available_at) where status = 'ready';
alter table public.content_jobs force row level security;
alter table public.content_job_stages force row level security;
create policy tenant_isolation_policy on public.content_jobs
  using (tenant_id::text = (select current_setting('app.current_tenant', true)));
create policy tenant_isolation_policy on public.content_job_stages
  using (tenant_id::text = (select current_setting('app.current_tenant', true)));

create function conveyor.content_stage_tenant() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  select j.tenant_id into new.tenant_id from public.content_jobs j where j.id = new.job_id;
  return new;
end
$$;

create trigger content_job_stages_tenant
  before insert on public.content_job_stages
  for each row execute function conveyor.content_stage_tenant();

-- queue_content_job (20251020120000_content_dispatcher.sql) with "tenant_id": the tenant the
-- content job belongs to (a uuid of an existing tenant; default the default tenant).
create or replace function public.queue_content_job(jsonb) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  p alias for $1;
  c_fields constant text[] := array['idempotency_key', 'brief', 'max_attempts', 'tenant_id'];
  v_key text;
  v_brief jsonb;
  v_extra text;
  v_size int;
  v_limit bigint := conveyor.setting_int('content_brief_max_bytes');
  v_max int := conveyor.setting_int('content_max_attempts')::int;
  v_tenant uuid := conveyor.default_tenant_id();
  v_id uuid;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_content_job: the body must be a JSON object';
  end if;
  select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
  if v_extra is not null then
    raise exception 'queue_content_job: unknown field "%"', v_extra
      using hint = 'accepted fields: ' || array_to_string(c_fields, ', ');
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_content_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';
  if length(v_key) > 255 then
    raise exception 'queue_content_job: idempotency_key is longer than 255 characters';
  end if;
  if coalesce(jsonb_typeof(p -> 'brief'), 'null') = 'null' then
    raise exception 'queue_content_job: missing brief';
  end if;
  v_brief := p -> 'brief';
  if jsonb_typeof(v_brief) <> 'object' then
    raise exception 'queue_content_job: brief must be a JSON object';
  end if;
  v_size := octet_length(v_brief::text);
  if v_size > v_limit then
    raise exception 'queue_content_job: brief too large (% bytes, the limit is % bytes)', v_size, v_limit;
  end if;
  if jsonb_typeof(v_brief -> 'topic') is distinct from 'string' or (v_brief ->> 'topic') !~ '\S' then
    raise exception 'queue_content_job: brief.topic is required (a non-empty string)';
  end if;
  if length(v_brief ->> 'topic') > 300 then
    raise exception 'queue_content_job: brief.topic is longer than 300 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'audience'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'audience') <> 'string' or (v_brief ->> 'audience') !~ '\S'
          or length(v_brief ->> 'audience') > 200) then
    raise exception 'queue_content_job: brief.audience must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'title'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'title') <> 'string' or (v_brief ->> 'title') !~ '\S'
          or length(v_brief ->> 'title') > 200) then
    raise exception 'queue_content_job: brief.title must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'keywords'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'keywords') <> 'array'
          or jsonb_array_length(v_brief -> 'keywords') > 25
          or exists (select 1 from jsonb_array_elements(v_brief -> 'keywords') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.keywords must be an array of at most 25 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'banned_words'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'banned_words') <> 'array'
          or jsonb_array_length(v_brief -> 'banned_words') > 100
          or exists (select 1 from jsonb_array_elements(v_brief -> 'banned_words') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.banned_words must be an array of at most 100 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'length'), 'null') <> 'null'
     and not (
       (jsonb_typeof(v_brief -> 'length') = 'string' and v_brief ->> 'length' in ('short', 'medium', 'long'))
       or (jsonb_typeof(v_brief -> 'length') = 'number'
           and (v_brief ->> 'length')::numeric = trunc((v_brief ->> 'length')::numeric)
           and (v_brief ->> 'length')::numeric between 100 and 5000)) then
    raise exception 'queue_content_job: brief.length must be "short", "medium", "long" or a whole number of words between 100 and 5000';
  end if;
  if p ? 'max_attempts' then
    if jsonb_typeof(p -> 'max_attempts') <> 'number'
       or (p ->> 'max_attempts')::numeric <> trunc((p ->> 'max_attempts')::numeric)
       or (p ->> 'max_attempts')::numeric not between 1 and 10 then
      raise exception 'queue_content_job: max_attempts must be a whole number between 1 and 10';
    end if;
    v_max := (p ->> 'max_attempts')::int;
  end if;
  if p ? 'tenant_id' then
    if jsonb_typeof(p -> 'tenant_id') <> 'string'
       or p ->> 'tenant_id' !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      raise exception 'queue_content_job: tenant_id must be a uuid';
    end if;
    v_tenant := (p ->> 'tenant_id')::uuid;
    if not exists (select 1 from public.tenants t where t.id = v_tenant) then
      raise exception 'queue_content_job: unknown tenant %', v_tenant;
    end if;
  end if;

  -- Claim the key first: ON CONFLICT waits for a concurrent holder of the same key to commit
  -- or roll back, so of N identical calls exactly one creates the job (race-free at READ
  -- COMMITTED) and the others return its id.
  insert into public.content_jobs (idempotency_key, brief, max_attempts, tenant_id)
  values (v_key, v_brief, v_max, v_tenant)
  on conflict (idempotency_key) do nothing
  returning id into v_id;
  if v_id is null then
    select j.id into v_id from public.content_jobs j where j.idempotency_key = v_key;
    return v_id;
  end if;

  insert into public.content_job_stages (job_id, stage, max_attempts)
  values (v_id, 'research', v_max);
  update public.content_jobs set current_stage = 'research' where id = v_id;
  perform conveyor.content_event(v_id, 'research', 'queued', 'job created; research is ready',
    jsonb_build_object('idempotency_key', v_key));
  perform conveyor.kick('content:research');
  return v_id;
end
$$;
comment on function public.queue_content_job(jsonb) is
  'Creates a content job: {"idempotency_key","brief":{"topic",…}} (+ max_attempts, tenant_id). Returns its id; the same key returns the same id.';

-- The tenant whose ready item of a stage a claim takes next, when fair share is on
-- (content_fair_share) and two or more tenants have ready items: the lowest virtual time, as
-- for job kinds (conveyor.fair_state), the tenants found with a loose index scan of
-- content_job_stages_ready_tenant_idx. `pick` NULL: take the oldest ready item; `candidates`:
-- the tenants with ready items, in tenant order, and their `pulls` (for conveyor.fair_account).
create function conveyor.content_fair_tenant(p_stage text, p_now timestamptz)
returns table (pick uuid, candidates uuid[], pulls bigint[])
language plpgsql
set search_path = ''
as $$
declare
  v_tenants uuid[];
  v_oldest timestamptz[];
begin
  if coalesce(conveyor.setting_text('content_fair_share'), 'true') <> 'true' then
    return;
  end if;
  with recursive t as (
    (select s.tenant_id, s.available_at from public.content_job_stages s
     where s.stage = p_stage and s.status = 'ready'
     order by s.tenant_id, s.available_at
     limit 1)
    union all
    select n.tenant_id, n.available_at
    from t cross join lateral (
      select s.tenant_id, s.available_at from public.content_job_stages s
      where s.stage = p_stage and s.status = 'ready' and s.tenant_id > t.tenant_id
      order by s.tenant_id, s.available_at
      limit 1) n
  )
  select coalesce(array_agg(x.tenant_id order by x.tenant_id), '{}'),
         coalesce(array_agg(x.available_at order by x.tenant_id), '{}')
  into v_tenants, v_oldest
  from (select * from t limit coalesce(conveyor.setting_int('fair_share_max_tenants')::int, 1000)) x
  where x.available_at <= p_now;
  if cardinality(v_tenants) < 2 then
    return;
  end if;
  -- The lowest virtual time; ties: the longest waiting, then tenant id.
  return query
  select (array_agg(f.tenant_id order by f.ev, o.oldest, f.tenant_id))[1], v_tenants,
         array_agg(f.pull order by f.tenant_id)
  from conveyor.fair_state('content:' || p_stage, v_tenants) f
  join unnest(v_tenants, v_oldest) as o(t, oldest) on o.t = f.tenant_id;
end
$$;

-- claim_content_stage (20251020120000_content_dispatcher.sql): the ready item comes from the
-- tenant conveyor.content_fair_tenant picks (when tenants share the stage), whose serving is
-- counted in conveyor.fair_served; expired leases still come first (the oldest work).
create or replace function public.claim_content_stage(
  p_stage text,
  p_worker text,
  p_invocation_id uuid default null,
  p_lease_sec int default null,
  p_max_concurrency int default null,
  p_now timestamptz default null
) returns setof conveyor.content_claim
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_lease_sec int := coalesce(p_lease_sec, conveyor.setting_int('content_lease_sec')::int);
  v_cfg public.content_stage_config;
  v_max int;
  v_row public.content_job_stages;
  v_msg text;
  v_tenant uuid;
  v_cands uuid[];
  v_pulls bigint[];
begin
  if coalesce(btrim(p_worker), '') = '' then
    raise exception 'claim_content_stage: p_worker must name the worker';
  end if;
  if v_lease_sec < 1 or v_lease_sec > 3600 then
    raise exception 'claim_content_stage: p_lease_sec must be between 1 and 3600';
  end if;
  select * into v_cfg from public.content_stage_config c where c.stage = p_stage
  for no key update;
  if not found then
    raise exception 'claim_content_stage: unknown stage %', p_stage;
  end if;
  if p_invocation_id is not null then
    update conveyor.worker_invocations i
    set status = 'running', started_at = v_now, worker = p_worker,
        expires_at = v_now + make_interval(secs => conveyor.setting_int('invocation_run_sec'))
    where i.id = p_invocation_id and i.source = 'content' and i.target = p_stage
      and i.status = 'triggered';
  end if;
  v_max := case when v_cfg.enabled then coalesce(p_max_concurrency, v_cfg.max_concurrency) else 0 end;
  loop
    if conveyor.content_leased_count(p_stage, v_now)
       + conveyor.triggered_count('content', p_stage, v_now) + 1 > v_max then
      return;
    end if;
    select * into v_row from public.content_job_stages s
    where s.stage = p_stage and s.status = 'in_progress' and s.lease_expires_at <= v_now
    order by s.lease_expires_at, s.id
    limit 1
    for update skip locked;
    if found then
      perform conveyor.content_event(v_row.job_id, p_stage, 'lease_expired',
        format('the lease of %s expired at %s without a settle', v_row.lease_owner, v_row.lease_expires_at),
        jsonb_build_object('attempt', v_row.attempts, 'lease_owner', v_row.lease_owner));
      if v_row.attempts >= v_row.max_attempts then
        v_msg := format('lease of %s expired on the last attempt (%s of %s)', v_row.lease_owner,
                        v_row.attempts, v_row.max_attempts);
        perform conveyor.content_event(v_row.job_id, p_stage, 'error', v_msg,
          jsonb_build_object('attempt', v_row.attempts, 'max_attempts', v_row.max_attempts));
        perform conveyor.content_fail_stage(v_row, v_msg,
          v_row.errors || jsonb_build_array(jsonb_build_object(
            'message', v_msg, 'attempt', v_row.attempts, 'at', v_now)), v_now);
        continue;
      end if;
    else
      v_row := null;
      select f.pick, f.candidates, f.pulls into v_tenant, v_cands, v_pulls
      from conveyor.content_fair_tenant(p_stage, v_now) f;
      if v_tenant is not null then
        select * into v_row from public.content_job_stages s
        where s.stage = p_stage and s.status = 'ready' and s.tenant_id = v_tenant
          and s.available_at <= v_now
        order by s.available_at, s.id
        limit 1
        for update skip locked;
      end if;
      if v_row.id is null then
        select * into v_row from public.content_job_stages s
        where s.stage = p_stage and s.status = 'ready' and s.available_at <= v_now
        order by s.available_at, s.id
        limit 1
        for update skip locked;
      end if;
      if v_row.id is null then
        return;
      end if;
      if v_tenant is not null then
        perform conveyor.fair_account('content:' || p_stage, v_cands,
          array(select c.pull + case when c.t = v_row.tenant_id then 1 else 0 end
                from unnest(v_cands, v_pulls) with ordinality as c(t, pull, o) order by c.o));
      end if;
    end if;

    update public.content_job_stages s
    set status = 'in_progress', attempts = s.attempts + 1, lease_id = gen_random_uuid(),
        lease_owner = p_worker, lease_expires_at = v_now + make_interval(secs => v_lease_sec),
        invocation_id = p_invocation_id, started_at = coalesce(s.started_at, v_now),
        updated_at = v_now
    where s.id = v_row.id
    returning * into v_row;
    update public.content_jobs j
    set status = case when j.status = 'pending' then 'running' else j.status end,
        started_at = coalesce(j.started_at, v_now), current_stage = p_stage, updated_at = v_now
    where j.id = v_row.job_id;
    perform conveyor.content_event(v_row.job_id, p_stage, 'claimed',
      format('attempt %s of %s by %s', v_row.attempts, v_row.max_attempts, p_worker),
      jsonb_build_object('attempt', v_row.attempts, 'worker', p_worker,
                         'lease_id', v_row.lease_id, 'invocation_id', p_invocation_id));
    return query
    select v_row.job_id, v_row.stage, v_row.lease_id, v_row.attempts, v_row.max_attempts,
           j.brief,
           coalesce((select jsonb_object_agg(o.stage, o.output) from public.content_job_stages o
                     where o.job_id = v_row.job_id and o.status = 'completed'), '{}'::jsonb),
           v_row.lease_expires_at
    from public.content_jobs j where j.id = v_row.job_id;
    return;
  end loop;
end
$$;

revoke all on function conveyor.content_stage_tenant(),
  conveyor.content_fair_tenant(text, timestamptz) from public;
