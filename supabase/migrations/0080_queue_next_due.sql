-- queue_next_due_at: when the next pending job of a kind that is not claimable yet becomes
-- due (a delay, a retry backoff, a snooze), or NULL when there is none.
--
-- Why (found by the soak, issue 10): a queue worker stops when its queue is empty, and only
-- an enqueue (its kick) or cron's dispatcher (once a minute) starts the next one. A job that
-- became due after the last worker stopped (the last delayed jobs of a burst, the retry of
-- the last failure) waited for the next cron minute: 40 s late in the soak's drain. A worker
-- whose queue runs dry now asks this and, for a job due within QUEUE_DUE_WAIT_MAX_MS, wakes at
-- that time and calls trigger_queue_worker (reason 'due'): capacity-checked like a dispatch.
--
-- Reads only pending jobs of the kind (jobs_kind_status_idx); called only once a drain has
-- found nothing claimable, when they are the delayed few.
create function public.queue_next_due_at(p_kind text) returns timestamptz
language sql stable
security definer
set search_path = ''
as $$
  select min(j.run_at)
  from public.jobs j
  where j.kind = p_kind and j.status = 'pending' and j.run_at > clock_timestamp()
$$;

comment on function public.queue_next_due_at(text) is
  'When the next pending job of a kind becomes due (delay, backoff, snooze); NULL when none is waiting.';

revoke all on function public.queue_next_due_at(text) from public, anon, authenticated;
grant execute on function public.queue_next_due_at(text) to service_role;
