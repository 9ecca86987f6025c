-- Vault API as hosted Supabase offers it (locally: tools/stack/extensions/supabase_vault):
-- create_secret / update_secret / decrypted_secrets round trips, the unique name, the stored
-- secret not being the plain text, and who may use it.
begin;
select plan(31);

-- API shape
select has_function('vault', 'create_secret', array['text', 'text', 'text', 'uuid'],
  'vault.create_secret(new_secret, new_name, new_description, new_key_id) exists');
select function_returns('vault', 'create_secret', array['text', 'text', 'text', 'uuid'], 'uuid',
  'create_secret returns the new id');
select has_function('vault', 'update_secret', array['uuid', 'text', 'text', 'text', 'uuid'],
  'vault.update_secret(secret_id, new_secret, new_name, new_description, new_key_id) exists');
select is(
  pg_get_function_arguments('vault.create_secret(text, text, text, uuid)'::regprocedure),
  'new_secret text, new_name text DEFAULT NULL::text, new_description text DEFAULT ''''::text, new_key_id uuid DEFAULT NULL::uuid',
  'create_secret has the documented parameter names and defaults');
select is(
  pg_get_function_arguments('vault.update_secret(uuid, text, text, text, uuid)'::regprocedure),
  'secret_id uuid, new_secret text DEFAULT NULL::text, new_name text DEFAULT NULL::text, new_description text DEFAULT NULL::text, new_key_id uuid DEFAULT NULL::uuid',
  'update_secret has the documented parameter names and defaults');
select columns_are('vault', 'secrets',
  array['id', 'name', 'description', 'secret', 'key_id', 'nonce', 'created_at', 'updated_at'],
  'vault.secrets has the documented columns');
select columns_are('vault', 'decrypted_secrets',
  array['id', 'name', 'description', 'secret', 'decrypted_secret', 'key_id', 'nonce',
        'created_at', 'updated_at'],
  'vault.decrypted_secrets has the secrets columns plus decrypted_secret');
select ok(
  (select prosecdef and proconfig @> array['search_path=""']
   from pg_proc where oid = 'vault.create_secret(text, text, text, uuid)'::regprocedure),
  'create_secret is SECURITY DEFINER with an empty search_path');

-- Round trip
create temp table t_ids (label text primary key, id uuid);
grant all on t_ids to public;

insert into t_ids
values ('a', vault.create_secret('s3cr3t välue 🙂', 'conveyor_vault_test_a', 'first secret'));

select is(
  (select decrypted_secret from vault.decrypted_secrets where name = 'conveyor_vault_test_a'),
  's3cr3t välue 🙂',
  'create_secret() then decrypted_secrets returns the plain text');
select is(
  (select id from vault.secrets where name = 'conveyor_vault_test_a'),
  (select id from t_ids where label = 'a'),
  'create_secret() returns the id of the stored row');
select is(
  (select description from vault.secrets where name = 'conveyor_vault_test_a'),
  'first secret',
  'the description is stored');
select isnt(
  (select secret from vault.secrets where name = 'conveyor_vault_test_a'),
  's3cr3t välue 🙂',
  'vault.secrets.secret is not the plain text');
select ok(
  (select position('s3cr3t' in secret) = 0
      and position(convert_to('s3cr3t', 'UTF8') in decode(secret, 'base64')) = 0
   from vault.secrets where name = 'conveyor_vault_test_a'),
  'the stored secret is not the plain text merely base64-encoded');

insert into t_ids values ('b', vault.create_secret('s3cr3t välue 🙂', 'conveyor_vault_test_b'));
select isnt(
  (select secret from vault.secrets where name = 'conveyor_vault_test_b'),
  (select secret from vault.secrets where name = 'conveyor_vault_test_a'),
  'the same value stored twice gives two different ciphertexts (fresh nonce)');
select is(
  (select description from vault.secrets where name = 'conveyor_vault_test_b'),
  '',
  'the description defaults to the empty string');

insert into t_ids values ('empty', vault.create_secret('', 'conveyor_vault_test_empty'));
select is(
  (select decrypted_secret from vault.decrypted_secrets where name = 'conveyor_vault_test_empty'),
  '',
  'an empty secret round-trips as the empty string');

-- update_secret
select lives_ok(
  $$ select vault.update_secret((select id from t_ids where label = 'a'), 'rotated value') $$,
  'update_secret() with a new value runs');
select is(
  (select decrypted_secret from vault.decrypted_secrets where id = (select id from t_ids where label = 'a')),
  'rotated value',
  'update_secret() replaces the value');
select is(
  (select name || '/' || description from vault.secrets where id = (select id from t_ids where label = 'a')),
  'conveyor_vault_test_a/first secret',
  'update_secret() with NULL name and description keeps them');
select lives_ok(
  $$ select vault.update_secret((select id from t_ids where label = 'a'),
       new_name := 'conveyor_vault_test_a2', new_description := 'renamed') $$,
  'update_secret() with only a new name and description runs');
select is(
  (select decrypted_secret || '|' || description from vault.decrypted_secrets
   where name = 'conveyor_vault_test_a2'),
  'rotated value|renamed',
  'update_secret() can rename without touching the value');

-- Names are unique (unnamed secrets are not)
select throws_ok(
  $$ select vault.create_secret('other', 'conveyor_vault_test_b') $$,
  '23505', null,
  'a second secret with an existing name fails with unique_violation');
select lives_ok(
  $$ select vault.create_secret('x'), vault.create_secret('y') $$,
  'several unnamed secrets may coexist');

-- Who may use it
set local role anon;
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null,
  'anon cannot read vault.decrypted_secrets');
select throws_ok($$ select vault.create_secret('nope', 'conveyor_vault_test_anon') $$, '42501', null,
  'anon cannot execute vault.create_secret');
reset role;

set local role authenticated;
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null,
  'authenticated cannot read vault.decrypted_secrets');
select throws_ok($$ select secret from vault.secrets $$, '42501', null,
  'authenticated cannot read vault.secrets');
select throws_ok($$ select vault.create_secret('nope', 'conveyor_vault_test_auth') $$, '42501', null,
  'authenticated cannot execute vault.create_secret');
reset role;

set local role service_role;
select is(
  (select decrypted_secret from vault.decrypted_secrets where name = 'conveyor_vault_test_b'),
  's3cr3t välue 🙂',
  'service_role can read vault.decrypted_secrets');
select lives_ok(
  $$ select vault.update_secret(vault.create_secret('svc', 'conveyor_vault_test_svc'), 'svc2') $$,
  'service_role can create and update secrets');
reset role;

select is(
  (select decrypted_secret from vault.decrypted_secrets where name = 'conveyor_vault_test_svc'),
  'svc2',
  'secrets written by service_role decrypt for postgres');

select * from finish();
rollback;
