-- The kick debounce's lock handshake (20261207170100_kick_recheck_handshake.sql): a kick
-- suppressed by another's window holds the target's shared kick lock to its commit (so
-- public.close_kick_window, the dispatcher's recheck, waits for it); a winning kick takes no
-- lock; close_kick_window resets the window so the next kick wins; bad targets are refused
-- with nothing written; only service_role may call it. One session, so the locks are read
-- from pg_locks (the cross-session wait is tests/kick_recheck_test.ts).
-- A kind of its own (kick_t, queues q_kick_t*), created and dropped with the transaction.
begin;
select plan(22);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('kick_t', 'q_kick_t', 'test', 'kick handshake test kind', false);
select conveyor.ensure_kind_queues('kick_t');
update conveyor.settings set value = 'true' where key = 'push_kicks';
update conveyor.settings set value = '600000' where key = 'kick_debounce_ms';

-- This backend's share lock on a target's kick key (advisory keys are split in two oids).
create function pg_temp.kick_locked(p_target text) returns text language sql as $$
  select string_agg(l.mode, ',') from pg_locks l
  where l.locktype = 'advisory' and l.pid = pg_backend_pid() and l.objsubid = 1
    and l.classid = (conveyor.kick_lock_key(p_target) >> 32)::bit(32)::int::oid
    and l.objid = (conveyor.kick_lock_key(p_target) & 4294967295)::bit(32)::int::oid
$$;

select isnt(conveyor.kick_lock_key('queue:kick_t'), conveyor.hint_lock_key('queue:kick_t'),
  'the kick lock key is not the queue hint key of the same text');

-- conveyor.kick ------------------------------------------------------------------------------
select is(conveyor.kick('queue:kick_t'), true, 'the first kick of a target wins');
select is(pg_temp.kick_locked('queue:kick_t'), null, '... and takes no kick lock');
select is(conveyor.kick('queue:kick_t'), false, 'a kick inside the window is suppressed');
select is(pg_temp.kick_locked('queue:kick_t'), 'ShareLock',
  '... holding the target''s shared kick lock');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:kick_t'), 1::bigint,
  '... and counts no kick');

-- close_kick_window ------------------------------------------------------------------------
select lives_ok($$select public.close_kick_window('queue:kick_t')$$,
  'close_kick_window closes the window (its own session''s shared lock does not block it)');
select is((select last_kick_at from conveyor.dispatch_kicks where target = 'queue:kick_t'),
  '-infinity'::timestamptz, '... resetting last_kick_at');
select is(pg_temp.kick_locked('queue:kick_t'), 'ShareLock,ExclusiveLock',
  '... under the exclusive kick lock, held to its commit');
select is(conveyor.kick('queue:kick_t'), true, 'the next kick wins');
select is((select kicks from conveyor.dispatch_kicks where target = 'queue:kick_t'), 2::bigint,
  '... and counts');

-- Bad targets: refused, nothing written.
select throws_ok($$select public.close_kick_window(null)$$, 'P0001',
  'close_kick_window: target must not be blank', 'a null target is refused');
select throws_ok($$select public.close_kick_window(' ')$$, 'P0001',
  'close_kick_window: target must not be blank', 'a blank target is refused');
select throws_ok($$select public.close_kick_window('queue:no_such_kind')$$, 'P0001',
  'close_kick_window: unknown target queue:no_such_kind', 'an unknown target is refused');
select is((select count(*)::int from conveyor.dispatch_kicks where target = 'queue:no_such_kind'),
  0, '... and gets no row');

-- The enqueue paths make the window check themselves: suppressed, they take the lock too
-- (public.queue_job for kick_u, conveyor.enqueue for kick_v: each target's first kick wins).
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('kick_u', 'q_kick_u', 'test', 'kick handshake test kind', false),
       ('kick_v', 'q_kick_v', 'test', 'kick handshake test kind', false);
select conveyor.ensure_kind_queues('kick_u');
select conveyor.ensure_kind_queues('kick_v');
select public.queue_job('{"idempotency_key":"kh-u1","kind":"kick_u"}');
select is(pg_temp.kick_locked('queue:kick_u'), null, 'queue_job: a winning kick takes no lock');
select public.queue_job('{"idempotency_key":"kh-u2","kind":"kick_u"}');
select is(pg_temp.kick_locked('queue:kick_u'), 'ShareLock',
  'queue_job: a suppressed kick holds the shared kick lock');
select conveyor.enqueue(conveyor.default_tenant_id(), 'kick_v', '{}', 'kh-v1');
select is(pg_temp.kick_locked('queue:kick_v'), null, 'conveyor.enqueue: a winning kick takes no lock');
select conveyor.enqueue(conveyor.default_tenant_id(), 'kick_v', '{}', 'kh-v2');
select is(pg_temp.kick_locked('queue:kick_v'), 'ShareLock',
  'conveyor.enqueue: a suppressed kick holds the shared kick lock');

-- Privileges: the dispatcher's service_role only.
select ok(has_function_privilege('service_role', 'public.close_kick_window(text)', 'execute'),
  'service_role may call close_kick_window');
select ok(not has_function_privilege('anon', 'public.close_kick_window(text)', 'execute')
          and not has_function_privilege('authenticated', 'public.close_kick_window(text)', 'execute'),
  'anon and authenticated may not');
set local role authenticated;
select throws_ok($$select public.close_kick_window('queue:kick_t')$$, '42501',
  'permission denied for function close_kick_window', 'authenticated is refused');
reset role;

select * from finish();
rollback;
