-- The cron matcher behind schedules (0071_schedules.sql): parsing (5 fields, *, lists, ranges, steps,
-- errors), matching (UTC, the Vixie day-of-month/day-of-week rule), next/previous due time
-- (month and year rollover, leap days, never), a brute-force cross-check of the search,
-- and the schedules trigger that validates expressions.
begin;
select plan(57);

-- Parsing ------------------------------------------------------------------------------
select is((conveyor.cron_parse('*/15 * * * *')).minutes, array[0, 15, 30, 45], '*/15 minutes');
select is((conveyor.cron_parse('1-5/2 * * * *')).minutes, array[1, 3, 5], 'a stepped range');
select is((conveyor.cron_parse('5/20 * * * *')).minutes, array[5, 25, 45], 'n/step runs to the maximum');
select is((conveyor.cron_parse('0,30,15,30 * * * *')).minutes, array[0, 15, 30], 'lists are sorted, duplicates dropped');
select is((conveyor.cron_parse('0 9-17 * * *')).hours, array[9, 10, 11, 12, 13, 14, 15, 16, 17], 'an hour range');
select is((conveyor.cron_parse('* * * * 7')).weekdays, array[0], '7 is Sunday');
select is((conveyor.cron_parse('* * * * 0,7')).weekdays, array[0], '0 and 7 are the same day');
select is((conveyor.cron_parse('* * * * *')).weekdays, array[0, 1, 2, 3, 4, 5, 6], '* is every weekday');
select is((conveyor.cron_parse(' 0   0  1 1  * ')).months, array[1], 'extra whitespace is fine');
select ok((conveyor.cron_parse('0 0 */2 * 1')).days_star and not (conveyor.cron_parse('0 0 */2 * 1')).weekdays_star,
  'a field starting with * counts as unrestricted (Vixie)');

select throws_ok($$select conveyor.cron_parse('* * * *')$$, '22023', null, 'four fields are refused');
select throws_ok($$select conveyor.cron_parse('* * * * * *')$$, '22023', null, 'six fields are refused');
select throws_ok($$select conveyor.cron_parse('')$$, '22023', null, 'an empty expression is refused');
select throws_ok($$select conveyor.cron_parse('60 * * * *')$$, '22023', null, 'minute 60 is refused');
select throws_ok($$select conveyor.cron_parse('* 24 * * *')$$, '22023', null, 'hour 24 is refused');
select throws_ok($$select conveyor.cron_parse('* * 0 * *')$$, '22023', null, 'day 0 is refused');
select throws_ok($$select conveyor.cron_parse('* * * 13 *')$$, '22023', null, 'month 13 is refused');
select throws_ok($$select conveyor.cron_parse('* * * * 8')$$, '22023', null, 'weekday 8 is refused');
select throws_ok($$select conveyor.cron_parse('*/0 * * * *')$$, '22023', null, 'step 0 is refused');
select throws_ok($$select conveyor.cron_parse('5-1 * * * *')$$, '22023', null, 'a backwards range is refused');
select throws_ok($$select conveyor.cron_parse('1,,2 * * * *')$$, '22023', null, 'an empty list item is refused');
select throws_ok($$select conveyor.cron_parse('@hourly')$$, '22023', null, 'macros are not cron fields');
select throws_ok($$select conveyor.cron_parse('a * * * *')$$, '22023',
  'cron: invalid minute field "a"', 'the error names the field');

-- Matching (UTC) -------------------------------------------------------------------------
select is(
  (select array_agg(m.ok order by m.n) from (values
    (1, conveyor.cron_matches('*/15 * * * *', '2025-03-05 10:45:59Z')),
    (2, not conveyor.cron_matches('*/15 * * * *', '2025-03-05 10:46:00Z')),
    (3, conveyor.cron_matches('30 2 * * *', '2025-03-05 03:30:00+01')),      -- 02:30 UTC
    (4, not conveyor.cron_matches('30 2 * * *', '2025-03-05 02:30:00+01')),
    (5, conveyor.cron_matches('0 0 1,15 * 3', '2025-03-05Z')),               -- a Wednesday
    (6, conveyor.cron_matches('0 0 1,15 * 3', '2025-03-15Z')),               -- the 15th
    (7, not conveyor.cron_matches('0 0 1,15 * 3', '2025-03-06Z')),           -- neither
    (8, conveyor.cron_matches('0 0 */2 * 3', '2025-03-05Z')),                -- odd day AND Wed
    (9, not conveyor.cron_matches('0 0 */2 * 3', '2025-03-12Z')),            -- even day
    (10, conveyor.cron_matches('0 12 * * 0', '2025-03-09 12:00Z')),          -- Sunday
    (11, conveyor.cron_matches('0 12 * * 7', '2025-03-09 12:00Z')),
    (12, conveyor.cron_matches('0 0 29 2 *', '2024-02-29Z')),
    (13, not conveyor.cron_matches('0 0 * 1-11 *', '2025-12-01Z'))
  ) as m(n, ok)),
  array_fill(true, array[13]),
  'cron_matches: steps, UTC, day-of-month OR day-of-week, Sunday as 0 and 7, months');

