-- Seed 004's tenant tables as the contract states them (issue 7): the ten tables (and
-- job_events, which follows the same rules), tenant_id NOT NULL with a foreign key to
-- tenants ON DELETE RESTRICT, RLS enabled AND forced, exactly one policy,
-- tenant_isolation_policy, with the seed's USING expression, grants (anon nothing,
-- authenticated SELECT only, service_role all), and how the API roles see the rows.
begin;
select plan(43);

create temporary table tenant_tables on commit drop as
select unnest(array['queues', 'jobs', 'schedules', 'rate_limits', 'critical_jobs',
                    'queue_metrics', 'idempotency_keys', 'rate_limiters', 'alert_history',
                    'dead_letter_jobs', 'job_events']) as t;
grant select on tenant_tables to anon, authenticated, service_role;

-- Catalog ------------------------------------------------------------------------------
select is(
  (select array_agg(t order by t) from tenant_tables
   where to_regclass('public.' || t) is null),
  null, 'all ten tables of seed 004 (and job_events) exist in public');
select is(
  (select array_agg(c.relname::text order by 1) from pg_class c
   where c.oid in (select ('public.' || t)::regclass from tenant_tables union all
                   select 'public.tenants'::regclass)
     and not (c.relrowsecurity and c.relforcerowsecurity)),
  null, 'RLS is enabled and forced on every tenant table and on tenants');
select is(
  (select array_agg(t order by t) from tenant_tables
   where (select count(*) from pg_policies p where p.schemaname = 'public' and p.tablename = t) <> 1),
  null, 'every tenant table has exactly one policy');
select is(
  (select array_agg(t order by t) from tenant_tables x
   where not exists (
     select 1 from pg_policies p
     where p.schemaname = 'public' and p.tablename = x.t
       and p.policyname = 'tenant_isolation_policy'
       and p.permissive = 'PERMISSIVE' and p.cmd = 'ALL' and p.roles = array['public']::name[]
       and p.qual = '((tenant_id)::text = ( SELECT current_setting(''app.current_tenant''::text, true) AS current_setting))'
       and p.with_check is null)),
  null, 'the policy is seed 004''s, its setting read once per statement: tenant_id::text = (select current_setting(''app.current_tenant'', true))');
select is(
  (select qual from pg_policies where schemaname = 'public' and tablename = 'tenants'
     and policyname = 'tenant_isolation_policy'),
  '((id)::text = ( SELECT current_setting(''app.current_tenant''::text, true) AS current_setting))',
  'tenants carries the same policy on its id');
select is(
  (select array_agg(t order by t) from tenant_tables x
   where not exists (
     select 1 from pg_constraint c
     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
     where c.conrelid = ('public.' || x.t)::regclass and c.contype = 'f'
       and c.confrelid = 'public.tenants'::regclass and cardinality(c.conkey) = 1
       and a.attname = 'tenant_id' and a.attnotnull and c.confdeltype = 'r')),
  null, 'tenant_id is NOT NULL and references tenants ON DELETE RESTRICT everywhere');

select is(
  (select array_agg(x.t || ':' || pk order by x.t) from tenant_tables x,
     lateral (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                order by k.ord) as pk
              from pg_index i
              cross join unnest(i.indkey) with ordinality as k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
              where i.indrelid = ('public.' || x.t)::regclass and i.indisprimary) p
   where x.t <> 'job_events'),
  array['alert_history:id uuid', 'critical_jobs:id uuid', 'dead_letter_jobs:id uuid',
        'idempotency_keys:id uuid', 'jobs:id uuid', 'queue_metrics:id uuid', 'queues:id uuid',
        'rate_limiters:tenant_id uuid, service_name text', 'rate_limits:id uuid',
        'schedules:id uuid'],
  'primary keys as seed 004 gives them (rate_limiters: service_name, per tenant)');
select is(
  (select array_agg(t || ':' || p order by 1, 2) from tenant_tables,
     unnest(array['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger']) p
   where has_table_privilege('anon', 'public.' || t, p)),
  null, 'anon has no privilege on any tenant table');
select is(
  (select array_agg(t || ':' || p order by 1, 2) from tenant_tables,
     unnest(array['insert', 'update', 'delete', 'truncate', 'references', 'trigger']) p
   where has_table_privilege('authenticated', 'public.' || t, p)),
  null, 'authenticated cannot write any tenant table');
select is(
  (select array_agg(t order by t) from tenant_tables
   where not has_table_privilege('authenticated', 'public.' || t, 'select')),
  null, 'authenticated may select every tenant table (RLS picks the rows)');
select is(
  (select array_agg(t || ':' || p order by 1, 2) from tenant_tables,
     unnest(array['select', 'insert', 'update', 'delete']) p
   where not has_table_privilege('service_role', 'public.' || t, p)),
  null, 'service_role may read and write every tenant table');
select ok(
  (select rolbypassrls from pg_roles where rolname = 'service_role')
  and not (select rolbypassrls from pg_roles where rolname = 'authenticated')
  and not (select rolbypassrls from pg_roles where rolname = 'anon'),
  'only service_role bypasses RLS');
