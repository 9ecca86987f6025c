-- What the shipped job handlers write: the outreach outbox and enforcement decisions
-- (public.outbox_messages, public.enforcement_decisions: 0011_tenant_tables.sql). The
-- dead-letter consumer's SQL side is in 0061_dead_letters.sql. Only service_role writes,
-- through these RPCs; tenants read their own rows through RLS.
--
-- Handlers run at least once, so every write here is idempotent per (tenant, job): a retry
-- of a job whose first run already wrote its row gets the same row back (created = false).

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

revoke all on function
  public.outbox_write(uuid, uuid, text, text, text, text, text, text, jsonb),
  public.record_enforcement_decision(uuid, uuid, text, text, jsonb, jsonb)
  from public, anon, authenticated;
grant execute on function
  public.outbox_write(uuid, uuid, text, text, text, text, text, text, jsonb),
  public.record_enforcement_decision(uuid, uuid, text, text, jsonb, jsonb)
  to service_role;
