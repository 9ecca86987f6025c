-- Security lints (issue 7): Conveyor's own rules, stricter than Supabase's database lints
-- and read from the catalog, so a function or table added later is covered without
-- touching this file. Supabase's lints themselves (the dashboard's Advisors: RLS disabled
-- in an exposed schema, security-definer views, mutable search_path, definer functions
-- the API roles can run, …) run in `deno task lint:db` (tools/lint/, its CI test
-- tools/lint/db_lints_test.ts, accepted findings in supabase/lints.allow.json).
--   * every SECURITY DEFINER function of ours, in any schema the platform does not own (so
--     a new schema is covered too), has search_path = '' and no PUBLIC execute;
--   * anon may execute nothing in public, authenticated only its allow-list;
--   * in conveyor the API roles may execute only the pre-request function;
--   * only the pre-request function sets app.current_tenant (or any request.* / role);
--   * every table in public with a tenant_id follows seed 004's tenant rules.
-- A failing check prints the offending objects.
begin;
select plan(14);

-- What the API exposes (supabase/config.toml [api] schemas, plus pgmq_public, which a project
-- may switch on: supabase/tests/expose_queues.test.sql) and the schemas the lints leave
-- alone (platform-owned).
create temporary table exposed on commit drop as
select unnest(array['public', 'graphql_public', 'pgmq_public'])::name as nspname;
create temporary table platform on commit drop as
select unnest(array['pg_catalog', 'information_schema', 'pg_toast', 'auth', 'cron',
                    'extensions', 'graphql', 'graphql_public', 'net', 'pgmq', 'pgsodium',
                    'pgsodium_masks', 'realtime', 'storage', 'supabase_functions',
                    'supabase_migrations', 'vault', 'pgbouncer', 'pgtle',
                    '_realtime', '_analytics'])::name as nspname;
create temporary table api_roles on commit drop as
select unnest(array['anon', 'authenticated'])::name as rolname;

-- Allow-lists: the RPCs each API role is meant to call in public.
create temporary table rpc_allow (rolname name, fn regprocedure) on commit drop;
insert into rpc_allow values
  ('authenticated', 'public.queue_job(jsonb)'),
  ('authenticated', 'public.fn_pgqueuer_enqueue(text, bytea, int, interval, text, jsonb)');

-- Objects of extensions are the extension's business (pg_depend deptype 'e').
create temporary view own_functions as
select p.oid, p.oid::regprocedure::text as sig, n.nspname, p.prosecdef, p.proconfig, p.prosrc,
       p.prokind
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname not in (select nspname from platform)
  and n.nspname !~ '^pg_temp_|^pg_toast_temp_'
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

create temporary view exposed_relations as
select c.oid, n.nspname || '.' || c.relname as name, c.relkind, c.relrowsecurity,
       c.relforcerowsecurity, c.reloptions
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in (select nspname from exposed)
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e');

-- Can an API role reach the relation at all (any table privilege)?
create function pg_temp.api_can_touch(p_rel oid) returns boolean language sql stable as $$
  select exists (
    select 1 from api_roles r,
      unnest(array['select', 'insert', 'update', 'delete']) as priv
    where has_table_privilege(r.rolname, p_rel, priv))
$$;

-- Stricter, from the catalog ----------------------------------------------------------
select is(
  array(select name from exposed_relations r
        where relkind in ('r', 'p') and relrowsecurity
          and not exists (select 1 from pg_policy p where p.polrelid = r.oid)
          and pg_temp.api_can_touch(r.oid)
        order by 1)::text[], '{}'::text[],
  'no table an API role holds a privilege on is RLS-locked by a missing policy (a grant that can never work)');
select is(
  array(select name from exposed_relations
        where relkind in ('r', 'p') and not relrowsecurity order by 1)::text[], '{}'::text[],
  'every table in an exposed schema has RLS on, even service-role-only ones');
select is(
  array(select name from exposed_relations
        where relkind = 'v'
          and not coalesce(array['security_invoker=true', 'security_invoker=on']
                           && reloptions, false)
        order by 1)::text[], '{}'::text[],
  'every view in an exposed schema is security_invoker');
select is(
  array(select c.relname::text from pg_class c
        where c.relnamespace = 'pgmq'::regnamespace and c.relkind = 'r'
          and c.relname ~ '^[qa]_' and not c.relrowsecurity
        order by 1)::text[], '{}'::text[],
  'every pgmq queue and archive table has RLS on');
