-- A claim reads at most the batch it asks for, whatever plan the read gets
-- (20261207120200_q_read_once.sql). The plan that broke it: the queue table was last
-- analysed empty (reltuples 0: autovacuum after a drain), so the planner expects one row
-- and, in the generic plan PL/pgSQL keeps for a session, ran the LIMIT … SKIP LOCKED batch
-- once per row of the table, claiming every visible message (600 of a batch enqueue in one
-- claim of 10, seen in the full suite). A kind of its own (l_once, queues q_l_once*),
-- created and dropped with the transaction.
begin;
select plan(7);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_once', 'q_l_once', 'test', 'q_read plan test kind', false);
select conveyor.ensure_kind_queues('l_once');
update conveyor.settings set value = 'false' where key = 'push_kicks';

-- The table as autovacuum leaves a drained queue (analysed empty: reltuples 0, no pages),
-- and a session that reads it while it is empty: PL/pgSQL plans the read then and keeps the
-- plan (a PostgREST connection lives for hours). Then a batch enqueue arrives.
analyze pgmq.q_q_l_once;
select is((select reltuples from pg_class where oid = 'pgmq.q_q_l_once'::regclass), 0::real,
  'the queue table was analysed empty');
set local plan_cache_mode = force_generic_plan;
select is((select count(*)::int from conveyor.q_read('q_l_once', 30, 5)), 0,
  'a read of the empty queue (its plan is kept for this session)');
select is((select count(*)::int from public.queue_jobs(
  (select jsonb_agg(jsonb_build_object('idempotency_key', 'once-' || i, 'kind', 'l_once'))
   from generate_series(1, 60) i))), 60, 'sixty jobs enqueued in one call');

select is((select count(*)::int from conveyor.q_read('q_l_once', 30, 5)), 5,
  'the same read now returns the five it asks for');
select is((select count(*)::int from pgmq.q_q_l_once where vt > clock_timestamp()), 5,
  '... and hides only those five: the other 55 stay ready for other workers');
select is((select count(*)::int from public.claim_jobs('l_once', 'w-once', 10, 30)), 10,
  'a claim of ten takes ten');
select is(conveyor.queue_ready_count('l_once'), 45,
  '... and the dispatcher still sees the 45 others as ready');

select * from finish();
rollback;
