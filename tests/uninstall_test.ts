/**
 * scripts/uninstall.sql (issue 11): on a fully migrated database it leaves nothing of
 * Conveyor behind, and it knows every migration version this repository has.
 */
import { assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { listMigrations } from "../tools/stack/migrate.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";

const script = await Deno.readTextFile(`${REPO_ROOT}/scripts/uninstall.sql`);

Deno.test("uninstall.sql clears the migration history of every version in supabase/migrations", async () => {
  const listed = new Set([...script.matchAll(/'(\d{4,14})'/g)].map((m) => m[1]));
  const files = await listMigrations(`${REPO_ROOT}/supabase/migrations`);
  assertEquals(files.filter((f) => !listed.has(f.version)).map((f) => f.version), []);
});

Deno.test("uninstall.sql removes every table, function, type, queue and schema Conveyor created", async () => {
  await using db = await freshDb();
  // One connection: the script runs its own BEGIN … COMMIT.
  const sql = connect(db.url, 1);
  try {
    await sql.unsafe(script);
    const leftovers = await sql`
      select 'relation ' || c.relname as what from pg_class c
      where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'v', 'm', 'p', 'S')
        and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
      union all
      select 'function ' || p.oid::regprocedure from pg_proc p
      where p.pronamespace = 'public'::regnamespace
        and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
      union all
      select 'type ' || t.typname from pg_type t
      where t.typnamespace = 'public'::regnamespace and t.typtype in ('c', 'e', 'd')
        and t.typrelid = 0
      union all
      select 'schema ' || nspname from pg_namespace where nspname = 'conveyor'
      union all
      select 'queue ' || queue_name from pgmq.meta
      union all
      select 'migration ' || version from supabase_migrations.schema_migrations`;
    assertEquals(leftovers.map((r) => r.what), []);
    const [pre] = await sql`
      select count(*)::int as n from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
      where r.rolname = 'authenticator'
        and exists (select 1 from unnest(s.setconfig) c where c like 'pgrst.db_pre_request=%')`;
    assertEquals(pre!.n, 0);
  } finally {
    // The role setting is cluster-wide: give the running stack its pre-request back.
    await sql`alter role authenticator set pgrst.db_pre_request = 'conveyor.pre_request'`;
    await sql`notify pgrst, 'reload config'`;
    await sql.end();
  }
});
