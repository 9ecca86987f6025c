-- Conveyor's local stand-in for pgmq 1.5.1 (the version hosted Supabase runs).
--
-- Written from pgmq's documented behaviour, not from its code: same schema, types, tables,
-- function names, overloads, argument names, error texts and locking. Migrations are written
-- against the hosted pgmq, so anything that differs here could hide a bug; the deliberate
-- differences are:
--
--   * Queue tables are NOT extension members (1.5.1 adds them; 1.6.0 stopped doing so, and
--     Supabase patches drop_queue to cope with non-members). As members they are left out of pg_dump (a dump/restore loses
--     every queue) and drop_queue has to detach them before DROP TABLE. Instead pgmq.meta is
--     registered with pg_extension_config_dump so its rows are dumped with the tables.
--     Consequences (as in 1.6+): DROP EXTENSION pgmq leaves the schema and the q_/a_ tables in
--     place (unregistered; pgmq.create(name) adopts them again, data intact; `drop schema
--     pgmq cascade` removes everything), and a plain `drop table pgmq.q_x` works here but
--     not on a hosted 1.5.1 project: always use drop_queue.
--   * drop_queue on a missing queue returns TRUE with "does not exist, skipping" NOTICEs
--     (what Supabase's patched drop_queue does) instead of failing.
--   * No pg_partman: create_partitioned and convert_archive_partitioned raise
--     `pg_partman is required for partitioned queues` (and refuse even with pg_partman).
--   * detach_archive only detaches a table that really is a member, so it is a no-op.
--   * purge_queue takes its ACCESS EXCLUSIVE lock before counting, so the count it returns
--     is exactly what TRUNCATE removed.
--   * Every function has `set search_path = ''` and names everything schema-qualified, so
--     neither a caller's search_path nor plpgsql_check can resolve names differently.
--
-- Dynamic SQL only ever splices identifiers through format('%I'); values go in via USING.

\echo Use "CREATE EXTENSION pgmq" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Types. Clients read these by position, so the field order is part of the API.
-- ---------------------------------------------------------------------------------------------

create type pgmq.message_record as (
  msg_id bigint,
  read_ct integer,
  enqueued_at timestamp with time zone,
  vt timestamp with time zone,
  message jsonb,
  headers jsonb
);

create type pgmq.queue_record as (
  queue_name character varying,
  is_partitioned boolean,
  is_unlogged boolean,
  created_at timestamp with time zone
);

create type pgmq.metrics_result as (
  queue_name text,
  queue_length bigint,
  newest_msg_age_sec integer,
  oldest_msg_age_sec integer,
  total_messages bigint,
  scrape_time timestamp with time zone,
  queue_visible_length bigint
);

-- ---------------------------------------------------------------------------------------------
-- Registry of queues. Keeps the name exactly as given (tables are lowercased), no primary key.
-- ---------------------------------------------------------------------------------------------

create table pgmq.meta (
  queue_name character varying not null unique,
  is_partitioned boolean not null,
  is_unlogged boolean not null,
  created_at timestamp with time zone not null default now()
);

-- The queue tables are ordinary (non-member) tables that pg_dump includes, so their registry
-- rows must be dumped too, or a restored database would have queues that list_queues() and
-- metrics_all() do not know about.
select pg_catalog.pg_extension_config_dump('pgmq.meta', '');

-- Read access for monitoring, on everything here now and on every queue created later.
grant usage on schema pgmq to pg_monitor;
grant select on all tables in schema pgmq to pg_monitor;
grant select on all sequences in schema pgmq to pg_monitor;
alter default privileges in schema pgmq grant select on tables to pg_monitor;
alter default privileges in schema pgmq grant select on sequences to pg_monitor;

-- ---------------------------------------------------------------------------------------------
-- Names and helpers
-- ---------------------------------------------------------------------------------------------

-- Table name for a queue: lowercased `<prefix>_<name>`. Every function goes through here, so
-- this is where the characters that could break out of quoting are refused.
create function pgmq.format_table_name(queue_name text, prefix text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if queue_name ~ '\$|;|--|''' then
    raise exception 'queue name contains invalid characters: $, ;, --, or \''';
  end if;
  return pg_catalog.lower(prefix || '_' || queue_name);
end;
$$;

-- Length rule of the create functions. 1.5.1 refuses 48 characters and more, while its message
-- says 48 is the maximum; both the limit and the text are kept as 1.5.1 has them.
create function pgmq.validate_queue_name(queue_name text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if pg_catalog.length(queue_name) >= 48 then
    raise exception 'queue name is too long, maximum length is 48 characters';
  end if;
end;
$$;

-- Whether the table pgmq.<table_name> is a member of the pgmq extension.
create function pgmq._belongs_to_pgmq(table_name text)
returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (
    select
    from pg_catalog.pg_depend d
    join pg_catalog.pg_extension e on e.oid = d.refobjid
    join pg_catalog.pg_class c on c.oid = d.objid
    where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
      and d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
      and d.deptype = 'e'
      and e.extname = 'pgmq'
      and c.relnamespace = 'pgmq'::pg_catalog.regnamespace
      and c.relname = _belongs_to_pgmq.table_name
  )
$$;

create function pgmq._extension_exists(extension_name text)
returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (
    select from pg_catalog.pg_extension e where e.extname = _extension_exists.extension_name
  )
$$;

-- Partition column for a partman interval: a plain number partitions by id, anything else
-- (e.g. '1 day') by time.
create function pgmq._get_partition_col(partition_interval text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if pg_catalog.btrim(partition_interval) ~ '^[0-9]+$' then
    return 'msg_id';
  end if;
  return 'enqueued_at';
end;
$$;

create function pgmq._get_pg_partman_schema()
returns text
language sql
stable
set search_path = ''
as $$
  select n.nspname::text
  from pg_catalog.pg_extension e
  join pg_catalog.pg_namespace n on n.oid = e.extnamespace
  where e.extname = 'pg_partman'
$$;

create function pgmq._get_pg_partman_major_version()
returns integer
language sql
stable
set search_path = ''
as $$
  select pg_catalog.split_part(e.extversion, '.', 1)::integer
  from pg_catalog.pg_extension e
  where e.extname = 'pg_partman'
$$;

create function pgmq._ensure_pg_partman_installed()
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if not pgmq._extension_exists('pg_partman') then
    raise exception 'pg_partman is required for partitioned queues';
  end if;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Queue management
-- ---------------------------------------------------------------------------------------------

-- Creates q_<name> (the live queue, UNLOGGED when asked) and a_<name> (the archive, always
-- logged) if missing and registers the queue. Idempotent: repeats only emit "already exists,
-- skipping" NOTICEs and leave an existing queue as it is. 1.5.1 takes no lock here, so two
-- concurrent first creates of one queue can still collide, as they can there. The body of
-- create_non_partitioned and create_unlogged, which differ only in `unlogged`.
create function pgmq._create_queue(queue_name text, unlogged boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  qtable constant text := pgmq.format_table_name(queue_name, 'q');
  atable constant text := pgmq.format_table_name(queue_name, 'a');
begin
  perform pgmq.validate_queue_name(queue_name);

  execute pg_catalog.format(
    $ddl$
    create %s table if not exists pgmq.%I (
      msg_id bigint primary key generated always as identity,
      read_ct integer not null default 0,
      enqueued_at timestamp with time zone not null default now(),
      vt timestamp with time zone not null,
      message jsonb,
      headers jsonb
    )
    $ddl$,
    case when unlogged then 'unlogged' else '' end,
    qtable
  );
  execute pg_catalog.format(
    $ddl$
    create table if not exists pgmq.%I (
      msg_id bigint primary key,
      read_ct integer not null default 0,
      enqueued_at timestamp with time zone not null default now(),
      archived_at timestamp with time zone not null default now(),
      vt timestamp with time zone not null,
      message jsonb,
      headers jsonb
    )
    $ddl$,
    atable
  );
  -- Index names as 1.5.1 has them: the vt index follows the (lowercased) table name, the
  -- archive index keeps the queue name as given.
  execute pg_catalog.format(
    'create index if not exists %I on pgmq.%I (vt asc)', qtable || '_vt_idx', qtable
  );
  execute pg_catalog.format(
    'create index if not exists %I on pgmq.%I (archived_at)',
    'archived_at_idx_' || queue_name, atable
  );

  insert into pgmq.meta (queue_name, is_partitioned, is_unlogged)
  values (_create_queue.queue_name, false, _create_queue.unlogged)
  on conflict on constraint meta_queue_name_key do nothing;
end;
$$;

create function pgmq.create_non_partitioned(queue_name text)
returns void
language sql
set search_path = ''
begin atomic
  select pgmq._create_queue(queue_name, false);
end;

-- Same as create_non_partitioned, but q_<name> is UNLOGGED (fast, emptied by a crash); the
-- archive stays logged.
create function pgmq.create_unlogged(queue_name text)
returns void
language sql
set search_path = ''
begin atomic
  select pgmq._create_queue(queue_name, true);
end;

create function pgmq."create"(queue_name text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pgmq.create_non_partitioned(queue_name);
end;
$$;

-- Partitioned queues need pg_partman, which the local stack does not have. With pg_partman
-- present this still refuses rather than pretend: use the real pgmq for partitioned queues.
create function pgmq.create_partitioned(
  queue_name text,
  partition_interval text default '10000',
  retention_interval text default '100000'
)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pgmq.format_table_name(queue_name, 'q');
  perform pgmq.validate_queue_name(queue_name);
  perform pgmq._ensure_pg_partman_installed();
  raise exception 'partitioned queues are not supported by the local pgmq stand-in'
    using errcode = 'feature_not_supported',
          detail = pg_catalog.format(
            'partition_interval %s, retention_interval %s', partition_interval, retention_interval
          ),
          hint = 'Install the real pgmq extension to use create_partitioned.';
end;
$$;

create function pgmq.convert_archive_partitioned(
  table_name text,
  partition_interval text default '10000',
  retention_interval text default '100000',
  leading_partition integer default 10
)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pgmq.format_table_name(table_name, 'a');
  perform pgmq._ensure_pg_partman_installed();
  raise exception 'partitioned archives are not supported by the local pgmq stand-in'
    using errcode = 'feature_not_supported',
          detail = pg_catalog.format(
            'partition_interval %s, retention_interval %s, leading_partition %s',
            partition_interval, retention_interval, leading_partition
          ),
          hint = 'Install the real pgmq extension to use convert_archive_partitioned.';
end;
$$;

-- Drops both tables (their identity sequence goes with q_) and the registry row. A missing
-- queue is not an error: TRUE with "does not exist, skipping" NOTICEs, like Supabase's
-- patched 1.5.1. Tables that some other tool made extension members are detached first,
-- since DROP TABLE refuses to drop a member.
create function pgmq.drop_queue(queue_name text)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  qtable constant text := pgmq.format_table_name(queue_name, 'q');
  atable constant text := pgmq.format_table_name(queue_name, 'a');
  member record;
begin
  for member in
    select c.relname, c.relkind
    from pg_catalog.pg_depend d
    join pg_catalog.pg_extension e on e.oid = d.refobjid
    join pg_catalog.pg_class c on c.oid = d.objid
    where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
      and d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
      and d.deptype = 'e'
      and e.extname = 'pgmq'
      and c.relnamespace = 'pgmq'::pg_catalog.regnamespace
      and c.relname in (qtable, atable, qtable || '_msg_id_seq')
  loop
    execute pg_catalog.format(
      'alter extension pgmq drop %s pgmq.%I',
      case when member.relkind = 'S' then 'sequence' else 'table' end,
      member.relname
    );
  end loop;

  execute pg_catalog.format('drop table if exists pgmq.%I', qtable);
  execute pg_catalog.format('drop table if exists pgmq.%I', atable);

  delete from pgmq.meta m where m.queue_name = drop_queue.queue_name;

  return true;
end;
$$;

-- Deprecated form kept for old callers: partitioning is read from meta nowadays.
create function pgmq.drop_queue(queue_name text, partitioned boolean)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  raise warning 'drop_queue(queue_name, partitioned) is deprecated; call drop_queue(queue_name)'
    using detail = pg_catalog.format('partitioned => %s is ignored', partitioned);
  return pgmq.drop_queue(queue_name);
end;
$$;

-- Empties the live queue (not the archive; the id sequence keeps counting) and returns how many
-- messages were removed. The lock comes first so the count is exactly what TRUNCATE removes.
create function pgmq.purge_queue(queue_name text)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  qtable constant text := pgmq.format_table_name(queue_name, 'q');
  removed bigint;
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  execute pg_catalog.format('lock table pgmq.%I in access exclusive mode', qtable);
  execute pg_catalog.format('select pg_catalog.count(*) from pgmq.%I', qtable) into removed;
  execute pg_catalog.format('truncate table pgmq.%I', qtable);
  return removed;
end;
$$;

-- In 1.5.1 this lets the archive survive DROP EXTENSION by removing it from the extension.
-- Here queue tables are never members, so this only acts on a table someone else attached.
create function pgmq.detach_archive(queue_name text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  atable constant text := pgmq.format_table_name(queue_name, 'a');
begin
  if pgmq._belongs_to_pgmq(atable) then
    execute pg_catalog.format('alter extension pgmq drop table pgmq.%I', atable);
  end if;
end;
$$;

create function pgmq.list_queues()
returns setof pgmq.queue_record
language plpgsql
stable
set search_path = ''
as $$
begin
  return query
  select m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
  from pgmq.meta m;
end;
$$;

-- One scan of q_<name>. queue_length counts every message, queue_visible_length only those
-- with vt <= now() (transaction time). total_messages is the highest id ever handed out,
-- rolled-back sends included: it comes from the identity sequence, not from the table.
create function pgmq.metrics(queue_name text)
returns pgmq.metrics_result
language plpgsql
set search_path = ''
as $$
declare
  qtable constant text := pgmq.format_table_name(queue_name, 'q');
  queue_length bigint;
  queue_visible_length bigint;
  newest_msg_age_sec integer;
  oldest_msg_age_sec integer;
  total_messages bigint;
begin
  execute pg_catalog.format(
    $sql$
    select
      pg_catalog.count(*),
      pg_catalog.count(*) filter (where q.vt <= now()),
      extract(epoch from now() - pg_catalog.max(q.enqueued_at))::integer,
      extract(epoch from now() - pg_catalog.min(q.enqueued_at))::integer
    from pgmq.%I q
    $sql$,
    qtable
  )
  into queue_length, queue_visible_length, newest_msg_age_sec, oldest_msg_age_sec;

  total_messages := coalesce(
    pg_catalog.pg_sequence_last_value(
      pg_catalog.pg_get_serial_sequence(pg_catalog.format('pgmq.%I', qtable), 'msg_id')::regclass
    ),
    0
  );

  return row(
    queue_name,
    queue_length,
    newest_msg_age_sec,
    oldest_msg_age_sec,
    total_messages,
    now(),
    queue_visible_length
  )::pgmq.metrics_result;
end;
$$;

-- metrics() for every registered queue. Like 1.5.1, a registry row whose tables are gone is an
-- error rather than silently skipped.
create function pgmq.metrics_all()
returns setof pgmq.metrics_result
language plpgsql
set search_path = ''
as $$
declare
  registered record;
begin
  for registered in select m.queue_name from pgmq.meta m loop
    return next pgmq.metrics(registered.queue_name);
  end loop;
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Sending. Optional arguments are overloads, not DEFAULTs, as in 1.5.1: the set of signatures
-- (and so what an untyped third literal resolves to) is part of the API. Every overload ends in
-- the (headers, timestamptz) form. vt uses clock_timestamp(), enqueued_at the column default
-- now(); a past or negative delay simply means "visible now".
-- ---------------------------------------------------------------------------------------------

create function pgmq.send(
  queue_name text,
  msg jsonb,
  headers jsonb,
  delay timestamp with time zone
)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    'insert into pgmq.%I (vt, message, headers) values ($1, $2, $3) returning msg_id',
    pgmq.format_table_name(queue_name, 'q')
  )
  using delay, msg, headers;
end;
$$;

create function pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query
  select pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
end;
$$;

create function pgmq.send(queue_name text, msg jsonb, delay timestamp with time zone)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send(queue_name, msg, null::jsonb, delay);
end;
$$;

create function pgmq.send(queue_name text, msg jsonb, delay integer)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query
  select pgmq.send(queue_name, msg, null::jsonb, clock_timestamp() + make_interval(secs => delay));
end;
$$;

create function pgmq.send(queue_name text, msg jsonb, headers jsonb)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send(queue_name, msg, headers, clock_timestamp());
end;
$$;

create function pgmq.send(queue_name text, msg jsonb)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send(queue_name, msg, null::jsonb, clock_timestamp());
end;
$$;

-- One row per array element, all with one vt, in array order. The two arrays are zipped with
-- ROWS FROM (unnest(msgs), unnest(headers)), which reproduces 1.5.1's lenient pairing: a
-- shorter headers array pads with NULL headers, a longer one adds rows with a NULL message, and
-- NULL or empty msgs with no headers inserts nothing.
create function pgmq.send_batch(
  queue_name text,
  msgs jsonb[],
  headers jsonb[],
  delay timestamp with time zone
)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    $sql$
    insert into pgmq.%I (vt, message, headers)
    select $1, b.message, b.headers
    from rows from (pg_catalog.unnest($2), pg_catalog.unnest($3))
      with ordinality as b (message, headers, ord)
    order by b.ord
    returning msg_id
    $sql$,
    pgmq.format_table_name(queue_name, 'q')
  )
  using delay, msgs, headers;
end;
$$;

create function pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query
  select pgmq.send_batch(
    queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay)
  );
end;
$$;

create function pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send_batch(queue_name, msgs, null::jsonb[], delay);
end;
$$;

create function pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query
  select pgmq.send_batch(
    queue_name, msgs, null::jsonb[], clock_timestamp() + make_interval(secs => delay)
  );
end;
$$;

create function pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send_batch(queue_name, msgs, headers, clock_timestamp());
end;
$$;

create function pgmq.send_batch(queue_name text, msgs jsonb[])
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  return query select pgmq.send_batch(queue_name, msgs, null::jsonb[], clock_timestamp());
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Reading
-- ---------------------------------------------------------------------------------------------

-- The claim statement: lock up to qty visible messages, lowest id first, skipping rows another
-- reader holds, then push their vt out by `vt` seconds and count the read. Under READ COMMITTED
-- a row that another reader claimed and committed meanwhile is re-checked against vt after
-- locking and dropped, so a message goes to one reader per visibility timeout. A NULL or {}
-- `conditional` filters nothing (not even NULL messages); anything else keeps the messages that
-- contain it (@>). EXECUTE plans once with the actual values, so the planner folds the unused
-- branch of that test away. The result is not sorted.
create function pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb default '{}')
returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    $sql$
    with claimed as (
      select q.msg_id
      from pgmq.%1$I q
      where q.vt <= clock_timestamp()
        and ($3 is null or $3 = '{}'::jsonb or q.message operator(pg_catalog.@>) $3)
      order by q.msg_id
      limit $1
      for update skip locked
    )
    update pgmq.%1$I m
    set vt = clock_timestamp() + $2,
        read_ct = m.read_ct + 1
    from claimed
    where m.msg_id = claimed.msg_id
    returning m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    $sql$,
    pgmq.format_table_name(queue_name, 'q')
  )
  using qty, make_interval(secs => vt), conditional;
end;
$$;

-- read(), retried every poll_interval_ms until it returns at least one message or
-- max_poll_seconds have passed (then nothing). Runs as one statement: each try sees commits
-- made since (READ COMMITTED) and claimed rows stay locked until the caller's transaction ends.
-- The deadline is checked before each try, so max_poll_seconds <= 0 returns nothing at once,
-- as in 1.5.1. The sleep divides by 1000.0: pgmq <= 1.4.4 divided integers, so sub-second
-- intervals slept 0 s and spun the CPU.
create function pgmq.read_with_poll(
  queue_name text,
  vt integer,
  qty integer,
  max_poll_seconds integer default 5,
  poll_interval_ms integer default 100,
  conditional jsonb default '{}'
)
returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
declare
  stop_at constant timestamp with time zone :=
    clock_timestamp() + make_interval(secs => max_poll_seconds);
begin
  loop
    if clock_timestamp() >= stop_at then
      return;
    end if;

    return query select * from pgmq.read(queue_name, vt, qty, conditional);
    if found then
      return;
    end if;

    perform pg_catalog.pg_sleep(poll_interval_ms / 1000.0);
  end loop;
end;
$$;

-- Deletes and returns the oldest visible message: at-most-once, read_ct is not incremented.
create function pgmq.pop(queue_name text)
returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    $sql$
    with claimed as (
      select q.msg_id
      from pgmq.%1$I q
      where q.vt <= clock_timestamp()
      order by q.msg_id
      limit 1
      for update skip locked
    )
    delete from pgmq.%1$I m
    using claimed
    where m.msg_id = claimed.msg_id
    returning m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    $sql$,
    pgmq.format_table_name(queue_name, 'q')
  );
end;
$$;

-- Sets vt to now (clock) + vt seconds, visible or not; read_ct unchanged; no row for an unknown
-- id.
create function pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
returns setof pgmq.message_record
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    $sql$
    update pgmq.%I m
    set vt = clock_timestamp() + $2
    where m.msg_id = $1
    returning m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    $sql$,
    pgmq.format_table_name(queue_name, 'q')
  )
  using msg_id, make_interval(secs => vt);
