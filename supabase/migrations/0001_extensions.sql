-- Extensions Conveyor builds on, enabled the way a hosted Supabase project enables them
-- (Dashboard → Database → Extensions does the same): pg_cron, pgmq and pg_net.
-- Vault (supabase_vault) is preinstalled on every hosted project and is not created here.

-- pg_cron can only be created in the database named by cron.database_name ('postgres' on
-- hosted projects). The guard lets the same chain of migrations build a scratch database
-- (e.g. the test template) where the scheduler simply is absent.
do $$
begin
  if current_database() = coalesce(current_setting('cron.database_name', true), 'postgres') then
    -- In pg_catalog, as Supabase's docs create it: its objects live in schema cron either
    -- way, but the extension's own schema would otherwise be public (lint 0014).
    create extension if not exists pg_cron with schema pg_catalog;
  else
    raise notice 'pg_cron is not created in database % (cron.database_name is %)',
      current_database(), current_setting('cron.database_name', true);
  end if;
end
$$;

create extension if not exists pgmq;
create extension if not exists pg_net with schema extensions;
