-- Demo data, applied after the migrations by `deno task db:reset` (and the first
-- `deno task start`), as `supabase db reset` applies supabase/seed.sql. It gives a newcomer's
-- first dashboard something to show: a demo tenant, jobs of the demo tenant in every queue and
-- every priority tier (q_<kind>, q_<kind>_fast, q_<kind>_bulk for enrich, outreach, enforce and
-- fetch), one job whose bad input dead-letters it (so q_dlq, dead_letter_jobs and an alert have
-- something too), and three content jobs. The running stack's workers then process them, which
-- fills job_events and content_job_events. Re-running it adds only the PGQueuer jobs again
-- (queue_job and queue_content_job return the same jobs for the same keys).

insert into public.tenants (id, name)
values ('11111111-1111-4111-8111-111111111111', 'demo')
on conflict do nothing;

-- Dragonfly queues, through the same RPC clients use (seed 000 body + tenant_id).
select public.queue_job(j) from (values
  ('{"idempotency_key": "seed:enrich:ada", "kind": "enrich", "priority": "fast",
     "payload": {"email": " Ada.Lovelace@Analytical-Engines.example ", "name": "Ada Lovelace",
                 "title": "Countess"}}'::jsonb),
  ('{"idempotency_key": "seed:enrich:grace", "kind": "enrich",
     "payload": {"email": "grace@navy.example", "first_name": "Grace", "last_name": "Hopper"}}'),
  ('{"idempotency_key": "seed:enrich:bulk", "kind": "enrich", "priority": "bulk",
     "payload": {"email": "alan@bletchley.example", "name": "Alan Turing"}}'),
  ('{"idempotency_key": "seed:outreach:welcome", "kind": "outreach",
     "payload": {"to": "ada@analytical-engines.example", "template": "welcome",
                 "vars": {"first_name": "Ada", "company": "Conveyor"}}}'),
  ('{"idempotency_key": "seed:enforce:ok", "kind": "enforce",
     "payload": {"subject": "signup-42", "email": "grace@navy.example", "country": "US"}}'),
  ('{"idempotency_key": "seed:enforce:deny", "kind": "enforce",
     "payload": {"subject": "signup-43", "email": "x@mailinator.com", "country": "US"}}'),
  ('{"idempotency_key": "seed:enrich:later", "kind": "enrich", "delay_seconds": 120,
     "payload": {"email": "later@example.com"}}'),
  -- No usable email: the handler cancels it (retrying cannot help), so it dead-letters.
  ('{"idempotency_key": "seed:enrich:no-email", "kind": "enrich",
     "payload": {"email": "not-an-email", "name": "Nobody"}}'),
  ('{"idempotency_key": "seed:outreach:receipt", "kind": "outreach", "priority": "fast",
     "payload": {"to": "grace@navy.example", "template": "welcome",
                 "vars": {"first_name": "Grace", "company": "Conveyor"}}}'),
  ('{"idempotency_key": "seed:outreach:digest", "kind": "outreach", "priority": "bulk",
     "payload": {"to": "alan@bletchley.example", "template": "welcome",
                 "vars": {"first_name": "Alan", "company": "Conveyor"}}}'),
  ('{"idempotency_key": "seed:enforce:fast", "kind": "enforce", "priority": "fast",
     "payload": {"subject": "signup-44", "email": "ada@analytical-engines.example",
                 "country": "GB"}}'),
  ('{"idempotency_key": "seed:enforce:bulk", "kind": "enforce", "priority": "bulk",
     "payload": {"subject": "signup-45", "email": "alan@bletchley.example", "country": "GB"}}')
) as v(j0), lateral (select j0 || '{"tenant_id": "11111111-1111-4111-8111-111111111111"}'::jsonb as j) t;

-- Seed 003's entry point, as a PGQueuer caller would use it: priority > 0 is the fast tier,
-- 0 normal, < 0 bulk. Its signature has no tenant: a caller's tenant comes from the request
-- (the pre-request function copies the token's claim into app.current_tenant); here we set
-- it as a demo tenant's token would, and clear it afterwards.
select set_config('app.current_tenant', '11111111-1111-4111-8111-111111111111', false);
select public.fn_pgqueuer_enqueue(entrypoint => 'fetch', payload => convert_to(p, 'UTF8'),
                                  priority => prio)
from (values ('hello', 5), ('hello again', 0), ('and later', -5)) as v(p, prio);
select set_config('app.current_tenant', '', false);

-- The content pipeline: three briefs; the third trips qa's banned-word check, so the
-- dashboard shows `error` events and a failed job too.
select public.queue_content_job(b) from (values
  ('{"idempotency_key": "seed:content:queues",
     "brief": {"topic": "Background jobs on Supabase", "audience": "backend developers",
               "keywords": ["pgmq", "pg_cron", "edge functions"], "length": 400}}'::jsonb),
  ('{"idempotency_key": "seed:content:retries",
     "brief": {"topic": "Retries and dead letters", "audience": "operators",
               "keywords": ["backoff", "idempotency"], "length": 300}}'),
  ('{"idempotency_key": "seed:content:banned",
     "brief": {"topic": "Synergy for everyone", "audience": "marketing",
               "keywords": ["synergy"], "banned_words": ["synergy"], "length": 200}}')
) as v(b);
