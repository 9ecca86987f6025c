/**
 * What `deno task test` hands to every test: the private stack's URLs and keys. Tests call
 * {@link testEnv} instead of reading variables themselves, so a test started outside the
 * harness fails with one clear message.
 *
 * @module
 */

/** The running test stack. */
export interface TestEnv {
  /**
   * URL of the stack's `postgres` database as the `postgres` role: not a superuser, as on a
   * hosted project (what a user's own tests would have).
   */
  dbUrl: string;
  /**
   * Superuser (`supabase_admin`) URL of the same database, for what only the platform may
   * do: ALTER SYSTEM, extensions hosted does not allow, objects in `auth`, other roles'
   * sessions. Tests use it only for such setup, never for what they check.
   */
  adminDbUrl: string;
  /** Gateway URL (`SUPABASE_URL`). */
  apiUrl: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  /** PostgreSQL 15 bin directory. */
  pgBin: string;
  /** The stack's data folder (cluster in `<dir>/pg`, logs in `<dir>/logs`). */
  stackDir: string;
}

/** Reads the harness variables; throws with the command to run when they are missing. */
export function testEnv(): TestEnv {
  const get = (k: string) => {
    const v = Deno.env.get(k);
    if (!v) {
      throw new Error(`${k} is not set: run the tests with \`deno task test\` (it starts a stack)`);
    }
    return v;
  };
  return {
    dbUrl: get("CONVEYOR_DB_URL"),
    adminDbUrl: get("CONVEYOR_ADMIN_DB_URL"),
    apiUrl: get("SUPABASE_URL"),
    anonKey: get("SUPABASE_ANON_KEY"),
    serviceRoleKey: get("SUPABASE_SERVICE_ROLE_KEY"),
    jwtSecret: get("SUPABASE_JWT_SECRET"),
    pgBin: get("CONVEYOR_PG_BIN"),
    stackDir: get("CONVEYOR_STACK_DIR"),
  };
}
