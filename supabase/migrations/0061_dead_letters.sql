-- Dead letters (seed 002's DLQ and its consumer, seed 004's dead_letter_jobs), after a job
-- used up its attempts or was cancelled (conveyor.dead_letter, 0053_queue_consume.sql: its
-- message is archived, a copy goes to q_dlq, a dead_letter_jobs row is written):
--
--   * the statement that dead-lettered kicks the consumer, dlq-worker (debounced, through
--     pg_net after commit); a per-minute cron sweep is the safety net for kicks that were
--     lost (pg_net's queue does not survive a crash);
--   * dlq-worker calls process_dead_letters: it acknowledges the rows and raises (or bumps)
--     one open `dead_letter` alert per tenant and kind;
--   * that alert resolves once nothing is left to act on: when the last dead letter of the
--     tenant and kind that was not redriven is redriven or deleted;
--   * operators list, inspect and redrive (service_role); tenants read their own rows through
--     RLS (GET /rest/v1/dead_letter_jobs with their token) and cannot redrive.

-- ---------------------------------------------------------------------------------------
-- Starting the consumer
-- ---------------------------------------------------------------------------------------

-- One kick per statement that dead-letters, however many jobs it moved.
create function conveyor.dead_letter_jobs_kick() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform conveyor.kick('dlq');
  return null;
end
$$;

create trigger dead_letter_jobs_kick after insert on public.dead_letter_jobs
  for each statement execute function conveyor.dead_letter_jobs_kick();

-- Cron's safety net: call the consumer when q_dlq holds visible messages.
create function conveyor.sweep_dead_letters() returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pgmq.q_q_dlq where vt <= clock_timestamp()) then
    return false;
  end if;
  perform conveyor.invoke_dead_letter_worker('cron');
  return true;
end
$$;

do $$
begin
  if exists (select 1 from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-dead-letters', '* * * * *',
                          'select conveyor.sweep_dead_letters()');
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The consumer and its alert
-- ---------------------------------------------------------------------------------------

