-- pgmq 1.5.1 compatibility: the queue API Conveyor's migrations and functions rely on.
--
-- This is a spec, not a test of our implementation's internals: it must pass unchanged against
-- the real pgmq 1.5.1 (a hosted project, or a Supabase image) as well as against our local
-- stand-in (tools/stack/extensions/pgmq). So it never relies on the row order of read() or of
-- the array forms, on CONTEXT/QUERY text, or on what differs between installs (drop_queue of a
-- missing queue, extension membership of queue tables, pg_partman being present).
--
-- Everything runs in one transaction, so now() (enqueued_at, archived_at, metrics) is the same
-- throughout, while vt and read() use clock_timestamp(). Queue names start with pgtap_.
begin;
select plan(98);

set local client_min_messages = warning; -- idempotent creates emit "already exists" NOTICEs

-- Message ids by label, so assertions never depend on the order rows come back in.
create temp table ids (label text primary key, id bigint not null);
create function pg_temp.id_of(label text) returns bigint
language sql stable as $$ select i.id from ids i where i.label = id_of.label $$;

------------------------------------------------------------------------------------------------
-- API surface: names, overloads (not defaults) and argument names clients pass by name.
------------------------------------------------------------------------------------------------
select set_eq(
  $$
  select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
  from pg_proc p
  where p.pronamespace = 'pgmq'::regnamespace
    and p.proname in (
      'create', 'create_non_partitioned', 'create_unlogged', 'create_partitioned', 'purge_queue',
      'detach_archive', 'list_queues', 'metrics', 'metrics_all', 'send', 'send_batch', 'read',
      'read_with_poll', 'pop', 'set_vt', 'delete', 'archive', 'format_table_name',
      'validate_queue_name'
    )
  $$,
  $$ values
    ('create(queue_name text)'),
    ('create_non_partitioned(queue_name text)'),
    ('create_unlogged(queue_name text)'),
    ('create_partitioned(queue_name text, partition_interval text, retention_interval text)'),
    ('purge_queue(queue_name text)'),
    ('detach_archive(queue_name text)'),
    ('list_queues()'),
    ('metrics(queue_name text)'),
    ('metrics_all()'),
    ('send(queue_name text, msg jsonb)'),
    ('send(queue_name text, msg jsonb, headers jsonb)'),
    ('send(queue_name text, msg jsonb, delay integer)'),
    ('send(queue_name text, msg jsonb, delay timestamp with time zone)'),
    ('send(queue_name text, msg jsonb, headers jsonb, delay integer)'),
    ('send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone)'),
    ('send_batch(queue_name text, msgs jsonb[])'),
    ('send_batch(queue_name text, msgs jsonb[], headers jsonb[])'),
    ('send_batch(queue_name text, msgs jsonb[], delay integer)'),
    ('send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone)'),
    ('send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)'),
    ('send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone)'),
    ('read(queue_name text, vt integer, qty integer, conditional jsonb)'),
    (
      'read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer, '
      'poll_interval_ms integer, conditional jsonb)'
    ),
    ('pop(queue_name text)'),
    ('set_vt(queue_name text, msg_id bigint, vt integer)'),
    ('delete(queue_name text, msg_id bigint)'),
    ('delete(queue_name text, msg_ids bigint[])'),
    ('archive(queue_name text, msg_id bigint)'),
    ('archive(queue_name text, msg_ids bigint[])'),
    ('format_table_name(queue_name text, prefix text)'),
    ('validate_queue_name(queue_name text)')
  $$,
  'pgmq has the 1.5.1 functions, overloads and argument names'
);

select ok(
  exists (
    select from pg_proc p
    where p.pronamespace = 'pgmq'::regnamespace and p.proname = 'drop_queue'
      and pg_get_function_identity_arguments(p.oid) like 'queue_name text%'
  ),
  'pgmq.drop_queue(queue_name text ...) exists'
);

