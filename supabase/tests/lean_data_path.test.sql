-- The lean data path (issue 16): what a job writes, and what it does not.
--   audit modes (lean: no enqueue/claim/success events, a retry always leaves its error event;
--   full: one event per transition), delete vs archive on success, job numbers unique across
--   tiers, tiers skipped by their hint, the rescue tick (a lost lease without any claim),
--   orphan messages, lost last attempts at claim, redrive keeping the number.
-- A kind of its own (l_lean, queues q_l_lean*), created and dropped with the transaction.
begin;
select plan(35);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_lean', 'q_l_lean', 'test', 'lean data path test kind', false);
select conveyor.ensure_kind_queues('l_lean');
update conveyor.settings set value = 'false' where key = 'push_kicks';

-- Job numbers ----------------------------------------------------------------------------
create temporary table n on commit drop as
select public.queue_job('{"idempotency_key":"ln-1","kind":"l_lean"}') as normal,
       public.queue_job('{"idempotency_key":"ln-2","kind":"l_lean","priority":"fast"}') as fast,
       public.queue_job('{"idempotency_key":"ln-3","kind":"l_lean","priority":"bulk"}') as bulk;
select is((select count(distinct x) from n, unnest(array[normal, fast, bulk]) x)::int, 3,
  'three jobs in three tiers get three different numbers');
select is((select array_agg(j.queue_name order by j.msg_id) from public.jobs j, n
           where j.msg_id in (n.normal, n.fast, n.bulk)),
  array['q_l_lean', 'q_l_lean_fast', 'q_l_lean_bulk'],
  'each number names exactly one job (jobs.msg_id), in its own tier');
select is((select msg_id from pgmq.q_q_l_lean_fast), (select fast from n),
  'the number is the job''s pgmq message id');
select is(public.queue_job('{"idempotency_key":"ln-2","kind":"l_lean","priority":"fast"}'),
  (select fast from n), 'the same request gets the same number back');
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"ln-2","kind":"l_lean","payload":{"other":1},"priority":"fast"}')$$,
  '23505',
  format('queue_job: idempotency_key ln-2 is already used by job %s with another request', (select fast from n)),
  'another request under the same key is refused, naming the job');
select is((select message from pgmq.q_q_l_lean where msg_id = (select normal from n)),
  '{"tenant_id": "00000000-0000-0000-0000-000000000000"}'::jsonb,
  'a message carries only the tenant: the ledger holds the rest');

-- Audit 'lean' (the default) -----------------------------------------------------------------
create temporary table c1 on commit drop as
select * from public.claim_jobs('l_lean', 'w-lean', 3, 30);
select is((select count(*)::int from c1), 3, 'the claim takes all three, fast first');
select is((select count(*)::int from public.job_events e join c1 on c1.job_id = e.job_id), 0,
  'lean: enqueue and claim wrote no job_events');
select is(public.complete_job((select job_id from c1 where priority = 'normal'),
                              (select lease_id from c1 where priority = 'normal'),
                              '{"ok":true}'), true, 'the normal job completes');
select is((select count(*)::int from public.job_events e
           where e.job_id = (select job_id from c1 where priority = 'normal')), 0,
  'lean: its success wrote no event either: the ledger says it');
select ok((select started_at is not null and finished_at is not null and attempts = 1
           and status = 'completed' and output = '{"ok":true}'
           from public.jobs where id = (select job_id from c1 where priority = 'normal')),
  'the ledger row has started_at, finished_at, attempts, status and output');
select is((select count(*)::int from pgmq.q_q_l_lean), 0, 'its message is deleted from the queue');
select is((select count(*)::int from pgmq.a_q_l_lean), 0, '... and not archived (archive_completed is off)');
select is(public.fail_job((select job_id from c1 where priority = 'fast'),
                          (select lease_id from c1 where priority = 'fast'), 'boom',
                          '{"max_attempts": 3}'), 'retry_scheduled', 'the fast job fails once');
select is((select array_agg(type) from public.job_events
           where job_id = (select job_id from c1 where priority = 'fast')),
  array['retry_scheduled'], 'lean: a retry always leaves its event');
select is((select payload ->> 'error' from public.job_events
           where job_id = (select job_id from c1 where priority = 'fast')), 'boom',
  '... with its error');

-- Archive instead of delete ------------------------------------------------------------------
update conveyor.settings set value = 'true' where key = 'archive_completed';
select is(public.complete_job((select job_id from c1 where priority = 'bulk'),
                              (select lease_id from c1 where priority = 'bulk')), true,
  'the bulk job completes with archive_completed on');
