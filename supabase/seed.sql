-- Demo data, applied after the migrations by `deno task db:reset` (and the first
-- `deno task start`), as `supabase db reset` applies supabase/seed.sql. It gives a newcomer's
-- first dashboard something to show: a demo tenant, jobs in every queue (and every priority
-- tier), and a few content jobs. The running stack's workers then process them, which fills
-- job_events and content_job_events. Idempotent: the same keys return the same jobs.

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
     "payload": {"email": "later@example.com"}}')
) as v(j0), lateral (select j0 || '{"tenant_id": "11111111-1111-4111-8111-111111111111"}'::jsonb as j) t;

-- Seed 003's entry point, as a PGQueuer caller would use it.
select public.fn_pgqueuer_enqueue(entrypoint => 'fetch', payload => convert_to('hello', 'UTF8'),
                                  priority => 5);

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
