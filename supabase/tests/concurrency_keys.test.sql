-- Concurrency keys (issue 21, docs/fairness.md): queue_job's concurrency_key and
-- concurrency_limit, validated with their own texts and nothing written on bad input; at most
-- the key's limit of jobs run at once, the others parked (invisible, not blocking other keys
-- or unkeyed jobs) and woken when a slot frees: at settle, retry, release, lease loss found by
-- the rescue tick, or by a claim that finds nothing to do. The limit: an operator override
-- over the job's own over the kind's default. Racing claims across sessions:
-- tests/concurrency_keys_test.ts. A kind of its own (k_keys), dropped with the transaction.
begin;
select plan(57);

update conveyor.settings set value = 'false' where key = 'push_kicks';
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('k_keys', 'q_k_keys', 'test', 'concurrency key test kind', false);
select conveyor.ensure_kind_queues('k_keys');

create function pg_temp.job(p_key text, p_extra jsonb default '{}') returns bigint
language sql as $$
  select public.queue_job(jsonb_build_object('idempotency_key', p_key, 'kind', 'k_keys') || p_extra)
$$;
create function pg_temp.claim(p_qty int, p_vt int default 60) returns text language sql as $$
  select coalesce(string_agg(j.idempotency_key, ' ' order by c.msg_id), '')
  from public.claim_jobs('k_keys', 'w-keys', p_qty, p_vt) c join public.jobs j on j.id = c.job_id
$$;
create function pg_temp.lease(p_idem text) returns jsonb language sql as $$
  select jsonb_build_object('job_id', id, 'lease_id', lease_id) from public.jobs
  where kind = 'k_keys' and idempotency_key = p_idem
$$;
create function pg_temp.parked(p_key text default null) returns text language sql as $$
  select coalesce(string_agg(j.idempotency_key, ' ' order by w.msg_id), '')
  from conveyor.key_waiters w join public.jobs j on j.msg_id = w.msg_id
  where w.kind = 'k_keys' and (p_key is null or w.concurrency_key = p_key)
$$;
create function pg_temp.running(p_key text) returns int language sql as $$
  select count(*)::int from conveyor.key_leases
  where kind = 'k_keys' and concurrency_key = p_key and expires_at > clock_timestamp()
$$;

-- Bad input: a clear 400 (P0001) and nothing written -----------------------------------------
create temporary table before_ on commit drop as
select (select count(*) from public.jobs) as jobs, (select count(*) from pgmq.q_q_k_keys) as msgs;
select throws_ok($$select pg_temp.job('bad-1', '{"concurrency_key": 42}')$$,
  'P0001', 'queue_job: concurrency_key must be a non-empty string', 'a concurrency_key that is not a string');
select throws_ok($$select pg_temp.job('bad-2', '{"concurrency_key": "  "}')$$,
  'P0001', 'queue_job: concurrency_key must be a non-empty string', 'a blank concurrency_key');
select throws_ok(format($$select pg_temp.job('bad-3', '{"concurrency_key": "%s"}')$$, repeat('k', 256)),
  'P0001', 'queue_job: concurrency_key is longer than 255 characters', 'a concurrency_key of 256 characters');
select throws_ok($$select pg_temp.job('bad-4', '{"concurrency_key": "u", "concurrency_limit": 0}')$$,
  'P0001', 'queue_job: concurrency_limit must be a whole number between 1 and 1000', 'a limit of 0');
select throws_ok($$select pg_temp.job('bad-5', '{"concurrency_key": "u", "concurrency_limit": -2}')$$,
  'P0001', 'queue_job: concurrency_limit must be a whole number between 1 and 1000', 'a negative limit');
select throws_ok($$select pg_temp.job('bad-6', '{"concurrency_key": "u", "concurrency_limit": 1.5}')$$,
  'P0001', 'queue_job: concurrency_limit must be a whole number between 1 and 1000', 'a fractional limit');
select throws_ok($$select pg_temp.job('bad-7', '{"concurrency_key": "u", "concurrency_limit": "2"}')$$,
  'P0001', 'queue_job: concurrency_limit must be a whole number between 1 and 1000', 'a limit given as a string');
select throws_ok($$select pg_temp.job('bad-8', '{"concurrency_limit": 2}')$$,
  'P0001', 'queue_job: concurrency_limit needs a concurrency_key', 'a limit without a key');
select throws_ok($$select pg_temp.job('bad-9', '{"concurrency_key": "u", "tenant_id": "dddddddd-dddd-4ddd-8ddd-dddddddddddd"}')$$,
  'P0001', 'queue_job: unknown tenant dddddddd-dddd-4ddd-8ddd-dddddddddddd', 'a keyed job for an unknown tenant');