-- raise_dead_letter_alert: one open `dead_letter` alert per tenant and kind; a new dead
-- letter bumps its count (value) and message instead of opening another (the open-alert
-- unique index of alert_history). Used by process_dead_letters and by the pg-boss
-- provider's dead-letter consumer. Nothing is raised for an unknown tenant.
create function public.raise_dead_letter_alert(
  p_tenant_id uuid,
  p_kind text,
  p_reason text,
  p_now timestamptz default null
) returns table (alert_id uuid, alert_count numeric)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_reason text := coalesce(p_reason, 'no reason given');
begin
  if not exists (select 1 from public.tenants t where t.id = p_tenant_id) then
    return;
  end if;
  return query
  insert into public.alert_history as a (tenant_id, rule, subject, severity, message, value,
                                         threshold, raised_at)
  values (p_tenant_id, 'dead_letter', p_kind, 'warning',
          format('1 %s job dead-lettered (last: %s)', p_kind, v_reason), 1, 1, v_now)
  on conflict (tenant_id, rule, subject) where status = 'open'
  do update set
    value = coalesce(a.value, 0) + 1,
    message = format('%s %s jobs dead-lettered since %s (last: %s)',
                     coalesce(a.value, 0) + 1, p_kind,
                     to_char(a.raised_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                     v_reason)
  returning a.id, a.value;
end
$$;

-- process_dead_letters: the dead-letter consumer, one transaction per batch. Reads up to
-- p_qty messages of q_dlq, acknowledges their dead_letter_jobs rows, raises (or bumps) one
-- open `dead_letter` alert per tenant and kind (the open-alert unique index deduplicates),
-- and archives the messages. A message whose ledger row is gone (pruned) is archived too.
-- Returns what it processed, for the worker to log.
create function public.process_dead_letters(
  p_worker text,
  p_qty int default 50,
  p_now timestamptz default null
) returns table (
  msg_id bigint,
  dead_letter_id uuid,
  job_id uuid,
  tenant_id uuid,
  kind text,
  reason text,
  attempts int,
  alert_id uuid,
  alert_count numeric
)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_now timestamptz := coalesce(p_now, clock_timestamp());
  v_msg record;
  v_dead public.dead_letter_jobs;
  v_kind text;
  v_tenant uuid;
  v_alert_id uuid;
  v_alert_value numeric;
begin
  if p_qty is null or p_qty < 1 or p_qty > 1000 then
    raise exception 'process_dead_letters: p_qty must be between 1 and 1000';
  end if;
  if coalesce(btrim(p_worker), '') = '' then
    raise exception 'process_dead_letters: p_worker must name the worker';
  end if;
  for v_msg in select * from pgmq.read(conveyor.dlq_name(), 60, p_qty) order by 1 loop
    select * into v_dead from public.dead_letter_jobs d
    where d.dlq_msg_id = v_msg.msg_id
    for update;
    v_kind := coalesce(v_dead.kind, v_msg.message ->> 'kind', 'unknown');
    v_tenant := coalesce(v_dead.tenant_id, (v_msg.message ->> 'tenant_id')::uuid,
                         conveyor.default_tenant_id());
    v_alert_id := null;
    v_alert_value := null;
    if v_dead.id is not null then
      update public.dead_letter_jobs d set acknowledged_at = v_now
      where d.id = v_dead.id and d.acknowledged_at is null;
    end if;
    select a.alert_id, a.alert_count into v_alert_id, v_alert_value
    from public.raise_dead_letter_alert(v_tenant, v_kind,
      coalesce(v_dead.reason, v_msg.message ->> 'reason'), v_now) a;
    perform pgmq.archive(conveyor.dlq_name(), v_msg.msg_id);
    if v_dead.id is not null then
      insert into public.job_events (job_id, tenant_id, type, payload)
      values (v_dead.job_id, v_dead.tenant_id, 'dead_letter_acknowledged',
              jsonb_build_object('worker', p_worker, 'dlq_msg_id', v_msg.msg_id,
                                 'alert_id', v_alert_id));
    end if;
    return query select v_msg.msg_id, v_dead.id, coalesce(v_dead.job_id,
                          (v_msg.message ->> 'job_id')::uuid),
                        v_tenant, v_kind,
                        coalesce(v_dead.reason, v_msg.message ->> 'reason'),
                        coalesce(v_dead.attempts, (v_msg.message ->> 'attempts')::int),
                        v_alert_id, v_alert_value;
  end loop;
end
$$;

-- Resolves the open `dead_letter` alert of a tenant and kind once none of its dead letters
-- is left un-redriven: when the last one is redriven (redrive_dead_job,
-- redrive_dead_letter_jobs, the CLI) or deleted (retention, tenant clean-up). Without it
-- such an alert would stay open for ever, and the dashboard and `conveyor_alerts_open` would
-- keep reporting a DLQ that is already empty. A new dead letter later opens a new alert (the
-- history keeps each episode), as for the rules evaluate_alerts owns.
create function conveyor.resolve_dead_letter_alert() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- Transition tables: one pass per statement, however many letters it touched. (A column
  -- list, `update of redriven_at`, cannot go with transition tables; the filter below does it.)
  update public.alert_history a
  set status = 'resolved', resolved_at = clock_timestamp()
  from (select distinct c.tenant_id, c.kind from changed c
        -- An update matters only once it redrives (acknowledging a letter does not).
        where tg_op = 'DELETE' or c.redriven_at is not null) k
  where a.tenant_id = k.tenant_id
    and a.rule = 'dead_letter'
    and a.subject = k.kind
    and a.status = 'open'
    and not exists (
      select 1 from public.dead_letter_jobs d
      where d.tenant_id = k.tenant_id and d.kind = k.kind and d.redriven_at is null);
  return null;
end
$$;

comment on function conveyor.resolve_dead_letter_alert() is
  'Resolves the open dead_letter alert of a tenant and kind once none of its dead letters is left un-redriven.';

create trigger dead_letter_jobs_redriven
after update on public.dead_letter_jobs
referencing new table as changed
for each statement execute function conveyor.resolve_dead_letter_alert();

create trigger dead_letter_jobs_deleted
after delete on public.dead_letter_jobs
referencing old table as changed
for each statement execute function conveyor.resolve_dead_letter_alert();

-- ---------------------------------------------------------------------------------------
-- Operators: list, inspect, redrive (redrive_dead_job itself is in 0053_queue_consume.sql)
-- ---------------------------------------------------------------------------------------

-- Newest first, keyset-paged: pass the last row's created_at as p_before for the next page.
create function public.list_dead_letter_jobs(
  p_tenant_id uuid default null,
  p_kind text default null,
  p_include_redriven boolean default false,
  p_before timestamptz default null,
  p_limit int default 100
) returns setof public.dead_letter_jobs
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'list_dead_letter_jobs: p_limit must be between 1 and 1000';
  end if;
  return query
  select d.*
  from public.dead_letter_jobs d
  where (p_tenant_id is null or d.tenant_id = p_tenant_id)
    and (p_kind is null or d.kind = p_kind)
    and (p_include_redriven or d.redriven_at is null)
    and (p_before is null or d.created_at < p_before)
  order by d.created_at desc, d.id
  limit p_limit;
end
$$;

-- One dead letter with its job and the job's event history.
create function public.inspect_dead_letter_job(p_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_dead public.dead_letter_jobs;
  v_job public.jobs;
begin
  select * into v_dead from public.dead_letter_jobs d where d.id = p_id;
  if not found then
    raise exception 'inspect_dead_letter_job: no dead letter %', p_id using errcode = 'P0002';
  end if;
  select * into v_job from public.jobs j where j.id = v_dead.job_id;
  return jsonb_build_object(
    'dead_letter', to_jsonb(v_dead),
    'job', to_jsonb(v_job),
    'critical', exists (select 1 from public.critical_jobs c where c.job_id = v_dead.job_id),
    'events', coalesce((
      select jsonb_agg(jsonb_build_object('type', e.type, 'at', e.created_at,
                                          'payload', e.payload) order by e.id)
      from public.job_events e where e.job_id = v_dead.job_id), '[]'::jsonb));
end
$$;

-- Redrives up to p_limit not-yet-redriven dead letters (oldest first) of a tenant and/or
-- kind, each through redrive_dead_job. Returns the jobs and their new message ids.
create function public.redrive_dead_letter_jobs(
  p_tenant_id uuid default null,
  p_kind text default null,
  p_limit int default 100
) returns table (job_id uuid, msg_id bigint)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job uuid;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'redrive_dead_letter_jobs: p_limit must be between 1 and 1000';
  end if;
  for v_job in
    select d.job_id
    from public.dead_letter_jobs d
    join public.jobs j on j.id = d.job_id and j.status = 'failed'
    where d.redriven_at is null
      and (p_tenant_id is null or d.tenant_id = p_tenant_id)
      and (p_kind is null or d.kind = p_kind)
    group by d.job_id
    order by min(d.created_at)
    limit p_limit
  loop
    return query select v_job, public.redrive_dead_job(v_job);
  end loop;
end
$$;

revoke all on function conveyor.dead_letter_jobs_kick(), conveyor.sweep_dead_letters(),
  conveyor.resolve_dead_letter_alert() from public;
revoke all on function
  public.raise_dead_letter_alert(uuid, text, text, timestamptz),
  public.process_dead_letters(text, int, timestamptz),
  public.list_dead_letter_jobs(uuid, text, boolean, timestamptz, int),
  public.inspect_dead_letter_job(uuid),
  public.redrive_dead_letter_jobs(uuid, text, int)
  from public, anon, authenticated;
grant execute on function
  public.raise_dead_letter_alert(uuid, text, text, timestamptz),
  public.process_dead_letters(text, int, timestamptz),
  public.list_dead_letter_jobs(uuid, text, boolean, timestamptz, int),
  public.inspect_dead_letter_job(uuid),
  public.redrive_dead_letter_jobs(uuid, text, int)
  to service_role;
