-- "Expose Queues via PostgREST" switched on (a hosted project's dashboard switch; Conveyor
-- neither needs nor creates pgmq_public): the wrappers it adds behave as on hosted, and
-- Conveyor's own queues stay closed to anon and authenticated through them (0052 enables RLS
-- on every queue table for exactly this). What the switch opens to service_role is listed
-- in docs/operations.md.
begin;
select plan(10);

set local client_min_messages = warning;
\ir ../../tools/test/sql/expose_queues.sql

-- Message ids by label, so assertions never depend on the order rows come back in.
create temp table ids (label text primary key, id bigint not null);
create function pg_temp.id_of(label text) returns bigint
language sql stable as $$ select i.id from ids i where i.label = id_of.label $$;

-- Runs a statement as a role; 'ok' or the SQLSTATE it failed with.
create function pg_temp.try_as(p_role text, p_sql text) returns text
language plpgsql as $$
begin
  execute format('set local role %I', p_role);
  begin
    execute p_sql;
    reset role;
    return 'ok';
  exception when others then
    reset role;
    return sqlstate;
  end;
end
$$;

------------------------------------------------------------------------------------------------
-- The wrappers the switch adds
------------------------------------------------------------------------------------------------
select set_eq(
  $$
  select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prosecdef,
    p.proconfig
  from pg_proc p where p.pronamespace = 'pgmq_public'::regnamespace
  $$,
  $$ values
    ('pop(queue_name text)', false, array['search_path=""']),
    ('send(queue_name text, message jsonb, sleep_seconds integer)', false, array['search_path=""']),
    (
      'send_batch(queue_name text, messages jsonb[], sleep_seconds integer)', false,
      array['search_path=""']
    ),
    ('archive(queue_name text, message_id bigint)', false, array['search_path=""']),
    ('delete(queue_name text, message_id bigint)', false, array['search_path=""']),
    ('read(queue_name text, sleep_seconds integer, n integer)', false, array['search_path=""'])
  $$,
  'pgmq_public has the six SECURITY INVOKER wrappers with an empty search_path'
);
select ok(
  (
    select bool_and(has_function_privilege(r, f, 'execute'))
    from unnest(array['anon', 'authenticated', 'service_role']) r,
      unnest(array[
        'pgmq_public.pop(text)', 'pgmq_public.send(text, jsonb, integer)',
        'pgmq_public.send_batch(text, jsonb[], integer)', 'pgmq_public.archive(text, bigint)',
        'pgmq_public.delete(text, bigint)', 'pgmq_public.read(text, integer, integer)'
      ]) f
  )
  and (
    select bool_and(has_schema_privilege(r, s, 'usage'))
    from unnest(array['anon', 'authenticated', 'service_role']) r,
      unnest(array['pgmq', 'pgmq_public']) s
  ),
  'the API roles may call the wrappers and use both schemas'
);

select pgmq.create('pgtap_public');
insert into ids select 'pub', pgmq_public.send('pgtap_public', '{"p": 1}');
insert into ids select 'pub_late', pgmq_public.send('pgtap_public', '{"p": 2}', 3600);
insert into ids select 'pub_b' || row_number() over (), b
from pgmq_public.send_batch('pgtap_public', array['{"p": 3}', '{"p": 4}']::jsonb[]) b;
select set_eq(
  $$ select msg_id from pgmq_public.read('pgtap_public', 30, 10) $$,
  $$ select id from ids where label in ('pub', 'pub_b1', 'pub_b2') $$,
  'pgmq_public.send/send_batch/read: sleep_seconds delays a send and is the vt of a read'
);
select is(pgmq_public.archive('pgtap_public', pg_temp.id_of('pub')), true, 'pgmq_public.archive()');
select is(
  pgmq_public.delete('pgtap_public', pg_temp.id_of('pub_b1')), true,
  'pgmq_public.delete()'
);
do $$ begin perform pgmq.set_vt('pgtap_public', pg_temp.id_of('pub_b2'), 0); end $$;
select results_eq(
  $$ select msg_id from pgmq_public.pop('pgtap_public') $$,
  $$ select id from ids where label = 'pub_b2' $$,
  'pgmq_public.pop()'
);

-- SECURITY INVOKER: service_role has the tables, anon has not.
select is(
  pg_temp.try_as('service_role', $$ select pgmq_public.send('pgtap_public', '{"as": "service_role"}') $$),
  'ok', 'service_role can send through pgmq_public');
select is(
  pg_temp.try_as('anon', $$ select pgmq_public.send('pgtap_public', '{"as": "anon"}') $$),
  '42501', 'anon cannot: the wrappers run with the caller''s rights');

------------------------------------------------------------------------------------------------
-- Conveyor's queues with the switch on
------------------------------------------------------------------------------------------------
select is(
  array(
    select r || ' ' || call || ': ' || got
    from pgmq.meta m
    cross join unnest(array['anon', 'authenticated']) r
    cross join lateral (values
      ('send', format($q$ select pgmq_public.send(%L, '{}') $q$, m.queue_name)),
      ('read', format($q$ select pgmq_public.read(%L, 0, 1) $q$, m.queue_name)),
      ('pop', format($q$ select pgmq_public.pop(%L) $q$, m.queue_name))
    ) c(call, stmt)
    cross join lateral (select pg_temp.try_as(r, c.stmt) as got) t
    where m.queue_name not like 'pgtap%' and got <> '42501'
    order by 1
  ),
  '{}'::text[],
  'anon and authenticated can send to, read or pop none of Conveyor''s queues'
);
-- What the switch does open: service_role (and so every service key) reaches every queue
-- directly, around queue_job and the ledger.
select is(
  array(
    select m.queue_name || ': ' || pg_temp.try_as('service_role',
      format($q$ select pgmq_public.read(%L, 0, 1) $q$, m.queue_name))
    from pgmq.meta m where m.queue_name not like 'pgtap%'
    except
    select m.queue_name || ': ok' from pgmq.meta m
  ),
  '{}'::text[],
  'service_role can read every Conveyor queue through pgmq_public'
);

select * from finish();
rollback;
