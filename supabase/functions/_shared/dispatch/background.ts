/**
 * Background work after the response: `EdgeRuntime.waitUntil` on Supabase (and in the local
 * functions host's shim). pg_net commits a batch of responses only after every request in
 * it has finished, so functions called over pg_net answer at once and work here.
 *
 * @module
 */
import { toError } from "../errors.ts";

/** Registers background work with the runtime. */
export type WaitUntil = (work: Promise<unknown>) => void;

/** The runtime's `EdgeRuntime.waitUntil`, if there is one. */
export function edgeWaitUntil(): WaitUntil | undefined {
  const rt = (globalThis as { EdgeRuntime?: { waitUntil?: WaitUntil } }).EdgeRuntime;
  return rt?.waitUntil ? (p) => rt.waitUntil!(p) : undefined;
}

/** Runs `work` after the response; its failure is logged, never thrown. */
export function runInBackground(work: () => Promise<unknown>, waitUntil?: WaitUntil): void {
  const p = work().catch((e) => {
    console.error(JSON.stringify({
      level: "error",
      msg: "background work failed",
      error: toError(e).message,
    }));
  });
  (waitUntil ?? edgeWaitUntil())?.(p);
}

/** One process-wide shutdown signal: `beforeunload` (the edge runtime's, and our shim's). */
let shutdown: AbortController | undefined;

/** Aborted when the runtime is about to stop this process. */
export function shutdownSignal(): AbortSignal {
  if (!shutdown) {
    const ctl = new AbortController();
    shutdown = ctl;
    globalThis.addEventListener("beforeunload", () => {
      if (!ctl.signal.aborted) ctl.abort(new Error("the function is shutting down"));
    });
  }
  return shutdown.signal;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
