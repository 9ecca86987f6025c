/**
 * Database setup the way the Supabase CLI does it: the platform bootstrap (local only), then
 * `supabase/migrations/*.sql` in lexical order, each in its own transaction and recorded in
 * `supabase_migrations.schema_migrations`, then `supabase/seed.sql` on reset.
 *
 * @module
 */
import type { Sql } from "postgres";
import { StackError } from "./errors.ts";

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

/** Runs a SQL file (several statements) as one transaction. */
export async function runSqlFile(sql: Sql, path: string): Promise<void> {
  const text = await Deno.readTextFile(path);
  try {
    await sql.begin((tx) => tx.unsafe(text));
  } catch (e) {
    throw new StackError(`${path} failed: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/**
 * Applies every migration not yet recorded. Returns the versions applied now. Concurrent
 * callers are serialised with an advisory lock, so two `start`s cannot apply a file twice.
 */
export async function applyMigrations(
  sql: Sql,
  dir: string,
  log: (line: string) => void = () => {},
): Promise<string[]> {
  const applied: string[] = [];
  const conn = await sql.reserve();
  try {
    await conn`select pg_advisory_lock(hashtext('supabase_migrations'))`;
    const done = new Set(
      (await conn`select version from supabase_migrations.schema_migrations`).map((r) =>
        r.version as string
      ),
    );
    for (const m of await listMigrations(dir)) {
      if (done.has(m.version)) continue;
      const text = await Deno.readTextFile(m.path);
      log(`applying migration ${m.version}_${m.name}`);
      const started = performance.now();
      try {
        // A reserved connection has no begin(): run the transaction by hand.
        await conn`begin`;
        try {
          await conn.unsafe(text);
          await conn`
            insert into supabase_migrations.schema_migrations (version, name, statements)
            values (${m.version}, ${m.name}, ${[text]})`;
          await conn`commit`;
        } catch (e) {
          await conn`rollback`.catch(() => {});
          throw e;
        }
      } catch (e) {
        throw new StackError(
          `migration ${m.version}_${m.name}.sql failed: ${(e as Error).message}`,
          "fix the migration, then run: deno task db:reset",
          { cause: e },
        );
      }
      const ms = performance.now() - started;
      // A migration that takes a while (a backfill, an index on a big table) says so.
      if (ms >= 1000) log(`  ${m.version}_${m.name} took ${(ms / 1000).toFixed(1)} s`);
      applied.push(m.version);
    }
  } finally {
    await conn`select pg_advisory_unlock(hashtext('supabase_migrations'))`.catch(() => {});
    conn.release();
  }
  if (applied.length > 0) await sql`notify pgrst, 'reload schema'`;
  return applied;
}

/** Stores (or updates) a Vault secret by name. */
export async function upsertVaultSecret(sql: Sql, name: string, value: string): Promise<void> {
  const [row] = await sql`select id from vault.secrets where name = ${name}`;
  if (row) await sql`select vault.update_secret(${row.id}, ${value})`;
  else await sql`select vault.create_secret(${value}, ${name})`;
}
