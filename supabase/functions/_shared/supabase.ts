/**
 * The service-role Supabase client every function uses for RPCs, built from the env a
 * hosted project (and the local stack) gives functions: SUPABASE_URL and
 * SUPABASE_SERVICE_ROLE_KEY.
 *
 * @module
 */
import { createClient, type SupabaseClient } from "./deps.ts";
import { QueueError } from "./errors.ts";

let cached: SupabaseClient | undefined;

/** Reads a required variable or throws QueueError("config_invalid") naming it. */
export function requireEnv(name: string): string {
  const v = Deno.env.get(name);
  if (!v) throw new QueueError("config_invalid", `${name} is not set`);
  return v;
}

/** A supabase-js client acting as service_role (created once per process). */
export function serviceClient(): SupabaseClient {
  cached ??= createClient(requireEnv("SUPABASE_URL"), requireEnv("SUPABASE_SERVICE_ROLE_KEY"), {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  return cached;
}

/** Calls an RPC and returns its data, or throws QueueError("rpc_failed") with PostgREST's message. */
export async function rpc<T>(
  client: SupabaseClient,
  fn: string,
  args: Record<string, unknown> = {},
): Promise<T> {
  const { data, error } = await client.rpc(fn, args);
  if (error) {
    throw new QueueError("rpc_failed", `${fn}: ${error.message}`, { cause: error });
  }
  return data as T;
}
