-- Recovering from faults in SQL (issue 17): a dispatch slot follows its worker's heartbeat;
-- a rate-limited kind settles before it claims, so its freed slots count, and says when it
-- held work back; dedupe and idempotency refusals say what happened; both enqueue RPCs
-- refuse a negative delay; a redrive keeps the job's number and a later success clears the
-- last error. A kind of its own (l_rec, rate-limited service 'l_rec_svc'), dropped with the
-- transaction.
begin;
select plan(24);

insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description, enabled)
values ('l_rec', 'q_l_rec', 'l_rec_svc', 'test', 'recovery test kind', false);
select conveyor.ensure_kind_queues('l_rec');
update conveyor.settings set value = 'false' where key = 'push_kicks';
insert into public.rate_limiters (tenant_id, service_name, tokens_available, max_concurrent,
                                  capacity, refill_per_sec)
values (conveyor.default_tenant_id(), 'l_rec_svc', 3, 2, 3, 0);
select count(*) from public.queue_jobs(
  '[{"idempotency_key":"r1","kind":"l_rec"},{"idempotency_key":"r2","kind":"l_rec"},
    {"idempotency_key":"r3","kind":"l_rec"},{"idempotency_key":"r4","kind":"l_rec"}]');

-- A slot that follows the heartbeat -----------------------------------------------------------
insert into conveyor.worker_invocations (id, source, target, status, reason, created_at, expires_at)
values ('00000000-0000-0000-0000-00000000000a', 'queue', 'l_rec', 'triggered', 'test', now(),
        now() + interval '30 seconds');
select ok(public.start_invocation('00000000-0000-0000-0000-00000000000a', 'w-rec'), 'the invocation starts');
select ok((select expires_at between clock_timestamp() + interval '14 seconds'
                                 and clock_timestamp() + interval '15 seconds'
           from conveyor.worker_invocations where id = '00000000-0000-0000-0000-00000000000a'),
  'a running queue worker holds its slot for invocation_lease_sec (15 s), not 300 s');

-- Rate-limited: 2 slots, 3 tokens --------------------------------------------------------------
create temporary table r on commit drop as
select public.settle_and_claim_jobs('w-rec', '[]', 'l_rec', 10, 30, '{}', null,
                                    '00000000-0000-0000-0000-00000000000a') as v;
select is((select jsonb_array_length(v -> 'claimed') from r), 2, 'the claim gets the two slots');
select is((select (v ->> 'throttled')::boolean from r), true,
  'and says it held visible jobs back (throttled), so the worker comes back instead of stopping');
select is((select count(*)::int from conveyor.service_leases where service_name = 'l_rec_svc'), 2,
  'two live service leases');
create temporary table r2 on commit drop as
select public.settle_and_claim_jobs('w-rec',
  (select jsonb_agg(jsonb_build_object('job_id', c ->> 'job_id', 'lease_id', c ->> 'lease_id',
                                       'status', 'completed'))
   from r, jsonb_array_elements(r.v -> 'claimed') c),
  'l_rec', 10, 30, '{}', null, '00000000-0000-0000-0000-00000000000a') as v;
select is((select jsonb_array_length(v -> 'settled') from r2), 2, 'the two are settled ...');
select is((select jsonb_array_length(v -> 'claimed') from r2), 1,
  '... first: their slots are free for the claim, which takes the one job the last token allows');
select is((select (v ->> 'throttled')::boolean from r2), true, 'the fourth waits for a token');
select is((select count(*)::int from conveyor.service_leases where service_name = 'l_rec_svc'), 1,
  'one live service lease');

-- The slot lapses without heartbeats -----------------------------------------------------------
create temporary table r3 on commit drop as
select public.settle_and_claim_jobs('w-rec', '[]', 'l_rec', 10, 30, '{}',
                                    clock_timestamp() + interval '16 seconds',
                                    '00000000-0000-0000-0000-00000000000a') as v;
select is((select (v ->> 'invocation_lost')::boolean from r3), true,
  '16 s without a heartbeat: the invocation has lost its slot');
select is((select jsonb_array_length(v -> 'claimed') from r3), 0, '... and claims nothing');
select is((select count(*)::int from conveyor.worker_invocations
           where target = 'l_rec' and status <> 'finished' and expires_at > clock_timestamp() + interval '16 seconds'),
  0, 'the dispatcher counts no slot for it then');

-- Dedupe and idempotency refusals ---------------------------------------------------------------
select isnt(public.fn_pgqueuer_enqueue('fetch', null, 0, '0', 'rec-dedupe'), null, 'a dedupe key is taken');
select throws_ok(
  $$select public.fn_pgqueuer_enqueue('fetch', null, 0, '0', 'rec-dedupe')$$,
  '23505', 'fn_pgqueuer_enqueue: dedupe_key rec-dedupe is already queued or running',
  'a second live job with it gets the documented refusal (never the constraint''s own text)');
select throws_ok(
  $$select public.queue_jobs('[{"idempotency_key":"r1","kind":"l_rec","payload":{"x":1}}]')$$,
  '23505', format('queue_job: idempotency_key r1 is already used by job %s with another request',
                  (select msg_id from public.jobs where idempotency_key = 'r1')),
  'a batch element reusing a key with another request is refused as queue_job refuses it');
select throws_ok(
  $$select public.fn_pgqueuer_enqueue('fetch', null, 0, '-5 seconds')$$,
  'P0001', 'fn_pgqueuer_enqueue: execute_after must not be negative (got -00:00:05)',
  'fn_pgqueuer_enqueue refuses a negative execute_after');
select throws_ok(
  $$select public.queue_job('{"idempotency_key":"rec-neg","kind":"l_rec","execute_after":"-5 seconds"}')$$,
  'P0001', 'queue_job: execute_after must not be a negative interval',
  'queue_job refuses a negative interval too');
select isnt(public.queue_job('{"idempotency_key":"rec-past","kind":"l_rec","execute_after":"2020-01-01T00:00:00Z"}'),
  null, 'a timestamp in the past means now');

-- Redrive keeps the number; success clears the last error -----------------------------------------
create temporary table d on commit drop as
select c ->> 'job_id' as job_id, c ->> 'lease_id' as lease_id, (c ->> 'msg_id')::bigint as msg_id
from r2, jsonb_array_elements(r2.v -> 'claimed') c;
select is((select s.outcome from public.settle_jobs('w-rec', (select jsonb_agg(jsonb_build_object(
    'job_id', job_id, 'lease_id', lease_id, 'status', 'cancelled',
    'error', jsonb_build_object('message', 'bad input'))) from d)) s),
  'dead_lettered', 'a cancelled job is dead-lettered');
select is((select last_error from public.jobs where id = (select job_id::uuid from d)),
  'cancelled: bad input', 'with its last error');
select is(public.redrive_dead_job((select job_id::uuid from d)), (select msg_id from d),
  'a redrive returns the job''s own number: it keeps it for life');
update public.rate_limiters set tokens_available = 3 where service_name = 'l_rec_svc';
create temporary table again on commit drop as
select c.* from public.claim_jobs('l_rec', 'w-rec', 10, 30) c where c.job_id = (select job_id::uuid from d);
select is((select msg_id from again), (select msg_id from d), 'it runs again under that number');
select ok(public.complete_job((select job_id from again), (select lease_id from again)), 'and completes');
select ok((select last_error is null and jsonb_array_length(errors) = 1 and errors -> 0 ->> 'message' = 'bad input'
           from public.jobs where id = (select job_id from again)),
  'a success clears the last error; the errors history keeps it');

select * from finish();
rollback;
