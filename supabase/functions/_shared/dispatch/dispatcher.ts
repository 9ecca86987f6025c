/**
 * The dispatcher (seed 001): one cycle = read every target's backlog in one call, plan
 * (`plan.ts`), trigger the planned workers (each trigger re-checked in SQL under the
 * target's lock), answer the seed's JSON:
 *
 *   {"message":"Dispatch cycle completed","dispatches":[{"stage","queue","workers_triggered"}],
 *    "duration_ms"}   (+ "errors":[{"stage","queue","error"}] only when a trigger failed)
 *
 * Dispatches of job kinds use `stage` = the kind and `queue` = its queue. After answering:
 * - `recheck_ms` (sent by kicks, with their `window` number): one more cycle once the kick's
 *   debounce window has closed, for work enqueued while a kick was suppressed. Before it,
 *   `close_kick_window` waits for every kick of `target` suppressed in that window to commit
 *   (they hold the window's shared kick lock; at most `kick_close_wait_ms`) and closes the
 *   window, so the cycle sees their jobs however late they committed, and any kick after it
 *   makes its own call;
 * - `sweep_ms` (sent by cron when push kicks are off): a cycle every second while work is
 *   ready or in flight, up to sweep_ms, so a job moves through all six stages on one cron
 *   tick (pg_cron 1.4.2 fires at most once a minute).
 *
 * @module
 */
import { z } from "../deps.ts";
import { QueueError, toError } from "../errors.ts";
import { errorResponse, json, readJsonObject, requireServiceRole } from "../http.ts";
import { serviceClient } from "../supabase.ts";
import { runInBackground, shutdownSignal, sleep, type WaitUntil } from "./background.ts";
import { closeKickWindowForRecheck, KickWindow } from "./kick_window.ts";
import { type ConcurrencyOverrides, readConcurrencyOverrides } from "./overrides.ts";
import { isIdle, planDispatch } from "./plan.ts";
import { type DispatchStore, rpcDispatchStore } from "./store.ts";

/** One entry of `dispatches`. */
export interface Dispatch {
  stage: string;
  queue: string;
  workers_triggered: number;
}

/** One entry of `errors`. */
export interface DispatchError {
  stage: string;
  queue: string;
  error: string;
}

/** The seed's response. */
export interface DispatchResult {
  message: "Dispatch cycle completed";
  dispatches: Dispatch[];
  duration_ms: number;
  errors?: DispatchError[];
}

/** A cycle's result and whether the system was idle after it. */
export interface CycleOutcome {
  result: DispatchResult;
  idle: boolean;
}

/** The request body: `{"source":"manual"}` (the seed's), or what cron and kicks send. */
export const DispatchRequest = z.object({
  source: z.enum(["manual", "cron", "kick", "script"], {
    errorMap: () => ({ message: 'source must be "manual", "cron", "kick" or "script"' }),
  }).default("manual"),
  target: z.string({ invalid_type_error: "target must be a string" }).max(100).optional(),
  recheck_ms: z.number({ invalid_type_error: "recheck_ms must be a number" }).int().min(0)
    .max(10_000, { message: "recheck_ms must be at most 10000" }).optional(),
  sweep_ms: z.number({ invalid_type_error: "sweep_ms must be a number" }).int().min(0)
    .max(120_000, { message: "sweep_ms must be at most 120000" }).optional(),
  window: KickWindow.optional(),
}).strict();

