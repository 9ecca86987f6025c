-- queue_next_due_at (20261207110000_job_lookup.sql; issue 19, item 7): what a worker that ran
-- dry wakes for. A message not visible yet: its time. One that became visible within the last
-- second: its time too (in the past: the worker asks for a worker at once), because it may
-- have turned visible between the drain's last empty claim and this call; that race left the
-- tour's first retry (backoff 1 s = the drain's 1 s linger) to cron's next minute. One visible
-- for longer was there at that claim (left for a rate limit): no wake.
begin;
select plan(5);

insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
values ('t_due', 'q_t_due', 'test', 'queue_next_due_at test', false);
select conveyor.ensure_kind_queues('t_due');
create temporary table j on commit drop as
select public.queue_job('{"idempotency_key":"due-1","kind":"t_due"}') as msg_id;
create temporary table t on commit drop as select clock_timestamp() as now;

update pgmq.q_q_t_due set vt = (select now from t) + interval '5 seconds';
select is(public.queue_next_due_at('t_due'), (select now from t) + interval '5 seconds',
  'a retry due in 5 s: its time');
update pgmq.q_q_t_due set vt = clock_timestamp() - interval '300 milliseconds'
returning vt as v \gset
select is(public.queue_next_due_at('t_due'), :'v'::timestamptz,
  'one that became due 0.3 s ago: its time (the worker wakes at once)');
update pgmq.q_q_t_due set vt = clock_timestamp() - interval '5 seconds';
select is(public.queue_next_due_at('t_due'), null,
  'one due for 5 s was there at the last claim: no wake');
update pgmq.q_q_t_due set vt = clock_timestamp() + interval '1 second';
update public.jobs set status = 'processing', lease_id = gen_random_uuid()
where msg_id = (select msg_id from j);
select is(public.queue_next_due_at('t_due'), null, 'a job not pending: no wake');
select is(public.queue_next_due_at('no_such_kind'), null, 'an unknown kind: null');

select * from finish();
rollback;
