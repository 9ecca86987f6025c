-- The kick handshake of 20261207170100_kick_recheck_handshake.sql for the dead-letter target
-- 'dlq' (issue 16).
--
-- A dead letter kicks dlq-worker through conveyor.kick('dlq') (the statement trigger
-- conveyor.dead_letter_jobs_kick), debounced like every target. A dead letter written inside
-- the window of the last winning kick, whose transaction committed after that kick's worker
-- had drained q_dlq, was seen by no one: its `dead_letter` alert waited for the per-minute
-- cron sweep (conveyor-dead-letters), for ever with cron off. conveyor.kick already holds the
-- window's shared kick lock for such a kick, as for the dispatcher's targets; what was
-- missing is the recheck. Now the winning kick's call carries its window (the dlq row's
-- dispatch_kicks.kicks), and dlq-worker, once q_dlq has run dry, calls
-- public.close_kick_window('dlq', window) (which waits for every kick the window suppressed
-- to commit, at most kick_close_wait_ms, and resets it) and drains once more.
--
-- close_kick_window needs no change: it refuses only a target with no dispatch_kicks row,
-- and 'dlq' has one from its first winning kick on (the one whose call carries the window).
-- Its comment names dlq-worker too. conveyor.invoke_dead_letter_worker is its current
-- definition (supabase/schema.sql) with only the window added.

-- A kick's call names its window, for dlq-worker's close_kick_window.
create or replace function conveyor.invoke_dead_letter_worker(p_source text) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_body jsonb := jsonb_build_object('async', true, 'source', p_source);
begin
  if p_source = 'kick' then
    v_body := v_body || jsonb_build_object(
      'window', (select k.kicks from conveyor.dispatch_kicks k where k.target = 'dlq'));
  end if;
  return net.http_post(
    url := conveyor.endpoint_url(conveyor.setting_text('dlq_worker_endpoint')),
    body := v_body,
    headers := conveyor.service_headers(),
    timeout_milliseconds := conveyor.setting_int('worker_request_timeout_ms')::int);
end
$$;

comment on function public.close_kick_window(text, bigint) is
  'Closes a kick debounce window of a kick target (content:<stage>, queue:<kind>, dlq; the window: the winning kick''s number, default the newest) once every kick it suppressed has committed (waiting at most kick_close_wait_ms; false if it stopped waiting), so the recheck of the dispatcher or dlq-worker sees their work.';
