-- The settle of a batch (20261207130000_lean_settle.sql): a batch spanning tier queues, the
-- per-minute counts written by an UPDATE after the first batch of the minute, the dedupe key
-- going with the completion, and the ledger's room for HOT updates.
-- A kind of its own (l_settle, queues q_l_settle*), created and dropped with the transaction.
begin;
select plan(12);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('l_settle', 'q_l_settle', 'test', 'lean settle test kind', false);
select conveyor.ensure_kind_queues('l_settle');
update conveyor.settings set value = 'false' where key = 'push_kicks';

select is((select reloptions from pg_class where oid = 'public.jobs'::regclass),
  array['fillfactor=30'],
  'a ledger page keeps room for all three versions of its rows (pending, processing, finished)');

-- ls-1 with a dedupe key (seed 003's enqueue path has them; queue_job has none).
select count(*) from conveyor.enqueue(conveyor.default_tenant_id(), 'l_settle', '{}', 'ls-1', 'fast',
  p_dedupe_key => 'ls-d');
select count(*) from public.queue_jobs(
  '[{"idempotency_key":"ls-2","kind":"l_settle"},
    {"idempotency_key":"ls-3","kind":"l_settle"},
    {"idempotency_key":"ls-4","kind":"l_settle","priority":"bulk"}]'::jsonb);

-- Two claims and a settle in one minute (p_now): the first writes this backend's row of the
-- minute, the others add to it.
create temporary table c1 on commit drop as
select * from public.claim_jobs('l_settle', 'w-ls', 2, null, now());
select is((select array_agg(j.queue_name order by j.queue_name) from c1 join public.jobs j on j.id = c1.job_id),
  array['q_l_settle', 'q_l_settle_fast'], 'one claim took a job from two tier queues');
select is((select sum(claimed)::int from conveyor.job_counts
           where queue_name like 'q\_l\_settle%' and minute = date_trunc('minute', now())),
  2, 'the claim counted its two jobs');

create temporary table r on commit drop as
select public.settle_and_claim_jobs('w-ls',
  (select jsonb_agg(jsonb_build_object('job_id', job_id, 'lease_id', lease_id,
                                       'status', 'completed')) from c1),
  'l_settle', 5, null, '{}', now()) as v;
select is((select count(*)::int from r, jsonb_array_elements(r.v -> 'settled') s
           where (s ->> 'accepted')::boolean and s ->> 'outcome' = 'completed'),
  2, 'both completions of the two-queue batch are accepted');
select is((select count(*)::int from public.jobs where id in (select job_id from c1)
           and status = 'completed' and lease_id is null and finished_at is not null),
  2, 'both jobs are completed in the ledger');
select is((select count(*)::int from pgmq.q_q_l_settle_fast) + (select count(*)::int from pgmq.q_q_l_settle
           where msg_id in (select msg_id from c1)),
  0, 'the messages of both queues are deleted');
select is((select count(*)::int from pgmq.a_q_l_settle) + (select count(*)::int from pgmq.a_q_l_settle_fast),
  0, '... not archived (archive_completed is off)');
select is((select count(*)::int from conveyor.dedupe_keys where dedupe_key = 'ls-d'), 0,
  'the completed job''s dedupe key is released');
select is((select jsonb_array_length(v -> 'claimed') from r), 2, 'the same call claimed the other two');

select results_eq(
  $$select queue_name, claimed::int, completed::int from conveyor.job_counts
    where queue_name like 'q\_l\_settle%' and minute = date_trunc('minute', now())
      and backend = pg_backend_pid() order by queue_name$$,
  $$values ('q_l_settle', 2, 1), ('q_l_settle_bulk', 1, 0), ('q_l_settle_fast', 1, 1)$$,
  'one row per queue for the minute, each adding up its claims and completions');

-- Archive on: a two-queue batch is archived queue by queue.
update conveyor.settings set value = 'true' where key = 'archive_completed';
select is((select count(*)::int from jsonb_array_elements((public.settle_and_claim_jobs('w-ls',
            (select jsonb_agg(jsonb_build_object('job_id', c ->> 'job_id', 'lease_id', c ->> 'lease_id',
                                                 'status', 'completed'))
             from r, jsonb_array_elements(r.v -> 'claimed') c),
            'l_settle', 5, null, '{}', now())) -> 'settled') s where (s ->> 'accepted')::boolean),
  2, 'the second batch (normal and bulk) completes with archive_completed on');
select is((select count(*)::int from pgmq.a_q_l_settle) + (select count(*)::int from pgmq.a_q_l_settle_bulk),
  2, 'its two messages are archived, each in its own queue''s archive');
update conveyor.settings set value = 'false' where key = 'archive_completed';

select * from finish();
rollback;