select results_eq(
  $$
  select pg_get_function_result(p.oid)
  from pg_proc p
  where p.pronamespace = 'pgmq'::regnamespace
    and p.proname = 'read'
  $$,
  $$ values ('SETOF pgmq.message_record') $$,
  'read() returns SETOF pgmq.message_record'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod)
  from pg_attribute a
  where a.attrelid = 'pgmq.message_record'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('msg_id', 'bigint'), ('read_ct', 'integer'), ('enqueued_at', 'timestamp with time zone'),
    ('vt', 'timestamp with time zone'), ('message', 'jsonb'), ('headers', 'jsonb')
  $$,
  'message_record fields in 1.5.1 order'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod)
  from pg_attribute a
  where a.attrelid = 'pgmq.queue_record'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('queue_name', 'character varying'), ('is_partitioned', 'boolean'),
    ('is_unlogged', 'boolean'), ('created_at', 'timestamp with time zone')
  $$,
  'queue_record fields in 1.5.1 order'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod)
  from pg_attribute a
  where a.attrelid = 'pgmq.metrics_result'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('queue_name', 'text'), ('queue_length', 'bigint'), ('newest_msg_age_sec', 'integer'),
    ('oldest_msg_age_sec', 'integer'), ('total_messages', 'bigint'),
    ('scrape_time', 'timestamp with time zone'), ('queue_visible_length', 'bigint')
  $$,
  'metrics_result fields in 1.5.1 order'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
  from pg_attribute a
  where a.attrelid = 'pgmq.meta'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('queue_name', 'character varying', true), ('is_partitioned', 'boolean', true),
    ('is_unlogged', 'boolean', true), ('created_at', 'timestamp with time zone', true)
  $$,
  'pgmq.meta columns'
);

------------------------------------------------------------------------------------------------
-- create / create_unlogged / create_partitioned
------------------------------------------------------------------------------------------------
select lives_ok($$ select pgmq.create('pgtap_cq') $$, 'create() makes a queue');
select lives_ok($$ select pgmq.create('pgtap_cq') $$, 'create() again is harmless (idempotent)');
select is(
  (select count(*) from pgmq.meta where queue_name = 'pgtap_cq'), 1::bigint,
  'a repeated create() leaves one meta row'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod), a.attnotnull,
    a.attidentity::text
  from pg_attribute a
  where a.attrelid = 'pgmq.q_pgtap_cq'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('msg_id', 'bigint', true, 'a'),
    ('read_ct', 'integer', true, ''),
    ('enqueued_at', 'timestamp with time zone', true, ''),
    ('vt', 'timestamp with time zone', true, ''),
    ('message', 'jsonb', false, ''),
    ('headers', 'jsonb', false, '')
  $$,
  'q_<name> columns, msg_id generated always as identity'
);

select results_eq(
  $$
  select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod), a.attnotnull,
    a.attidentity::text
  from pg_attribute a
  where a.attrelid = 'pgmq.a_pgtap_cq'::regclass and a.attnum > 0 and not a.attisdropped
  order by a.attnum
  $$,
  $$ values
    ('msg_id', 'bigint', true, ''),
    ('read_ct', 'integer', true, ''),
    ('enqueued_at', 'timestamp with time zone', true, ''),
    ('archived_at', 'timestamp with time zone', true, ''),
    ('vt', 'timestamp with time zone', true, ''),
    ('message', 'jsonb', false, ''),
    ('headers', 'jsonb', false, '')
  $$,
  'a_<name> columns, msg_id without identity'
);

select set_eq(
  $$
  select indexname::text collate "default" from pg_indexes
  where schemaname = 'pgmq' and tablename = 'q_pgtap_cq'
  $$,
  $$ values ('q_pgtap_cq_pkey'), ('q_pgtap_cq_vt_idx') $$,
  'q_<name> indexes: primary key and vt'
);

select set_eq(
  $$
  select indexname::text collate "default" from pg_indexes
  where schemaname = 'pgmq' and tablename = 'a_pgtap_cq'
  $$,
  $$ values ('a_pgtap_cq_pkey'), ('archived_at_idx_pgtap_cq') $$,
  'a_<name> indexes: primary key and archived_at'
);

select results_eq(
  $$
  select queue_name::text, is_partitioned, is_unlogged from pgmq.list_queues()
  where queue_name = 'pgtap_cq'
  $$,
  $$ values ('pgtap_cq', false, false) $$,
  'list_queues() shows the queue'
);

