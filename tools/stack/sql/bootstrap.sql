-- What a hosted Supabase project's database already has before its first migration runs,
-- recreated for the local Docker-free stack: the `extensions` and `auth` schemas,
-- auth.jwt()/uid()/role()/email(), the privileges and default privileges Supabase gives the
-- `postgres` role and the API roles, and the platform's extensions (created here by the
-- superuser, as hosted creates them through supautils; see tools/stack/README.md).
-- The roles themselves are cluster-wide: roles.sql.
--
-- Run by the superuser (supabase_admin) in each database the stack prepares, before the
-- Supabase CLI pushes the migrations as `postgres`. LOCAL ONLY. Never part of
-- supabase/migrations: on hosted Supabase all of this exists. Idempotent: the stack runs it
-- on every start.

-- `postgres` creates schemas (CREATE on the database) and owns what migrations create.
do $db$
begin
  execute format('grant all on database %I to postgres', current_database());
end
$db$;

create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
grant all on schema extensions to postgres;

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
-- Owned by the platform: `postgres` may use it but not create in it (as on hosted).
create schema if not exists auth;
grant usage on schema auth to postgres, anon, authenticated, service_role;

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
  to postgres, anon, authenticated, service_role;

-- The platform's extensions. Hosted projects have Vault and pg_stat_statements from the
-- start; pg_cron and pg_net are "privileged extensions" there: a `create extension` by
-- postgres is run by the superuser (supautils). Locally the superuser creates them here, so
-- the migrations' `create extension if not exists` finds them; an extension the platform
-- does not allow still fails for postgres with PostgreSQL's own "permission denied to
-- create extension". pgmq needs no help: it is not a superuser extension, and `postgres`
-- creates it (and owns it, as hosted arranges after creating it).
create extension if not exists supabase_vault;
create extension if not exists pg_stat_statements with schema extensions;
create extension if not exists pg_net with schema extensions;

-- pg_cron only in the database its scheduler serves (cron.database_name), in pg_catalog as
-- hosted creates it, with hosted's grants: postgres uses cron's functions and tables, and
-- reads (but does not write) cron.job, whose rows only cron.schedule/unschedule change.
do $cron$
begin
  if current_database() = coalesce(current_setting('cron.database_name', true), 'postgres') then
    create extension if not exists pg_cron with schema pg_catalog;
    grant usage on schema cron to postgres with grant option;
    grant all on all functions in schema cron to postgres with grant option;
    grant all on all tables in schema cron to postgres with grant option;
    grant all on all sequences in schema cron to postgres with grant option;
    revoke all on table cron.job from postgres;
    grant select on table cron.job to postgres with grant option;
    revoke trigger on cron.job_run_details from postgres;
  end if;
end
$cron$;

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
