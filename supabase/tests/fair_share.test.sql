-- Fair share across tenants (issue 21, docs/fairness.md): when several tenants have ready jobs
-- of a kind, a claim shares its batch between them by weight; a tenant alone gets the plain
-- claim and writes nothing more; priorities keep their meaning within a tenant; past service
-- counts for at most fair_share_lag; rate-limited kinds and content stages share too.
-- In one transaction every job is enqueued at the same now(), so ties between tenants go by
-- tenant id, as documented: A (aaaa…) before B (bbbb…).
-- Kinds of their own (f_*), created and dropped with the transaction.
begin;
select plan(40);

update conveyor.settings set value = 'false' where key = 'push_kicks';
insert into public.tenants (id, name) values
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'fair-a'),
  ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'fair-b'),
  ('cccccccc-cccc-4ccc-8ccc-cccccccccccc', 'fair-c');
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
select k, 'q_' || k, 'test', 'fair share test kind', false
from unnest(array['f_fair', 'f_alone', 'f_off', 'f_w', 'f_prio', 'f_lag']) k;
select conveyor.ensure_kind_queues(k)
from unnest(array['f_fair', 'f_alone', 'f_off', 'f_w', 'f_prio', 'f_lag']) k;

-- n jobs of p_tenant and p_kind (keys <kind>-<tenant letter>-<i>), enqueued in order.
create function pg_temp.jobs(p_kind text, p_tenant text, p_n int, p_extra jsonb default '{}')
returns int language sql as $$
  select count(public.queue_job(jsonb_build_object(
    'idempotency_key', p_kind || '-' || left(p_tenant, 1) || '-' || g || coalesce(p_extra ->> 'priority', ''),
    'kind', p_kind, 'tenant_id', p_tenant) || p_extra))::int
  from generate_series(1, p_n) g
$$;
-- One claim of p_qty: the tenants' letters in job number order.
create function pg_temp.claim(p_kind text, p_qty int) returns text language sql as $$
  select coalesce(string_agg(upper(left(c.tenant_id::text, 1)), '' order by c.msg_id), '')
  from public.claim_jobs(p_kind, 'w-fair', p_qty, 60) c
$$;
-- p_claims claims of one job each: the tenants' letters in claim order.
create function pg_temp.claims(p_kind text, p_claims int) returns text language plpgsql as $$
declare
  v text := '';
begin
  for i in 1 .. p_claims loop
    v := v || pg_temp.claim(p_kind, 1);
  end loop;
  return v;
end $$;
create function pg_temp.served(p_kind text, p_tenant text) returns bigint language sql as $$
  select coalesce(sum(served), 0)::bigint from conveyor.fair_served
  where target = 'queue:' || p_kind and tenant_id = p_tenant::uuid
$$;

-- The tenant index -----------------------------------------------------------------------------
select is((select count(*)::int from pg_indexes
           where schemaname = 'pgmq' and indexname in ('q_q_f_fair_tenant_vt_idx',
             'q_q_f_fair_fast_tenant_vt_idx', 'q_q_f_fair_bulk_tenant_vt_idx')
             and indexdef like '%THEN ((message ->> ''tenant_id''::text))::uuid%END), vt)'), 3,
  'every tier queue of a kind has the tenant index (the message''s tenant as a uuid, vt)');
select is((select count(*)::int from pg_indexes
           where schemaname = 'pgmq' and tablename = 'q_q_dlq' and indexname like '%tenant%'), 0,
  'the dead-letter queue has none');

-- A tenant alone ---------------------------------------------------------------------------------
select is(pg_temp.jobs('f_alone', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 3), 3, 'tenant A alone: 3 jobs');
select is((select array_agg(c.msg_id order by c.msg_id)
           from public.claim_jobs('f_alone', 'w-fair', 2, 60) c),
          (select (array_agg(j.msg_id order by j.msg_id))[1:2] from public.jobs j where j.kind = 'f_alone'),
  'a tenant alone gets the plain claim: its oldest jobs');
select is((select count(*)::int from conveyor.fair_served where target = 'queue:f_alone'), 0,
  '... and nothing is written for fair share');

-- Two tenants: claims alternate -------------------------------------------------------------------
select is(pg_temp.jobs('f_fair', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 8)
          + pg_temp.jobs('f_fair', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 8), 16,
  'A enqueues 8 jobs, then B 8');
select is((select array_agg(t.tenant_key order by t.tenant_key) from conveyor.q_tenants('q_f_fair', 10) t),
  array['aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'],
  'q_tenants finds both tenants (one index descent each)');
select is(pg_temp.claims('f_fair', 6), 'ABABAB',
  'claims of one job alternate between the tenants, although all of A''s jobs are older');