select lives_ok($$ select pgmq.create('PgTap_Mixed') $$, 'mixed-case names are allowed');
select ok(
  to_regclass('pgmq.q_pgtap_mixed') is not null and to_regclass('pgmq.a_pgtap_mixed') is not null,
  'table names are lowercased'
);
select is(
  (select count(*) from pgmq.meta where queue_name = 'PgTap_Mixed'), 1::bigint,
  'meta keeps the name as given'
);
select ok(
  exists (
    select from pg_indexes
    where schemaname = 'pgmq' and indexname = 'archived_at_idx_PgTap_Mixed'
  ),
  'the archive index keeps the name as given'
);
select is(pgmq.format_table_name('PgTap_Mixed', 'q'), 'q_pgtap_mixed', 'format_table_name()');

select lives_ok($$ select pgmq.create('pgtap dash-q') $$, 'names with spaces and hyphens work');
select is(
  (select count(*) from pgmq.send('pgtap dash-q', '{"x": 1}')), 1::bigint,
  'sending to a hyphenated queue works'
);

select lives_ok($$ select pgmq.create_unlogged('pgtap_unlogged') $$, 'create_unlogged()');
select results_eq(
  $$
  select relname::text collate "default", relpersistence::text from pg_class
  where relnamespace = 'pgmq'::regnamespace and relname in ('q_pgtap_unlogged', 'a_pgtap_unlogged')
  order by relname
  $$,
  $$ values ('a_pgtap_unlogged', 'p'), ('q_pgtap_unlogged', 'u') $$,
  'create_unlogged(): only q_ is unlogged'
);
select results_eq(
  $$ select is_unlogged from pgmq.list_queues() where queue_name = 'pgtap_unlogged' $$,
  $$ values (true) $$,
  'list_queues() flags the unlogged queue'
);

select throws_ok(
  $$ select pgmq.create_partitioned('pgtap_part') $$,
  'P0001', 'pg_partman is required for partitioned queues',
  'create_partitioned() needs pg_partman'
);

------------------------------------------------------------------------------------------------
-- Queue names: pgmq's exact errors (SQLSTATE P0001)
------------------------------------------------------------------------------------------------
select throws_ok(
  $$ select pgmq.create('pgtap$q') $$,
  'P0001', E'queue name contains invalid characters: $, ;, --, or \\''',
  'a name with $ is rejected'
);
select throws_ok(
  $$ select pgmq.create('pgtap;q') $$,
  'P0001', E'queue name contains invalid characters: $, ;, --, or \\''',
  'a name with ; is rejected'
);
select throws_ok(
  $$ select pgmq.create('pgtap--q') $$,
  'P0001', E'queue name contains invalid characters: $, ;, --, or \\''',
  'a name with -- is rejected'
);
select throws_ok(
  $$ select pgmq.create('pgtap''q') $$,
  'P0001', E'queue name contains invalid characters: $, ;, --, or \\''',
  'a name with a quote is rejected'
);
select throws_ok(
  $$ select pgmq.send('pgtap;q', '{}') $$,
  'P0001', E'queue name contains invalid characters: $, ;, --, or \\''',
  'every function checks the name (send)'
);
select lives_ok(
  $$ select pgmq.create('pgtap_' || repeat('x', 41)) $$,
  'a 47-character name is accepted'
);
select ok(
  to_regclass(format('pgmq.%I', 'q_pgtap_' || repeat('x', 41))) is not null,
  'the 47-character queue exists'
);
select throws_ok(
  $$ select pgmq.create('pgtap_' || repeat('x', 42)) $$,
  'P0001', 'queue name is too long, maximum length is 48 characters',
  'a 48-character name is rejected (1.5.1 text)'
);
select throws_ok(
  $$ select pgmq.create_unlogged('pgtap_' || repeat('x', 42)) $$,
  'P0001', 'queue name is too long, maximum length is 48 characters',
  'create_unlogged() checks the length too'
);

------------------------------------------------------------------------------------------------
-- A queue that does not exist: 42P01 from the table
------------------------------------------------------------------------------------------------
select throws_ok(
  $$ select pgmq.send('pgtap_missing', '{}') $$,
  '42P01', 'relation "pgmq.q_pgtap_missing" does not exist', 'send() to a missing queue'
);
select throws_ok(
  $$ select * from pgmq.read('pgtap_missing', 30, 1) $$,
  '42P01', 'relation "pgmq.q_pgtap_missing" does not exist', 'read() from a missing queue'
);
select throws_ok(
  $$ select * from pgmq.pop('pgtap_missing') $$,
  '42P01', 'relation "pgmq.q_pgtap_missing" does not exist', 'pop() from a missing queue'
);
select throws_ok(
  $$ select * from pgmq.metrics('pgtap_missing') $$,
  '42P01', 'relation "pgmq.q_pgtap_missing" does not exist', 'metrics() of a missing queue'
);