end;
$$;

-- ---------------------------------------------------------------------------------------------
-- Acknowledging. Neither checks visibility or who read the message, and neither skips locked
-- rows: they wait for an in-flight read of the same message to finish.
-- ---------------------------------------------------------------------------------------------

-- The ids actually deleted, in no particular order; unknown ids are left out.
create function pgmq.delete(queue_name text, msg_ids bigint[])
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    'delete from pgmq.%I m where m.msg_id = any ($1) returning m.msg_id',
    pgmq.format_table_name(queue_name, 'q')
  )
  using msg_ids;
end;
$$;

-- True when the message was there (the array form with one id).
create function pgmq.delete(queue_name text, msg_id bigint)
returns boolean
language sql
set search_path = ''
begin atomic
  select exists (select from pgmq.delete(queue_name, array[msg_id]));
end;

-- Moves the messages to a_<name> in one statement (so atomically), keeping msg_id, vt,
-- read_ct, enqueued_at, message and headers; archived_at defaults to now(). Returns the ids
-- actually archived, in no particular order; unknown ids are left out.
create function pgmq.archive(queue_name text, msg_ids bigint[])
returns setof bigint
language plpgsql
set search_path = ''
as $$
begin
  -- Writes through dynamic SQL, which plpgsql_check cannot see (it would suggest STABLE):
  -- @plpgsql_check_options: performance_warnings = false
  return query execute pg_catalog.format(
    $sql$
    with moved as (
      delete from pgmq.%I m
      where m.msg_id = any ($1)
      returning m.msg_id, m.vt, m.read_ct, m.enqueued_at, m.message, m.headers
    )
    insert into pgmq.%I (msg_id, vt, read_ct, enqueued_at, message, headers)
    select moved.msg_id, moved.vt, moved.read_ct, moved.enqueued_at, moved.message, moved.headers
    from moved
    returning msg_id
    $sql$,
    pgmq.format_table_name(queue_name, 'q'),
    pgmq.format_table_name(queue_name, 'a')
  )
  using msg_ids;
end;
$$;

-- Moves the message to a_<name> (the array form with one id): true when it was there.
create function pgmq.archive(queue_name text, msg_id bigint)
returns boolean
language sql
set search_path = ''
begin atomic
  select exists (select from pgmq.archive(queue_name, array[msg_id]));
end;
