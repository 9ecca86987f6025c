-- What the Supabase dashboard's "Expose Queues via PostgREST" switch (Integrations → Queues)
-- adds to a hosted project: schema pgmq_public with six thin wrappers over pgmq, and the
-- grants that go with them. Conveyor does not use it and neither the migrations nor the local
-- stack create it (a hosted project has it only once someone switches it on).
--
-- TEST FIXTURE: tests that need the switch on apply this file themselves (pgTAP:
-- `\ir ../../tools/test/sql/expose_queues.sql` inside the test's transaction), e.g.
-- supabase/tests/expose_queues.test.sql, which checks Conveyor's queues stay closed to the API
-- roles with it on. Idempotent. To serve the schema, it must also be in the API's exposed
-- schemas (on hosted the switch does that too; locally: supabase/config.toml [api] schemas).
--
-- The wrappers are SECURITY INVOKER: they run with the caller's rights, so anon/authenticated
-- still need privileges (or RLS policies) on the pgmq.q_*/a_* tables to get anywhere, exactly
-- as on hosted. Only postgres and service_role are granted the tables.

create schema if not exists pgmq_public;
grant usage on schema pgmq_public to postgres, anon, authenticated, service_role;

create or replace function pgmq_public.pop(queue_name text)
returns setof pgmq.message_record
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return query select * from pgmq.pop(queue_name := queue_name);
end;
$$;

comment on function pgmq_public.pop(text) is
  'Deletes and returns the oldest visible message of the queue (at-most-once).';

create or replace function pgmq_public.send(
  queue_name text,
  message jsonb,
  sleep_seconds integer default 0
)
returns setof bigint
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return query
  select * from pgmq.send(queue_name := queue_name, msg := message, delay := sleep_seconds);
end;
$$;

comment on function pgmq_public.send(text, jsonb, integer) is
  'Enqueues one message, visible after sleep_seconds; returns its id.';

create or replace function pgmq_public.send_batch(
  queue_name text,
  messages jsonb[],
  sleep_seconds integer default 0
)
returns setof bigint
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return query
  select * from pgmq.send_batch(queue_name := queue_name, msgs := messages, delay := sleep_seconds);
end;
$$;

comment on function pgmq_public.send_batch(text, jsonb[], integer) is
  'Enqueues several messages, visible after sleep_seconds; returns their ids.';

create or replace function pgmq_public.archive(queue_name text, message_id bigint)
returns boolean
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return pgmq.archive(queue_name := queue_name, msg_id := message_id);
end;
$$;

comment on function pgmq_public.archive(text, bigint) is
  'Moves a message from the queue to its archive; false if there was no such message.';

create or replace function pgmq_public.delete(queue_name text, message_id bigint)
returns boolean
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return pgmq.delete(queue_name := queue_name, msg_id := message_id);
end;
$$;

comment on function pgmq_public.delete(text, bigint) is
  'Deletes a message for good; false if there was no such message.';

-- sleep_seconds is the visibility timeout here, not a wait: the name is the dashboard's.
create or replace function pgmq_public.read(queue_name text, sleep_seconds integer, n integer)
returns setof pgmq.message_record
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return query select * from pgmq.read(queue_name := queue_name, vt := sleep_seconds, qty := n);
end;
$$;

comment on function pgmq_public.read(text, integer, integer) is
  'Claims up to n visible messages, hiding them from other readers for sleep_seconds.';

grant execute on function
  pgmq_public.pop(text),
  pgmq_public.send(text, jsonb, integer),
  pgmq_public.send_batch(text, jsonb[], integer),
  pgmq_public.archive(text, bigint),
  pgmq_public.delete(text, bigint),
  pgmq_public.read(text, integer, integer)
to postgres, anon, authenticated, service_role;

-- The pgmq functions the wrappers call. The toggle names read(text, integer, integer), pgmq
-- 1.4.4's signature; in 1.5.1 read has a fourth argument (conditional jsonb default '{}').
grant execute on function
  pgmq.pop(text),
  pgmq.send(text, jsonb, integer),
  pgmq.send_batch(text, jsonb[], integer),
  pgmq.archive(text, bigint),
  pgmq.delete(text, bigint),
  pgmq.read(text, integer, integer, jsonb)
to postgres, anon, authenticated, service_role;

-- Full access to every queue for postgres and service_role, now and for queues created later
-- (by the role running this file, which on hosted is postgres).
grant all privileges on all tables in schema pgmq to postgres, service_role;
alter default privileges in schema pgmq grant all privileges on tables to postgres, service_role;

grant usage on schema pgmq to postgres, anon, authenticated, service_role;
