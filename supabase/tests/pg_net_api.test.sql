-- pg_net 0.20 SQL API as migrations may use it (hosted: the real pg_net; locally:
-- tools/stack/extensions/pg_net). No network: every request stays in this transaction's
-- queue and is rolled back, so nothing is ever sent.
begin;
set local client_min_messages = warning;
select plan(52);

-- Extension, schema, types
select has_extension('pg_net', 'pg_net is installed');
select has_schema('net', 'pg_net objects live in schema net');
select has_domain('net', 'http_method', 'net.http_method is a domain');
select enum_has_labels('net', 'request_status', array['PENDING', 'SUCCESS', 'ERROR'],
  'net.request_status has PENDING, SUCCESS, ERROR');
select has_composite('net', 'http_response', 'net.http_response exists');
select columns_are('net', 'http_response', array['status_code', 'headers', 'body'],
  'net.http_response is (status_code, headers, body)');
select columns_are('net', 'http_response_result', array['status', 'message', 'response'],
  'net.http_response_result is (status, message, response)');

-- Tables
select columns_are('net', 'http_request_queue',
  array['id', 'method', 'url', 'headers', 'body', 'timeout_milliseconds'],
  'net.http_request_queue has the documented columns');
select columns_are('net', '_http_response',
  array['id', 'status_code', 'content_type', 'headers', 'content', 'timed_out', 'error_msg', 'created'],
  'net._http_response has the documented columns');
select is(
  (select array_agg(relpersistence::text order by relname) from pg_class
   where oid in ('net.http_request_queue'::regclass, 'net._http_response'::regclass)),
  array['u', 'u'],
  'both pg_net tables are UNLOGGED');
select has_index('net', '_http_response', '_http_response_created_idx', 'created',
  'net._http_response has an index on (created)');
select col_not_null('net', 'http_request_queue', 'url', 'the queue url is NOT NULL');
select col_is_null('net', 'http_request_queue', 'headers', 'the queue headers are nullable');

-- Functions: signatures and defaults
select has_function('net', 'http_get', array['text', 'jsonb', 'jsonb', 'integer'], 'net.http_get exists');
select has_function('net', 'http_post', array['text', 'jsonb', 'jsonb', 'jsonb', 'integer'], 'net.http_post exists');
select has_function('net', 'http_delete', array['text', 'jsonb', 'jsonb', 'integer', 'jsonb'], 'net.http_delete exists');
select is(
  pg_get_function_arguments('net.http_get(text, jsonb, jsonb, integer)'::regprocedure),
  'url text, params jsonb DEFAULT ''{}''::jsonb, headers jsonb DEFAULT ''{}''::jsonb, timeout_milliseconds integer DEFAULT 5000',
  'http_get(url, params, headers, timeout_milliseconds := 5000)');
select is(
  pg_get_function_arguments('net.http_post(text, jsonb, jsonb, jsonb, integer)'::regprocedure),
  'url text, body jsonb DEFAULT ''{}''::jsonb, params jsonb DEFAULT ''{}''::jsonb, headers jsonb DEFAULT ''{"Content-Type": "application/json"}''::jsonb, timeout_milliseconds integer DEFAULT 5000',
  'http_post(url, body, params, headers := Content-Type json, timeout_milliseconds := 5000)');
select is(
  pg_get_function_arguments('net.http_delete(text, jsonb, jsonb, integer, jsonb)'::regprocedure),
  'url text, params jsonb DEFAULT ''{}''::jsonb, headers jsonb DEFAULT ''{}''::jsonb, timeout_milliseconds integer DEFAULT 5000, body jsonb DEFAULT NULL::jsonb',
  'http_delete(url, params, headers, timeout_milliseconds := 5000, body := NULL)');
select function_returns('net', 'http_get', array['text', 'jsonb', 'jsonb', 'integer'], 'bigint',
  'http_get returns the request id');
select is(
  pg_get_function_arguments('net._http_collect_response(bigint, boolean)'::regprocedure),
  'request_id bigint, async boolean DEFAULT true',
  '_http_collect_response(request_id, async := true)');