-- Next and previous due times ----------------------------------------------------------
select is(conveyor.cron_next('*/15 * * * *', '2025-01-01 10:07:30Z'), '2025-01-01 10:15Z', 'next: the next step');
select is(conveyor.cron_next('*/15 * * * *', '2025-01-01 10:15:00Z'), '2025-01-01 10:30Z', 'next: strictly after');
select is(conveyor.cron_next('0 * * * *', '2025-01-01 23:59Z'), '2025-01-02 00:00Z', 'next: day rollover');
select is(conveyor.cron_next('59 23 31 12 *', '2025-12-31 23:59Z'), '2026-12-31 23:59Z', 'next: a year later');
select is(conveyor.cron_next('0 0 1 * *', '2025-01-31 12:00Z'), '2025-02-01 00:00Z', 'next: month rollover');
select is(conveyor.cron_next('0 0 31 * *', '2025-04-01Z'), '2025-05-31 00:00Z', 'next: skips months without a 31st');
select is(conveyor.cron_next('0 0 29 2 *', '2025-01-01Z'), '2028-02-29 00:00Z', 'next: the next leap day');
select is(conveyor.cron_next('0 0 29 2 *', '2096-03-01Z'), '2104-02-29 00:00Z', 'next: 2100 is not a leap year');
select is(conveyor.cron_next('30 2 * * 1', '2025-01-01Z'), '2025-01-06 02:30Z', 'next: the next Monday');
select is(conveyor.cron_next('0 9 * * 1-5', '2025-03-07 09:00Z'), '2025-03-10 09:00Z', 'next: Friday to Monday');
select is(conveyor.cron_next('0 0 1,15 * 3', '2025-03-01Z'), '2025-03-05 00:00Z', 'next: day OR weekday');
select is(conveyor.cron_next('0 0 30 2 *', '2025-01-01Z'), null, 'next: never (30 February)');
select is(conveyor.cron_next('* * * * *', null), null, 'next: of NULL is NULL');
select is(conveyor.cron_prev('*/15 * * * *', '2025-01-01 10:07:30Z'), '2025-01-01 10:00Z', 'prev: the previous step');
select is(conveyor.cron_prev('*/15 * * * *', '2025-01-01 10:15:00Z'), '2025-01-01 10:15Z', 'prev: at or before');
select is(conveyor.cron_prev('0 0 1 * *', '2025-03-01 00:00:59Z'), '2025-03-01 00:00Z', 'prev: seconds are ignored');
select is(conveyor.cron_prev('59 23 31 12 *', '2025-06-01Z'), '2024-12-31 23:59Z', 'prev: a year back');
select is(conveyor.cron_prev('0 0 29 2 *', '2025-01-01Z'), '2024-02-29 00:00Z', 'prev: the last leap day');
select is(conveyor.cron_prev('0 0 30 2 *', '2025-01-01Z'), null, 'prev: never');

-- Brute force: next/prev agree with a minute-by-minute scan of cron_matches' rule.
create temporary table cron_grid on commit drop as
select m from generate_series('2025-02-20Z'::timestamptz, '2025-04-10Z', interval '1 minute') as m;
create temporary table cron_exprs on commit drop as
select e, conveyor.cron_parse(e) as s
from unnest(array['*/7 * * * *', '0 */3 * * *', '15,45 9-17 * * 1-5', '0 0 1,15 * 3',
                  '5/20 2-4/2 * * *', '0 12 * * 7', '30 1 */2 * *', '0 0 * 2-3 *',
                  '0 0 1 * 1-5', '*/30 0 * * 6,0', '10 10 28-31 * *']) as e;
create temporary table cron_hits on commit drop as
select x.e, g.m
from cron_exprs x, cron_grid g
where extract(minute from g.m at time zone 'UTC')::int = any ((x.s).minutes)
  and extract(hour from g.m at time zone 'UTC')::int = any ((x.s).hours)
  and conveyor.cron_day_matches(x.s, (g.m at time zone 'UTC')::date);
select is(
  (select count(*)::int
   from cron_exprs x,
        (select '2025-02-27 22:53:10Z'::timestamptz + i * interval '97 minutes' as at
         from generate_series(0, 250) as i) t
   where conveyor.cron_next(x.e, t.at)
           is distinct from (select min(h.m) from cron_hits h where h.e = x.e and h.m > t.at)),
  0, 'cron_next equals the first matching minute of a brute-force scan');
