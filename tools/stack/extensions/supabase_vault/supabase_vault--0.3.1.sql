-- Conveyor's local Vault: the supabase_vault 0.3 SQL API for the Docker-free stack, written
-- from Vault's documented behaviour (see /work/shared/reference/supabase.md §3).
--
-- LOCAL ONLY. There is NO encryption key management: the key is generated at CREATE
-- EXTENSION and kept in a table of this database (vault._local_root_key) that only its
-- owner can read, so anyone with superuser access to the database can decrypt the secrets.
-- The point is the same API and the same visible shape as hosted Vault (vault.secrets.secret
-- holds base64 ciphertext, not the plain text; vault.decrypted_secrets decrypts), not
-- protection of real credentials. Hosted projects use the real supabase_vault (libsodium
-- AEAD with a root key outside the database).
--
-- Cipher: a keystream of SHA-256(key || nonce || block counter) blocks XORed with the
-- UTF-8 text, a fresh random 16-byte nonce per secret value. Core PostgreSQL only (no
-- pgcrypto: this extension is created before any other, without CASCADE).

\echo Use "CREATE EXTENSION supabase_vault" to load this file. \quit

-------------------------------------------------------------------------------
-- Storage
-------------------------------------------------------------------------------

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);

comment on table vault.secrets is
  'Secrets; `secret` is base64 ciphertext. Read them through vault.decrypted_secrets. '
  '(Local Conveyor stand-in for Supabase Vault.)';

-- A name identifies at most one secret; unnamed secrets are allowed.
create unique index secrets_name_idx on vault.secrets (name) where name is not null;

-- The local key: one row, 32 random bytes, readable only by the extension owner.
create table vault._local_root_key (
  id integer primary key default 1 check (id = 1),
  key bytea not null check (length(key) = 32)
);

insert into vault._local_root_key (key)
values (
  sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
    || uuid_send(gen_random_uuid()))
);

-- pg_dump keeps the rows of both tables (secrets without their key would be lost).
select pg_catalog.pg_extension_config_dump('vault.secrets', '');
select pg_catalog.pg_extension_config_dump('vault._local_root_key', '');

-------------------------------------------------------------------------------
-- Cipher helpers (private)
-------------------------------------------------------------------------------

-- XORs data with the keystream for (key, nonce): encrypts and decrypts alike.
create function vault._local_keystream_xor(data bytea, key bytea, nonce bytea)
returns bytea
language sql
immutable strict parallel safe
set search_path = ''
as $$
  with ks as (
    select pg_catalog.string_agg(
      pg_catalog.sha256(key || nonce || pg_catalog.int4send(n)), ''::bytea order by n
    ) as stream
    from pg_catalog.generate_series(0, (pg_catalog.length(data) - 1) / 32) as n
  )
  select coalesce(
    (
      select pg_catalog.decode(
        pg_catalog.string_agg(
          pg_catalog.lpad(
            pg_catalog.to_hex(pg_catalog.get_byte(data, i) # pg_catalog.get_byte(ks.stream, i)),
            2, '0'
          ),
          '' order by i
        ),
        'hex'
      )
      from ks, pg_catalog.generate_series(0, pg_catalog.length(data) - 1) as i
    ),
    ''::bytea
  )
$$;

-- base64 ciphertext of a secret under the local key. Reads the key table: callable only by
-- its owner (create_secret/update_secret run as the owner).
create function vault._local_encrypt(plain text, nonce bytea)
returns text
language sql
volatile strict parallel unsafe
set search_path = ''
as $$
  select pg_catalog.encode(
    vault._local_keystream_xor(pg_catalog.convert_to(plain, 'UTF8'), k.key, nonce),
    'base64'
  )
  from vault._local_root_key as k
$$;

-- The plain text of a ciphertext, or NULL when it cannot be decrypted (not base64, not
-- UTF-8 after decryption, e.g. a row inserted directly instead of with create_secret).
create function vault._local_decrypt(ciphertext text, nonce bytea, key bytea)
returns text
language plpgsql
immutable strict parallel safe
set search_path = ''
as $$
begin
  return pg_catalog.convert_from(
    vault._local_keystream_xor(pg_catalog.decode(ciphertext, 'base64'), key, nonce),
    'UTF8'
  );
exception
  when data_exception then
    return null;
end
$$;

-------------------------------------------------------------------------------
-- Public API
-------------------------------------------------------------------------------

-- The secrets with their plain text. A plain (owner's rights) view: it reads the key table
-- as its owner; callers need SELECT on the view, USAGE on schema vault and EXECUTE on
-- vault._local_decrypt (postgres and service_role have them).
create view vault.decrypted_secrets as
select
  s.id,
  s.name,
  s.description,
  s.secret,
  vault._local_decrypt(s.secret, s.nonce, k.key) as decrypted_secret,
  s.key_id,
  s.nonce,
  s.created_at,
  s.updated_at
from vault.secrets as s
left join vault._local_root_key as k on true;

-- Stores a new secret and returns its id. A second secret with an existing name fails with
-- unique_violation (use vault.update_secret for idempotent seeds).
create function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  new_nonce bytea := pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
  created_id uuid;
begin
  insert into vault.secrets (name, description, secret, key_id, nonce)
  values (
    new_name,
    coalesce(new_description, ''),
    vault._local_encrypt(new_secret, new_nonce),
    new_key_id,
    new_nonce
  )
  returning id into created_id;
  return created_id;
end
$$;

-- Changes a secret: each NULL argument leaves that field unchanged. A new value is encrypted
-- with a fresh nonce; updated_at is set. An unknown id changes nothing.
create function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  new_nonce bytea := pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
begin
  update vault.secrets as s
  set
    secret = case
      when new_secret is null then s.secret
      else vault._local_encrypt(new_secret, new_nonce)
    end,
    nonce = case when new_secret is null then s.nonce else new_nonce end,
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    key_id = coalesce(new_key_id, s.key_id),
    updated_at = pg_catalog.now()
  where s.id = secret_id;
end
$$;

-------------------------------------------------------------------------------
-- Privileges: as on hosted projects, postgres and service_role use Vault; anon,
-- authenticated and PUBLIC get nothing (not even USAGE on schema vault).
-------------------------------------------------------------------------------

revoke all on schema vault from public;
revoke all on all tables in schema vault from public;
revoke all on all functions in schema vault from public;

do $grants$
declare
  r text;
begin
  foreach r in array array['postgres', 'service_role'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute format('grant usage on schema vault to %I', r);
      execute format('grant select, delete on vault.secrets to %I', r);
      execute format('grant select on vault.decrypted_secrets to %I', r);
      execute format(
        'grant execute on function vault.create_secret(text, text, text, uuid) to %I', r);
      execute format(
        'grant execute on function vault.update_secret(uuid, text, text, text, uuid) to %I', r);
      execute format(
        'grant execute on function vault._local_decrypt(text, bytea, bytea) to %I', r);
      execute format(
        'grant execute on function vault._local_keystream_xor(bytea, bytea, bytea) to %I', r);
    end if;
  end loop;
end
$grants$;
