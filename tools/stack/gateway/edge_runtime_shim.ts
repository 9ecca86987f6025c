/**
 * Preloaded (`deno run --preload`) into every local edge-function process by
 * `functions_host.ts`, before the function's own `index.ts`. It provides what the hosted
 * Supabase edge runtime adds to the global scope and that our functions rely on:
 *
 * - `globalThis.EdgeRuntime.waitUntil(promise)`: marks background work. The process stays
 *   warm, so the work simply keeps running after the response; a rejection is logged (not
 *   an unhandled rejection that would kill the process).
 * - a `beforeunload` event (`CustomEvent` with `detail.reason`) dispatched on `globalThis`
 *   before the process stops: on SIGTERM (what the host sends) or SIGINT (Ctrl-C reaches
 *   the whole process group), or when the host process disappears (orphaned). After the
 *   event, pending `waitUntil` work gets up to `CONVEYOR_EDGE_SHUTDOWN_MS` (default 4000)
 *   to settle, then the process exits 0. Repeated signals during that time are ignored;
 *   the host SIGKILLs after its own grace period.
 *
 * @module
 */

const pending = new Set<Promise<unknown>>();

function waitUntil<T>(work: T | PromiseLike<T>): Promise<T> {
  const promise = Promise.resolve(work);
  pending.add(promise);
  promise
    .then(undefined, (err) => {
      console.error("EdgeRuntime.waitUntil: background task failed:", err);
    })
    .finally(() => pending.delete(promise));
  return promise;
}

Object.defineProperty(globalThis, "EdgeRuntime", {
  value: Object.freeze({ waitUntil }),
  writable: false,
  enumerable: false,
  configurable: true,
});

function shutdownBudgetMs(): number {
  const raw = Number(Deno.env.get("CONVEYOR_EDGE_SHUTDOWN_MS"));
  return Number.isFinite(raw) && raw >= 0 ? raw : 4000;
}

let stopping = false;

async function shutdown(reason: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    globalThis.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason } }));
  } catch (err) {
    console.error("beforeunload listener failed:", err);
  }
  const deadline = Date.now() + shutdownBudgetMs();
  // One macrotask turn so async listeners can register their checkpoint work.
  await new Promise((resolve) => setTimeout(resolve, 0));
  while (pending.size > 0 && Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...pending]),
      new Promise((resolve) => timer = setTimeout(resolve, deadline - Date.now())),
    ]);
    clearTimeout(timer);
  }
  if (pending.size > 0) {
    console.error(`shutdown: ${pending.size} EdgeRuntime.waitUntil task(s) still pending; exiting`);
  }
  Deno.exit(0);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  try {
    Deno.addSignalListener(signal, () => void shutdown("termination"));
  } catch {
    // Signal listeners are unavailable on some platforms (Windows: SIGTERM); the host's
    // kill then ends the process without the event.
  }
}

// Orphan guard: if the host dies without stopping us, our parent changes; stop too.
const parent = Deno.ppid;
const orphanCheck = setInterval(() => {
  if (Deno.ppid !== parent) void shutdown("termination");
}, 1000);
Deno.unrefTimer(orphanCheck);
