-- settle_and_claim_jobs: a worker's steady state in ONE call and ONE transaction: settle the
-- batch it just ran (exactly settle_jobs) and claim its next batch (exactly claim_jobs).
-- The worker loop otherwise pays two round trips and two commits per batch (settle, then
-- claim); over HTTP every round trip is a gateway request. Same checks, same events, same
-- leases: this only composes the two functions.
--
-- Returns {"settled": [{"job_id","accepted","outcome"}…], "claimed": [conveyor.claimed_job…]}.
-- A refused settle (lease lost) is reported as settle_jobs reports it, and a claim error
-- (e.g. a bad p_qty) rolls the settle back with it: the caller retries both or falls back
-- to settle_jobs.

create function public.settle_and_claim_jobs(
  p_worker text,
  p_results jsonb,
  p_kind text,
  p_qty int default 10,
  p_vt int default null,
  p_policy jsonb default '{}',
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled jsonb;
  v_claimed jsonb;
begin
  -- Claim first, then settle: the claim's read then never has to step over this
  -- transaction's own not-yet-committed archive deletes at the head of the queue (with
  -- settle first, batches of 100 drained ~20 % slower than two separate calls). The jobs
  -- being settled are still leased to this worker, their messages invisible: the claim
  -- cannot take them again, unless a lease has already expired, and then the settle is
  -- refused exactly as settle_jobs alone would refuse it.
  select coalesce(jsonb_agg(to_jsonb(c)), '[]'::jsonb)
  into v_claimed
  from public.claim_jobs(p_kind, p_worker, p_qty, p_vt, p_now, coalesce(p_policy, '{}'::jsonb)) c;
  select coalesce(jsonb_agg(jsonb_build_object('job_id', s.job_id, 'accepted', s.accepted,
                                               'outcome', s.outcome)), '[]'::jsonb)
  into v_settled
  from public.settle_jobs(p_worker, p_results, coalesce(p_policy, '{}'::jsonb), p_now) s;
  return jsonb_build_object('settled', v_settled, 'claimed', v_claimed);
end
$$;

comment on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz) is
  'settle_jobs then claim_jobs in one transaction: the worker loop''s steady state in one round trip.';

revoke all on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz)
  from public, anon, authenticated;
grant execute on function public.settle_and_claim_jobs(text, jsonb, text, int, int, jsonb, timestamptz)
  to service_role;
