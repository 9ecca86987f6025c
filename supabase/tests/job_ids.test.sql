-- Time-ordered job ids (conveyor.new_job_id, 0011_tenant_tables.sql).
begin;
select plan(4);

select matches(conveyor.new_job_id()::text,
  '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
  'a new job id has the UUIDv7 layout (version 7, RFC variant)');
select is(
  (select count(distinct conveyor.new_job_id())::int from generate_series(1, 10000)),
  10000, '10,000 ids in a burst are all different');
create temporary table ids (n int, id uuid) on commit drop;
insert into ids values (1, conveyor.new_job_id());
select pg_sleep(0.003);
insert into ids values (2, conveyor.new_job_id());
select pg_sleep(0.003);
insert into ids values (3, conveyor.new_job_id());
select is((select array_agg(n order by id) from ids), array[1, 2, 3],
  'ids taken a few ms apart sort in time order');

create temporary table enq on commit drop as
select * from conveyor.enqueue(conveyor.default_tenant_id(), 'enrich', '{}'::jsonb, 'job-ids-1');
select matches((select j.id::text from public.jobs j where j.id = (select job_id from enq)),
  '^[0-9a-f]{8}-[0-9a-f]{4}-7', 'conveyor.enqueue gives jobs time-ordered ids');

select * from finish();
rollback;