select is((select msg_id from pgmq.a_q_l_lean_bulk), (select bulk from n),
  'its message went to the archive');
update conveyor.settings set value = 'false' where key = 'archive_completed';

-- Audit 'full' -------------------------------------------------------------------------------
update conveyor.settings set value = '"full"' where key = 'audit';
create temporary table f on commit drop as
select public.queue_job('{"idempotency_key":"ln-full","kind":"l_lean"}') as id;
create temporary table c2 on commit drop as
select * from public.claim_jobs('l_lean', 'w-lean', 1, 30);
select ok(public.complete_job((select job_id from c2), (select lease_id from c2)), 'a full-audit job completes');
select is((select array_agg(e.type order by e.id) from public.job_events e
           where e.job_id = (select job_id from c2)),
  array['enqueued', 'claimed', 'completed'], 'full: one event per transition');
update conveyor.settings set value = '"lean"' where key = 'audit';

-- Tiers known to be empty are not read ---------------------------------------------------------
select is((select count(*)::int from public.claim_jobs('l_lean', 'w-lean', 1, 30)), 0,
  'nothing to claim');
select is((select visible_from from conveyor.queue_hints where queue_name = 'q_l_lean_bulk'),
  'infinity'::timestamptz, 'the claim that found the bulk tier empty marked it so');
create temporary table scans0 on commit drop as
select coalesce(sum(s.seq_scan + coalesce(s.idx_scan, 0)), 0) as n
from pg_stat_xact_user_tables s where s.schemaname = 'pgmq' and s.relname = 'q_q_l_lean_bulk';
select is((select count(*)::int from public.claim_jobs('l_lean', 'w-lean', 1, 30)), 0,
  'still nothing to claim');
select is((select coalesce(sum(s.seq_scan + coalesce(s.idx_scan, 0)), 0) from pg_stat_xact_user_tables s
           where s.schemaname = 'pgmq' and s.relname = 'q_q_l_lean_bulk'), (select n from scans0),
  'the empty bulk tier was skipped without a read');
select isnt(public.queue_job('{"idempotency_key":"ln-bulk-2","kind":"l_lean","priority":"bulk"}'), null,
  'a bulk job is enqueued');
create temporary table c_bulk on commit drop as
select * from public.claim_jobs('l_lean', 'w-lean', 1, 30);
select is((select count(*)::int from c_bulk), 1,
  'the enqueue lowered the hint: the next claim reads the tier and takes it');
select ok(public.complete_job((select job_id from c_bulk), (select lease_id from c_bulk)), 'and completes it');

-- Orphan messages ------------------------------------------------------------------------------
select pgmq.send('q_l_lean', '{"not":"a job"}');
update conveyor.queue_hints set visible_from = '-infinity' where queue_name = 'q_l_lean';
select is((select count(*)::int from public.claim_jobs('l_lean', 'w-lean', 5, 30)), 0,
  'an orphan message (no job has its number) is not claimed');
select is((select count(*)::int from pgmq.q_q_l_lean), 0, 'it left the queue ...');
select is((select count(*)::int from pgmq.q_q_dlq where message ->> 'queue' = 'q_l_lean'
             and message ->> 'reason' like 'orphan message: no job numbered % in the ledger (queue q_l_lean)'), 1,
  '... for the DLQ, with the reason');

-- The rescue tick ------------------------------------------------------------------------------
select pg_sleep(1.1);  -- the failed fast job's backoff (1 s)
create temporary table c3 on commit drop as
select * from public.claim_jobs('l_lean', 'w-lost', 1, 30);  -- the failed fast job, attempt 2
select is((select attempt from c3), 2, 'the failed job is claimed again after its backoff');
select pgmq.send('q_l_lean', '{"not":"a job either"}');
select is(conveyor.queue_ready_count('l_lean'), 0, 'an orphan does not count as ready work: it wakes no worker');
select is(conveyor.rescue_lost_jobs(clock_timestamp() + interval '5 minutes'),
  '{"lost": 1, "orphans": 1, "dead_lettered": 0}'::jsonb,
  'the tick, no claim running, finds the lease that expired without a settle, and the orphan');
select ok((select status = 'pending' and lease_id is null and last_error like 'lease expired%'
           from public.jobs where id = (select job_id from c3)),
  'the lost job is pending again, the loss recorded');
select is((select array_agg(type order by id) from public.job_events where job_id = (select job_id from c3)),
  array['retry_scheduled', 'lease_expired'], 'with a lease_expired event');

select * from finish();
rollback;
