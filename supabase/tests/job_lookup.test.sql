-- Job references (issue 19, item 1; 20261207110000_job_lookup.sql): operator_find_jobs by
-- number, by the whole id, by a prefix or a suffix of it (dashes, case), for queue jobs, dead
-- letters and content jobs; ambiguity with the total; nothing found; refused input; the
-- suffix scan's bound; who may call it; the job number in operator_events and
-- operator_dead_letters. Rows with chosen ids are written directly (a finished job needs no
-- message), so other tests' jobs never match them.
begin;
select plan(33);

update conveyor.settings set value = '"full"' where key = 'audit';

-- Two real jobs enqueued together: time-ordered ids, different numbers and random tails.
create temporary table pair on commit drop as
select e.job_id, j.msg_id
from generate_series(1, 2) g
cross join lateral conveyor.enqueue(conveyor.default_tenant_id(), 'enrich', '{}'::jsonb,
                                    'pgtap-lookup-pair-' || g) e
join public.jobs j on j.id = e.job_id;
select isnt((select count(distinct right(job_id::text, 8)) from pair), 1::bigint,
  'two jobs enqueued together have different last 8 hex digits');
select is((select array_agg(f.id order by f.id)
           from pair p cross join lateral public.operator_find_jobs(right(p.job_id::text, 8)) f),
          (select array_agg(job_id order by job_id) from pair),
  'each is found by the 8 hex digits shown for it');

-- j1, j2 share their first 8 hex digits as jobs of the same minute do; j2 died (d1).
insert into public.jobs (id, tenant_id, msg_id, kind, queue_name, idempotency_key, status,
                         attempts, finished_at, created_at)
values ('0badcafe-0001-7000-8000-00000000a001', conveyor.default_tenant_id(),
        nextval('conveyor.job_number_seq'), 'enrich', 'q_enrich', 'pgtap-lookup-1',
        'completed', 1, now(), now() - interval '2 seconds'),
       ('0badcafe-0002-7000-8000-00000000a002', conveyor.default_tenant_id(),
        nextval('conveyor.job_number_seq'), 'enrich', 'q_enrich', 'pgtap-lookup-2',
        'failed', 3, now(), now() - interval '1 second');
insert into public.dead_letter_jobs (id, tenant_id, job_id, kind, queue_name, payload, reason,
                                     attempts)
values ('5eed0000-0000-4000-8000-0000000000d1', conveyor.default_tenant_id(),
        '0badcafe-0002-7000-8000-00000000a002', 'enrich', 'q_enrich', '{}', 'boom', 3);
insert into public.content_jobs (id, idempotency_key, brief, max_attempts, status, finished_at)
values ('c0de0000-0000-4000-8000-0000000000c1', 'pgtap-lookup-c1', '{"topic":"t"}', 2,
        'completed', now()),
       ('c0de0000-0000-4000-8000-007777123456', 'pgtap-lookup-c2', '{"topic":"t"}', 2,
        'completed', now());
create temporary table n on commit drop as
select (select msg_id from public.jobs where idempotency_key = 'pgtap-lookup-1') as n1,
       (select msg_id from public.jobs where idempotency_key = 'pgtap-lookup-2') as n2;

-- By number.
select is((select f.id::text || ' ' || f.matched from public.operator_find_jobs('#' || (select n1 from n)) f),
  '0badcafe-0001-7000-8000-00000000a001 number', '#1234: the job with that number');
select is((select f.id::text from public.operator_find_jobs((select n1 from n)::text) f),
  '0badcafe-0001-7000-8000-00000000a001', '1234: the same');
select is((select f.dead_letter_id::text || ' ' || f.status
           from public.operator_find_jobs((select n2 from n)::text) f),
  '5eed0000-0000-4000-8000-0000000000d1 failed', 'a dead job comes with its newest dead letter');
select is((select count(*)::int from public.operator_find_jobs('#' || (select n2 from n) * 1000 + 7)),
  0, 'a number no job has: nothing');
select is((select count(*)::int from public.operator_find_jobs('0')), 0,
  'a short number no job has: nothing (too short to be part of an id)');

-- By the whole id, a prefix, a suffix.
select is((select f.matched from public.operator_find_jobs('0badcafe-0001-7000-8000-00000000a001') f),
  'id', 'the whole id');
select is((select f.id::text from public.operator_find_jobs('0BADCAFE00017000800000000000A001') f),
  '0badcafe-0001-7000-8000-00000000a001', 'the whole id without dashes, any case');
select is((select array_agg(f.id::text || ' ' || f.total order by f.created_at desc)
           from public.operator_find_jobs('0badcafe') f),
  array['0badcafe-0002-7000-8000-00000000a002 2', '0badcafe-0001-7000-8000-00000000a001 2'],
  'a prefix two jobs share: both, newest first, with the total');
select is((select f.id::text || ' ' || f.matched from public.operator_find_jobs('0badcafe-0001') f),
  '0badcafe-0001-7000-8000-00000000a001 prefix', 'a longer prefix, with its dash: one');
select is((select f.id::text || ' ' || f.matched from public.operator_find_jobs('0000a001') f),
  '0badcafe-0001-7000-8000-00000000a001 suffix', 'the last 8 hex digits: one');
select is((select f.id::text from public.operator_find_jobs('8000-00000000A001') f),
  '0badcafe-0001-7000-8000-00000000a001', 'a longer suffix, with a dash, upper case');

