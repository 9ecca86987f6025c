/**
 * The local stack has hosted Supabase's role layout, so what passes here deploys: `postgres`
 * (what the migrations, `db:reset`, the template database and these tests use) is not a
 * superuser, the migrations' objects are its own, and a migration needing more than hosted
 * gives fails locally, through the real Supabase CLI, with the error hosted gives.
 */
import { assert, assertEquals, assertMatch } from "../test/assert.ts";
import { connect, freshDb } from "../test/db.ts";
import { testEnv } from "../test/env.ts";
import { eventually } from "../test/queue.ts";
import { dbPush } from "./supabase_cli.ts";
import { StackError } from "./errors.ts";
import { raw, testGateway } from "./gateway/test_support.ts";
import { REPO_ROOT } from "./state.ts";

Deno.test("roles: postgres is hosted's postgres, supabase_admin the superuser", async () => {
  const sql = connect(testEnv().dbUrl, 1);
  try {
    const [me] = await sql`
      select current_user as who, current_setting('is_superuser') as su,
             (select rolname from pg_roles where oid = 10) as bootstrap`;
    assertEquals(me, { who: "postgres", su: "off", bootstrap: "supabase_admin" });
    const roles = await sql`
      select rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin, rolinherit
      from pg_roles
      where rolname in ('supabase_admin', 'postgres', 'authenticator', 'anon',
                        'authenticated', 'service_role')
      order by rolname`;
    assertEquals(roles.map((r) => ({ ...r })), [
      {
        rolname: "anon",
        rolsuper: false,
        rolcreaterole: false,
        rolcreatedb: false,
        rolbypassrls: false,
        rolcanlogin: false,
        rolinherit: false,
      },
      {
        rolname: "authenticated",
        rolsuper: false,
        rolcreaterole: false,
        rolcreatedb: false,
        rolbypassrls: false,
        rolcanlogin: false,
        rolinherit: false,
      },
      {
        rolname: "authenticator",
        rolsuper: false,
        rolcreaterole: false,
        rolcreatedb: false,
        rolbypassrls: false,
        rolcanlogin: true,
        rolinherit: false,
      },
      {
        rolname: "postgres",
        rolsuper: false,
        rolcreaterole: true,
        rolcreatedb: true,
        rolbypassrls: true,
        rolcanlogin: true,
        rolinherit: true,
      },
      {
        rolname: "service_role",
        rolsuper: false,
        rolcreaterole: false,
        rolcreatedb: false,
        rolbypassrls: true,
        rolcanlogin: false,
        rolinherit: false,
      },
      {
        rolname: "supabase_admin",
        rolsuper: true,
        rolcreaterole: true,
        rolcreatedb: true,
        rolbypassrls: true,
        rolcanlogin: true,
        rolinherit: true,
      },
    ]);
    const member = await sql`
      select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid
      where m.member = 'postgres'::regrole order by 1`;
    assertEquals(member.map((r) => r.rolname), [
      "anon",
      "authenticated",
      "authenticator",
      "pg_monitor",
      "pg_read_all_data",
      "pg_signal_backend",
      "service_role",
    ]);
  } finally {
    await sql.end();
  }
});

Deno.test("roles: everything the migrations create belongs to postgres", async () => {
  const sql = connect(testEnv().dbUrl, 1);
  try {
    const foreign = await sql`
      select c.oid::regclass::text as object, c.relowner::regrole::text as owner
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname in ('public', 'conveyor', 'pgmq', 'supabase_migrations')
        and c.relkind in ('r', 'p', 'v', 'm', 'S') and c.relowner <> 'postgres'::regrole
      union all
      select p.oid::regprocedure::text, p.proowner::regrole::text
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'conveyor', 'pgmq') and p.proowner <> 'postgres'::regrole
      order by 1`;
    assertEquals(foreign.map((r) => ({ ...r })), []);
    const [ext] = await sql`select extowner::regrole::text as owner from pg_extension
      where extname = 'pgmq'`;
    assertEquals(ext?.owner, "postgres", "pgmq is postgres's, as hosted arranges it");
    const jobs = await sql`select distinct username from cron.job order by 1`;
    assertEquals(jobs.map((r) => r.username), ["postgres"], "cron jobs run as postgres");
  } finally {
    await sql.end();
  }
});

