-- The kick debounce's lock handshake (20261207170100_kick_recheck_handshake.sql): a kick
-- suppressed inside another's window holds that window's shared kick lock to its commit (so
-- public.close_kick_window, the window's recheck, waits for it); a winning kick takes no lock;
-- close_kick_window resets the window it closes if it is the newest, so the next kick wins;
-- bad input is refused with nothing written; only service_role may call it. The dead-letter
-- target 'dlq' (20261207230100_dlq_kick_recheck.sql): its kick's dlq-worker call carries the
-- window, which close_kick_window('dlq', n) closes. One session, so the locks are read from
-- pg_locks (the cross-session waits are tests/kick_recheck_test.ts).
-- Kinds of their own (kick_t, kick_u, kick_v), created and dropped with the transaction.
begin;
select plan(36);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('kick_t', 'q_kick_t', 'test', 'kick handshake test kind', false),
       ('kick_u', 'q_kick_u', 'test', 'kick handshake test kind', false),
       ('kick_v', 'q_kick_v', 'test', 'kick handshake test kind', false);
select conveyor.ensure_kind_queues('kick_t');
select conveyor.ensure_kind_queues('kick_u');
select conveyor.ensure_kind_queues('kick_v');
update conveyor.settings set value = 'true' where key = 'push_kicks';
update conveyor.settings set value = '600000' where key = 'kick_debounce_ms';

-- This backend's locks on a window's kick key (advisory keys are split in two oids).
create function pg_temp.kick_locked(p_target text, p_window bigint) returns text
language sql as $$
  select string_agg(l.mode, ',' order by l.mode desc) from pg_locks l
  where l.locktype = 'advisory' and l.pid = pg_backend_pid() and l.objsubid = 1
    and l.classid = (conveyor.kick_lock_key(p_target, p_window) >> 32)::bit(32)::int::oid
    and l.objid = (conveyor.kick_lock_key(p_target, p_window) & 4294967295)::bit(32)::int::oid
$$;
create function pg_temp.kicks(p_target text) returns bigint language sql as $$
  select kicks from conveyor.dispatch_kicks where target = p_target
$$;

select isnt(conveyor.kick_lock_key('queue:kick_t', 1), conveyor.hint_lock_key('queue:kick_t'),
  'the kick lock key is not the queue hint key of the same text');
select isnt(conveyor.kick_lock_key('queue:kick_t', 1), conveyor.kick_lock_key('queue:kick_t', 2),
  '... and each window of a target has its own');
select is((select value #>> '{}' from conveyor.settings where key = 'kick_close_wait_ms'), '10000',
  'kick_close_wait_ms bounds the recheck''s wait (10 s)');

-- conveyor.kick ------------------------------------------------------------------------------
select is(conveyor.kick('queue:kick_t'), true, 'the first kick of a target wins: window 1');
select is(pg_temp.kick_locked('queue:kick_t', 1), null, '... and takes no kick lock');
select is(conveyor.kick('queue:kick_t'), false, 'a kick inside the window is suppressed');
select is(pg_temp.kick_locked('queue:kick_t', 1), 'ShareLock',
  '... holding window 1''s shared kick lock');
select is(pg_temp.kicks('queue:kick_t'), 1::bigint, '... and counts no kick');

-- close_kick_window ------------------------------------------------------------------------
select is(public.close_kick_window('queue:kick_t', 1), true,
  'close_kick_window closes window 1 (its own session''s shared lock does not block it)');
select is((select last_kick_at from conveyor.dispatch_kicks where target = 'queue:kick_t'),
  '-infinity'::timestamptz, '... resetting last_kick_at');
select is(pg_temp.kick_locked('queue:kick_t', 1), 'ShareLock,ExclusiveLock',
  '... under the window''s exclusive kick lock, held to its commit');
select is(conveyor.kick('queue:kick_t'), true, 'the next kick wins: window 2');
select is(pg_temp.kicks('queue:kick_t'), 2::bigint, '... and counts');
select is(conveyor.kick('queue:kick_t'), false, 'a kick inside window 2 is suppressed');
select is(pg_temp.kick_locked('queue:kick_t', 2), 'ShareLock',
  '... holding window 2''s shared kick lock');
select is(public.close_kick_window('queue:kick_t', 1), true, 'closing window 1 again');
select isnt((select last_kick_at from conveyor.dispatch_kicks where target = 'queue:kick_t'),
  '-infinity'::timestamptz, '... leaves window 2 open (its own recheck closes it)');
select is(public.close_kick_window('queue:kick_t'), true, 'without a window: the newest');
select is((select last_kick_at from conveyor.dispatch_kicks where target = 'queue:kick_t'),
  '-infinity'::timestamptz, '... closed');

-- The dead-letter target: a dead letter's winning kick calls dlq-worker with its window.
-- Its last window closed first, so the next kick wins (rolled back with the test).
insert into conveyor.dispatch_kicks (target, last_kick_at) values ('dlq', '-infinity')
on conflict (target) do update set last_kick_at = '-infinity';
-- The body of this transaction's newest dlq-worker call.
create function pg_temp.dlq_call() returns jsonb language sql as $$
  select convert_from(q.body, 'UTF8')::jsonb from net.http_request_queue q
  where q.url like '%/functions/v1/dlq-worker' order by q.id desc limit 1
$$;
select is(conveyor.kick('dlq'), true, 'a dead letter''s kick wins a dlq window');
select is(pg_temp.dlq_call(),
  jsonb_build_object('async', true, 'source', 'kick', 'window', pg_temp.kicks('dlq')),
  '... and its dlq-worker call carries the window: the kick''s number');
select is(conveyor.kick('dlq'), false, 'a dlq kick inside the window is suppressed');
select is(pg_temp.kick_locked('dlq', pg_temp.kicks('dlq')), 'ShareLock',
  '... holding the window''s shared kick lock');
select is(public.close_kick_window('dlq', pg_temp.kicks('dlq')), true,
  'close_kick_window(''dlq'', window): dlq-worker''s recheck closes it');
select is((select last_kick_at from conveyor.dispatch_kicks where target = 'dlq'),
  '-infinity'::timestamptz, '... resetting it, so the next dead letter''s kick wins');
select conveyor.invoke_dead_letter_worker('cron');
select is(pg_temp.dlq_call(), '{"async": true, "source": "cron"}'::jsonb,
  'cron''s dlq-worker call carries no window');

-- Bad input: refused, nothing written.
select throws_ok($$select public.close_kick_window(null)$$, 'P0001',
  'close_kick_window: target must not be blank', 'a null target is refused');
select throws_ok($$select public.close_kick_window(' ')$$, 'P0001',
  'close_kick_window: target must not be blank', 'a blank target is refused');
select throws_ok($$select public.close_kick_window('queue:no_such_kind')$$, 'P0001',
  'close_kick_window: unknown target queue:no_such_kind', 'an unknown target is refused');
select throws_ok($$select public.close_kick_window('queue:kick_t', 3)$$, 'P0001',
  'close_kick_window: no window 3 of queue:kick_t', 'a window that was never opened is refused');
select is((select count(*)::int from conveyor.dispatch_kicks where target = 'queue:no_such_kind'),
  0, '... and nothing is written');

-- The enqueue paths kick through conveyor.kick: suppressed, they hold the window's lock
-- (public.queue_job for kick_u, conveyor.enqueue for kick_v: each target's first kick wins).
select public.queue_job('{"idempotency_key":"kh-u1","kind":"kick_u"}');
select public.queue_job('{"idempotency_key":"kh-u2","kind":"kick_u"}');
select is(pg_temp.kick_locked('queue:kick_u', 1), 'ShareLock',
  'queue_job: the second job''s kick, suppressed, holds window 1''s shared kick lock');
select conveyor.enqueue(conveyor.default_tenant_id(), 'kick_v', '{}', 'kh-v1');
select conveyor.enqueue(conveyor.default_tenant_id(), 'kick_v', '{}', 'kh-v2');
select is(pg_temp.kick_locked('queue:kick_v', 1), 'ShareLock',
  'conveyor.enqueue: the same');

-- Privileges: the dispatcher's service_role only.
select ok(has_function_privilege('service_role', 'public.close_kick_window(text, bigint)', 'execute'),
  'service_role may call close_kick_window');
select ok(not has_function_privilege('anon', 'public.close_kick_window(text, bigint)', 'execute')
          and not has_function_privilege('authenticated', 'public.close_kick_window(text, bigint)', 'execute'),
  'anon and authenticated may not');
set local role authenticated;
select throws_ok($$select public.close_kick_window('queue:kick_t')$$, '42501',
  'permission denied for function close_kick_window', 'authenticated is refused');
reset role;

select * from finish();
rollback;
