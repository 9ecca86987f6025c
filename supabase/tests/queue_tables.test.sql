-- Conveyor's queue tables (20261207160200_lean_queue_tables.sql; tools/bench/notes.md, item 14): two
-- indexes (the primary key and the tenant index keyed by the tenant as a uuid, then vt), no
-- pgmq vt index; and conveyor.raise_hints, which took the earliest vt from the
-- vt index, takes the same minimum from the tenant index: over every tenant and the messages
-- without one (or whose tenant is not a uuid).
-- A kind of its own (l_qt, queues q_l_qt*), created and dropped with the transaction.
begin;
select plan(12);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_qt', 'q_l_qt', 'test', 'queue tables test kind', false);
select conveyor.ensure_kind_queues('l_qt');

select set_eq(
  $$ select indexname::text collate "default" from pg_indexes
     where schemaname = 'pgmq' and tablename = 'q_q_l_qt_bulk' $$,
  $$ values ('q_q_l_qt_bulk_pkey'), ('q_q_l_qt_bulk_tenant_vt_idx') $$,
  'a tier queue has the primary key and the tenant index, not pgmq''s vt index');

-- The earliest vt of a tier with nothing ready: messages held back for 300 s (tenant A), 200 s
-- (tenant B), 100 s (no tenant) and 50 s (a tenant that is not a uuid).
create temporary table m on commit drop as
select pgmq.send('q_l_qt_bulk', '{"tenant_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}', 300) as a,
       pgmq.send('q_l_qt_bulk', '{"tenant_id": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"}', 200) as b,
       pgmq.send('q_l_qt_bulk', '{"x": 1}', 100) as none,
       pgmq.send('q_l_qt_bulk', '{"tenant_id": "not-a-uuid"}', 50) as odd;
create function pg_temp.hint() returns timestamptz language plpgsql as $$
begin
  update conveyor.queue_hints set visible_from = '-infinity' where queue_name = 'q_l_qt_bulk';
  perform set_config('conveyor.empty_tiers', 'q_l_qt_bulk', true);
  perform conveyor.raise_hints();
  return (select visible_from from conveyor.queue_hints where queue_name = 'q_l_qt_bulk');
end
$$;
create function pg_temp.vt(p_msg bigint) returns timestamptz language sql as $$
  select q.vt from pgmq.q_q_l_qt_bulk q where q.msg_id = p_msg
$$;

select is(pg_temp.hint(), pg_temp.vt((select odd from m)),
  'the hint is the earliest vt: a message whose tenant is not a uuid');
select is((select count(*)::int from conveyor.q_tenants('q_l_qt_bulk', null)), 2,
  '... which the tenant list leaves out, as the fair look did');
select ok(pgmq.delete('q_l_qt_bulk', (select odd from m)), 'that message deleted');
select is(pg_temp.hint(), pg_temp.vt((select none from m)), 'then a message without a tenant');
select ok(pgmq.delete('q_l_qt_bulk', (select none from m)), 'that one deleted');
select is(pg_temp.hint(), pg_temp.vt((select b from m)), 'then the earliest tenant''s first message');
select ok(pgmq.delete('q_l_qt_bulk', (select a from m)) and pgmq.delete('q_l_qt_bulk', (select b from m)),
  'the last two deleted');
select is(pg_temp.hint(), 'infinity'::timestamptz, 'and infinity for an empty tier');

-- A rate-limited kind's fair read takes a tenant's messages with conveyor.read_queue_tenant,
-- which must walk the tenant index (with sequential scans off, a key the index does not match
-- would still scan the table). A service without buckets limits no one.
create temporary table r on commit drop as
select pgmq.send('q_l_qt', '{"tenant_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}') as a1,
       pgmq.send('q_l_qt', '{"tenant_id": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"}') as b1,
       pgmq.send('q_l_qt', '{"tenant_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}') as a2,
       pg_stat_get_xact_numscans('pgmq.q_q_l_qt_tenant_vt_idx'::regclass) as idx_scans,
       pg_stat_get_xact_numscans('pgmq.q_q_l_qt'::regclass) as seq_scans;
set local enable_seqscan = off;
select results_eq(
  $$ select msg_id from conveyor.read_queue_tenant('q_l_qt', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
                                                    30, 10, 'no_such_service', now())
     order by 1 $$,
  $$ select x from r cross join unnest(array[r.a1, r.a2]) x order by 1 $$,
  'read_queue_tenant reads that tenant''s ready messages only');
select cmp_ok(pg_stat_get_xact_numscans('pgmq.q_q_l_qt_tenant_vt_idx'::regclass), '>',
              (select idx_scans from r), '... through the tenant index');
select is(pg_stat_get_xact_numscans('pgmq.q_q_l_qt'::regclass), (select seq_scans from r),
          '... without scanning the table');
reset enable_seqscan;

select * from finish();
rollback;
