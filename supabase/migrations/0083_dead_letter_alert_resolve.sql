-- The open `dead_letter` alert of a tenant and kind (raised by raise_dead_letter_alert, 0054)
-- resolves once nothing is left to act on: when the last dead letter of that tenant and kind
-- that was not redriven is redriven (redrive_dead_job, redrive_dead_letter_jobs, the CLI) or
-- deleted (retention, tenant clean-up). Before this, such an alert stayed open for ever and
-- the dashboard and `conveyor_alerts_open` kept reporting a DLQ that was already empty.
-- A new dead letter later opens a new alert (the history keeps each episode), as for the
-- rules evaluate_alerts (0073) owns.

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

revoke all on function conveyor.resolve_dead_letter_alert() from public;

create trigger dead_letter_jobs_redriven
after update on public.dead_letter_jobs
referencing new table as changed
for each statement execute function conveyor.resolve_dead_letter_alert();

create trigger dead_letter_jobs_deleted
after delete on public.dead_letter_jobs
referencing old table as changed
for each statement execute function conveyor.resolve_dead_letter_alert();
