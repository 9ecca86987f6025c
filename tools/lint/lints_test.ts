/**
 * Each lint on a fixture: in a fresh clone of the migrated database, create the offending
 * object, see the lint report exactly it (compared with what it reported before, so the
 * migrated schema's own findings do not matter), apply the fix (the finding's own fix SQL
 * unless the fixture says otherwise) and see the finding go. The lints read the catalog as
 * `postgres`, as on a hosted project; fixtures only the platform could make (objects in
 * `auth`, extensions hosted does not allow, a superuser's extension objects) are set up and
 * repaired as the superuser.
 */
import type { Sql } from "postgres";
import { assertEquals } from "../test/assert.ts";
import { connect, freshDb } from "../test/db.ts";
import { type Finding, runLint } from "./db_lints.ts";
import { LINTS } from "./lints.ts";

interface Fixture {
  lint: string;
  /** Schemas PostgREST serves for this fixture (default: fx only). */
  schemas?: string[];
  /** SQL creating the offending objects (schema fx exists, API roles may use it). */
  setup: string;
  /** The objects the lint must report, in order. */
  objects: string[];
  /** The fix SQL the findings must carry, when the lint computes one. */
  fixes?: string[];
  /** How to fix it; default: run each finding's fix. */
  repair?: string | ((sql: Sql, found: Finding[]) => Promise<void>);
  /** Set up and repair as the superuser (what `postgres` may not do on hosted either). */
  admin?: true;
}

const table = "create table fx.t (id int primary key);";
const rls = "alter table fx.t enable row level security;";