select is(
  (select array_agg(t || ':' || c.relname order by 1) from tenant_tables x
   join pg_depend d on d.refobjid = ('public.' || x.t)::regclass and d.deptype in ('a', 'i')
   join pg_class c on c.oid = d.objid and c.relkind = 'S'
   where has_sequence_privilege('anon', c.oid, 'usage')
      or has_sequence_privilege('authenticated', c.oid, 'usage')),
  null, 'the API roles cannot use the tenant tables'' sequences');

-- Rows of two tenants in every table ---------------------------------------------------
insert into public.tenants (id, name) values
  ('a0000000-0000-0000-0000-00000000000a', 'rls-test-a'),
  ('b0000000-0000-0000-0000-00000000000b', 'rls-test-b');

create function pg_temp.seed_tenant(p_tenant uuid) returns void language plpgsql as $$
declare
  v_job uuid;
begin
  select job_id into v_job from conveyor.enqueue(p_tenant, 'enrich', '{}', 'k-' || p_tenant,
                                                 p_critical => true);
  -- A healthy enqueue writes no event (audit 'lean'): one the ledger cannot say.
  insert into public.job_events (job_id, tenant_id, type) values (v_job, p_tenant, 'retry_scheduled');
  insert into public.queues (tenant_id, kind) values (p_tenant, 'enrich');
  insert into public.schedules (tenant_id, name, cron, kind) values (p_tenant, 's', '0 * * * *', 'enrich');
  insert into public.rate_limits (tenant_id, scope, max_requests, window_seconds)
  values (p_tenant, 'enqueue', 100, 60);
  insert into public.queue_metrics (tenant_id, queue_name, depth, in_flight, processed, failed, interval_sec)
  values (p_tenant, 'q_enrich', 1, 0, 0, 0, 60);
  insert into public.alert_history (tenant_id, rule, subject, message)
  values (p_tenant, 'queue_depth', 'q_enrich', 'test');
  insert into public.dead_letter_jobs (tenant_id, job_id, kind, queue_name, payload, reason, attempts)
  values (p_tenant, v_job, 'enrich', 'q_enrich', '{}', 'test', 3);
end
$$;
select pg_temp.seed_tenant('a0000000-0000-0000-0000-00000000000a');
select pg_temp.seed_tenant('b0000000-0000-0000-0000-00000000000b');

-- As PostgREST does for a request: the verified claims, then the pre-request function.
create function pg_temp.act_as(p_claims text) returns void language plpgsql as $$
begin
  perform set_config('request.jwt.claims', p_claims, true);
  perform conveyor.pre_request();
end
$$;

-- Counts per table as the current role sees them: rows of A, rows of anyone else.
create function pg_temp.seen() returns table (t text, mine bigint, others bigint)
language plpgsql as $$
declare
  v text;
begin
  for v in select x.t from tenant_tables x order by 1 loop
    return query execute format(
      'select %L::text, count(*) filter (where tenant_id = %L::uuid),
              count(*) filter (where tenant_id <> %L::uuid) from public.%I',
      v, 'a0000000-0000-0000-0000-00000000000a', 'a0000000-0000-0000-0000-00000000000a', v);
  end loop;
end
$$;

-- What a statement does as the current role: 'ok', or the SQLSTATE it raised.
create function pg_temp.try(p_sql text) returns text language plpgsql as $$
begin
  execute p_sql;
  return 'ok';
exception when others then
  return sqlstate;
end
$$;

select is((select count(*)::int from pg_temp.seen() where mine = 0 or others = 0), 0,
  'as the owner: both tenants have rows in every table');

