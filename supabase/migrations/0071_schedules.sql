-- Schedules (seed 004): a 5-field cron expression (UTC) + kind + payload per tenant,
-- materialised into jobs by pg_cron once a minute, EXACTLY ONCE per due time.
--
-- Exactly once rests on three guards, strongest last:
--   1. the materialiser locks each due schedule FOR UPDATE SKIP LOCKED, so two runs at the
--      same time work on different schedules, and a run that locks a row after another
--      committed re-reads it (next_run_at moved on, so the row no longer qualifies);
--   2. conveyor.schedule_runs is unique on (schedule_id, run_at): a due time is inserted
--      once, and only the run that inserted it enqueues;
--   3. the job's idempotency key is derived from schedule id + run time, so even a
--      schedule_runs row lost to a manual delete cannot enqueue the same run twice.
--
-- Catch-up after downtime is bounded: a run fires at most `schedule_max_catchup` (default
-- 5) due times per schedule, the most recent ones; older missed due times are skipped (and
-- counted in the result). Paused schedules (enabled = false) fire nothing: their due times
-- pass, so re-enabling one does not replay the pause.

insert into conveyor.settings (key, value, description) values
  ('schedule_max_catchup', '5',
   'most due times one schedule fires in one materialiser run (catch-up after downtime)')
on conflict (key) do nothing;

