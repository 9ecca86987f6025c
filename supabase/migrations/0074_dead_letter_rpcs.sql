-- dead_letter_jobs (seed 004): list, inspect and redrive for operators (service_role),
-- next to redrive_dead_job (0053). Tenants read their own rows through RLS
-- (GET /rest/v1/dead_letter_jobs with their token); they cannot redrive.

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

revoke all on function
  public.list_dead_letter_jobs(uuid, text, boolean, timestamptz, int),
  public.inspect_dead_letter_job(uuid),
  public.redrive_dead_letter_jobs(uuid, text, int)
  from public, anon, authenticated;
grant execute on function
  public.list_dead_letter_jobs(uuid, text, boolean, timestamptz, int),
  public.inspect_dead_letter_job(uuid),
  public.redrive_dead_letter_jobs(uuid, text, int)
  to service_role;