-- authenticated with tenant A (what conveyor.pre_request sets from A's token)
set local role authenticated;
do $$ begin perform pg_temp.act_as('{"role":"authenticated","tenant_id":"a0000000-0000-0000-0000-00000000000a"}'); end $$;
select is(current_setting('app.current_tenant'), 'a0000000-0000-0000-0000-00000000000a',
  'pre_request copies the verified claim into app.current_tenant');
select is((select array_agg(t order by t) from pg_temp.seen() where mine = 0), null,
  'tenant A sees its rows in every table');
select is((select array_agg(t order by t) from pg_temp.seen() where others > 0), null,
  'tenant A sees no other tenant''s row in any table');
select is((select count(*)::int from public.tenants), 1, 'tenant A sees only its own tenants row');
select is(
  (select array_agg(x.t || ':' || r order by 1) from tenant_tables x,
     lateral pg_temp.try(format('insert into public.%I (tenant_id) values (%L)', x.t,
                                'a0000000-0000-0000-0000-00000000000a')) r
   where r <> '42501'),
  null, 'tenant A cannot insert into any table, not even rows of its own');
select is(
  (select array_agg(x.t || ':' || r order by 1) from tenant_tables x,
     lateral pg_temp.try(format('update public.%I set tenant_id = tenant_id', x.t)) r
   where r <> '42501'),
  null, 'tenant A cannot update any table');
select is(
  (select array_agg(x.t || ':' || r order by 1) from tenant_tables x,
     lateral pg_temp.try(format('delete from public.%I', x.t)) r
   where r <> '42501'),
  null, 'tenant A cannot delete from any table');
select is(pg_temp.try('delete from public.tenants'), '42501', 'tenant A cannot delete tenants');
select is(
  (select count(*)::int from public.jobs where tenant_id = 'b0000000-0000-0000-0000-00000000000b'),
  0, 'a filter on tenant B''s id finds nothing');

-- A token whose claim is in app_metadata (a custom access token hook's usual place).
do $$ begin perform pg_temp.act_as('{"role":"authenticated","app_metadata":{"tenant_id":"b0000000-0000-0000-0000-00000000000b"}}'); end $$;
select is((select count(*)::int from pg_temp.seen() where mine > 0), 0,
  'a token for tenant B (claim in app_metadata) sees none of A''s rows');
select is((select count(*)::int from public.jobs), 1, 'and exactly B''s job');

-- Tokens without a usable tenant see nothing (fail closed).
do $$ begin perform pg_temp.act_as('{"role":"authenticated"}'); end $$;
select is(current_setting('app.current_tenant'), '', 'no claim: no tenant');
select is((select count(*)::int from pg_temp.seen() where mine + others > 0), 0,
  'a token without tenant_id sees no row in any table');
do $$ begin perform pg_temp.act_as('{"role":"authenticated","tenant_id":"a0000000-0000-0000-0000-00000000000a'' or true --"}'); end $$;
select is(current_setting('app.current_tenant'), '', 'a claim that is not a uuid is ignored');
select is((select count(*)::int from public.jobs), 0, 'and sees nothing');
do $$ begin perform pg_temp.act_as('{"role":"authenticated","tenant_id":"A0000000-0000-0000-0000-00000000000A"}'); end $$;
select is((select count(*)::int from public.jobs), 1,
  'an upper-case uuid claim is the same tenant (stored in canonical form)');
do $$ begin perform set_config('app.current_tenant', '', true); end $$;

-- queue_job as tenant A: bound to A; B in the body is refused.
do $$ begin perform pg_temp.act_as('{"role":"authenticated","tenant_id":"a0000000-0000-0000-0000-00000000000a"}'); end $$;
select lives_ok($$select public.queue_job('{"kind":"enrich","idempotency_key":"rls-a-1"}')$$,
  'tenant A can enqueue');
select throws_ok(
  $$select public.queue_job('{"kind":"enrich","idempotency_key":"rls-a-2","tenant_id":"b0000000-0000-0000-0000-00000000000b"}')$$,
  '42501', 'queue_job: tenant_id does not match the token', 'tenant A cannot enqueue for B');
select throws_ok($$select public.claim_jobs('enrich', 'w')$$, '42501', null,
  'tenant A cannot claim jobs');
select throws_ok($$select public.redrive_dead_job(gen_random_uuid())$$, '42501', null,
  'tenant A cannot redrive');

-- anon
reset role;
set local role anon;
do $$ begin perform set_config('app.current_tenant', '', true); end $$;
select is(
  (select array_agg(x.t || ':' || r order by 1) from tenant_tables x,
     lateral pg_temp.try(format('select count(*) from public.%I', x.t)) r
   where r <> '42501'),
  null, 'anon cannot read any tenant table');
select throws_ok($$select public.queue_job('{"kind":"enrich","idempotency_key":"anon"}')$$,
  '42501', null, 'anon cannot enqueue');

-- service_role sees everything
reset role;
set local role service_role;
select is(
  (select count(*)::int from pg_temp.seen() where mine = 0 or others = 0), 0,
  'service_role sees every tenant''s rows');
select is(
  (select count(*)::int from public.jobs j
   where j.idempotency_key = 'rls-a-1' and j.tenant_id = 'a0000000-0000-0000-0000-00000000000a'),
  1, 'tenant A''s enqueue landed in tenant A');
select lives_ok(
  $$select public.queue_job('{"kind":"enrich","idempotency_key":"rls-a-1","tenant_id":"b0000000-0000-0000-0000-00000000000b"}')$$,
  'service_role may name a tenant');
select is(
  (select count(distinct j.id)::int from public.jobs j where j.idempotency_key = 'rls-a-1'),
  2, 'idempotency keys are per tenant: the same key in two tenants is two jobs');
select is(
  (select count(*)::int from public.rate_limiters
   where tenant_id = 'a0000000-0000-0000-0000-00000000000a'),
  4, 'a new tenant gets its four rate limiters');

-- Deleting a tenant that still has rows is refused.
reset role;
select throws_ok($$delete from public.tenants where id = 'a0000000-0000-0000-0000-00000000000a'$$,
  '23503', null, 'a tenant with rows cannot be deleted (RESTRICT)');
select lives_ok($$
  insert into public.tenants (id, name) values ('c0000000-0000-0000-0000-00000000000c', 'rls-test-c');
  delete from public.rate_limiters where tenant_id = 'c0000000-0000-0000-0000-00000000000c';
  delete from public.tenants where id = 'c0000000-0000-0000-0000-00000000000c'$$,
  'a tenant without rows can be deleted');

select * from finish();
rollback;