------------------------------------------------------------------------------------------------
-- send / read / set_vt: visibility
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_vis');
insert into ids select 'vis', pgmq.send('pgtap_vis', '{"n": 1}');
select is((select count(*) from ids where label = 'vis'), 1::bigint, 'send() returns one id');

select results_eq(
  $$ select msg_id, read_ct, message, headers from pgmq.read('pgtap_vis', 30, 10) $$,
  $$ select id, 1, '{"n": 1}'::jsonb, null::jsonb from ids where label = 'vis' $$,
  'read() returns the message with read_ct 1 and NULL headers'
);
select is_empty(
  $$ select * from pgmq.read('pgtap_vis', 30, 10) $$,
  'a read message is invisible until its vt passes'
);
select ok(
  (select vt from pgmq.q_pgtap_vis) > clock_timestamp() + interval '25 seconds',
  'read(vt => 30) pushed vt 30 s out'
);
select results_eq(
  $$ select msg_id, read_ct from pgmq.set_vt('pgtap_vis', pg_temp.id_of('vis'), 0) $$,
  $$ select id, 1 from ids where label = 'vis' $$,
  'set_vt() returns the message, read_ct unchanged'
);
select results_eq(
  $$ select msg_id, read_ct from pgmq.read('pgtap_vis', 0, 10) $$,
  $$ select id, 2 from ids where label = 'vis' $$,
  'set_vt(0) makes it visible again; the read counts'
);
select results_eq(
  $$ select read_ct from pgmq.read('pgtap_vis', 0, 10) $$,
  $$ values (3) $$,
  'read(vt => 0) leaves it visible, and each re-read bumps read_ct'
);
select is_empty(
  $$ select * from pgmq.set_vt('pgtap_vis', -1, 10) $$,
  'set_vt() of an unknown id returns no row'
);
select is_empty($$ select * from pgmq.read('pgtap_vis', 30, 0) $$, 'read(qty => 0) reads nothing');

-- The one wait in this file (about 1 s): vt runs out, and read_with_poll notices.
do $$ begin perform pgmq.set_vt('pgtap_vis', pg_temp.id_of('vis'), 1); end $$;
select is_empty($$ select * from pgmq.read('pgtap_vis', 30, 10) $$, 'set_vt(1) hides it');
select results_eq(
  $$ select msg_id, read_ct from pgmq.read_with_poll('pgtap_vis', 30, 10, 5, 50) $$,
  $$ select id, 4 from ids where label = 'vis' $$,
  'read_with_poll() returns the message once its vt has passed'
);

insert into ids select 'fifo' || n, pgmq.send('pgtap_vis', jsonb_build_object('n', n))
from generate_series(2, 4) n;
select set_eq(
  $$ select msg_id from pgmq.read('pgtap_vis', 30, 2) $$,
  $$ select id from ids where label in ('fifo2', 'fifo3') $$,
  'read(qty => 2) claims the two oldest visible messages'
);
select set_eq(
  $$ select msg_id from pgmq.read('pgtap_vis', 30, 10, '{"n": 4}') $$,
  $$ select id from ids where label = 'fifo4' $$,
  'read(conditional) only claims messages containing it'
);

------------------------------------------------------------------------------------------------
-- delay (integer and timestamptz), headers, named arguments
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_delay');
insert into ids select 'delay_int', pgmq.send('pgtap_delay', '{"d": "int"}', 3600);
insert into ids
select 'delay_ts', pgmq.send('pgtap_delay', '{"d": "ts"}', '2999-01-01 00:00:00+00'::timestamptz);
insert into ids
select 'delay_past', pgmq.send('pgtap_delay', '{"d": "past"}', now() - interval '1 hour');
insert into ids select 'delay_neg', pgmq.send('pgtap_delay', '{"d": "neg"}', -30);
insert into ids
select 'delay_named',
  pgmq.send(queue_name => 'pgtap_delay', msg => '{"d": "named"}', delay => 3600);
