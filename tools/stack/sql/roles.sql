-- Hosted Supabase's role layout, recreated for the local Docker-free stack (cluster-wide:
-- roles belong to the cluster, not to a database). Run by the superuser on every start;
-- idempotent. LOCAL ONLY: on a hosted project all of this exists before the first migration.
--
--   supabase_admin  the superuser (initdb's bootstrap user; the platform's own role)
--   postgres        what migrations, db:reset, the dashboard and users connect as: NOT a
--                   superuser; CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS; member (with
--                   admin option) of the API roles and of pg_monitor, pg_read_all_data,
--                   pg_signal_backend, as on hosted projects
--   authenticator   PostgREST's login; switches to anon / authenticated / service_role
--   anon, authenticated, service_role   the API roles (service_role bypasses RLS)
--
-- What hosted lets `postgres` do beyond these attributes through its supautils extension is
-- emulated in two small ways (see tools/stack/README.md, "Hosted roles"): the platform's
-- extensions are created by the superuser before the migrations run (bootstrap.sql), and
-- `alter role authenticator set pgrst.…` is allowed by GRANT SET ON PARAMETER below.

do $roles$
begin
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres;
  end if;
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator;
  end if;
end
$roles$;

-- Local demo passwords, as the Supabase CLI's local stack uses them (postgres/postgres).
alter role supabase_admin with login password 'postgres';
alter role postgres with login password 'postgres'
  nosuperuser createdb createrole replication bypassrls;
alter role authenticator with login noinherit password 'postgres';
alter role anon with nologin noinherit;
alter role authenticated with nologin noinherit;
alter role service_role with nologin noinherit bypassrls;

-- PostgREST logs in as authenticator and switches to the JWT's role.
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role, authenticator to postgres with admin option;
grant pg_monitor, pg_read_all_data, pg_signal_backend to postgres with admin option;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';

-- Supabase's search_path for the postgres role (and new sessions of the API roles).
alter role postgres set search_path = "$user", public, extensions;
alter role supabase_admin set search_path = "$user", public, extensions;

-- PostgREST's in-database configuration: hosted lets `postgres` set `pgrst.*` on the
-- authenticator role (supautils' allowed configs). PostgreSQL 15 has a grant for exactly
-- that; it takes names, not patterns, so here are the settings PostgREST reads from the
-- database (its "in-database configuration"). Anything else (ALTER SYSTEM, other roles'
-- superuser-only settings) stays refused, as on hosted.
do $pgrst$
declare
  p text;
begin
  foreach p in array array[
    'db_aggregates_enabled', 'db_anon_role', 'db_extra_search_path', 'db_hoisted_tx_settings',
    'db_max_rows', 'db_plan_enabled', 'db_pre_config', 'db_pre_request',
    'db_prepared_statements', 'db_root_spec', 'db_schemas', 'db_tx_end', 'jwt_aud',
    'jwt_cache_max_lifetime', 'jwt_role_claim_key', 'jwt_secret', 'jwt_secret_is_base64',
    'openapi_mode', 'openapi_security_active', 'openapi_server_proxy_uri',
    'server_cors_allowed_origins', 'server_timing_enabled', 'server_trace_header'
  ] loop
    execute format('grant set on parameter pgrst.%s to postgres', p);
  end loop;
end
$pgrst$;
