-- queue_job in one function (20261207140300_lean_enqueue.sql): it reads every setting it
-- needs in one statement, so each is pinned here as still honoured (payload_max_bytes,
-- max_delay_sec, critical_max_attempts, audit, push_kicks, kick_debounce_ms), with the
-- per-minute count written by an UPDATE after the first job and the queue hint lowered.
-- A kind of its own (l_enq, queues q_l_enq*), created and dropped with the transaction.
begin;
select plan(19);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_enq', 'q_l_enq', 'test', 'lean enqueue test kind', false);
select conveyor.ensure_kind_queues('l_enq');
update conveyor.settings set value = 'false' where key = 'push_kicks';
update conveyor.settings set value = '"lean"' where key = 'audit';

-- payload_max_bytes and max_delay_sec ------------------------------------------------------
update conveyor.settings set value = '100' where key = 'payload_max_bytes';
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"le-big","kind":"l_enq","payload":{"s":"0123456789012345678901234567890123456789012345678901234567890123456789"}}')$$,
  'P0001',
  format('queue_job: payload too large (%s bytes, the limit is 100 bytes)', octet_length(
    '{"idempotency_key":"le-big","kind":"l_enq","payload":{"s":"0123456789012345678901234567890123456789012345678901234567890123456789"}}'::jsonb::text)),
  'payload_max_bytes is the limit');
update conveyor.settings set value = '262144' where key = 'payload_max_bytes';
update conveyor.settings set value = '60' where key = 'max_delay_sec';
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"le-late","kind":"l_enq","delay_seconds":61}')$$,
  'P0001', 'queue_job: delay_seconds must be a whole number between 0 and 60',
  'max_delay_sec bounds delay_seconds');
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"le-late","kind":"l_enq","execute_after":"2 minutes"}')$$,
  'P0001', 'queue_job: execute_after is more than 60 seconds away',
  'max_delay_sec bounds execute_after');
select isnt(public.queue_job('{"idempotency_key":"le-60","kind":"l_enq","delay_seconds":60}'), null,
  'a delay of exactly max_delay_sec is accepted');
update conveyor.settings set value = '2592000' where key = 'max_delay_sec';

-- critical_max_attempts --------------------------------------------------------------------
update conveyor.settings set value = '7' where key = 'critical_max_attempts';
create temporary table c on commit drop as
select public.queue_job('{"idempotency_key":"le-crit","kind":"l_enq","critical":true}') as msg_id;
select is((select max_attempts from public.jobs where msg_id = (select msg_id from c)), 7,
  'a critical job gets critical_max_attempts');
select is((select k.max_attempts from public.critical_jobs k join public.jobs j on j.id = k.job_id
           where j.msg_id = (select msg_id from c)), 7, '... and its critical_jobs row');
select is((select count(*)::int from public.idempotency_keys where key = 'le-crit'), 1,
  '... and its idempotency_keys row');
select is((select max_attempts from public.jobs j
           where j.msg_id = public.queue_job('{"idempotency_key":"le-plain","kind":"l_enq"}')), null,
  'a job that is not critical has no max_attempts of its own');
select is(public.queue_job('{"idempotency_key":"le-crit","kind":"l_enq","critical":true}'),
  (select msg_id from c), 'the same critical request again returns the same job');
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"le-crit","kind":"l_enq"}')$$,
  '23505', format('queue_job: idempotency_key le-crit is already used by job %s with another request',
                  (select msg_id from c)),
  'the key with another request (not critical) is refused');
update conveyor.settings set value = '5' where key = 'critical_max_attempts';

-- audit --------------------------------------------------------------------------------------
select is((select count(*)::int from public.job_events e join public.jobs j on j.id = e.job_id
           where j.kind = 'l_enq' and e.type = 'enqueued'), 0, 'audit lean: no enqueued events');
update conveyor.settings set value = '"full"' where key = 'audit';
create temporary table f on commit drop as
select public.queue_job('{"idempotency_key":"le-full","kind":"l_enq","priority":"fast"}') as msg_id;
select is((select e.payload - 'run_at' from public.job_events e join public.jobs j on j.id = e.job_id
           where j.msg_id = (select msg_id from f) and e.type = 'enqueued'),
  jsonb_build_object('msg_id', (select msg_id from f), 'queue', 'q_l_enq_fast', 'priority', 'fast',
                     'source', 'queue_job', 'critical', false),
  'audit full: one enqueued event with its queue, priority, source');
update conveyor.settings set value = '"lean"' where key = 'audit';

-- Counts and hints ---------------------------------------------------------------------------
select is((select sum(enqueued)::int from conveyor.job_counts
           where queue_name = 'q_l_enq' and minute = date_trunc('minute', now())
             and backend = pg_backend_pid()), 3,
  'the normal queue''s three jobs of the minute are counted in one row');
update conveyor.queue_hints set visible_from = 'infinity' where queue_name = 'q_l_enq_bulk';
select public.queue_job('{"idempotency_key":"le-bulk","kind":"l_enq","priority":"bulk"}');
select is((select visible_from from conveyor.queue_hints where queue_name = 'q_l_enq_bulk'), now(),
  'a job due now lowers its tier''s hint to its time');

-- push_kicks and kick_debounce_ms ------------------------------------------------------------
select is((select count(*)::int from conveyor.dispatch_kicks where target = 'queue:l_enq'), 0,
  'push_kicks off: no kick');
update conveyor.settings set value = 'true' where key = 'push_kicks';
update conveyor.settings set value = '600000' where key = 'kick_debounce_ms';
select public.queue_job('{"idempotency_key":"le-k1","kind":"l_enq"}');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:l_enq'), 1::bigint,
  'push_kicks on: a job due now kicks the dispatcher');
select public.queue_job('{"idempotency_key":"le-k2","kind":"l_enq"}');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:l_enq'), 1::bigint,
  'a second job within kick_debounce_ms does not');
update conveyor.settings set value = '0' where key = 'kick_debounce_ms';
select public.queue_job('{"idempotency_key":"le-k3","kind":"l_enq","delay_seconds":30}');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:l_enq'), 1::bigint,
  'a delayed job does not kick');
select public.queue_job('{"idempotency_key":"le-k4","kind":"l_enq"}');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:l_enq'), 2::bigint,
  'with kick_debounce_ms 0 the next due job kicks again');
update conveyor.settings set value = '250' where key = 'kick_debounce_ms';

select * from finish();
rollback;