insert into ids
select 'delay_hdr', pgmq.send('pgtap_delay', '{"d": "hdr"}', '{"h": "x"}'::jsonb, 3600);
insert into ids
select 'delay_hdr_ts', pgmq.send(
  'pgtap_delay', '{"d": "hdr_ts"}', '{"h": "y"}'::jsonb, '2999-01-01 00:00:00+00'::timestamptz
);

select ok(
  (select vt from pgmq.q_pgtap_delay where msg_id = pg_temp.id_of('delay_int'))
    > clock_timestamp() + interval '3500 seconds',
  'send(delay => integer) sets vt that many seconds ahead'
);
select is(
  (select vt from pgmq.q_pgtap_delay where msg_id = pg_temp.id_of('delay_ts')),
  '2999-01-01 00:00:00+00'::timestamptz,
  'send(delay => timestamptz) sets vt to it'
);
select set_eq(
  $$ select msg_id from pgmq.read('pgtap_delay', 30, 100) $$,
  $$ select id from ids where label in ('delay_past', 'delay_neg') $$,
  'only messages whose delay has passed (past timestamp, negative seconds) are read'
);
select results_eq(
  $$
  select headers, vt > clock_timestamp() + interval '3500 seconds' from pgmq.q_pgtap_delay
  where msg_id = pg_temp.id_of('delay_hdr')
  $$,
  $$ values ('{"h": "x"}'::jsonb, true) $$,
  'send(headers, delay => integer) stores both'
);
select results_eq(
  $$
  select headers, vt from pgmq.q_pgtap_delay
  where msg_id = pg_temp.id_of('delay_hdr_ts')
  $$,
  $$ values ('{"h": "y"}'::jsonb, '2999-01-01 00:00:00+00'::timestamptz) $$,
  'send(headers, delay => timestamptz) stores both'
);
select ok(
  (select vt from pgmq.q_pgtap_delay where msg_id = pg_temp.id_of('delay_named'))
    > clock_timestamp() + interval '3500 seconds',
  'send() takes named arguments (queue_name, msg, delay)'
);
select throws_ok(
  $$ select pgmq.send('pgtap_delay', '{}', '{"h": 1}') $$,
  '42725', 'function pgmq.send(unknown, unknown, unknown) is not unique',
  'an untyped third argument is ambiguous: the options are overloads, not defaults'
);

select pgmq.create('pgtap_hdr');
insert into ids select 'hdr', pgmq.send('pgtap_hdr', '{"m": 1}', '{"trace": "abc"}'::jsonb);
insert into ids
select 'hdr_named', pgmq.send(queue_name => 'pgtap_hdr', msg => null, headers => '{"k": 2}');
select results_eq(
  $$
  select message, headers from pgmq.read('pgtap_hdr', 30, 10)
  where msg_id = pg_temp.id_of('hdr')
  $$,
  $$ values ('{"m": 1}'::jsonb, '{"trace": "abc"}'::jsonb) $$,
  'headers are stored and returned by read()'
);
select results_eq(
  $$
  select message, headers from pgmq.q_pgtap_hdr where msg_id = pg_temp.id_of('hdr_named')
  $$,
  $$ values (null::jsonb, '{"k": 2}'::jsonb) $$,
  'send(headers => …) by name, with a NULL message'
);

