-- The dead-letter consumer (dlq-worker, seed 002's DLQ consumer) had nobody to start it:
-- q_dlq is not a job kind, so the dispatcher never triggered it, and dead letters waited
-- for a manual call. Now a dead letter kicks dlq-worker the way an enqueue kicks the
-- dispatcher (debounced, through pg_net after commit), and a per-minute cron job is the
-- safety net for kicks that were lost (pg_net's queue does not survive a crash).

insert into conveyor.settings (key, value, description) values
  ('dlq_worker_endpoint', '"/functions/v1/dlq-worker"',
   'the dead-letter consumer function (a path resolves against Vault project_url)')
on conflict (key) do nothing;

-- POSTs {"async": true, "source"} to the dead-letter consumer (URL and key from Vault).
create function conveyor.invoke_dead_letter_worker(p_source text) returns bigint
language plpgsql
set search_path = ''
as $$
begin
  return net.http_post(
    url := conveyor.endpoint_url(conveyor.setting_text('dlq_worker_endpoint')),
    body := jsonb_build_object('async', true, 'source', p_source),
    headers := conveyor.service_headers(),
    timeout_milliseconds := conveyor.setting_int('worker_request_timeout_ms')::int);
end
$$;

-- conveyor.kick as in 0060, with one more target: 'dlq' calls the dead-letter consumer
-- instead of the dispatcher. The debounce is the same row-per-target UPDATE.
create or replace function conveyor.kick(p_target text) returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_won boolean;
begin
  if not conveyor.push_enabled() then
    return false;
  end if;
  with c as (
    select k.target from conveyor.dispatch_kicks k
    where k.target = p_target
      and k.last_kick_at < v_now - make_interval(secs => conveyor.setting_int('kick_debounce_ms') / 1000.0)
    for update skip locked
  )
  update conveyor.dispatch_kicks k
  set last_kick_at = v_now, kicks = k.kicks + 1
  from c
  where k.target = c.target;
  v_won := found;
  if not v_won and not exists (select 1 from conveyor.dispatch_kicks k where k.target = p_target) then
    insert into conveyor.dispatch_kicks (target, last_kick_at, kicks) values (p_target, v_now, 1)
    on conflict (target) do nothing;
    v_won := found;
  end if;
  if not v_won then
    return false;
  end if;
  begin
    if p_target = 'dlq' then
      perform conveyor.invoke_dead_letter_worker('kick');
    else
      perform conveyor.invoke_dispatcher('kick', p_target);
    end if;
  exception when others then
    raise warning 'conveyor.kick: % not called (%); cron picks the work up',
      case when p_target = 'dlq' then 'dlq-worker' else 'the dispatcher' end, sqlerrm;
    return false;
  end;
  return true;
end
$$;

insert into conveyor.dispatch_kicks (target) values ('dlq') on conflict (target) do nothing;

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

revoke all on function conveyor.invoke_dead_letter_worker(text), conveyor.kick(text),
  conveyor.dead_letter_jobs_kick(), conveyor.sweep_dead_letters() from public;

do $$
begin
  if exists (select 1 from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('conveyor-dead-letters', '* * * * *',
                          'select conveyor.sweep_dead_letters()');
  end if;
end
$$;