const FIXTURES: Fixture[] = [
  {
    lint: "unindexed_foreign_keys",
    // an index holding the key's column, but not first, does not count
    setup: `${table} create table fx.c (id int primary key, t_id int references fx.t);
            create index on fx.c (id, t_id);`,
    objects: ["fx.c:c_t_id_fkey"],
    fixes: ["create index on fx.c (t_id);"],
  },
  {
    lint: "auth_users_exposed",
    admin: true,
    setup: `create table if not exists auth.users (id uuid primary key, email text);
            create view fx.people as select id, email from auth.users;
            grant select on fx.people to authenticated;`,
    objects: ["fx.people"],
    // a security_invoker view over an RLS-protected auth.users is fine
    repair: `alter view fx.people set (security_invoker = true);
             alter table auth.users enable row level security;`,
  },
  {
    lint: "auth_rls_initplan",
    setup: `create table fx.t (id int primary key, owner text); ${rls}
            create policy own on fx.t using (owner = current_setting('app.user', true))
              with check (owner = auth.uid()::text);
            create policy fine on fx.t for select
              using (owner = (select current_setting('app.user', true)));`,
    objects: ["fx.t:own"],
    fixes: [
      "alter policy own on fx.t using ((owner = (select current_setting('app.user'::text, true))))" +
      " with check ((owner = ((select auth.uid()))::text));",
    ],
  },
  {
    lint: "no_primary_key",
    setup: "create table fx.t (id int);",
    objects: ["fx.t"],
    repair: "alter table fx.t add primary key (id);",
  },
  {
    lint: "unused_index",
    setup: `create table fx.t (id int primary key, b int);
            insert into fx.t select g, g from generate_series(1, 1000) g;
            create index t_b on fx.t (b); analyze fx.t;`,
    objects: ["fx.t:t_b"],
    fixes: ["drop index fx.t_b;"],
    // or use it: one index scan, with the statistics flushed before the next statement
    repair: async (sql) => {
      const conn = await sql.reserve();
      try {
        // One batch: the flush is forced at the end of this very one, when the backend
        // goes idle, before it reads the next statement.
        await conn.unsafe(`set enable_seqscan = off; select * from fx.t where b = 5;
                           select pg_stat_force_next_flush();`);
        await conn`select 1`;
      } finally {
        conn.release();
      }
    },
  },
  {
    lint: "multiple_permissive_policies",
    setup: `${table} ${rls}
            create policy low on fx.t for select to authenticated using (id < 10);
            create policy high on fx.t for select to authenticated using (id > 90);`,
    objects: ["fx.t:authenticated:SELECT"],
    repair: "drop policy high on fx.t; alter policy low on fx.t using (id < 10 or id > 90);",
  },
  {
    lint: "policy_exists_rls_disabled",
    setup: `${table} create policy p on fx.t to authenticated using (id > 0);`,
    objects: ["fx.t"],
    fixes: ["alter table fx.t enable row level security;"],
  },
  {
    lint: "rls_enabled_no_policy",
    setup: `${table} ${rls}`,
    objects: ["fx.t"],
    repair: "create policy readable on fx.t for select to authenticated using (id > 0);",
  },
  {
    lint: "duplicate_index",
    // (b) twice, and the primary key again as a unique index; (b desc) is another index
    setup: `create table fx.t (id int primary key, b int);
            create index t_b1 on fx.t (b); create index t_b2 on fx.t (b);
            create index t_b_desc on fx.t (b desc); create unique index t_id on fx.t (id);`,
    objects: ["fx.t:t_b1,t_b2", "fx.t:t_id,t_pkey"],
    fixes: ["drop index fx.t_b2;", "drop index fx.t_id;"],
  },
  {
    lint: "security_definer_view",
    setup: `${table} create view fx.v as select id from fx.t;
            create view fx.w with (security_invoker = on) as select id from fx.t;
            grant select on fx.v, fx.w to anon;`,
    objects: ["fx.v"],
    fixes: ["alter view fx.v set (security_invoker = true);"],
  },
  {
    lint: "function_search_path_mutable",
    setup: `create function fx.f(a int) returns int language sql as 'select a';
            create function fx.g() returns int language sql set search_path = '' as 'select 1';`,
    objects: ["fx.f(integer)"],
    fixes: ["alter function fx.f(integer) set search_path = '';"],
  },
  {
    lint: "rls_disabled_in_public",
    setup: `${table} create table fx.private (id int primary key);
            grant select on fx.t to anon;`,
    objects: ["fx.t"],
    fixes: ["alter table fx.t enable row level security;"],
  },
  {
    lint: "extension_in_public",
    admin: true,
    setup: "create extension hstore with schema public;",
    objects: ["hstore"],
    fixes: ["alter extension hstore set schema extensions;"],
  },
  {
    lint: "rls_references_user_metadata",
    setup: `create table fx.t (id int primary key, org text); ${rls}
            create policy org on fx.t using (org = auth.jwt() -> 'user_metadata' ->> 'org');`,
    objects: ["fx.t:org"],
    repair: "alter policy org on fx.t using (org = auth.jwt() -> 'app_metadata' ->> 'org');",
  },
  {
    lint: "materialized_view_in_api",
    setup: `create materialized view fx.m as select 1 as a;
            grant select on fx.m to authenticated;`,
    objects: ["fx.m"],
    fixes: ["revoke select on fx.m from anon, authenticated;"],
  },
  {
    lint: "foreign_table_in_api",
    admin: true,
    setup: `create extension file_fdw with schema extensions;
            create server fx_files foreign data wrapper file_fdw;
            create foreign table fx.f (line text) server fx_files options (filename '/dev/null');
            grant select on fx.f to anon;`,
    objects: ["fx.f"],
    fixes: ["revoke select on fx.f from anon, authenticated;"],
  },
  {
    lint: "unsupported_reg_types",
    setup: `create table fx.t (id int primary key, fn regprocedure, fns regproc[], rel regclass);`,
    objects: ["fx.t.fn", "fx.t.fns"],
    repair: "alter table fx.t alter column fn type text, alter column fns type text[];",
  },
  {
    lint: "insecure_queue_exposed_in_api",
    // only while pgmq_public is served (see the second fixture)
    schemas: ["public", "pgmq_public"],
    setup: `create table pgmq.q_fx (msg_id bigint primary key);
            grant select on pgmq.q_fx to anon;`,
    objects: ["pgmq.q_fx"],
    fixes: ["alter table pgmq.q_fx enable row level security;"],
  },
  {
    lint: "insecure_queue_exposed_in_api",
    schemas: ["public"],
    setup: `create table pgmq.q_fx (msg_id bigint primary key);
            grant select on pgmq.q_fx to anon;`,
    objects: [],
  },
  {
    lint: "table_bloat",
    // ~29 MB of rows, all but the last deleted: the pages stay, the live rows need one
    setup: `create table fx.t (id int primary key, pad text);
            insert into fx.t select g, repeat('x', 200) from generate_series(1, 120000) g;
            delete from fx.t where id < 120000; analyze fx.t;`,
    objects: ["fx.t"],
    fixes: ["vacuum full fx.t;"],
  },
  {
    lint: "fkey_to_auth_unique",
    admin: true,
    setup: `create table if not exists auth.users (id uuid primary key, email text unique);
            create table fx.t (id int primary key, email text references auth.users (email),
                               user_id uuid references auth.users (id));`,
    objects: ["fx.t:t_email_fkey"],
    fixes: ["alter table fx.t drop constraint t_email_fkey;"],
  },
  {
    lint: "extension_versions_outdated",
    setup: "create extension hstore with schema extensions version '1.7';",
    objects: ["hstore"],
    fixes: ["alter extension hstore update;"],
  },
  {
    lint: "sensitive_columns_exposed",
    setup: `create table fx.t (id int primary key, email text, "Password" text, "api-key" text);
            grant select on fx.t to anon;`,
    objects: ["fx.t"],
    fixes: ["alter table fx.t enable row level security;"],
  },
  {
    lint: "rls_policy_always_true",
    // a public read (select … using true) is left alone
    setup: `${table} ${rls}
            create policy edit on fx.t for update to authenticated using (true);
            create policy add on fx.t for insert with check ((1 = 1));
            create policy read on fx.t for select to anon using (true);`,
    objects: ["fx.t:add", "fx.t:edit"],
    repair: `alter policy edit on fx.t using (id = 0) with check (id = 0);
             alter policy add on fx.t with check (id > 0);`,
  },
  {
    lint: "pg_graphql_anon_table_exposed",
    // one readable column is enough to be listed
    setup: `create table fx.t (id int primary key, note text); grant select (id) on fx.t to anon;`,
    objects: ["fx.t"],
    repair: "revoke select (id) on fx.t from anon;",
  },
  {
    lint: "pg_graphql_authenticated_table_exposed",
    setup: `${table} grant select on fx.t to authenticated;`,
    objects: ["fx.t"],
    fixes: ["revoke select on fx.t from authenticated;"],
  },
  {
    lint: "anon_security_definer_function_executable",
    // functions are executable by PUBLIC unless revoked
    setup: `create function fx.f() returns int language sql security definer
              set search_path = '' as 'select 1';`,
    objects: ["fx.f()"],
    fixes: ["revoke execute on function fx.f() from public, anon;"],
  },
  {
    lint: "authenticated_security_definer_function_executable",
    setup: `create function fx.f() returns int language sql security definer
              set search_path = '' as 'select 1';
            revoke execute on function fx.f() from public;
            grant execute on function fx.f() to authenticated;`,
    objects: ["fx.f()"],
    fixes: ["revoke execute on function fx.f() from public, authenticated;"],
  },
];