Deno.test("roles: postgres sets PostgREST's settings on authenticator but not the server's", async () => {
  const sql = connect(testEnv().dbUrl, 1);
  try {
    // What hosted allows through supautils (migration 0020 does it): reserved role, pgrst.*.
    await sql.begin(async (tx) => {
      await tx`alter role authenticator set pgrst.db_max_rows = '7'`;
      const [s] = await tx`
        select array_to_string(setconfig, ',') as conf from pg_db_role_setting
        where setrole = 'authenticator'::regrole and setdatabase = 0`;
      assertMatch(s?.conf ?? "", /(^|,)pgrst\.db_max_rows=7(,|$)/);
      await tx`alter role authenticator reset pgrst.db_max_rows`;
    });
    const refused = await sql`alter system set work_mem = '8MB'`.then(() => null, (e) => e);
    assertEquals(
      [refused?.code, refused?.message],
      ["42501", 'permission denied to set parameter "work_mem"'],
    );
  } finally {
    await sql.end();
  }
});

/** A Supabase project folder holding one migration. */
async function projectWith(migration: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "conveyor-cli-" });
  await Deno.mkdir(`${dir}/supabase/migrations`, { recursive: true });
  await Deno.writeTextFile(`${dir}/supabase/migrations/20300101000000_needs_more.sql`, migration);
  return dir;
}

for (
  const [what, statement, error] of [
    [
      "an extension hosted does not allow",
      "create extension file_fdw;",
      'ERROR: permission denied to create extension "file_fdw" (SQLSTATE 42501)',
    ],
    [
      "making postgres a superuser",
      "alter role postgres superuser;",
      "ERROR: must be superuser to alter superuser roles or change superuser attribute (SQLSTATE 42501)",
    ],
  ] as const
) {
  Deno.test(`roles: a migration needing more than hosted gives fails through the CLI: ${what}`, async () => {
    const env = testEnv();
    const db = `t_cli_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const admin = connect(env.dbUrl, 1);
    // postgres has CREATEDB, as on hosted: the scratch database is its own.
    await admin.unsafe(`create database ${db}`);
    const dir = await projectWith(`create table public.before_it (id int);\n${statement}\n`);
    const url = new URL(env.dbUrl);
    url.pathname = `/${db}`;
    try {
      const err = await dbPush(dir, url.toString()).then(() => null, (e) => e);
      assert(err instanceof StackError, `the push failed: ${err}`);
      assertEquals(
        err.message.split("\n").slice(0, 2),
        ["supabase db push failed in 20300101000000_needs_more.sql:", error],
      );
      const sql = connect(url.toString(), 1);
      try {
        const [left] = await sql`
          select to_regclass('public.before_it') as t,
                 (select count(*)::int from supabase_migrations.schema_migrations) as applied`;
        assertEquals(left, { t: null, applied: 0 }, "the migration's transaction rolled back");
      } finally {
        await sql.end();
      }
    } finally {
      await admin.unsafe(`drop database if exists ${db} with (force)`);
      await admin.end();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test({
  name:
    "roles: the superuser's event triggers fire for postgres: a migration the CLI pushes is served by PostgREST at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await freshDb();
    // DDL by postgres (not a superuser) sends PostgREST's reload, as on hosted.
    const heard: string[] = [];
    const listener = connect(db.url, 1);
    const other = connect(db.url, 1);
    try {
      await listener.listen("pgrst", (payload) => heard.push(payload));
      await other`create table public.ddl_probe (id int)`;
      await eventually("the DDL's NOTIFY", () => Promise.resolve(heard.length > 0), 10_000);
      assertEquals(heard[0], "reload schema");
    } finally {
      await listener.end();
      await other.end();
    }

    // End to end: the CLI pushes a new migration as postgres and PostgREST, given no NOTIFY
    // by anyone, serves its function.
    const dir = await Deno.makeTempDir({ prefix: "conveyor-cli-" });
    try {
      await Deno.mkdir(`${dir}/supabase`);
      await copyDir(`${REPO_ROOT}/supabase/migrations`, `${dir}/supabase/migrations`);
      await Deno.writeTextFile(
        `${dir}/supabase/migrations/20300101000000_served_at_once.sql`,
        "create function public.served_at_once() returns int language sql as $$ select 42 $$;\n",
      );
      await using g = await testGateway(db.url);
      const call = () =>
        raw(`${g.rest}/rpc/served_at_once`, { method: "POST", headers: { apikey: g.service } });
      assertEquals((await call()).status, 404, "not there before the push");
      assertEquals(await dbPush(dir, db.url), ["20300101000000_served_at_once"]);
      const r = await eventually("the pushed function over /rest/v1", async () => {
        const r = await call();
        return r.status === 200 ? r : undefined;
      }, 15_000);
      assertEquals(r.text, "42");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isFile) await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}