select throws_like($$select count(*) from public.queue_jobs('[{"idempotency_key":"bad-10","kind":"k_keys","concurrency_key":"u"},{"idempotency_key":"bad-11","kind":"k_keys","concurrency_key":"u","concurrency_limit":1001}]')$$,
  'queue_job: concurrency_limit must be a whole number between 1 and 1000',
  'queue_jobs refuses the array with the element''s text');
select is((select array[(select count(*) from public.jobs), (select count(*) from pgmq.q_q_k_keys)] from before_ b),
  (select array[b.jobs, b.msgs] from before_ b), 'nothing was written by any of them');

-- What a keyed job carries ---------------------------------------------------------------------
select isnt(pg_temp.job('u1-a', '{"concurrency_key": "user:1"}'), null, 'a job with key user:1');
select is((select message from pgmq.q_q_k_keys where msg_id = (select msg_id from public.jobs where idempotency_key = 'u1-a')),
  '{"tenant_id": "00000000-0000-0000-0000-000000000000", "concurrency_key": "user:1"}'::jsonb,
  'its message carries the tenant and the key (no limit given: none)');
select is((select array[concurrency_key, coalesce(concurrency_limit::text, 'null')] from public.jobs where idempotency_key = 'u1-a'),
  array['user:1', 'null'], 'the ledger keeps the key');
select throws_ok($$select pg_temp.job('u1-a', '{"concurrency_key": "user:2"}')$$,
  '23505', format('queue_job: idempotency_key u1-a is already used by job %s with another request',
                  (select msg_id from public.jobs where idempotency_key = 'u1-a')),
  'the same idempotency key with another concurrency key is another request');
select is(pg_temp.job('u1-a', '{"concurrency_key": "user:1"}'),
  (select msg_id from public.jobs where idempotency_key = 'u1-a'), 'with the same key: the same job back');

-- The kind's default limit (1) ------------------------------------------------------------------
select is((select count(pg_temp.job(k, '{"concurrency_key": "user:1"}'))::int from unnest(array['u1-b', 'u1-c']) k)
          + (select count(pg_temp.job(k))::int from unnest(array['free-a', 'free-b']) k), 4,
  'two more jobs of user:1, then two without a key');
select is(pg_temp.claim(10), 'u1-a free-a free-b',
  'a claim of 10 takes one job of user:1 (the kind''s default limit, 1) and the unkeyed ones');
select is(pg_temp.parked(), 'u1-b u1-c', 'the other two are parked');
select is((select count(*)::int from pgmq.q_q_k_keys q join public.jobs j on j.msg_id = q.msg_id
           where j.idempotency_key in ('u1-b', 'u1-c') and q.vt > clock_timestamp()), 2,
  '... invisible: they are not read again');
select is(pg_temp.running('user:1'), 1, 'user:1 has one lease');
select is((select array[running::text, max_running::text, waiting::text, at_limit::text]
           from public.operator_concurrency_keys(100) where kind = 'k_keys' and concurrency_key = 'user:1'),
  array['1', '1', '2', 'true'], 'operator_concurrency_keys: user:1 runs 1 of 1, 2 parked, at its limit');
select isnt(pg_temp.job('free-c'), null, 'a job without a key enqueued after them');
select is(pg_temp.claim(10), 'free-c', 'is claimed: the parked jobs hold up nobody');

-- A slot frees at settle, and the oldest parked job is woken ------------------------------------
select is((select accepted from public.settle_jobs('w-keys',
             jsonb_build_array(pg_temp.lease('u1-a') || '{"status":"completed"}'))), true,
  'u1-a completes');
select is(pg_temp.parked(), 'u1-c', 'its settle woke u1-b');
select is(pg_temp.claim(10), 'u1-b', 'the next claim takes it');

-- settle_and_claim_jobs: the woken job is claimed in the same call ------------------------------
select is((select jsonb_agg(j.idempotency_key)
           from jsonb_array_elements(public.settle_and_claim_jobs('w-keys',
                  jsonb_build_array(pg_temp.lease('u1-b') || '{"status":"completed"}'), 'k_keys', 5, 60) -> 'claimed') c
           join public.jobs j on j.id = (c ->> 'job_id')::uuid),
  '["u1-c"]'::jsonb, 'settling u1-b wakes u1-c and the same call claims it');

-- A retry gives the slot back too ---------------------------------------------------------------
select is(pg_temp.job('u1-d', '{"concurrency_key": "user:1"}') is not null
          and pg_temp.claim(5) = '', true, 'u1-d waits behind u1-c');
select is(public.fail_job((pg_temp.lease('u1-c') ->> 'job_id')::uuid, (pg_temp.lease('u1-c') ->> 'lease_id')::uuid,
                          'boom', '{"max_attempts": 3, "backoff_base_ms": 60000}'),
  'retry_scheduled', 'u1-c fails (retried in a minute)');
