/**
 * Database setup as a Supabase user gets it: the platform's part first (local only, as the
 * superuser: tools/stack/roles.ts), then the real Supabase CLI pushes
 * `supabase/migrations/*.sql` as `postgres` and, on a new or reset database, the seed
 * (`supabase db push --db-url … [--include-seed]`, tools/stack/supabase_cli.ts). The
 * migration history is the CLI's own `supabase_migrations.schema_migrations`.
 *
 * @module
 */
import postgres, { type Sql } from "postgres";
import type { Cluster } from "./cluster.ts";
import { StackError } from "./errors.ts";
import { bootstrapDatabase } from "./roles.ts";
import { dbPush } from "./supabase_cli.ts";

/** One migration file. */
export interface Migration {
  /** The leading digits of the file name (the CLI's "version"). */
  version: string;
  /** The rest of the name without `.sql`. */
  name: string;
  path: string;
}

const MIGRATION_NAME = /^(\d+)_(.+)\.sql$/;

/** Lists `dir`'s migrations in apply order (lexical by file name, as the CLI sorts). */
export async function listMigrations(dir: string): Promise<Migration[]> {
  const out: Migration[] = [];
  for await (const e of Deno.readDir(dir)) {
    const m = e.isFile ? e.name.match(MIGRATION_NAME) : null;
    if (m) out.push({ version: m[1]!, name: m[2]!, path: `${dir}/${e.name}` });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Stores (or updates) a Vault secret by name. */
export async function upsertVaultSecret(sql: Sql, name: string, value: string): Promise<void> {
  const [row] = await sql`select id from vault.secrets where name = ${name}`;
  if (row) await sql`select vault.update_secret(${row.id}, ${value})`;
  else await sql`select vault.create_secret(${value}, ${name})`;
}

/** True when the CLI's history holds exactly the project's migrations (nothing to push). */
async function upToDate(sql: Sql, project: string): Promise<boolean> {
  const [t] = await sql`select to_regclass('supabase_migrations.schema_migrations') as t`;
  if (!t?.t) return false;
  const applied = (await sql`select version from supabase_migrations.schema_migrations`)
    .map((r) => r.version as string).sort();
  const local = (await listMigrations(`${project}/supabase/migrations`)).map((m) => m.version);
  return applied.length === local.length && applied.every((v, i) => v === local[i]);
}

/** A database to set up: its URL as `postgres` and as the superuser. */
export interface DbTarget {
  url: string;
  adminUrl: string;
}

/**
 * Runs `fn` (the seed) with Conveyor's push kicks off (`conveyor.settings` push_kicks), so
 * what it enqueues sends no pg_net request while the stack around it may still be starting
 * or resetting: such a kick would fail, or reach a PostgREST whose schema cache is not yet
 * the new one. The caller runs one dispatch cycle afterwards (supervisor's kickDispatcher).
 * Without Conveyor's settings table (a checkout without its migrations) `fn` just runs.
 */
export async function withKicksHeld(sql: Sql, fn: () => Promise<unknown>): Promise<void> {
  const [row] = await sql<{ value: unknown }[]>`
    select s.value from conveyor.settings s where s.key = 'push_kicks'`.catch(() => []);
  if (row) {
    await sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  }
  try {
    await fn();
  } finally {
    if (row) {
      await sql`update conveyor.settings set value = ${sql.json(row.value as postgres.JSONValue)}
                where key = 'push_kicks'`;
    }
  }
}

/**
 * Brings a database to the state a hosted project would have after `supabase db push`:
 * the platform bootstrap (superuser), the Vault secrets cron's HTTP calls read (before the
 * seed: what it enqueues kicks the dispatcher), the migrations and optionally the seed.
 * With `seed`, the CLI runs twice: the migrations first, then the seed alone with the kicks
 * held ({@link withKicksHeld}; the setting it switches off is made by the migrations).
 * `project` is the folder holding `supabase/` (this checkout, or one Conveyor was installed
 * into).
 */
export async function setupDatabase(
  db: DbTarget,
  project: string,
  log: (l: string) => void,
  opts: { seed?: boolean; secrets?: { apiUrl: string; serviceRoleKey: string } } = {},
): Promise<void> {
  await bootstrapDatabase(db.adminUrl);
  const sql = postgres(db.url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    if (opts.secrets) {
      await upsertVaultSecret(sql, "project_url", opts.secrets.apiUrl);
      await upsertVaultSecret(sql, "service_role_key", opts.secrets.serviceRoleKey);
      log("Vault secrets project_url and service_role_key stored");
    }
    if (await upToDate(sql, project)) {
      // Nothing for the CLI to do: skip its start-up (about a second) on every restart.
      log("migrations up to date");
    } else {
      const applied = await dbPush(project, db.url, { log });
      log(`supabase db push applied ${applied.length} migration(s)`);
    }
    // Served at once: PostgREST reloads its schema cache before the seed's work is kicked.
    await sql`notify pgrst, 'reload schema'`;
    if (opts.seed) await withKicksHeld(sql, () => dbPush(project, db.url, { seed: true, log }));
  } finally {
    await sql.end();
  }
}

/**
 * Drops and re-creates the `postgres` database (as the superuser, who owns it as on hosted),
 * then restarts the server before setting the database up again with the seed: pg_cron's
 * scheduler exits for good when its database is dropped (a background worker that exits
 * cleanly is not restarted), and restarting now, while the new database is still empty,
 * means no client of a running stack (PostgREST, the pg_net worker) loses its connection
 * again once the migrations and the seed are in.
 */
export async function resetDatabase(
  cluster: Cluster,
  project: string,
  log: (l: string) => void,
  secrets?: { apiUrl: string; serviceRoleKey: string },
): Promise<void> {
  if (!(await cluster.hasHostedRoles())) {
    // A stack started by an older checkout: its superuser is postgres, there is no admin.
    throw new StackError(
      `${cluster.dataDir} was made before the hosted role layout`,
      "restart the stack (deno task stack:down, then start it again: the old cluster is moved aside)",
    );
  }
  const sql = postgres(cluster.adminUrl("template1"), { max: 1, onnotice: () => {} });
  try {
    log("dropping database postgres");
    await sql`drop database if exists postgres with (force)`;
    await sql`create database postgres`;
  } finally {
    await sql.end();
  }
  log("restarting PostgreSQL so pg_cron's scheduler serves the new database");
  await cluster.restart("fast");
  await setupDatabase(
    { url: cluster.url(), adminUrl: cluster.adminUrl() },
    project,
    log,
    { seed: true, secrets },
  );
}
