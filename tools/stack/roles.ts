/**
 * Hosted Supabase's role layout for the local stack: `supabase_admin` is the superuser,
 * `postgres` (what migrations, `db:reset`, tests and users connect as) is not. The SQL is in
 * `sql/roles.sql` (cluster-wide) and `sql/bootstrap.sql` (per database); what they emulate
 * of hosted's supautils is described in tools/stack/README.md ("Hosted roles").
 *
 * @module
 */
import postgres from "postgres";
import { StackError } from "./errors.ts";

/**
 * Runs `sql/<file>` (beside this module: the platform's part belongs to the stack's code, not
 * to the project it runs) as one transaction over superuser URL `url`.
 */
async function runAsSuperuser(url: string, file: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const text = await Deno.readTextFile(new URL(`./sql/${file}`, import.meta.url));
    await sql.begin((tx) => tx.unsafe(text));
  } catch (e) {
    throw new StackError(
      `tools/stack/sql/${file} failed: ${(e as Error).message}`,
      undefined,
      { cause: e },
    );
  } finally {
    await sql.end();
  }
}

/** Creates or corrects the cluster's roles (sql/roles.sql); `adminUrl` is a superuser URL. */
export async function applyRoleLayout(adminUrl: string): Promise<void> {
  await runAsSuperuser(adminUrl, "roles.sql");
}

/**
 * Gives one database what a hosted project's has before its first migration
 * (sql/bootstrap.sql): schemas, auth helpers, privileges and the platform's extensions.
 */
export async function bootstrapDatabase(adminUrl: string): Promise<void> {
  await runAsSuperuser(adminUrl, "bootstrap.sql");
}
