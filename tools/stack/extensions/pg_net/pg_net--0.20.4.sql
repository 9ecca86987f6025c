-- Conveyor's local pg_net: the pg_net 0.20.4 SQL API for the Docker-free stack.
--
-- Written from pg_net's documented behaviour (see /work/shared/reference/supabase.md §1), not
-- from its code. What the real extension does in C is split in two here:
--   * this script: the same schema, types, tables and functions, with URL validation,
--     params encoding and the Content-Type rule done in PL/pgSQL at call time;
--   * tools/stack/net_worker.ts: the process that plays pg_net's background worker. It
--     LISTENs on channel 'conveyor_pg_net', takes queued rows in batches, performs the HTTP
--     and writes net._http_response, exactly one transaction per batch.
-- Known differences are listed in net_worker.ts; the SQL surface matches 0.20.4.
--
-- LOCAL ONLY. Hosted Supabase projects have the real pg_net; migrations must only use what
-- both provide.

\echo Use "CREATE EXTENSION pg_net" to load this file. \quit

-- Always schema net, whatever "WITH SCHEMA" said (that only sets pg_extension.extnamespace).
create schema if not exists net;

-------------------------------------------------------------------------------
-- Types
-------------------------------------------------------------------------------

create domain net.http_method as text
  check (value ilike 'get' or value ilike 'post' or value ilike 'delete');

create type net.request_status as enum ('PENDING', 'SUCCESS', 'ERROR');

create type net.http_response as (
  status_code integer,
  headers jsonb,
  body text
);

create type net.http_response_result as (
  status net.request_status,
  message text,
  response net.http_response
);

-------------------------------------------------------------------------------
-- Tables (UNLOGGED, no keys: emptied by crash recovery, like the real ones)
-------------------------------------------------------------------------------

-- Requests waiting for the worker. A row becomes visible to the worker when the caller's
-- transaction commits; the worker deletes it in the transaction that records its response.
create unlogged table net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds integer not null
);

-- One row per finished request (id = the request id). `created` is the start time of the
-- worker's batch transaction; rows older than the worker's ttl are deleted by the worker.
create unlogged table net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);

create index _http_response_created_idx on net._http_response (created);

-------------------------------------------------------------------------------
-- Private helpers
-------------------------------------------------------------------------------

-- Percent-encodes every UTF-8 byte except the RFC 3986 unreserved characters
-- (A-Z a-z 0-9 - . _ ~), as curl_easy_escape does. NULL in, NULL out.
create function net._urlencode_string(string varchar)
returns text
language sql
immutable strict parallel safe
as $$
  select coalesce(
    pg_catalog.string_agg(
      case
        when b between 48 and 57 or b between 65 and 90 or b between 97 and 122
          or b in (45, 46, 95, 126)
        then pg_catalog.chr(b)
        else '%' || pg_catalog.upper(pg_catalog.lpad(pg_catalog.to_hex(b), 2, '0'))
      end,
      '' order by i
    ),
    ''
  )
  from (select pg_catalog.convert_to(string, 'UTF8') as bytes) as s,
       pg_catalog.generate_series(0, pg_catalog.length(s.bytes) - 1) as i,
       pg_catalog.get_byte(s.bytes, i) as b
$$;

