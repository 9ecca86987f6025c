/**
 * Third-party modules for the edge functions, with full `npm:` specifiers so the functions
 * deploy to hosted Supabase with no import map. Import from here, never the registry.
 *
 * @module
 */
export { createClient, type SupabaseClient } from "npm:@supabase/supabase-js@2.119.1";
export { z } from "npm:zod@3.25.76";

/**
 * pg-boss, for `QUEUE_PROVIDER=pgboss` only: loaded on demand so pgmq workers never pay for
 * it (or its `pg` driver) at boot.
 */
export const loadPgBoss = () => import("npm:pg-boss@12.38.0");
export type {
  Job as PgBossJob,
  JobWithMetadata as PgBossJobWithMetadata,
} from "npm:pg-boss@12.38.0";
export type { PgBoss } from "npm:pg-boss@12.38.0";
