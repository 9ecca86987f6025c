/**
 * The service-role Supabase client every function uses for RPCs, built from the env a
 * hosted project (and the local stack) gives functions: SUPABASE_URL and
 * SUPABASE_SERVICE_ROLE_KEY.
 *
 * @module
 */
import { sleep } from "./dispatch/background.ts";
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

/** An RPC that failed: PostgREST's error as `cause`, and the HTTP status (0: no answer). */
export class RpcError extends QueueError {
  constructor(readonly status: number, message: string, options?: ErrorOptions) {
    super("rpc_failed", message, options);
  }

  /** The API was away, not the request wrong ({@link transientRpcError}). */
  override get unavailable(): boolean {
    return transientRpcError(this);
  }
}

/** Calls an RPC and returns its data, or throws {@link RpcError} with PostgREST's message. */
export async function rpc<T>(
  client: SupabaseClient,
  fn: string,
  args: Record<string, unknown> = {},
): Promise<T> {
  const { data, error, status } = await client.rpc(fn, args);
  if (error) {
    throw new RpcError(status, `${fn}: ${error.message}`, { cause: error });
  }
  return data as T;
}

/**
 * True when an RPC failed because the API was away, not because of the request: no answer
 * (the gateway restarting), 502/503/504 (PostgREST restarting, or without its database), or
 * PostgREST's 400 with an empty code and message (its connection broke mid-query: the
 * transaction rolled back). Calling again once the API is back is the right answer.
 */
export function transientRpcError(e: unknown): boolean {
  if (!(e instanceof RpcError)) return false;
  if (e.status === 0 || e.status === 502 || e.status === 503 || e.status === 504) return true;
  const cause = e.cause as { code?: string; message?: string } | undefined;
  return e.status === 400 && cause?.code === "" && cause?.message === "";
}

/**
 * How long a worker keeps calling again through an API outage (a gateway, PostgREST or
 * Postgres restart takes a few seconds): as long as its dispatch slot's lease
 * (`invocation_lease_sec`, 15 s) outlives its last heartbeat. A longer outage has cost the
 * slot anyway; a new dispatch restarts the work.
 */
export const TRANSIENT_RETRY_MS = 15_000;

/**
 * Runs `call`, and again while it fails with a {@link transientRpcError}, backing off from
 * 200 ms to 2 s, for up to `forMs`; then, or once `signal` aborts, the last error is thrown.
 * Only for calls whose repetition is harmless: a repeated settle of a committed one is
 * refused (its lease is gone), and a claim whose answer was lost comes back after its
 * visibility timeout.
 */
export async function retryTransient<T>(
  call: () => Promise<T>,
  o: { forMs?: number; signal?: AbortSignal } = {},
): Promise<T> {
  const deadline = Date.now() + (o.forMs ?? TRANSIENT_RETRY_MS);
  for (let delay = 200;; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await call();
    } catch (e) {
      if (!transientRpcError(e) || o.signal?.aborted || Date.now() + delay > deadline) throw e;
    }
    await sleep(delay, o.signal);
  }
}