select is(pg_temp.claim(5), 'u1-d', 'its slot went to u1-d');

-- The job's own limit, and the operator's override -------------------------------------------------
select is((select count(pg_temp.job(k, '{"concurrency_key": "acct:7", "concurrency_limit": 2}'))::int
           from unnest(array['a7-a', 'a7-b', 'a7-c', 'a7-d']) k), 4, 'four jobs of acct:7 asking for a limit of 2');
select is(pg_temp.claim(10), 'a7-a a7-b', 'two run');
select is(public.operator_set_concurrency_limit('k_keys', 3, 'acct:7') ->> 'woken', '1',
  'an override of 3 for acct:7 wakes one parked job at once');
select is(pg_temp.claim(10), 'a7-c', 'and a third runs');
select is(pg_temp.running('acct:7'), 3, 'acct:7: three leases');
select throws_ok($$select public.operator_set_concurrency_limit('k_keys', 0, 'acct:7')$$,
  'P0001', 'operator_set_concurrency_limit: limit must be between 1 and 1000', 'an override of 0 is refused');
select throws_ok($$select public.operator_set_concurrency_limit('k_nope', 2)$$,
  'P0002', 'operator_set_concurrency_limit: no job kind named k_nope', 'an unknown kind is refused');
select is(public.operator_set_concurrency_limit('k_keys', 4) ->> 'limit', '4', 'the kind''s default can be set');
select is((select concurrency_key_limit from conveyor.job_kinds where kind = 'k_keys'), 4, '... in job_kinds');

-- Lease expiry: a killed worker's key comes back with its lease ---------------------------------
select isnt(pg_temp.job('u9-a', '{"concurrency_key": "user:9", "concurrency_limit": 1}'), null, 'a job of user:9 ...');
select is(pg_temp.claim(1, 1), 'u9-a', '... claimed with a 1 s lease by a worker that is then killed');
select isnt(pg_temp.job('u9-b', '{"concurrency_key": "user:9", "concurrency_limit": 1}'), null, 'another job of user:9');
select is(pg_temp.claim(5), '', 'is parked while the lease lives');
select pg_sleep(1.1);
select is(pg_temp.claim(5, 1), 'u9-a',
  'once the lease has expired the parked job became visible: the lost job (first in line) runs again, still one at a time');
select is(pg_temp.parked('user:9'), 'u9-b', 'u9-b was parked again: user:9 is busy');
select pg_sleep(1.1);
select is((conveyor.rescue_lost_jobs() ->> 'lost')::int >= 1, true,
  'the worker running u9-a is killed too: the rescue tick finds its expired lease');
select is((select status from public.jobs where idempotency_key = 'u9-a'), 'pending', 'u9-a is pending again');
select is(array[pg_temp.running('user:9')::text, pg_temp.parked('user:9')], array['0', ''],
  'its key lease is gone and u9-b was woken');

-- A worker whose dispatch slot lapsed claims nothing, keyed or not -----------------------------------
insert into conveyor.worker_invocations (id, source, target, status, reason, created_at, started_at, expires_at)
values ('00000000-0000-4000-8000-0000000000c1', 'queue', 'k_keys', 'running', 'manual',
        now() - interval '1 minute', now() - interval '1 minute', now() - interval '1 second');
select is((public.settle_and_claim_jobs('w-dead', '[]', 'k_keys', 5, 60,
           p_invocation => '00000000-0000-4000-8000-0000000000c1') -> 'claimed'), '[]'::jsonb,
  'a lapsed invocation claims nothing');

-- A wake lost in a race is made up by a claim that finds nothing to do ----------------------------
select is(pg_temp.claim(5), 'u9-a', 'u9-a runs (the only one of user:9 allowed) ...');
select is(pg_temp.parked('user:9'), 'u9-b', '... u9-b is parked');
delete from conveyor.key_leases where msg_id = (select msg_id from public.jobs where idempotency_key = 'u9-a');
select is(pg_temp.claim(5), '', 'with u9-a''s lease gone without a wake, an empty claim ...');
select is(pg_temp.parked('user:9'), '', '... wakes u9-b');
select is(pg_temp.claim(5), 'u9-b', 'which the next claim takes');

-- A heartbeat moves the key's lease with the job's ------------------------------------------------
select is((select count(*)::int from public.extend_jobs('w-keys', jsonb_build_array(pg_temp.lease('u9-b')), 600)), 1,
  'extend_jobs pushes u9-b''s lease to 10 minutes');
select ok((select l.expires_at = j.locked_until from conveyor.key_leases l join public.jobs j on j.msg_id = l.msg_id
           where j.idempotency_key = 'u9-b'), '... and its key lease with it');

select * from finish();
rollback;