select function_returns('net', '_http_collect_response', array['bigint', 'boolean'],
  'net.http_response_result', '_http_collect_response returns net.http_response_result');
select has_function('net', 'http_collect_response', array['bigint', 'boolean'],
  'deprecated net.http_collect_response exists');
select function_returns('net', 'worker_restart', array[]::text[], 'boolean', 'net.worker_restart() returns boolean');
select function_returns('net', 'wait_until_running', array[]::text[], 'void', 'net.wait_until_running() exists');
select function_returns('net', 'wake', array[]::text[], 'void', 'net.wake() exists');
select function_returns('net', 'check_worker_is_up', array[]::text[], 'void', 'net.check_worker_is_up() exists');

-- http_post's Content-Type rule
select throws_ok(
  $$ select net.http_post('http://127.0.0.1:9/x', headers := '{"Content-Type": "text/plain"}') $$,
  'P0001', 'Content-Type header must be "application/json"',
  'http_post() rejects a non-JSON Content-Type');
select throws_ok(
  $$ select net.http_post('http://127.0.0.1:9/x',
       headers := '{"content-type": "application/json; charset=utf-8"}') $$,
  'P0001', 'Content-Type header must be "application/json"',
  'http_post() rejects application/json; charset=utf-8 (exact match only, key case-insensitive)');

create temp table t_req (label text primary key, id bigint);
grant all on t_req to public;

insert into t_req values
  ('merged', net.http_post('http://127.0.0.1:9/x', '{"a": 1}', headers := '{"X-Custom": "1"}')),
  ('lower', net.http_post('http://127.0.0.1:9/x', headers := '{"content-type": "application/json"}')),
  ('nullh', net.http_post('http://127.0.0.1:9/x', headers := null)),
  ('nullb', net.http_post('http://127.0.0.1:9/x', body := null));

select is(
  (select headers from net.http_request_queue where id = (select id from t_req where label = 'merged')),
  '{"X-Custom": "1", "Content-Type": "application/json"}'::jsonb,
  'http_post() merges Content-Type: application/json into headers that lack one');
select is(
  (select headers from net.http_request_queue where id = (select id from t_req where label = 'lower')),
  '{"content-type": "application/json"}'::jsonb,
  'http_post() accepts a lowercase content-type key without adding a second one');
select ok(
  (select headers is null from net.http_request_queue where id = (select id from t_req where label = 'nullh')),
  'http_post(headers := NULL) queues NULL headers (no Content-Type)');
select ok(
  (select body is null from net.http_request_queue where id = (select id from t_req where label = 'nullb')),
  'http_post(body := NULL) queues a NULL body');

-- The queued request row
select results_eq(
  $$ select method::text, url, convert_from(body, 'UTF8')::jsonb, timeout_milliseconds
     from net.http_request_queue where id = (select id from t_req where label = 'merged') $$,
  $$ values ('POST', 'http://127.0.0.1:9/x', '{"a": 1}'::jsonb, 5000) $$,
  'http_post() queues method, url, the JSON body as UTF-8 and the 5000 ms default timeout');

insert into t_req values
  ('get', net.http_get('http://127.0.0.1:9/p?x=1', params := '{"q": "a b&c=ü", "n": null}',
                       headers := '{"X-A": "b"}', timeout_milliseconds := 1234)),
  ('del', net.http_delete('https://example.invalid/items/7', body := '{"why": "test"}'));

select results_eq(
  $$ select method::text, url, headers, body, timeout_milliseconds
     from net.http_request_queue where id = (select id from t_req where label = 'get') $$,
  $$ values ('GET', 'http://127.0.0.1:9/p?x=1&q=a%20b%26c%3D%C3%BC', '{"X-A": "b"}'::jsonb, null::bytea, 1234) $$,
  'http_get() URL-encodes params onto the existing query string and keeps headers and timeout');
select results_eq(
  $$ select method::text, url, headers, convert_from(body, 'UTF8')::jsonb
     from net.http_request_queue where id = (select id from t_req where label = 'del') $$,
  $$ values ('DELETE', 'https://example.invalid/items/7', '{}'::jsonb, '{"why": "test"}'::jsonb) $$,
  'http_delete() queues DELETE with its optional body');
