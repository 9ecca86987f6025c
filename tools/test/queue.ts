/**
 * Queue fixtures for tests: a job kind of the test's own (its own pgmq queues, so a test
 * never claims another test's jobs), the queue config tests run with, and adapters for
 * both providers. Use with `await using`.
 *
 * @module
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import { loadQueueConfig, type QueueConfig } from "../../supabase/functions/_shared/config.ts";
import { connect } from "./db.ts";
import { testEnv } from "./env.ts";

/** A service-role supabase-js client for the test stack's gateway. */
export function testServiceClient(): SupabaseClient {
  const env = testEnv();
  return createClient(env.apiUrl, env.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** How {@link outageClient}'s API is away: PostgREST's 503, or no answer at all. */
export type Outage = "503" | "no answer";

/**
 * A service-role client for the test stack's gateway whose API can be made to go away for a
 * while, as it does while the gateway, PostgREST or Postgres restarts: `outage(ms, how)`
 * answers every request with the gateway's 503 (or fails it as a refused connection would)
 * until `ms` have passed. `onRequest` sees each request's URL first (to start an outage at
 * a given call); `failed` counts the requests the outage answered.
 */
export function outageClient(onRequest: (url: string) => void = () => {}): {
  client: SupabaseClient;
  outage(ms: number, how?: Outage): void;
  failed: () => number;
} {
  const env = testEnv();
  let until = 0;
  let how: Outage = "503";
  let failed = 0;
  const flaky: typeof fetch = (input, init) => {
    onRequest(input instanceof Request ? input.url : String(input));
    if (Date.now() < until) {
      failed++;
      if (how === "no answer") return Promise.reject(new TypeError("fetch failed"));
      return Promise.resolve(
        new Response(JSON.stringify({ message: "The upstream server is currently unavailable" }), {
          status: 503,
          headers: { "Content-Type": "application/json; charset=utf-8" },
        }),
      );
    }
    return fetch(input, init);
  };
  return {
    client: createClient(env.apiUrl, env.serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      global: { fetch: flaky },
    }),
    outage(ms, h = "503") {
      until = Date.now() + ms;
      how = h;
    },
    failed: () => failed,
  };
}

/** The config tests use: short visibility, 1 s backoff, small batches. */
export function testQueueConfig(env: Record<string, string> = {}): QueueConfig {
  return loadQueueConfig({
    QUEUE_VISIBILITY_SEC: "30",
    QUEUE_RETRY_BACKOFF_MS_BASE: "1000",
    QUEUE_RETRY_BACKOFF_MS_MAX: "1000",
    QUEUE_MAX_ATTEMPTS: "3",
    QUEUE_CONCURRENCY: "2",
    QUEUE_BATCH_SIZE: "10",
    WORKER_BUDGET_MS: "20000",
    JOB_TIMEOUT_MS: "10000",
    // A drain that finds its queue empty stops at once (tests that need the linger set it).
    QUEUE_IDLE_LINGER_MS: "0",
    ...env,
  });
}

/** A job kind that exists only for one test, with its three tier queues. */
export interface TempKind extends AsyncDisposable {
  kind: string;
  /** Connection (as `postgres`) to the database it lives in. */
  sql: Sql;
}

/**
 * Registers a kind `t_<random>` (queues `q_t_…`, `_fast`, `_bulk`) in `dbUrl` (default: the
 * stack's `postgres` database, the one the gateway serves); removed again on dispose with
 * its jobs, queues and alerts.
 */
export async function tempKind(dbUrl: string = testEnv().dbUrl): Promise<TempKind> {
  const kind = `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const sql = connect(dbUrl, 2);
  await sql`insert into conveyor.job_kinds (kind, queue_name, worker_slug, description)
            values (${kind}, ${"q_" + kind}, 'test', 'test kind')`;
  await sql`select conveyor.ensure_kind_queues(${kind})`;
  return {
    kind,
    sql,
    async [Symbol.asyncDispose]() {
      try {
        await sql`delete from public.jobs where kind = ${kind}`;
        await sql`delete from public.alert_history where subject = ${kind}`;
        // The kind goes before its queues: the stack's dispatcher reads kinds, then their
        // queues, and must never see a kind whose queues are gone.
        await sql`delete from conveyor.job_kinds where kind = ${kind}`;
        for (const t of ["", "_fast", "_bulk"]) {
          await sql`select pgmq.drop_queue(${"q_" + kind + t})`;
        }
      } finally {
        await sql.end();
      }
    },
  };
}

/** Polls `probe` until it returns a truthy value or `ms` pass (then throws `what`). */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  ms = 15_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (true) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