Deno.test("every lint has a fixture", () => {
  assertEquals(
    [...new Set(FIXTURES.map((f) => f.lint))].sort(),
    LINTS.map((l) => l.name).sort(),
  );
});

for (const fx of FIXTURES) {
  const lint = LINTS.find((l) => l.name === fx.lint)!;
  const what = fx.objects.length
    ? `reports ${fx.objects.join(", ")}, and nothing once fixed`
    : `reports nothing when ${fx.schemas!.join(", ")} are served`;
  Deno.test(`${fx.lint}: ${what}`, async () => {
    await using db = await freshDb();
    const schemas = fx.schemas ?? ["fx"];
    const before = new Set((await runLint(db.sql, lint, schemas)).map((f) => f.object));
    const fresh = async () =>
      (await runLint(db.sql, lint, schemas)).filter((f) => !before.has(f.object));
    const maker = fx.admin ? connect(db.adminUrl, 1) : db.sql;
    try {
      await maker.unsafe(
        `create schema fx; grant usage on schema fx to anon, authenticated; ${fx.setup}`,
      );
      const found = await fresh();
      assertEquals(found.map((f) => f.object), fx.objects);
      assertEquals(found.map((f) => f.level), fx.objects.map(() => lint.level));
      if (fx.fixes) assertEquals(found.map((f) => f.fix), fx.fixes);
      if (!fx.objects.length) return;
      if (typeof fx.repair === "function") await fx.repair(maker, found);
      else if (fx.repair) await maker.unsafe(fx.repair);
      else for (const f of found) await maker.unsafe(f.fix);
      assertEquals(await fresh(), []);
    } finally {
      if (maker !== db.sql) await maker.end();
    }
  });
}
