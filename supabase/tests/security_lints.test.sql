-- Security lints (issue 7): the checks behind Supabase's splinter SECURITY lints, written
-- here from their descriptions (reference/supabase.md §7, reliability.md §4), run against
-- the migrated database; any finding fails. Then stricter checks read from the catalog,
-- so a function or table added later is covered without touching this file:
--   * every SECURITY DEFINER function of ours, in any schema the platform does not own (so
--     a new schema is covered too), has search_path = '' and no PUBLIC execute;
--   * anon may execute nothing in public, authenticated only its allow-list;
--   * in conveyor the API roles may execute only the pre-request function;
--   * only the pre-request function sets app.current_tenant (or any request.* / role);
--   * every table in public with a tenant_id follows seed 004's tenant rules.
-- A failing check prints the offending objects.
begin;
select plan(27);

-- What the API exposes (supabase/config.toml [api] schemas; pgmq_public is "Expose Queues
-- via PostgREST", on locally) and the schemas the lints leave alone (platform-owned).
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
create function pg_temp.api_can_select(p_rel oid) returns boolean language sql stable as $$
  select has_table_privilege('anon', p_rel, 'select')
      or has_table_privilege('authenticated', p_rel, 'select')
$$;

-- Splinter's security lints -------------------------------------------------------------
select is(
  array(select name from exposed_relations
        where relkind in ('r', 'p') and not relrowsecurity and pg_temp.api_can_select(oid)
        order by 1)::text[], '{}'::text[],
  'rls_disabled_in_public (0013): no API-readable table in an exposed schema without RLS');
select is(
  array(select n.nspname || '.' || c.relname
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where not c.relrowsecurity
          and exists (select 1 from pg_policy p where p.polrelid = c.oid)
          and n.nspname not in (select nspname from platform)
        order by 1)::text[], '{}'::text[],
  'policy_exists_rls_disabled (0007): no table has policies while RLS is off');
select is(
  array(select name from exposed_relations
        where relkind = 'v' and pg_temp.api_can_select(oid)
          and not coalesce(array['security_invoker=true', 'security_invoker=on']
                           && reloptions, false)
        order by 1)::text[], '{}'::text[],
  'security_definer_view (0010): every API-readable view is security_invoker');
select is(
  array(select sig from own_functions
        where not coalesce(exists (select 1 from unnest(proconfig) c where c like 'search_path=%'),
                           false)
        order by 1)::text[], '{}'::text[],
  'function_search_path_mutable (0011): every function has a fixed search_path');
select is(
  array(select extname::text from pg_extension
        where extnamespace = 'public'::regnamespace order by 1)::text[], '{}'::text[],
  'extension_in_public (0014): no extension is installed in public');
select is(
  array(select distinct v.name
        from exposed_relations v
        join pg_rewrite rw on rw.ev_class = v.oid
        join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = rw.oid
        where v.relkind in ('v', 'm') and d.refobjid = to_regclass('auth.users')
          and pg_temp.api_can_select(v.oid)
        order by 1)::text[], '{}'::text[],
  'auth_users_exposed (0002): no API-readable view or matview shows auth.users');
select is(
  array(select c.relname::text from pg_class c
        where c.relnamespace = 'pgmq'::regnamespace and c.relkind = 'r'
          and c.relname like 'q\_%' and not c.relrowsecurity
          and exists (select 1 from exposed where nspname = 'pgmq_public')
          and pg_temp.api_can_touch(c.oid)
        order by 1)::text[], '{}'::text[],
  'insecure_queue_exposed_in_api (0019): no pgmq queue table is API-reachable without RLS');
select is(
  array(select o.sig from own_functions o
        where o.prosecdef and o.nspname in (select nspname from exposed)
          and has_function_privilege('anon', o.oid, 'execute')
          and o.oid not in (select fn from rpc_allow where rolname = 'anon')
        order by 1)::text[], '{}'::text[],
  'anon_security_definer_function_executable (0028): anon runs no definer function');
select is(
  array(select o.sig from own_functions o
        where o.prosecdef and o.nspname in (select nspname from exposed)
          and has_function_privilege('authenticated', o.oid, 'execute')
          and o.oid not in (select fn from rpc_allow where rolname = 'authenticated')
        order by 1)::text[], '{}'::text[],
  'authenticated_security_definer_function_executable (0029): only allow-listed definer RPCs');
select is(
  array(select name from exposed_relations r
        where relkind in ('r', 'p') and relrowsecurity
          and not exists (select 1 from pg_policy p where p.polrelid = r.oid)
          and pg_temp.api_can_touch(r.oid)
        order by 1)::text[], '{}'::text[],
  'rls_enabled_no_policy (0008), where it matters: no API-granted table is locked by a missing policy');
select is(
  array(select p.schemaname || '.' || p.tablename || ':' || p.policyname from pg_policies p
        where coalesce(p.qual, '') || coalesce(p.with_check, '') ~* 'user_metadata'
        order by 1)::text[], '{}'::text[],
  'rls_references_user_metadata (0015): no policy trusts user_metadata');
select is(
  array(select name from exposed_relations
        where relkind in ('m', 'f') and pg_temp.api_can_select(oid) order by 1)::text[],
  '{}'::text[],
  'materialized_view_in_api / foreign_table_in_api (0016, 0017): none API-readable');
select is(
  array(select p.schemaname || '.' || p.tablename || ':' || p.policyname from pg_policies p
        where p.cmd in ('INSERT', 'UPDATE', 'DELETE', 'ALL')
          and (p.qual = 'true' or p.with_check = 'true')
          and p.schemaname not in (select nspname from platform)
        order by 1)::text[], '{}'::text[],
  'rls_policy_always_true (0024): no write policy is USING (true) / WITH CHECK (true)');

-- Stricter, from the catalog ----------------------------------------------------------
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
        where nspname = 'pgmq_public' and prosecdef order by 1)::text[], '{}'::text[],
  'pgmq_public''s wrappers are SECURITY INVOKER (they cannot lift table privileges)');
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
               and p.qual = '((tenant_id)::text = current_setting(''app.current_tenant''::text, true))')
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