-- Dead letters and content jobs.
select is((select concat_ws(' ', f.source, f.job_number = (select n2 from n), f.job_id, f.kind, f.status)
           from public.operator_find_jobs('000000d1') f),
  'dead_letter t 0badcafe-0002-7000-8000-00000000a002 enrich dead',
  'a dead letter by its last digits: its job, number, kind; status dead');
select is((select concat_ws(' ', f.source, f.kind, f.status, f.job_number is null)
           from public.operator_find_jobs('c0de0000-0000-4000-8000-0000000000C1') f),
  'content_job content completed t', 'a content job by its id');
select is((select f.id::text from public.operator_find_jobs('000000c1') f),
  'c0de0000-0000-4000-8000-0000000000c1', 'a content job by its last digits');
select is((select f.id::text from public.operator_find_jobs('7777123456') f),
  'c0de0000-0000-4000-8000-007777123456', 'digits that are no job''s number: part of an id');
update public.content_jobs set id = ('c0de0000-0000-4000-8000-' || lpad((select n1 from n)::text, 12, '0'))::uuid
where idempotency_key = 'pgtap-lookup-c2';
select is((select array_agg(f.source) from public.operator_find_jobs((select n1 from n)::text) f),
  array['job'], 'digits that are a job''s number: that job, even when an id ends with them');

-- Nothing, and refused input (SQLSTATE 22023: HTTP 400 over the API).
select is((select count(*)::int from public.operator_find_jobs('fedcba98')), 0,
  'a fragment of no id: nothing');
select throws_ok($$select * from public.operator_find_jobs('xyz')$$, '22023',
  'operator_find_jobs: "xyz" is not a job reference', 'not hex: refused');
select throws_ok($$select * from public.operator_find_jobs('abc')$$, '22023',
  'operator_find_jobs: "abc" is not a job reference', '3 hex digits: refused');
select throws_ok($$select * from public.operator_find_jobs('#')$$, '22023',
  'operator_find_jobs: "#" is not a job reference', 'a bare #: refused');
select throws_ok($$select * from public.operator_find_jobs('0badcafe-0001-7000-8000-00000000a001f')$$,
  '22023', 'operator_find_jobs: "0badcafe-0001-7000-8000-00000000a001f" is not a job reference',
  '33 hex digits: refused');
select throws_ok($$select * from public.operator_find_jobs(null)$$, '22023',
  'operator_find_jobs: "" is not a job reference', 'null: refused');
select throws_ok($$select * from public.operator_find_jobs('0bad', 0)$$, 'P0001',
  'operator_find_jobs: p_limit must be between 1 and 1000', 'the limit is checked');

-- Many: p_limit rows, the total counted up to 1001.
insert into public.content_jobs (id, idempotency_key, brief, max_attempts)
select ('feed0000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'pgtap-lookup-many-' || g,
       '{"topic":"t"}', 2
from generate_series(1, 1005) g;
select is((select array[count(*), max(total)]::int[] from public.operator_find_jobs('feed0000') f),
  array[10, 1001], '1,005 matches: 10 shown, the total capped at 1001 (more than 1000)');
select is((select array[count(*), max(total)]::int[] from public.operator_find_jobs('feed0000', 3) f),
  array[3, 1001], 'p_limit rows');

-- The job number in the tail and the dead-letter panel.
insert into public.job_events (job_id, tenant_id, type, payload)
values ('0badcafe-0002-7000-8000-00000000a002', conveyor.default_tenant_id(), 'dead_lettered',
        '{"error":"boom"}');
select is((select x.job_number from public.operator_events(p_limit => 5) x
           where x.job_id = '0badcafe-0002-7000-8000-00000000a002'),
  (select n2 from n), 'operator_events: a queue job''s event carries its number');
select is((select e ->> 'job_number' from jsonb_array_elements(public.operator_dead_letters(1000) -> 'latest') e
           where e ->> 'id' = '5eed0000-0000-4000-8000-0000000000d1'),
  (select n2 from n)::text, 'operator_dead_letters: each letter with its job''s number');

-- Who may call it: operators only.
select ok(has_function_privilege('service_role', 'public.operator_find_jobs(text, int)', 'execute'),
  'service_role may call it');
select ok(not has_function_privilege('anon', 'public.operator_find_jobs(text, int)', 'execute')
          and not has_function_privilege('authenticated', 'public.operator_find_jobs(text, int)', 'execute'),
  'anon and authenticated may not');

-- A suffix is looked for among the newest 100,000 queue jobs (by id: time order); an older
-- job is still found by its number and its prefix.
insert into public.jobs (id, tenant_id, msg_id, kind, queue_name, idempotency_key, status,
                         attempts, finished_at)
select ('fffe0000-0000-7000-8000-' || lpad(g::text, 12, '0'))::uuid,
       conveyor.default_tenant_id(), nextval('conveyor.job_number_seq'), 'enrich', 'q_enrich',
       'pgtap-lookup-bound-' || g, 'completed', 1, now()
from generate_series(1, 100000) g;
select is((select count(*)::int from public.operator_find_jobs('0000a001')), 0,
  'behind 100,000 newer jobs, a suffix no longer finds a job');
select is((select array_agg(f.matched order by f.matched)
           from (select * from public.operator_find_jobs('#' || (select n1 from n))
                 union all
                 select * from public.operator_find_jobs('0badcafe-0001')) f),
  array['number', 'prefix'], 'its number and a prefix still do');

select * from finish();
rollback;