-- Validates an absolute http(s) URL and appends already-encoded `key=value` items to its
-- query string (before any #fragment). Errors, raised when the request function is called:
--   scheme other than http/https (e.g. 'ftp://h', or 'localhost:3000' whose "scheme" is
--   localhost)                 -> Unsupported URL scheme
--   no scheme, no host, spaces -> invalid URL "<url>"
-- NULL url gives NULL (the queue's NOT NULL constraint then reports it, as in pg_net).
-- SQLSTATE XX000: pg_net raises these from C without a specific code.
create function net._encode_url_with_params_array(url text, params_array text[])
returns text
language plpgsql
immutable parallel safe
as $$
declare
  scheme text;
  authority text;
  base text;
  fragment text;
  query text;
begin
  if url is null then
    return null;
  end if;

  scheme := substring(url from '^([A-Za-z][A-Za-z0-9+.-]*):');
  if scheme is null then
    raise exception 'invalid URL "%"', url using errcode = 'XX000';
  end if;
  if pg_catalog.lower(scheme) not in ('http', 'https') then
    raise exception 'Unsupported URL scheme' using errcode = 'XX000';
  end if;

  -- scheme "://" authority, with a non-empty host and no whitespace or control characters.
  authority := substring(url from '^[A-Za-z]+://([^/?#]*)');
  if authority is null
    or pg_catalog.regexp_replace(authority, '^[^@]*@', '') !~ '^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(:[0-9]*)?$'
    or url ~ '[[:space:][:cntrl:]]'
  then
    raise exception 'invalid URL "%"', url using errcode = 'XX000';
  end if;

  query := pg_catalog.array_to_string(params_array, '&');
  if query is null or query = '' then
    return url;
  end if;

  base := pg_catalog.split_part(url, '#', 1);
  fragment := pg_catalog.substr(url, pg_catalog.length(base) + 1);
  if pg_catalog.strpos(base, '?') = 0 then
    base := base || '?';
  elsif base !~ '[?&]$' then
    base := base || '&';
  end if;
  return base || query || fragment;
end
$$;

-- The encoded `key=value` items of a params object (keys whose value is JSON null are left
-- out, as headers with null values are).
create function net._params_array(params jsonb)
returns text[]
language sql
immutable parallel safe
as $$
  select pg_catalog.array_agg(
    net._urlencode_string(p.key) || '=' || net._urlencode_string(p.value)
    order by p.key
  )
  from pg_catalog.jsonb_each_text(params) as p
  where p.value is not null
$$;

-- Polls every 50 ms until a response row for the request exists. Waits forever if the
-- request was queued in the calling transaction (it is only sent after COMMIT).
create function net._await_response(request_id bigint)
returns boolean
language plpgsql
volatile parallel unsafe
as $$
begin
  loop
    exit when exists (select 1 from net._http_response as r where r.id = request_id);
    perform pg_catalog.pg_sleep(0.05);
  end loop;
  return true;
end
$$;

-------------------------------------------------------------------------------
-- Worker control
-------------------------------------------------------------------------------

-- Wakes the worker when the calling transaction commits. NOTIFY is queued with the
-- transaction: delivered to the listening worker at COMMIT, discarded on ROLLBACK (and
-- several identical notifications in one transaction are delivered once). This is what
-- makes a rolled-back request never be sent.
create function net.wake()
returns void
language sql
volatile parallel unsafe
as $$
  select pg_catalog.pg_notify('conveyor_pg_net', '')
$$;

-- Restarts the worker: reloads the configuration and ends the worker's connection; the net
-- worker process reconnects (with backoff), LISTENs again and processes what is queued.
-- SECURITY DEFINER because the worker connects as a superuser and, as in pg_net, any role
-- may call this.
create function net.worker_restart()
returns boolean
language plpgsql
volatile parallel unsafe
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.pg_reload_conf();
  perform pg_catalog.pg_terminate_backend(a.pid, 5000)
  from pg_catalog.pg_stat_activity as a
  where a.application_name like 'pg_net worker%'
    and a.pid <> pg_catalog.pg_backend_pid();
  return true;
end
$$;

-- Blocks until the worker is running, i.e. a connection named 'pg_net worker' exists (the
-- worker takes that name only once it LISTENs). Like pg_net it waits without a limit;
-- statement_timeout applies.
create function net.wait_until_running()
returns void
language plpgsql
volatile parallel unsafe
as $$
begin
  loop
    -- pg_stat_activity is a per-transaction snapshot unless cleared.
    perform pg_catalog.pg_stat_clear_snapshot();
    exit when exists (
      select 1 from pg_catalog.pg_stat_activity as a where a.application_name = 'pg_net worker'
    );
    perform pg_catalog.pg_sleep(0.05);
  end loop;
end
$$;

-- Raises unless a pg_net worker backend is connected (any database of the cluster).
create function net.check_worker_is_up()
returns void
language plpgsql
volatile parallel unsafe
as $$
begin
  perform pg_catalog.pg_stat_clear_snapshot();
  if not exists (
    select 1
    from pg_catalog.pg_stat_activity as a
    where a.application_name ilike '%pg_net%' or a.backend_type ilike '%pg_net%'
  ) then
    raise exception 'the pg_net worker is not running'
      using hint = 'Locally the worker is tools/stack/net_worker.ts, started by the stack '
        '(deno task start).';
  end if;
end
$$;

-------------------------------------------------------------------------------
-- Requests. Each INSERTs into the queue in the caller's transaction and wakes the worker
-- at COMMIT; the returned id is the future net._http_response.id.
-------------------------------------------------------------------------------

create function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
)
returns bigint
language plpgsql
volatile parallel unsafe
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (
    'GET',
    net._encode_url_with_params_array(http_get.url, net._params_array(http_get.params)),
    http_get.headers,
    null,
    http_get.timeout_milliseconds
  )
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

-- JSON only: a Content-Type header (looked up case-insensitively) must be exactly
-- application/json; when absent it is added. headers := NULL stays NULL (no Content-Type is
-- sent). body is sent as body::text in UTF-8; a NULL body sends an empty POST.
create function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
)
returns bigint
language plpgsql
volatile parallel unsafe
as $$
declare
  request_id bigint;
  content_type text;
  request_headers jsonb := http_post.headers;