select is(pg_temp.claim('f_fair', 4), 'AABB', 'a claim of 4 gives each tenant 2');
select is(array[pg_temp.served('f_fair', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'),
                pg_temp.served('f_fair', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb')], array[5, 5]::bigint[],
  'fair_served counts what each was served');
select is(pg_temp.jobs('f_fair', 'cccccccc-cccc-4ccc-8ccc-cccccccccccc', 2), 2, 'tenant C arrives with 2 jobs');
select is(pg_temp.claim('f_fair', 3), 'ACC',
  'C, served nothing yet, gets its two jobs first; the slot left goes to A (tied with B, by tenant id)');

-- Fairness off for a kind -------------------------------------------------------------------------
select is(pg_temp.jobs('f_off', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 3)
          + pg_temp.jobs('f_off', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 3), 6, 'A then B, 3 jobs each');
update conveyor.job_kinds set fair_share = false where kind = 'f_off';
select is(pg_temp.claim('f_off', 2), 'AA', 'fair_share off: oldest first, whoever they belong to');
update conveyor.job_kinds set fair_share = true where kind = 'f_off';
select is(pg_temp.claim('f_off', 2), 'AB', 'on again: shared');

-- Weights ----------------------------------------------------------------------------------------
select is(public.operator_set_tenant_weight('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 2) ->> 'weight', '2',
  'operator_set_tenant_weight gives A weight 2');
select is(pg_temp.jobs('f_w', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 10)
          + pg_temp.jobs('f_w', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 10), 20, '10 jobs each');
select is(pg_temp.claims('f_w', 9), 'ABAABAABA', 'weight 2 : 1 gives A two claims for each of B''s');
select is(pg_temp.claim('f_w', 6), 'AAAABB', 'and a claim of 6 four to A, two to B');
select throws_ok($$select public.operator_set_tenant_weight('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 0)$$,
  'P0001', 'operator_set_tenant_weight: weight must be greater than 0 and at most 1000',
  'a weight of 0 is refused');
select throws_ok($$select public.operator_set_tenant_weight('dddddddd-dddd-4ddd-8ddd-dddddddddddd', 2)$$,
  'P0002', 'operator_set_tenant_weight: no tenant dddddddd-dddd-4ddd-8ddd-dddddddddddd',
  'an unknown tenant is refused');
select is(public.operator_set_tenant_weight('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 1) ->> 'weight', '1',
  'weight 1 again');
select is((select count(*)::int from conveyor.tenant_weights
           where tenant_id = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'), 0, '... which is the default: no row');

-- Priorities within a tenant ---------------------------------------------------------------------
select is(pg_temp.jobs('f_prio', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 1, '{"priority":"bulk"}')
          + pg_temp.jobs('f_prio', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 1, '{"priority":"normal"}')
          + pg_temp.jobs('f_prio', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 1, '{"priority":"fast"}')
          + pg_temp.jobs('f_prio', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 2), 5,
  'A enqueues a bulk, a normal and a fast job; B two normal ones');
create temporary table prio (n serial, tenant text, priority text) on commit drop;
do $$
begin
  for i in 1 .. 5 loop
    insert into prio (tenant, priority)
    select upper(left(c.tenant_id::text, 1)), c.priority from public.claim_jobs('f_prio', 'w-fair', 1, 60) c;
  end loop;
end $$;
select is((select string_agg(tenant || ':' || priority, ' ' order by n) from prio),
  'A:fast B:normal A:normal B:normal A:bulk',
  'tenants alternate; within a tenant fast goes before normal before bulk');

-- Bounded lag --------------------------------------------------------------------------------------
update conveyor.settings set value = '2' where key = 'fair_share_lag';
insert into conveyor.fair_served (target, tenant_id, stripe, served)
values ('queue:f_lag', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 1, 1000);
select is(pg_temp.jobs('f_lag', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 6)
          + pg_temp.jobs('f_lag', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 6), 12,
  'A was served 1000 jobs of f_lag before (yesterday); now A and B have 6 ready each');
select is(pg_temp.claims('f_lag', 6), 'BBABAB',
  'past service counts for at most fair_share_lag (2): B gets two ahead, then they alternate');
select is(pg_temp.served('f_lag', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'), 4::bigint,
  'A''s count was pulled back to B''s + 2, then counted its 2 jobs');
update conveyor.settings set value = '100' where key = 'fair_share_lag';

-- A rate-limited kind ------------------------------------------------------------------------------
update conveyor.job_kinds set enabled = false where kind = 'outreach';
update conveyor.queue_hints set visible_from = 'infinity' where queue_name like 'q_outreach%';
delete from public.rate_limiters
where service_name = 'sendgrid'
  and tenant_id in ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb');
insert into public.rate_limiters (tenant_id, service_name, tokens_available, max_concurrent,
                                  capacity, refill_per_sec)
values ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'sendgrid', 1, 10, 1, 0);
-- Only these jobs are visible in q_outreach for this claim: the others are pushed out of the way.
update pgmq.q_q_outreach set vt = now() + interval '1 day';
select is(pg_temp.jobs('outreach', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 3, '{"payload":{"to":"a@example.com"}}')
          + pg_temp.jobs('outreach', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 3, '{"payload":{"to":"b@example.com"}}'), 6,
  'outreach (rate limited by sendgrid): A with a bucket of 1 token, B without a bucket');
select is((public.settle_and_claim_jobs('w-fair', '[]', 'outreach', 4, 60) ->> 'throttled')::boolean, true,
  'a claim of 4 is throttled ...');
select is((select string_agg(upper(left(tenant_id::text, 1)), '' order by tenant_id::text)
           from public.jobs where kind = 'outreach' and status = 'processing'
             and tenant_id in ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb')),
  'ABBB', '... A got its one token''s job, B''s share took the rest');

-- Content stages -----------------------------------------------------------------------------------
-- Other content work in this database is pushed out of the way for the transaction.
update public.content_job_stages set available_at = now() + interval '1 day'
where stage = 'research' and status = 'ready';
update public.content_job_stages set lease_expires_at = now() + interval '1 day'
where stage = 'research' and status = 'in_progress';
select is((select count(*)::int from (
  select public.queue_content_job(jsonb_build_object('idempotency_key', 'fair-ca-' || g,
           'brief', jsonb_build_object('topic', 'a' || g), 'tenant_id', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'))
  from generate_series(1, 3) g
  union all
  select public.queue_content_job(jsonb_build_object('idempotency_key', 'fair-cb-' || g,
           'brief', jsonb_build_object('topic', 'b' || g), 'tenant_id', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'))
  from generate_series(1, 3) g) x), 6, 'content jobs: A 3, then B 3');
select is((select count(*)::int from public.content_job_stages s join public.content_jobs j on j.id = s.job_id
           where j.idempotency_key like 'fair-c%' and s.tenant_id = j.tenant_id
             and j.tenant_id <> conveyor.default_tenant_id()), 6,
  'each stage row carries its job''s tenant');
create temporary table cc (n serial, tenant uuid) on commit drop;
do $$
begin
  for i in 1 .. 4 loop
    insert into cc (tenant)
    select j.tenant_id from public.claim_content_stage('research', 'w-fair', p_max_concurrency => 1000) c
    join public.content_jobs j on j.id = c.job_id;
  end loop;
end $$;
select is((select string_agg(upper(left(tenant::text, 1)), '' order by n) from cc), 'ABAB',
  'content stage claims alternate between tenants too');
select throws_ok($$select public.queue_content_job('{"idempotency_key":"fair-bad","brief":{"topic":"x"},"tenant_id":"nope"}')$$,
  'P0001', 'queue_content_job: tenant_id must be a uuid', 'queue_content_job: a tenant_id that is not a uuid');
select throws_ok($$select public.queue_content_job('{"idempotency_key":"fair-bad","brief":{"topic":"x"},"tenant_id":"dddddddd-dddd-4ddd-8ddd-dddddddddddd"}')$$,
  'P0001', 'queue_content_job: unknown tenant dddddddd-dddd-4ddd-8ddd-dddddddddddd',
  'queue_content_job: an unknown tenant');

-- A starving tenant ------------------------------------------------------------------------------
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled, fair_share)
values ('f_starve', 'q_f_starve', 'test', 'starving test kind', false, false);
select conveyor.ensure_kind_queues('f_starve');
select is(pg_temp.jobs('f_starve', 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 5)
          + pg_temp.jobs('f_starve', 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 1), 6,
  'f_starve (fair share off): A has 5 jobs, B one');
update pgmq.q_q_f_starve set vt = clock_timestamp() - interval '10 minutes'
where message ->> 'tenant_id' = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
select is(pg_temp.claim('f_starve', 2), 'AA', 'A''s jobs are claimed, oldest first by number');
select is((select array_agg(tenant || ':' || starving order by tenant) from public.operator_tenants(5)
           where target = 'f_starve'),
  array['fair-a:false', 'fair-b:true'],
  'operator_tenants: B, ready for 10 minutes while A''s jobs run, is starving; A is not');
select is((select others_median_age_sec < 60 and oldest_ready_age_sec >= 600 from public.operator_tenants(5)
           where target = 'f_starve' and tenant = 'fair-b'), true,
  '... its oldest ready job against the other tenants'' median');

select * from finish();
rollback;