/** Runs one dispatch cycle. Trigger failures are reported per target, not thrown. */
export async function runDispatchCycle(
  store: DispatchStore,
  overrides: ConcurrencyOverrides,
  reason: string,
): Promise<CycleOutcome> {
  const started = performance.now();
  const rows = await store.backlog();
  const plan = planDispatch(rows, overrides);
  const dispatches: Dispatch[] = [];
  const errors: DispatchError[] = [];
  let startedWorkers = 0;
  await Promise.all(plan.map(async (p) => {
    try {
      const n = await store.trigger({
        source: p.source,
        target: p.target,
        count: p.count,
        maxConcurrency: p.maxOverride,
        reason,
      });
      startedWorkers += n;
      if (n > 0) dispatches.push({ stage: p.target, queue: p.queue, workers_triggered: n });
    } catch (e) {
      errors.push({ stage: p.target, queue: p.queue, error: toError(e).message });
    }
  }));
  // Stable order for readers: as the backlog lists the targets.
  const order = new Map(rows.map((r, i) => [r.target, i]));
  const byOrder = (a: { stage: string }, b: { stage: string }) =>
    (order.get(a.stage) ?? 0) - (order.get(b.stage) ?? 0);
  const result: DispatchResult = {
    message: "Dispatch cycle completed",
    dispatches: dispatches.sort(byOrder),
    duration_ms: Math.round(performance.now() - started),
  };
  if (errors.length > 0) result.errors = errors.sort(byOrder);
  if (startedWorkers > 0 || errors.length > 0) {
    console.log(JSON.stringify({ level: "info", msg: "dispatch cycle", reason, ...result }));
  }
  return { result, idle: startedWorkers === 0 && isIdle(rows, overrides) };
}

/** Options of {@link createDispatcherHandler}; everything defaults to the environment. */
export interface DispatcherOptions {
  store?: DispatchStore;
  env?: Record<string, string | undefined>;
  waitUntil?: WaitUntil;
  /** Stops sweeps (default: the process's beforeunload). */
  signal?: AbortSignal;
  /** Pause between sweep cycles. Default 1000 ms. */
  sweepIntervalMs?: number;
}

/** Builds the dispatcher's request handler. */
export function createDispatcherHandler(
  opts: DispatcherOptions = {},
): (req: Request) => Promise<Response> {
  let store = opts.store;
  const getStore = () => (store ??= rpcDispatchStore(serviceClient()));
  const env = opts.env;
  const intervalMs = opts.sweepIntervalMs ?? 1000;

  async function followUp(
    overrides: ConcurrencyOverrides,
    source: string,
    target: string | undefined,
    window: number | undefined,
    first: CycleOutcome,
    recheckMs: number,
    sweepMs: number,
  ): Promise<void> {
    const signal = opts.signal ?? shutdownSignal();
    if (recheckMs > 0) {
      // Shutting down (the isolate is retired) cuts the wait short, not the re-check. The
      // wait lets a burst of enqueues share this one re-check; what makes it see them all
      // is closing the window.
      await sleep(recheckMs, signal);
      if (target !== undefined) await closeKickWindowForRecheck(getStore(), target, window);
      await runDispatchCycle(getStore(), overrides, `dispatch:${source}-recheck`);
    }
    if (sweepMs > 0) {
      const end = performance.now() + sweepMs;
      let idle = first.idle;
      while (!idle && !signal.aborted && performance.now() + intervalMs < end) {
        await sleep(intervalMs, signal);
        if (signal.aborted) break;
        ({ idle } = await runDispatchCycle(getStore(), overrides, `dispatch:${source}-sweep`));
      }
    }
  }

  return async (req: Request): Promise<Response> => {
    try {
      if (req.method !== "POST") {
        return json({ error: "method_not_allowed", message: "use POST" }, 405, { allow: "POST" });
      }
      requireServiceRole(req);
      const parsed = DispatchRequest.safeParse(await readJsonObject(req));
      if (!parsed.success) {
        throw new QueueError("bad_request", parsed.error.issues.map((i) => i.message).join("; "));
      }
      let overrides: ConcurrencyOverrides;
      try {
        overrides = readConcurrencyOverrides(env ?? Deno.env.toObject());
      } catch (e) {
        // The function's configuration is wrong, not the request.
        return json({ error: "config_invalid", message: toError(e).message }, 500);
      }
      const { source, target, window, recheck_ms = 0, sweep_ms = 0 } = parsed.data;
      const first = await runDispatchCycle(getStore(), overrides, `dispatch:${source}`);
      if (recheck_ms > 0 || sweep_ms > 0) {
        runInBackground(
          () => followUp(overrides, source, target, window, first, recheck_ms, sweep_ms),
          opts.waitUntil,
        );
      }
      return json(first.result);
    } catch (e) {
      return errorResponse(e);
    }
  };
}
