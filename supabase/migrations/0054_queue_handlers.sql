-- What the shipped job handlers write (issue 5): the outreach outbox, enforcement decisions,
-- and the dead-letter consumer's SQL side. Tables are tenant-scoped exactly like seed 004's:
-- tenant_id → tenants ON DELETE RESTRICT, RLS forced with tenant_isolation_policy, clients
-- read their own tenant's rows, only service_role (through the RPCs below) writes.
--
-- Handlers run at least once, so every write here is idempotent per (tenant, job): a retry
-- of a job whose first run already wrote its row gets the same row back (created = false).
-- job_id has no foreign key on purpose: the row is an effect that outlives the ledger's
-- retention, and the pg-boss provider's job ids are not in public.jobs.

create table public.outbox_messages (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null,
  channel text not null check (channel in ('email', 'sms', 'webhook')),
  recipient text not null check (length(recipient) between 1 and 320),
  subject text,
  body text not null,
  template text not null,
  provider text not null,
  provider_message_id text,
  status text not null default 'queued' check (status in ('queued', 'sent', 'failed')),
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint outbox_messages_tenant_job unique (tenant_id, job_id)
);
comment on table public.outbox_messages is
  'Messages rendered by the outreach handler; the local MessageProvider delivers by writing here.';
create index outbox_messages_tenant_created_idx on public.outbox_messages (tenant_id, created_at);

create table public.enforcement_decisions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete restrict,
  job_id uuid not null,
  subject text not null,
  decision text not null check (decision in ('allow', 'deny', 'review')),
  matched_rules jsonb not null default '[]' check (jsonb_typeof(matched_rules) = 'array'),
  input jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint enforcement_decisions_tenant_job unique (tenant_id, job_id)
);
comment on table public.enforcement_decisions is
  'One decision per enforce job: allow, deny or review, with the rules that matched.';
create index enforcement_decisions_tenant_created_idx
  on public.enforcement_decisions (tenant_id, created_at);

do $$
declare
  t text;
begin
  foreach t in array array['outbox_messages', 'enforcement_decisions'] loop
    execute format('alter table public.%I enable row level security', t);
    execute format('alter table public.%I force row level security', t);
    execute format(
      'create policy tenant_isolation_policy on public.%I
         using (tenant_id::text = current_setting(''app.current_tenant'', true))', t);
    execute format('revoke all on public.%I from anon, authenticated, public', t);
    execute format('grant select on public.%I to authenticated', t);
    execute format('grant select, insert, update, delete on public.%I to service_role', t);
  end loop;
end
$$;

-- outbox_write: the local MessageProvider's delivery. Returns the row's id and whether this
-- call created it (false = an earlier attempt of the same job already did).
create function public.outbox_write(
  p_tenant_id uuid,
  p_job_id uuid,
  p_channel text,
  p_recipient text,
  p_subject text,
  p_body text,
  p_template text,
  p_provider text default 'local',
  p_metadata jsonb default '{}'
) returns table (id uuid, created boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.outbox_messages as o (tenant_id, job_id, channel, recipient, subject, body,
                                           template, provider, provider_message_id, status,
                                           metadata)
  values (p_tenant_id, p_job_id, p_channel, p_recipient, p_subject, p_body, p_template,
          p_provider, 'local:' || p_job_id, 'sent', coalesce(p_metadata, '{}'))
  on conflict on constraint outbox_messages_tenant_job do nothing
  returning o.id into v_id;
  if v_id is not null then
    return query select v_id, true;
    return;
  end if;
  return query
  select o.id, false from public.outbox_messages o
  where o.tenant_id = p_tenant_id and o.job_id = p_job_id;
end
$$;

-- record_enforcement_decision: the enforce handler's effect, idempotent per job.
create function public.record_enforcement_decision(
  p_tenant_id uuid,
  p_job_id uuid,
  p_subject text,
  p_decision text,
  p_matched_rules jsonb,
  p_input jsonb default '{}'
) returns table (id uuid, created boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.enforcement_decisions as d (tenant_id, job_id, subject, decision,
                                                 matched_rules, input)
  values (p_tenant_id, p_job_id, p_subject, p_decision, coalesce(p_matched_rules, '[]'),
          coalesce(p_input, '{}'))
  on conflict on constraint enforcement_decisions_tenant_job do nothing
  returning d.id into v_id;
  if v_id is not null then
    return query select v_id, true;
    return;
  end if;
  return query
  select d.id, false from public.enforcement_decisions d
  where d.tenant_id = p_tenant_id and d.job_id = p_job_id;
end
$$;

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

revoke all on function
  public.raise_dead_letter_alert(uuid, text, text, timestamptz),
  public.outbox_write(uuid, uuid, text, text, text, text, text, text, jsonb),
  public.record_enforcement_decision(uuid, uuid, text, text, jsonb, jsonb),
  public.process_dead_letters(text, int, timestamptz)
  from public, anon, authenticated;
grant execute on function
  public.raise_dead_letter_alert(uuid, text, text, timestamptz),
  public.outbox_write(uuid, uuid, text, text, text, text, text, text, jsonb),
  public.record_enforcement_decision(uuid, uuid, text, text, jsonb, jsonb),
  public.process_dead_letters(text, int, timestamptz)
  to service_role;
