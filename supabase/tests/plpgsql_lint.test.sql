-- plpgsql_check over every PL/pgSQL function of schemas public and conveyor (trigger
-- functions are checked against each table whose trigger uses them, with the trigger's
-- transition table names). Any error-level
-- finding fails the test and is listed in the diagnostics.
begin;
select plan(2);

create temp view lint_findings as
with fns as (
  select p.oid, 0::oid as relid, null::name as oldtable, null::name as newtable
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_language l on l.oid = p.prolang
  where l.lanname = 'plpgsql'
    and n.nspname in ('public', 'conveyor')
    and p.prorettype <> 'trigger'::regtype
    and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
  union all
  select distinct p.oid, t.tgrelid, t.tgoldtable, t.tgnewtable
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_trigger t on t.tgfoid = p.oid
  where n.nspname in ('public', 'conveyor')
    and p.prorettype = 'trigger'::regtype
    and not t.tgisinternal
)
select f.oid::regprocedure::text as function, c.level, c.message, c.lineno, c.statement
from fns f
cross join lateral extensions.plpgsql_check_function_tb(
  f.oid, f.relid, oldtable => f.oldtable, newtable => f.newtable) c;

select cmp_ok(
  (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   join pg_language l on l.oid = p.prolang
   where l.lanname = 'plpgsql' and n.nspname in ('public', 'conveyor'))::int,
  '>', 20, 'there are PL/pgSQL functions to check');

select is_empty(
  $$select function || ' line ' || coalesce(lineno::text, '?') || ': ' || message
    from lint_findings where level = 'error'$$,
  'plpgsql_check reports no error in public and conveyor'
);

select * from finish();
rollback;