select is(
  array(select sig from own_functions
        where prosecdef and not coalesce(proconfig @> array['search_path=""'], false)
        order by 1)::text[], '{}'::text[],
  'every SECURITY DEFINER function of ours (any schema but the platform''s) has search_path = ''''');
select is(
  array(select sig from own_functions
        where prosecdef and has_function_privilege('public', oid, 'execute')
        order by 1)::text[], '{}'::text[],
  'no SECURITY DEFINER function of ours (any schema but the platform''s) is executable by PUBLIC');
select is(
  array(select sig from own_functions
        where nspname = 'public' and has_function_privilege('anon', oid, 'execute')
          and oid not in (select fn from rpc_allow where rolname = 'anon')
        order by 1)::text[], '{}'::text[],
  'anon can execute nothing in public but its allow-list (empty)');
select is(
  array(select sig from own_functions
        where nspname = 'public' and has_function_privilege('authenticated', oid, 'execute')
          and oid not in (select fn from rpc_allow where rolname = 'authenticated')
        order by 1)::text[], '{}'::text[],
  'authenticated can execute in public only its allow-list (queue_job, fn_pgqueuer_enqueue)');
select is(
  array(select sig || ':' || r.rolname from own_functions, api_roles r
        where nspname = 'conveyor' and has_function_privilege(r.rolname, oid, 'execute')
          and oid <> 'conveyor.pre_request()'::regprocedure
        order by 1)::text[], '{}'::text[],
  'in conveyor the API roles can execute only the pre-request function');
select is(
  array(select sig from own_functions
        where oid <> 'conveyor.pre_request()'::regprocedure
          and (prosrc ~* 'set_config\s*\(\s*''(app\.|request\.|role''|search_path'')'
               or prosrc ~* '\mset\s+(local\s+)?(app\.|request\.|role\M)')
        order by 1)::text[], '{}'::text[],
  'only the pre-request function sets app.* / request.* / role');
select is(
  array(select sig from own_functions
        where prosrc ~* 'set_config\s*\(\s*[^''\s]'
        order by 1)::text[], '{}'::text[],
  'no function calls set_config with a computed setting name');
select is(
  array(select sig from own_functions
        where has_function_privilege('authenticated', oid, 'execute')
          and prosrc ~* 'request\.headers'
        order by 1)::text[], '{}'::text[],
  'no function the API roles can run reads request.headers (a client-controlled input)');

-- Every table in public with a tenant_id: seed 004's rules, so new tenant tables follow.
create temporary view tenant_scoped as
select c.oid, c.relname::text as name, c.relrowsecurity, c.relforcerowsecurity
from pg_class c
join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p');
select is(
  array(select t.name from tenant_scoped t
        where not (t.relrowsecurity and t.relforcerowsecurity)
           or not exists (
             select 1 from pg_policies p
             where p.schemaname = 'public' and p.tablename = t.name
               and p.policyname = 'tenant_isolation_policy'
               -- seed 004's condition; the second form evaluates current_setting once per
               -- statement (lint auth_rls_initplan), same rows
               and p.qual in (
                 '((tenant_id)::text = current_setting(''app.current_tenant''::text, true))',
                 '((tenant_id)::text = ( SELECT current_setting(''app.current_tenant''::text, true) AS current_setting))'))
           or exists (select 1 from pg_policies p
                      where p.schemaname = 'public' and p.tablename = t.name
                        and p.policyname <> 'tenant_isolation_policy' and p.permissive = 'PERMISSIVE')
           or not exists (
             select 1 from pg_constraint k
             where k.conrelid = t.oid and k.contype = 'f' and k.confrelid = 'public.tenants'::regclass
               and k.confdeltype = 'r')
        order by 1)::text[], '{}'::text[],
  'every tenant table in public: RLS forced, seed 004''s policy only, tenant FK ON DELETE RESTRICT');
select is(
  array(select t.name || ':' || r.rolname || ':' || priv from tenant_scoped t, api_roles r,
          unnest(array['select', 'insert', 'update', 'delete', 'truncate']) as priv
        where has_table_privilege(r.rolname, t.oid, priv)
          and not (r.rolname = 'authenticated' and priv = 'select')
        order by 1)::text[], '{}'::text[],
  'every tenant table in public: anon nothing, authenticated SELECT only');

select * from finish();
rollback;