------------------------------------------------------------------------------------------------
-- send_batch
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_batch');
insert into ids
select 'batch' || row_number() over (), b
from pgmq.send_batch('pgtap_batch', array['{"b": 1}', '{"b": 2}', '{"b": 3}']::jsonb[]) b;
select is(
  (select count(distinct id) from ids where label like 'batch_'), 3::bigint,
  'send_batch() returns one distinct id per message'
);
select set_eq(
  $$ select msg_id, message from pgmq.q_pgtap_batch $$,
  $$
  select i.id, q.message from ids i join pgmq.q_pgtap_batch q on q.msg_id = i.id
  where i.label like 'batch_'
  $$,
  'the returned ids are the inserted rows'
);
select set_eq(
  $$ select message from pgmq.q_pgtap_batch $$,
  $$ values ('{"b": 1}'::jsonb), ('{"b": 2}'::jsonb), ('{"b": 3}'::jsonb) $$,
  'send_batch() inserts every message'
);
select is(
  (select count(*) from pgmq.send_batch(
    'pgtap_batch', array['{"bh": 1}', '{"bh": 2}']::jsonb[], array['{"h": 1}', '{"h": 2}']::jsonb[]
  )),
  2::bigint,
  'send_batch(msgs, headers) returns an id per message'
);
select set_eq(
  $$ select message, headers from pgmq.q_pgtap_batch where message ? 'bh' $$,
  $$ values ('{"bh": 1}'::jsonb, '{"h": 1}'::jsonb), ('{"bh": 2}'::jsonb, '{"h": 2}'::jsonb) $$,
  'send_batch() pairs headers with messages'
);
select is(
  (
    select count(*)
    from pgmq.send_batch('pgtap_batch', array['{"bd": 1}', '{"bd": 2}']::jsonb[], 3600)
  ),
  2::bigint,
  'send_batch(delay => integer)'
);
select ok(
  (
    select bool_and(vt > clock_timestamp() + interval '3500 seconds')
    from pgmq.q_pgtap_batch where message ? 'bd'
  ),
  'send_batch(delay) delays every message'
);
select is(
  (
    select count(*)
    from pgmq.send_batch(
      'pgtap_batch', array['{"bt": 1}']::jsonb[], array['{"h": 3}']::jsonb[],
      '2999-01-01 00:00:00+00'::timestamptz
    )
  ),
  1::bigint,
  'send_batch(headers, delay => timestamptz)'
);
select is_empty(
  $$ select * from pgmq.send_batch('pgtap_batch', '{}'::jsonb[]) $$,
  'send_batch() of no messages inserts nothing'
);

------------------------------------------------------------------------------------------------
-- archive, delete, pop
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_ack');
insert into ids
select 'ack' || n, pgmq.send('pgtap_ack', jsonb_build_object('n', n), jsonb_build_object('h', n))
from generate_series(1, 6) n;
do $$ begin perform pgmq.read('pgtap_ack', 30, 1); end $$; -- ack1: read_ct 1, a later vt

create temp table ack1_before as
select msg_id, read_ct, enqueued_at, vt, message, headers from pgmq.q_pgtap_ack
where msg_id = pg_temp.id_of('ack1');

select is(pgmq.archive('pgtap_ack', pg_temp.id_of('ack1')), true, 'archive(id) returns true');
select is_empty(
  $$ select * from pgmq.q_pgtap_ack where msg_id = pg_temp.id_of('ack1') $$,
  'archive() removes the message from q_'
);
select results_eq(
  $$ select msg_id, read_ct, enqueued_at, vt, message, headers from pgmq.a_pgtap_ack $$,
  $$ select * from ack1_before $$,
  'archive() keeps msg_id, read_ct, enqueued_at, vt, message and headers in a_'
);
select is((select archived_at from pgmq.a_pgtap_ack), now(), 'archived_at is now()');
select is(pgmq.archive('pgtap_ack', -1), false, 'archive() of an unknown id returns false');
select set_eq(
  $$
  select * from pgmq.archive('pgtap_ack', array[pg_temp.id_of('ack2'), pg_temp.id_of('ack3'), -1])
  $$,
  $$ select id from ids where label in ('ack2', 'ack3') $$,
  'archive(ids[]) returns the ids it archived, leaving out unknown ones'
);
select is(
  (select count(*) from pgmq.a_pgtap_ack), 3::bigint,
  'the archive holds the three messages'
);

select is(pgmq.delete('pgtap_ack', pg_temp.id_of('ack4')), true, 'delete(id) returns true');
select is(
  pgmq.delete('pgtap_ack', pg_temp.id_of('ack4')), false,
  'delete() of a deleted id returns false'
);
select set_eq(
  $$
  select * from pgmq.delete('pgtap_ack', array[pg_temp.id_of('ack5'), pg_temp.id_of('ack6'), -1])
  $$,
  $$ select id from ids where label in ('ack5', 'ack6') $$,
  'delete(ids[]) returns the ids it deleted'
);
select is((select count(*) from pgmq.q_pgtap_ack), 0::bigint, 'the queue is empty');
select is((select count(*) from pgmq.a_pgtap_ack), 3::bigint, 'delete() does not archive');

