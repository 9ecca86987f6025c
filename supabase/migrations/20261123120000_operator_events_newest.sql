-- operator_events (20251101000000) without a starting id ("the newest p_limit events", what
-- `deno task conveyor tail` shows first) ordered by `case when … then -e.id else e.id end`:
-- no index serves that expression, so it sorted every job event: 0.9 s at 1M jobs / 3M
-- events. Each source now has two branches, newest-first (`order by e.id desc`) and
-- after-an-id (`order by e.id`), each a backward or forward scan of the primary key that
-- stops at p_limit rows; the branch the arguments rule out is gated off by a one-time
-- filter and costs nothing. Same signature, result and grants.

create or replace function public.operator_events(
  p_after_job_event bigint default null,
  p_after_content_event bigint default null,
  p_limit int default 200,
  p_filter text default null
) returns table (
  source text,
  id bigint,
  created_at timestamptz,
  job_id uuid,
  subject text,
  event text,
  message text,
  tenant text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'operator_events: p_limit must be between 1 and 1000';
  end if;
  return query
  with je as (
    (select e.* from public.job_events e
     where p_after_job_event is null
       and (p_filter is null
            or exists (select 1 from public.jobs j where j.id = e.job_id and j.kind = p_filter))
     order by e.id desc
     limit p_limit)
    union all
    (select e.* from public.job_events e
     where p_after_job_event is not null and e.id > p_after_job_event
       and (p_filter is null
            or exists (select 1 from public.jobs j where j.id = e.job_id and j.kind = p_filter))
     order by e.id
     limit p_limit)
  ), ce as (
    (select e.* from public.content_job_events e
     where p_after_content_event is null and (p_filter is null or e.stage = p_filter)
     order by e.id desc
     limit p_limit)
    union all
    (select e.* from public.content_job_events e
     where p_after_content_event is not null and e.id > p_after_content_event
       and (p_filter is null or e.stage = p_filter)
     order by e.id
     limit p_limit)
  )
  select * from (
    select 'job'::text as source, e.id, e.created_at, e.job_id, j.kind as subject,
           e.type as event,
           coalesce(e.payload ->> 'error', e.payload ->> 'reason',
                    case when e.payload ? 'attempt'
                         then 'attempt ' || (e.payload ->> 'attempt') end) as message,
           t.name as tenant
    from je e
    join public.jobs j on j.id = e.job_id
    join public.tenants t on t.id = e.tenant_id
    union all
    select 'content'::text, e.id, e.created_at, e.job_id, coalesce(e.stage, 'job'), e.status,
           e.message, null::text
    from ce e
  ) x
  order by x.created_at, x.source, x.id;
end
$$;
