-- What a hosted Supabase project already has before its first migration runs, recreated for
-- the local Docker-free stack: the API roles, the `extensions`, `auth` and
-- `supabase_migrations` schemas, auth.jwt()/uid()/role(), the default privileges Supabase
-- grants in `public`, and Vault (an extension that is always present on hosted projects).
--
-- LOCAL ONLY. Never part of supabase/migrations: on hosted Supabase all of this exists.
-- Idempotent: the stack runs it on every start.

do $roles$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_admin') then
    create role supabase_admin nologin superuser;
  end if;
end
$roles$;

-- Local demo passwords, as the Supabase CLI uses them (postgres/postgres).
alter role postgres with password 'postgres';
alter role authenticator with login password 'postgres';

-- PostgREST logs in as authenticator and switches to the JWT's role.
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';

create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase's search_path for the postgres role (and new sessions of the API roles).
alter role postgres set search_path = "$user", public, extensions;

grant usage on schema public to anon, authenticated, service_role;
grant all on schema public to postgres;

-- Supabase's default privileges in public: everything the postgres role creates there is
-- reachable by the API roles unless a migration revokes it. Our migrations are written
-- against these defaults, exactly as they must be on a hosted project.
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;

-- auth: the helpers RLS policies and functions use. They read the claims PostgREST (or our
-- gateway) puts in request.jwt.claims; the legacy per-claim settings are honoured first.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create or replace function auth.jwt() returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
set search_path = ''
as $$
  select nullif(
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    ),
    ''
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role(), auth.email()
  to anon, authenticated, service_role;

-- The Supabase CLI's migration history table.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);

-- Vault is preinstalled on hosted projects (the stack installs our local copy first).
create extension if not exists supabase_vault;

-- Like hosted projects: query statistics for profiling (the benchmark reads them).
create extension if not exists pg_stat_statements with schema extensions;

-- Hosted projects reload PostgREST's schema cache after DDL: event triggers send
-- `NOTIFY pgrst, 'reload schema'` when a command ends (and when objects are dropped), so a
-- migration applied with psql is served over /rest/v1 at once. Same here. (A NOTIFY sent
-- twice in one transaction is delivered once.)
create or replace function extensions.notify_pgrst_schema_change() returns event_trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify('pgrst', 'reload schema');
end
$$;

do $watch$
begin
  if not exists (select from pg_event_trigger where evtname = 'pgrst_ddl_watch') then
    create event trigger pgrst_ddl_watch on ddl_command_end
      execute function extensions.notify_pgrst_schema_change();
  end if;
  if not exists (select from pg_event_trigger where evtname = 'pgrst_drop_watch') then
    create event trigger pgrst_drop_watch on sql_drop
      execute function extensions.notify_pgrst_schema_change();
  end if;
end
$watch$;