begin
  select h.value into content_type
  from pg_catalog.jsonb_each_text(request_headers) as h
  where pg_catalog.lower(h.key) = 'content-type'
  limit 1;

  if content_type is null then
    request_headers := request_headers || '{"Content-Type": "application/json"}'::jsonb;
  elsif content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;

  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (
    'POST',
    net._encode_url_with_params_array(http_post.url, net._params_array(http_post.params)),
    request_headers,
    pg_catalog.convert_to(http_post.body::text, 'UTF8'),
    http_post.timeout_milliseconds
  )
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

create function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000,
  body jsonb default null
)
returns bigint
language plpgsql
volatile parallel unsafe
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (
    'DELETE',
    net._encode_url_with_params_array(http_delete.url, net._params_array(http_delete.params)),
    http_delete.headers,
    pg_catalog.convert_to(http_delete.body::text, 'UTF8'),
    http_delete.timeout_milliseconds
  )
  returning id into request_id;

  perform net.wake();
  return request_id;
end
$$;

-------------------------------------------------------------------------------
-- Responses
-------------------------------------------------------------------------------

-- ('SUCCESS', 'ok', (status_code, headers, content)) when a response without error exists;
-- otherwise ('ERROR', error_msg, NULL), or ('ERROR', 'request matching request_id not
-- found', NULL) when there is no response (yet): never PENDING. async := false first waits
-- for the response (forever, if the request was queued in this same transaction).
create function net._http_collect_response(request_id bigint, async boolean default true)
returns net.http_response_result
language plpgsql
volatile parallel unsafe
as $$
declare
  rec net._http_response;
begin
  if not async then
    perform net._await_response(request_id);
  end if;

  select r.* into rec
  from net._http_response as r
  where r.id = request_id
  order by r.created desc
  limit 1;

  if not found then
    return row('ERROR', 'request matching request_id not found', null)::net.http_response_result;
  end if;
  if rec.error_msg is not null then
    return row('ERROR', rec.error_msg, null)::net.http_response_result;
  end if;
  return row(
    'SUCCESS',
    'ok',
    row(rec.status_code, rec.headers, rec.content)::net.http_response
  )::net.http_response_result;
end
$$;

-- Deprecated. In pg_net 0.20.4 this function fails when called (its body runs a query
-- whose result has no destination); it fails here the same way so code that works locally
-- also works on hosted projects. Use net._http_collect_response or net._http_response.
create function net.http_collect_response(request_id bigint, async boolean default true)
returns net.http_response_result
language plpgsql
volatile parallel unsafe
as $$
begin
  raise notice 'The net.http_collect_response function is deprecated.';
  raise exception 'query has no destination for result data'
    using errcode = '42601',
      detail = format('net.http_collect_response(%s, %s) fails in pg_net 0.20 as well.',
        request_id, async),
      hint = 'Use net._http_collect_response(request_id, async) or read net._http_response.';
end
$$;

-------------------------------------------------------------------------------
-- Privileges
-------------------------------------------------------------------------------

-- The extension's own grants, as pg_net's install script makes them.
grant usage on schema net to public;
grant all on all tables in schema net to public;
grant all on all sequences in schema net to public;

-- Mirrors Supabase's event trigger `issue_pg_net_access` (CLI bootstrap, webhook.sql), which
-- runs right after CREATE EXTENSION pg_net on hosted and CLI databases: http_get and
-- http_post become SECURITY DEFINER with search_path = net, EXECUTE is taken from PUBLIC and
-- given to the API roles. http_delete and the rest keep pg_net's defaults.
alter function net.http_get(text, jsonb, jsonb, integer)
  security definer set search_path = net;
alter function net.http_post(text, jsonb, jsonb, jsonb, integer)
  security definer set search_path = net;
revoke all on function net.http_get(text, jsonb, jsonb, integer) from public;
revoke all on function net.http_post(text, jsonb, jsonb, jsonb, integer) from public;

do $grants$
declare
  r text;
begin
  foreach r in array array[
    'postgres', 'anon', 'authenticated', 'service_role', 'supabase_functions_admin'
  ] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute format('grant usage on schema net to %I', r);
      execute format(
        'grant execute on function net.http_get(text, jsonb, jsonb, integer) to %I', r);
      execute format(
        'grant execute on function net.http_post(text, jsonb, jsonb, jsonb, integer) to %I', r);
    end if;
  end loop;
end
$grants$;