select is(
  (select net._urlencode_string('a b/é~-._')), 'a%20b%2F%C3%A9~-._',
  'net._urlencode_string percent-encodes all but unreserved characters');

-- URL validation at call time
select throws_ok($$ select net.http_get('ftp://example.com/file') $$, 'XX000', 'Unsupported URL scheme',
  'a non-http(s) scheme is rejected');
select throws_ok($$ select net.http_get('localhost:3000/x') $$, 'XX000', 'Unsupported URL scheme',
  'host:port without a scheme reads as an unsupported scheme');
select throws_ok($$ select net.http_post('/malformed_url') $$, 'XX000', 'invalid URL "/malformed_url"',
  'a relative URL is rejected');
select throws_ok($$ select net.http_delete('http://') $$, 'XX000', 'invalid URL "http://"',
  'a URL without a host is rejected');
select throws_ok($$ select net.http_get(null) $$, '23502', null,
  'a NULL url is a not-null violation on the queue');

-- _http_collect_response never says PENDING
insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
values (-101, 201, 'application/json', '{"x-a": "1"}', '{"ok":true}', false, null),
       (-102, null, null, null, null, true, 'Timeout of 5 ms reached. Total time: 6 ms');
select is(
  net._http_collect_response(-101),
  row('SUCCESS', 'ok', row(201, '{"x-a": "1"}'::jsonb, '{"ok":true}')::net.http_response)::net.http_response_result,
  '_http_collect_response gives (SUCCESS, ok, (status, headers, body)) for a response');
select is(
  net._http_collect_response(-102),
  row('ERROR', 'Timeout of 5 ms reached. Total time: 6 ms', null)::net.http_response_result,
  '_http_collect_response gives (ERROR, error_msg, NULL) for a failed request');
select is(
  net._http_collect_response((select id from t_req where label = 'get')),
  row('ERROR', 'request matching request_id not found', null)::net.http_response_result,
  '_http_collect_response reports a queued (unsent) request as not found, never PENDING');
select throws_ok($$ select net.http_collect_response(-101) $$, '42601', null,
  'the deprecated net.http_collect_response fails, as in pg_net 0.20');
select lives_ok($$ select net.wake() $$, 'net.wake() can be called (it notifies at commit)');

-- Privileges (Supabase's issue_pg_net_access event trigger)
select ok(
  (select bool_and(prosecdef and proconfig @> array['search_path=net']) from pg_proc
   where oid in ('net.http_get(text, jsonb, jsonb, integer)'::regprocedure,
                 'net.http_post(text, jsonb, jsonb, jsonb, integer)'::regprocedure)),
  'http_get and http_post are SECURITY DEFINER with search_path = net');
select ok(
  (select bool_and(has_function_privilege(r, f, 'execute') and has_schema_privilege(r, 'net', 'usage'))
   from unnest(array['postgres', 'anon', 'authenticated', 'service_role']) as r,
        unnest(array['net.http_get(text, jsonb, jsonb, integer)',
                     'net.http_post(text, jsonb, jsonb, jsonb, integer)']) as f),
  'postgres, anon, authenticated and service_role may execute http_get and http_post');

create role conveyor_pg_net_test_nobody;
select ok(
  not has_function_privilege('conveyor_pg_net_test_nobody', 'net.http_get(text, jsonb, jsonb, integer)', 'execute')
  and not has_function_privilege('conveyor_pg_net_test_nobody', 'net.http_post(text, jsonb, jsonb, jsonb, integer)', 'execute'),
  'EXECUTE on http_get and http_post is revoked from PUBLIC');
select ok(
  has_table_privilege('conveyor_pg_net_test_nobody', 'net._http_response', 'select')
  and has_table_privilege('conveyor_pg_net_test_nobody', 'net.http_request_queue', 'insert'),
  'the extension grants ALL on its tables to PUBLIC');

set local role authenticated;
select lives_ok(
  $$ select net.http_post('http://127.0.0.1:9/from-authenticated', '{}') $$,
  'authenticated can queue a request through http_post');
reset role;

select * from finish();
rollback;