select is(
  (select count(*)::int
   from cron_exprs x,
        (select '2025-03-10 01:07:10Z'::timestamptz + i * interval '97 minutes' as at
         from generate_series(0, 250) as i) t
   where conveyor.cron_prev(x.e, t.at)
           is distinct from (select max(h.m) from cron_hits h where h.e = x.e and h.m <= t.at)),
  0, 'cron_prev equals the last matching minute of a brute-force scan');
select is(
  (select count(*)::int from cron_exprs x, cron_grid g
   where extract(minute from g.m) = 7 and extract(hour from g.m) in (0, 9, 10)
     and conveyor.cron_matches(x.e, g.m)
         <> exists (select 1 from cron_hits h where h.e = x.e and h.m = g.m)),
  0, 'cron_matches agrees with the scan');

-- The schedules trigger ----------------------------------------------------------------
insert into public.tenants (id, name)
values ('7e000000-0000-0000-0000-000000000001', 'cron-test-tenant');

select throws_ok($$
  insert into public.schedules (tenant_id, name, cron, kind)
  values ('7e000000-0000-0000-0000-000000000001', 'bad', '* * *', 'enrich')$$,
  '22023', null, 'a schedule with a malformed expression is refused');
select throws_ok($$
  insert into public.schedules (tenant_id, name, cron, kind)
  values ('7e000000-0000-0000-0000-000000000001', 'never', '0 0 31 2 *', 'enrich')$$,
  '22023', 'schedules: cron expression "0 0 31 2 *" never fires',
  'a schedule that never fires is refused');

insert into public.schedules (id, tenant_id, name, cron, kind, payload, created_at)
values ('7e000000-0000-0000-0000-0000000000a1', '7e000000-0000-0000-0000-000000000001', 'every5',
        '*/5 * * * *', 'enrich', '{"n": 1}', '2025-01-01 10:02Z');
select is((select next_run_at from public.schedules where name = 'every5'), '2025-01-01 10:05Z'::timestamptz,
  'a new schedule''s next_run_at is its first due time after creation');

-- The materialiser (single-connection behaviour; the race is in tests/schedules_test.ts).
select is((select count(*)::int from public.materialise_schedules('2025-01-01 10:04Z')), 0,
  'nothing is due before the first due time');
select results_eq(
  $$select run_at, outcome from public.materialise_schedules('2025-01-01 10:05:10Z')$$,
  $$values ('2025-01-01 10:05Z'::timestamptz, 'enqueued'::text)$$,
  'the due time is enqueued');
select is((select count(*)::int from public.materialise_schedules('2025-01-01 10:05:40Z')), 0,
  'and only once');
select is(
  (select count(*)::int from public.jobs j
   where j.tenant_id = '7e000000-0000-0000-0000-000000000001'
     and j.idempotency_key = 'schedule:7e000000-0000-0000-0000-0000000000a1:2025-01-01T10:05Z'
     and j.payload = '{"n": 1}' and j.kind = 'enrich'),
  1, 'the job carries the schedule''s tenant, kind, payload and a key derived from schedule and time');

-- Downtime: an hour later, only the newest schedule_max_catchup (5) due times fire.
select results_eq(
  $$select run_at, outcome from public.materialise_schedules('2025-01-01 11:06Z') order by run_at$$,
  $$values ('2025-01-01 10:40Z'::timestamptz, 'skipped'::text),
           ('2025-01-01 10:45Z', 'enqueued'), ('2025-01-01 10:50Z', 'enqueued'),
           ('2025-01-01 10:55Z', 'enqueued'), ('2025-01-01 11:00Z', 'enqueued'),
           ('2025-01-01 11:05Z', 'enqueued')$$,
  'catch-up after downtime is bounded to the newest 5 due times');

-- Paused: due times pass without firing, and resuming does not replay them.
update public.schedules set enabled = false where name = 'every5';
select is((select count(*)::int from public.materialise_schedules('2025-01-01 12:06Z')), 0,
  'a paused schedule fires nothing');
update public.schedules set enabled = true where name = 'every5';
select is((select count(*)::int from public.materialise_schedules('2025-01-01 12:07Z')), 0,
  'resuming does not replay the pause');
select results_eq(
  $$select run_at, outcome from public.materialise_schedules('2025-01-01 12:10:01Z')$$,
  $$values ('2025-01-01 12:10Z'::timestamptz, 'enqueued'::text)$$,
  'a resumed schedule fires its next due time');

select * from finish();
rollback;
