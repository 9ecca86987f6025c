-- public.settle_and_claim_jobs (0053_queue_consume.sql): settle_jobs then claim_jobs in one call.
begin;
select plan(6);

select count(*) from public.queue_jobs(
  '[{"idempotency_key":"sac-1","kind":"enforce"},{"idempotency_key":"sac-2","kind":"enforce"},
    {"idempotency_key":"sac-3","kind":"enforce"}]'::jsonb);
create temporary table first_claim on commit drop as
select * from public.claim_jobs('enforce', 'w-sac', 1);

create temporary table r on commit drop as
select public.settle_and_claim_jobs('w-sac',
  (select jsonb_agg(jsonb_build_object('job_id', job_id, 'lease_id', lease_id,
                                       'status', 'completed')) from first_claim),
  'enforce', 5) as v;

select is((select jsonb_array_length(v -> 'settled') from r), 1, 'one settle result');
select is((select (v -> 'settled' -> 0 ->> 'accepted')::boolean from r), true, 'and it was accepted');
select is((select status from public.jobs where id = (select job_id from first_claim)), 'completed',
  'the settled job is completed');
select is((select jsonb_array_length(v -> 'claimed') from r), 2, 'the next claim took the other two');
select is((select count(*)::int from public.jobs
           where idempotency_key in ('sac-2', 'sac-3') and status = 'processing' and locked_by = 'w-sac'),
  2, 'they are processing under this worker');
select throws_ok(
  $$select public.settle_and_claim_jobs('w-sac', '[]'::jsonb, 'enforce', 0)$$,
  'P0001', 'claim_jobs: p_qty must be between 1 and 1000',
  'a bad claim fails the whole call (and so rolls the settle back)');

select * from finish();
rollback;
