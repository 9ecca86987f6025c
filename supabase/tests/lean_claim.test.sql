-- The generated read and tenant list keep one generic plan per session
-- (20261207140100_lean_claim.sql), and that plan reads by the index and takes only its batch
-- whatever the statistics said when it was made: first with the queue analysed empty (the
-- planner then prefers a sequential scan and a sort, and an UPDATE joined by a scan of the
-- whole table), then analysed with hundreds of messages. Scans are counted from this
-- transaction's own statistics (pg_stat_xact_user_tables, pg_stat_get_xact_tuples_returned).
-- A kind of its own (l_lean, queues q_l_lean*), created and dropped with the transaction.
begin;
select plan(16);

select is((select proconfig from pg_proc where oid = 'conveyor.q_read(text, int, int)'::regprocedure),
  array['search_path=""', 'plan_cache_mode=force_generic_plan', 'enable_seqscan=off',
        'enable_sort=off'],
  'q_read keeps one generic plan, and only the index plan is not disabled');
select is((select proconfig from pg_proc where oid = 'conveyor.q_tenants(text, int)'::regprocedure),
  array['search_path=""', 'plan_cache_mode=force_generic_plan', 'enable_seqscan=off',
        'enable_sort=off'],
  'q_tenants too');

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_lean', 'q_l_lean', 'test', 'generic read plan test kind', false);
select conveyor.ensure_kind_queues('l_lean');
update conveyor.settings set value = 'false' where key = 'push_kicks';

create temp table scans (i serial, n int, seq bigint, idx bigint);
create function pg_temp.scans() returns table (seq bigint, idx bigint) language sql as $$
  select (select t.seq_scan from pg_stat_xact_user_tables t
          where t.relid = 'pgmq.q_q_l_lean'::regclass),
         pg_stat_get_xact_tuples_returned('pgmq.q_q_l_lean_pkey'::regclass)
$$;
create function pg_temp.read(p_qty int) returns int language plpgsql as $$
declare
  v_before record;
  v_n int;
begin
  select * into v_before from pg_temp.scans();
  select count(*) into v_n from conveyor.q_read('q_l_lean', 30, p_qty);
  insert into scans (n, seq, idx) select v_n, s.seq - v_before.seq, s.idx - v_before.idx from pg_temp.scans() s;
  return v_n;
end
$$;

-- Analysed empty (as autovacuum leaves a drained queue), read while empty: the generic plan
-- is made now and kept.
analyze pgmq.q_q_l_lean;
select is((select reltuples from pg_class where oid = 'pgmq.q_q_l_lean'::regclass), 0::real,
  'the queue table was analysed empty');
select is(pg_temp.read(5), 0, 'a read of the empty queue');
select is((select count(*)::int from public.queue_jobs(
  (select jsonb_agg(jsonb_build_object('idempotency_key', 'lean-' || i, 'kind', 'l_lean'))
   from generate_series(1, 300) i))), 300, 'three hundred jobs enqueued in one call');

select is(pg_temp.read(5), 5, 'the plan made on the empty queue reads the five it asks for');
select is((select seq from scans where i = 2), 0::bigint, '... without a sequential scan');
select cmp_ok((select idx from scans where i = 2), '<=', 10::bigint,
  '... reading at most its batch twice from the primary key (the batch, then the update)');
select is((select count(*)::int from pgmq.q_q_l_lean where vt > clock_timestamp()), 5,
  '... and hides only those five');

-- Analysed with 300 messages: the plan is made again, from these statistics.
analyze pgmq.q_q_l_lean;
select is(pg_temp.read(7), 7, 'after analyze, a read of seven takes seven');
select is((select seq from scans where i = 3), 0::bigint, '... without a sequential scan');
select cmp_ok((select idx from scans where i = 3), '<=', 24::bigint,
  '... passing over the five in flight (two index entries each: the read moved them), then its batch twice');
select is((select count(*)::int from pgmq.q_q_l_lean where vt > clock_timestamp()), 12,
  '... and twelve are in flight in all');

-- The tenant list walks the tenant index: one tenant here, found without a sequential scan.
select is((select sum(seq) from scans)::bigint, 0::bigint, 'no read scanned the queue sequentially');
create temp table seq0 as
  select t.seq_scan from pg_stat_xact_user_tables t where t.relid = 'pgmq.q_q_l_lean'::regclass;
select is((select array_agg(t.tenant_key) from conveyor.q_tenants('q_l_lean', 10) t),
  array[conveyor.default_tenant_id()::text], 'q_tenants lists the one tenant with messages');
select is((select t.seq_scan from pg_stat_xact_user_tables t
           where t.relid = 'pgmq.q_q_l_lean'::regclass), (select seq_scan from seq0),
  '... by the tenant index');

select * from finish();
rollback;