-- ---------------------------------------------------------------------------------------
-- The cron matcher. Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of
-- week 0-7 (0 and 7 are Sunday). Each field is a comma list of `*`, `n` or `n-m`, each
-- optionally `/step` (`n/step` means n to the field's maximum). Times are UTC. As in Vixie
-- cron, when both day fields are restricted (neither starts with `*`) a day matches if
-- EITHER matches; otherwise both must.
-- ---------------------------------------------------------------------------------------
create type conveyor.cron_spec as (
  minutes int[],
  hours int[],
  days int[],
  months int[],
  weekdays int[],
  days_star boolean,
  weekdays_star boolean
);

-- One field: the sorted set of values it allows.
create function conveyor.cron_field(p_text text, p_min int, p_max int, p_what text)
returns int[]
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_out int[] := '{}';
  v_item text;
  v_m text[];
  v_lo int;
  v_hi int;
  v_step int;
begin
  foreach v_item in array string_to_array(coalesce(p_text, ''), ',') loop
    -- 1: the range ('*' or n or n-m), 2: n, 3: m, 4: step
    v_m := regexp_match(v_item, '^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:/(\d{1,2}))?$');
    if v_m is null then
      raise exception 'cron: invalid % field "%"', p_what, p_text
        using errcode = '22023',
              hint = 'use *, n, n-m, lists (a,b) and steps (*/n, n-m/s)';
    end if;
    if v_m[1] = '*' then
      v_lo := p_min;
      v_hi := p_max;
    else
      v_lo := v_m[2]::int;
      v_hi := coalesce(v_m[3]::int, case when v_m[4] is null then v_lo else p_max end);
    end if;
    v_step := coalesce(v_m[4]::int, 1);
    if v_lo < p_min or v_hi > p_max or v_lo > v_hi or v_step < 1 then
      raise exception 'cron: % field "%" is out of range (% to %)', p_what, p_text, p_min, p_max
        using errcode = '22023';
    end if;
    v_out := v_out || array(select generate_series(v_lo, v_hi, v_step));
  end loop;
  if cardinality(v_out) = 0 then
    raise exception 'cron: empty % field', p_what using errcode = '22023';
  end if;
  return array(select distinct x from unnest(v_out) as x order by x);
end
$$;

create function conveyor.cron_parse(p_expr text) returns conveyor.cron_spec
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_f text[] := regexp_split_to_array(btrim(coalesce(p_expr, '')), '\s+');
  v_spec conveyor.cron_spec;
begin
  if cardinality(v_f) <> 5 then
    raise exception 'cron: "%" must have 5 fields (minute hour day-of-month month day-of-week)',
      p_expr using errcode = '22023';
  end if;
  v_spec.minutes := conveyor.cron_field(v_f[1], 0, 59, 'minute');
  v_spec.hours := conveyor.cron_field(v_f[2], 0, 23, 'hour');
  v_spec.days := conveyor.cron_field(v_f[3], 1, 31, 'day-of-month');
  v_spec.months := conveyor.cron_field(v_f[4], 1, 12, 'month');
  v_spec.weekdays := array(
    select distinct x % 7
    from unnest(conveyor.cron_field(v_f[5], 0, 7, 'day-of-week')) as x
    order by 1);
  v_spec.days_star := left(v_f[3], 1) = '*';
  v_spec.weekdays_star := left(v_f[5], 1) = '*';
  return v_spec;
end
$$;

-- Does the spec allow this (UTC) day?
create function conveyor.cron_day_matches(p_spec conveyor.cron_spec, p_day date)
returns boolean
language sql immutable parallel safe
set search_path = ''
as $$
  select extract(month from p_day)::int = any (p_spec.months)
     and case
           when p_spec.days_star or p_spec.weekdays_star then
             extract(day from p_day)::int = any (p_spec.days)
             and extract(dow from p_day)::int = any (p_spec.weekdays)
           else
             extract(day from p_day)::int = any (p_spec.days)
             or extract(dow from p_day)::int = any (p_spec.weekdays)
         end
$$;

-- Does the expression fire in the (UTC) minute of p_at?
create function conveyor.cron_matches(p_expr text, p_at timestamptz) returns boolean
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_spec conveyor.cron_spec := conveyor.cron_parse(p_expr);
  v_t timestamp := p_at at time zone 'UTC';
begin
  if p_at is null then
    return null;
  end if;
  return extract(minute from v_t)::int = any (v_spec.minutes)
     and extract(hour from v_t)::int = any (v_spec.hours)
     and conveyor.cron_day_matches(v_spec, v_t::date);
end
$$;

-- How far the matcher searches: 8 years and a day, so a 29 February schedule always finds
-- its next leap day (2096 → 2104 has none for 8 years). Beyond that it never fires.
create function conveyor.cron_horizon_days() returns int
language sql immutable parallel safe
set search_path = ''
as $$ select 2923 $$;

-- The first due time strictly after p_after (minute-aligned), or NULL if it never fires.
-- Walks days, jumping over months the expression excludes, and picks the first allowed
-- hour and minute of the first allowed day: a few iterations for common expressions.
create function conveyor.cron_next(p_expr text, p_after timestamptz) returns timestamptz
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_spec conveyor.cron_spec := conveyor.cron_parse(p_expr);
  v_t timestamp;
  v_day date;
  v_end date;
  v_h int;
  v_m int;
  v_hh int;
  v_mm int;
begin
  if p_after is null or not isfinite(p_after) then
    return null;
  end if;
  v_t := date_trunc('minute', p_after at time zone 'UTC') + interval '1 minute';
  v_day := v_t::date;
  v_end := v_day + conveyor.cron_horizon_days();
  v_h := extract(hour from v_t)::int;
  v_m := extract(minute from v_t)::int;
  while v_day <= v_end loop
    if not (extract(month from v_day)::int = any (v_spec.months)) then
      v_day := (date_trunc('month', v_day) + interval '1 month')::date;
      v_h := 0;
      v_m := 0;
      continue;
    end if;
    if conveyor.cron_day_matches(v_spec, v_day) then
      select min(h) into v_hh
      from unnest(v_spec.hours) as h
      where h > v_h or (h = v_h and v_m <= v_spec.minutes[cardinality(v_spec.minutes)]);
      if v_hh is not null then
        select min(m) into v_mm from unnest(v_spec.minutes) as m where v_hh > v_h or m >= v_m;
        return (v_day + make_time(v_hh, v_mm, 0)) at time zone 'UTC';
      end if;
    end if;
    v_day := v_day + 1;
    v_h := 0;
    v_m := 0;
  end loop;
  return null;
end
$$;

-- The latest due time at or before p_at (minute-aligned), or NULL if none in the horizon.
-- The mirror of cron_next; the materialiser walks back from "now" with it, so catching up
-- after a long outage costs at most schedule_max_catchup steps, not one per missed minute.
create function conveyor.cron_prev(p_expr text, p_at timestamptz) returns timestamptz
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_spec conveyor.cron_spec := conveyor.cron_parse(p_expr);
  v_t timestamp;
  v_day date;
  v_end date;
  v_h int;
  v_m int;
  v_hh int;
  v_mm int;
begin
  if p_at is null or not isfinite(p_at) then
    return null;
  end if;
  v_t := date_trunc('minute', p_at at time zone 'UTC');
  v_day := v_t::date;
  v_end := v_day - conveyor.cron_horizon_days();
  v_h := extract(hour from v_t)::int;
  v_m := extract(minute from v_t)::int;
  while v_day >= v_end loop
    if not (extract(month from v_day)::int = any (v_spec.months)) then
      v_day := date_trunc('month', v_day)::date - 1;
      v_h := 23;
      v_m := 59;
      continue;
    end if;
    if conveyor.cron_day_matches(v_spec, v_day) then
      select max(h) into v_hh
      from unnest(v_spec.hours) as h
      where h < v_h or (h = v_h and v_m >= v_spec.minutes[1]);
      if v_hh is not null then
        select max(m) into v_mm from unnest(v_spec.minutes) as m where v_hh < v_h or m <= v_m;
        return (v_day + make_time(v_hh, v_mm, 0)) at time zone 'UTC';
      end if;
    end if;
    v_day := v_day - 1;
    v_h := 23;
    v_m := 59;
  end loop;
  return null;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The schedules table's bookkeeping (public.schedules, 0011_tenant_tables.sql): a trigger
-- validates the expression and keeps next_run_at, from `materialised_through` (every due
-- time at or before it has been fired or deliberately skipped).
--
-- SECURITY DEFINER: the API roles may execute nothing in schema conveyor (security_lints
-- holds that line), and a trigger runs with the caller's rights, so creating or re-timing a
-- schedule through the API (service_role over REST, POST /rest/v1/schedules) would fail with
-- 42501 on cron_next. It reads only the row it is given and the clock. EXECUTE stays revoked
-- from PUBLIC: a trigger function cannot be called directly.
-- ---------------------------------------------------------------------------------------
create function conveyor.schedules_before_write() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.materialised_through := coalesce(new.materialised_through, new.created_at, now());
  elsif new.cron is distinct from old.cron then
    -- A new expression applies from now on: its past due times are not replayed.
    new.materialised_through := greatest(coalesce(old.materialised_through, old.created_at),
                                         now());
  else
    return new;
  end if;
  new.next_run_at := conveyor.cron_next(new.cron, new.materialised_through);
  if new.next_run_at is null then
    raise exception 'schedules: cron expression "%" never fires', new.cron
      using errcode = '22023';
  end if;
  return new;
end
$$;

create trigger schedules_before_write
  before insert or update of cron on public.schedules
  for each row execute function conveyor.schedules_before_write();

-- ---------------------------------------------------------------------------------------
-- materialise_schedules: one run of the materialiser (pg_cron calls it every minute; an
-- operator or a test may call it with an explicit clock). Returns one row per due time it
-- handled: 'enqueued' (with the job), 'failed' (enqueue raised; the error is kept on the
-- run and the schedule), or 'skipped' for missed due times beyond the catch-up bound
-- (one row per schedule, run_at = the newest skipped time).
-- ---------------------------------------------------------------------------------------
create function public.materialise_schedules(
  p_now timestamptz default null,
  p_limit int default 1000
) returns table (schedule_id uuid, tenant_id uuid, run_at timestamptz, job_id uuid, outcome text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
  v_max int := greatest(1, coalesce(conveyor.setting_int('schedule_max_catchup')::int, 5));
  v_s public.schedules;
  v_due timestamptz[];
  v_t timestamptz;
  v_run timestamptz;
  v_job record;
  v_error text;
begin
  if p_limit is null or p_limit < 1 then
    raise exception 'materialise_schedules: p_limit must be at least 1';
  end if;
  for v_s in
    select * from public.schedules s
    where s.next_run_at <= v_now
    order by s.next_run_at, s.id
    limit p_limit
    for update skip locked
  loop
    if not v_s.enabled then
      -- Paused: let the due times pass.
      update public.schedules s
      set materialised_through = greatest(s.materialised_through, v_now),
          next_run_at = conveyor.cron_next(s.cron, greatest(s.materialised_through, v_now))
      where s.id = v_s.id;
      continue;
    end if;

    -- The due times in (materialised_through, now], newest first, at most v_max of them.
    v_due := '{}';
    v_t := conveyor.cron_prev(v_s.cron, v_now);
    while v_t is not null and v_t > v_s.materialised_through and cardinality(v_due) < v_max loop
      v_due := v_t || v_due;
      v_t := conveyor.cron_prev(v_s.cron, v_t - interval '1 minute');
    end loop;
    if v_t is not null and v_t > v_s.materialised_through then
      return query select v_s.id, v_s.tenant_id, v_t, null::uuid, 'skipped'::text;
    end if;

    v_error := null;
    foreach v_run in array v_due loop
      insert into conveyor.schedule_runs as r (schedule_id, run_at)
      values (v_s.id, v_run)
      on conflict do nothing;
      continue when not found; -- another run fired it (guard 2)
      begin
        select * into v_job from conveyor.enqueue(
          p_tenant_id => v_s.tenant_id,
          p_kind => v_s.kind,
          p_payload => v_s.payload,
          p_idempotency_key => format('schedule:%s:%s', v_s.id,
            to_char(v_run at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')),
          p_priority => v_s.priority,
          p_headers => jsonb_build_object('schedule_id', v_s.id, 'scheduled_for', v_run),
          p_source => 'schedule',
          p_fn => 'materialise_schedules'
        );
        update conveyor.schedule_runs r set job_id = v_job.job_id
        where r.schedule_id = v_s.id and r.run_at = v_run;
        return query select v_s.id, v_s.tenant_id, v_run, v_job.job_id, 'enqueued'::text;
      exception when others then
        -- One broken schedule must not stop the others; the due time counts as handled.
        v_error := sqlerrm;
        update conveyor.schedule_runs r set error = v_error
        where r.schedule_id = v_s.id and r.run_at = v_run;
        return query select v_s.id, v_s.tenant_id, v_run, null::uuid, 'failed'::text;
      end;
    end loop;

    update public.schedules s
    set last_run_at = coalesce(greatest(s.last_run_at, v_due[cardinality(v_due)]), s.last_run_at),
        materialised_through = greatest(s.materialised_through, v_now),
        next_run_at = conveyor.cron_next(s.cron, greatest(s.materialised_through, v_now)),
        last_error = case when cardinality(v_due) > 0 then v_error else s.last_error end,
        updated_at = now()
    where s.id = v_s.id;
  end loop;
end
$$;

comment on function public.materialise_schedules(timestamptz, int) is
  'Enqueues each enabled schedule''s due runs exactly once (pg_cron, every minute).';

revoke all on function
  conveyor.cron_field(text, int, int, text),
  conveyor.cron_parse(text),
  conveyor.cron_day_matches(conveyor.cron_spec, date),
  conveyor.cron_matches(text, timestamptz),
  conveyor.cron_horizon_days(),
  conveyor.cron_next(text, timestamptz),
  conveyor.cron_prev(text, timestamptz),
  conveyor.schedules_before_write()
  from public;
revoke all on function public.materialise_schedules(timestamptz, int)
  from public, anon, authenticated;
grant execute on function public.materialise_schedules(timestamptz, int) to service_role;

-- Every minute, where pg_cron exists (only in cron.database_name: the test template and
-- other scratch databases built from these migrations have no scheduler).
do $$
begin
  if exists (select from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-schedules', '* * * * *',
                          'select count(*) from public.materialise_schedules()');
  end if;
end
$$;