select pgmq.create('pgtap_pop');
select is_empty(
  $$ select * from pgmq.pop('pgtap_pop') $$,
  'pop() of an empty queue returns nothing'
);
insert into ids
select 'pop' || n, pgmq.send('pgtap_pop', jsonb_build_object('n', n)) from generate_series(1, 2) n;
insert into ids select 'pop_late', pgmq.send('pgtap_pop', '{"n": 0}', 3600);
select results_eq(
  $$ select msg_id, read_ct, message from pgmq.pop('pgtap_pop') $$,
  $$ select id, 0, '{"n": 1}'::jsonb from ids where label = 'pop1' $$,
  'pop() returns the oldest visible message without counting a read'
);
select set_eq(
  $$ select msg_id from pgmq.q_pgtap_pop $$,
  $$ select id from ids where label in ('pop2', 'pop_late') $$,
  'pop() deleted it'
);
select results_eq(
  $$ select msg_id from pgmq.pop('pgtap_pop') $$,
  $$ select id from ids where label = 'pop2' $$,
  'pop() skips invisible messages'
);

------------------------------------------------------------------------------------------------
-- metrics, metrics_all, purge_queue
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_metrics');
select results_eq(
  $$
  select queue_length, queue_visible_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages
  from pgmq.metrics('pgtap_metrics')
  $$,
  $$ values (0::bigint, 0::bigint, null::integer, null::integer, 0::bigint) $$,
  'metrics() of a new queue: zeros and NULL ages'
);
-- metrics' visibility uses now() (the transaction start): visible = vt in the past
do $$
begin
  perform pgmq.send_batch(
    'pgtap_metrics', array['{"v": 1}', '{"v": 2}', '{"v": 3}']::jsonb[], now() - interval '1 minute'
  );
  perform pgmq.send_batch('pgtap_metrics', array['{"i": 1}', '{"i": 2}']::jsonb[], 3600);
end;
$$;
-- a send that rolls back still uses up an id
do $$
begin
  perform pgmq.send('pgtap_metrics', '{"rolled": "back"}');
  raise exception 'roll back';
exception when raise_exception then
  null;
end;
$$;
select results_eq(
  $$
  select queue_name, queue_length, queue_visible_length, newest_msg_age_sec, oldest_msg_age_sec,
    total_messages, scrape_time
  from pgmq.metrics('pgtap_metrics')
  $$,
  $$ values ('pgtap_metrics'::text, 5::bigint, 3::bigint, 0, 0, 6::bigint, now()) $$,
  'metrics(): queue_length counts all, queue_visible_length vt <= now(), '
  'total_messages from the sequence'
);
select is(
  (select count(*) from pgmq.metrics_all() where queue_name = 'pgtap_metrics'), 1::bigint,
  'metrics_all() has a row per queue'
);
do $$
begin
  perform pgmq.archive('pgtap_metrics', (select min(msg_id) from pgmq.q_pgtap_metrics));
end;
$$;
select is(
  pgmq.purge_queue('pgtap_metrics'), 4::bigint,
  'purge_queue() returns how many it removed'
);
select results_eq(
  $$ select queue_length, total_messages from pgmq.metrics('pgtap_metrics') $$,
  $$ values (0::bigint, 6::bigint) $$,
  'purge_queue() empties q_ but keeps the sequence'
);
select is(
  (select count(*) from pgmq.a_pgtap_metrics), 1::bigint,
  'purge_queue() leaves the archive'
);

------------------------------------------------------------------------------------------------
-- drop_queue
------------------------------------------------------------------------------------------------
select pgmq.create('pgtap_drop');
select is(pgmq.drop_queue('pgtap_drop'), true, 'drop_queue() returns true');
select ok(
  to_regclass('pgmq.q_pgtap_drop') is null and to_regclass('pgmq.a_pgtap_drop') is null,
  'drop_queue() drops q_ and a_'
);
select is_empty(
  $$ select * from pgmq.list_queues() where queue_name = 'pgtap_drop' $$,
  'drop_queue() unregisters the queue'
);
select pgmq.create('pgtap_drop2');
set local client_min_messages = error; -- the deprecation WARNING
select is(
  pgmq.drop_queue('pgtap_drop2', false), true,
  'deprecated drop_queue(name, partitioned) still works'
);
set local client_min_messages = warning;
select ok(
  to_regclass('pgmq.q_pgtap_drop2') is null,
  'drop_queue(name, partitioned) drops the queue'
);
select lives_ok($$ select pgmq.create('pgtap_drop') $$, 'a dropped queue can be created again');

select * from finish();
rollback;
