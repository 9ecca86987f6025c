/**
 * A load worker as a process of its own, for tests that SIGKILL workers mid-batch
 * (`driver.ts` {@link spawnWorkerProcess}): the real pgmq adapter and worker loop over the
 * gateway, draining the kinds in `LOAD_KINDS` with the load handler until SIGTERM, then
 * stopping gracefully (running jobs finish and settle, claimed ones are released). Each
 * execution is reported on stdout as one JSON line (`ExecutionEvent`), written before the
 * handler's effect counts, so a kill loses no report of work that happened.
 *
 * Env: SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, LOAD_KINDS, LOAD_WORKER_NAME, QUEUE_*.
 *
 * @module
 */
import { createClient } from "@supabase/supabase-js";
import { loadQueueConfig } from "../../supabase/functions/_shared/config.ts";
import { startWorkers } from "./driver.ts";

const kinds = (Deno.env.get("LOAD_KINDS") ?? "").split(",").filter(Boolean);
const name = Deno.env.get("LOAD_WORKER_NAME") ?? `proc-${Deno.pid}`;
// No request may hang the worker: the edge runtime bounds a worker by its wall clock.
const timed: typeof fetch = (input, init) =>
  fetch(input, {
    ...init,
    signal: init?.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(30_000)])
      : AbortSignal.timeout(30_000),
  });
const client = createClient(
  Deno.env.get("SUPABASE_URL")!,
  Deno.env.get("SUPABASE_SERVICE_ROLE_KEY")!,
  { auth: { persistSession: false, autoRefreshToken: false }, global: { fetch: timed } },
);
const encoder = new TextEncoder();
const pool = startWorkers({
  client,
  config: loadQueueConfig(),
  kinds,
  count: 1,
  name,
  // Synchronous write: the line is in the pipe before the handler goes on.
  record: (e) => Deno.stdout.writeSync(encoder.encode(JSON.stringify(e) + "\n")),
});
let stopping = false;
Deno.addSignalListener("SIGTERM", async () => {
  if (stopping) return;
  stopping = true;
  await pool.stop();
  if (pool.errors.length) console.error(`recovered from ${pool.errors.length} loop error(s)`);
  Deno.exit(0);
});
