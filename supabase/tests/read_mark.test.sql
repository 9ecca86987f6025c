-- A claim reads from its session's read mark (20261207234900_read_mark.sql): past what the
-- session's last read went by, so it does not walk the drained head of the queue again; from
-- the head when the read from the mark comes back short or the mark is older than
-- read_rescan_ms, so a message below the mark is never missed. Index entries the reads
-- return are counted from this transaction's statistics
-- (pg_stat_get_xact_tuples_returned). A kind of its own (m_mark, queues q_m_mark*), created
-- and dropped with the transaction.
begin;
select plan(14);

select is((select value #>> '{}' from conveyor.settings where key = 'read_rescan_ms'), '250',
  'read_rescan_ms: a read mark holds for 250 ms');

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('m_mark', 'q_m_mark', 'test', 'read mark test kind', false);
select conveyor.ensure_kind_queues('m_mark');
update conveyor.settings set value = 'false' where key = 'push_kicks';
select is((select count(*)::int from public.queue_jobs(
  (select jsonb_agg(jsonb_build_object('idempotency_key', 'mark-' || i, 'kind', 'm_mark'))
   from generate_series(1, 300) i))), 300, 'three hundred jobs enqueued');

-- A claim of n jobs; its jobs' message ids are kept in claimed, with the index entries of the
-- queue's primary key the claim's reads returned.
create temp table claimed (i serial, msg_id bigint, job_id uuid, lease_id uuid);
create temp table reads (i serial, n int, idx bigint);
create function pg_temp.claim(p_qty int) returns int language plpgsql as $$
declare
  v_idx bigint := pg_stat_get_xact_tuples_returned('pgmq.q_q_m_mark_pkey'::regclass);
  v_n int;
begin
  with c as (
    insert into claimed (msg_id, job_id, lease_id)
    select j.msg_id, c.job_id, c.lease_id
    from public.claim_jobs('m_mark', 'w-mark', p_qty, 30) c
    join public.jobs j on j.id = c.job_id
    returning 1
  )
  select count(*) into v_n from c;
  insert into reads (n, idx)
  values (v_n, pg_stat_get_xact_tuples_returned('pgmq.q_q_m_mark_pkey'::regclass) - v_idx);
  return v_n;
end
$$;
create function pg_temp.settle_all() returns int language sql as $$
  select count(*)::int from public.settle_jobs('w-mark', (
    select jsonb_agg(jsonb_build_object('job_id', c.job_id, 'lease_id', c.lease_id,
                                        'status', 'completed'))
    from claimed c where c.job_id in (select j.id from public.jobs j where j.status = 'processing')))
  where accepted;
$$;
create function pg_temp.mark() returns bigint language sql as $$
  select nullif(split_part(current_setting('conveyor.read_mark_q_m_mark', true), ' ', 1), '')::bigint
$$;

select is(pg_temp.claim(10), 10, 'a claim of ten takes ten');
select is(pg_temp.mark(), (select max(msg_id) + 1 from claimed),
  '... and marks the message after the last one it read');

-- Two hundred jobs done: their messages deleted, a dead head the index still holds.
select is(pg_temp.claim(190), 190, 'then a claim of 190');
select is(pg_temp.settle_all(), 200, '... and the two hundred settled (their messages deleted)');

select is(pg_temp.claim(10), 10, 'a claim from the mark takes ten');
select cmp_ok((select idx from reads order by i desc limit 1), '<=', 20::bigint,
  '... reading its batch twice from the primary key (the batch, then the update), not the dead head');
select lives_ok($$ select set_config('conveyor.read_mark_q_m_mark', '', false) $$,
  'without a mark');
select is(pg_temp.claim(10), 10, 'a claim from the head takes ten');
select cmp_ok((select idx from reads order by i desc limit 1), '>=', 210::bigint,
  '... walking the two hundred deleted and the ten in flight first');

-- A message below the mark come due again (a claimed job's message made visible: a lost
-- lease's retry) is read when the read from the mark comes back short.
create temp table below as
  select min(c.msg_id) as msg_id from claimed c
  where c.job_id in (select j.id from public.jobs j where j.status = 'processing');
select is((select msg_id from pgmq.set_vt('q_m_mark', (select msg_id from below), 0)),
  (select msg_id from below), 'the first job in flight''s message visible again, below the mark');
select is(pg_temp.claim(1000), 81,
  'a claim of 1000 takes the 80 left above the mark and, from the head, the one below it');
select is((select count(*)::int from claimed c where c.msg_id = (select msg_id from below)), 2,
  '... the one below the mark claimed again');

select * from finish();
rollback;
