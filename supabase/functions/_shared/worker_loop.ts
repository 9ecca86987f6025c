/**
 * The one worker loop every Conveyor worker runs (queue consumers and content stages):
 * claim a batch → run each item's handler with a deadline and an abort signal → settle the
 * batch in one call → repeat until the source is empty, the time budget is spent, or
 * shutdown is asked for. Retry and backoff policy live in SQL (settle), not here.
 *
 * @module
 */
import { sleep } from "./dispatch/background.ts";
import { JobCancelError, JobSnoozeError, toError } from "./errors.ts";

/** What happened to one item. */
export type Outcome<R = unknown> =
  | { status: "completed"; output: R }
  | { status: "failed"; error: Error }
  | { status: "cancelled"; error: Error }
  | { status: "snoozed"; seconds: number; error: Error };

/** Where items come from and go back to (a queue, a pipeline stage). */
export interface LoopSource<T, R = unknown> {
  /**
   * Claims up to `max` items; [] when there is nothing to do. `signal` is the loop's
   * shutdown: a claim that waits (for an API to come back) gives up and claims nothing.
   */
  claim(max: number, signal?: AbortSignal): Promise<T[]>;
  /** Runs one item. Throw to fail it; see {@link JobCancelError}, {@link JobSnoozeError}. */
  run(item: T, signal: AbortSignal): Promise<R>;
  /** Records the outcomes of a batch in one call. */
  settle(results: Array<{ item: T; outcome: Outcome<R> }>): Promise<void>;
  /**
   * Optional: settles a batch and claims the next one in one call (one round trip, one
   * transaction). Used instead of settle + claim when the loop goes on.
   */
  settleAndClaim?(
    results: Array<{ item: T; outcome: Outcome<R> }>,
    max: number,
    signal?: AbortSignal,
  ): Promise<T[]>;
  /** Pushes the leases of held items out (heartbeat): every item of a batch until it is settled. */
  extend?(items: T[]): Promise<void>;
  /** Hands back claimed items that will not run (shutdown). */
  release?(items: T[]): Promise<void>;
  /**
   * Optional: asked after a claim came back empty. A number = wait that many ms, then
   * claim again (the source held work back for a rate limit, or lingers for work that may
   * arrive); null = stop.
   */
  idle?(): number | null;
  /** Optional: true once the source may claim no more (its dispatch slot has lapsed). */
  lost?(): boolean;
}

/** Knobs of {@link runLoop}. */
export interface LoopOptions {
  /** Items claimed per batch. */
  batchSize: number;
  /** Items run at the same time. */
  concurrency: number;
  /** Stop claiming once this much wall clock has passed. */
  budgetMs: number;
  /** Deadline of one item's handler. */
  jobTimeoutMs: number;
  /** Heartbeat interval for the items of the batch in hand (0 = none). */
  heartbeatMs?: number;
  /** Shutdown: stop claiming, finish or release what is held. */
  signal?: AbortSignal;
  /** Clock, injectable for tests. */
  now?: () => number;
}

/** Jobs a drain handled, by outcome (the loop's and the functions' answers share them). */
export interface DrainCounts {
  claimed: number;
  completed: number;
  failed: number;
  cancelled: number;
  snoozed: number;
  released: number;
}

/** A fresh set of counts (spread it into a summary). */
export function noCounts(): DrainCounts {
  return { claimed: 0, completed: 0, failed: 0, cancelled: 0, snoozed: 0, released: 0 };
}

/** What a run of the loop did. */
export interface LoopSummary extends DrainCounts {
  batches: number;
  /** Why the loop ended; "lost" = the source's dispatch slot lapsed (see {@link LoopSource.lost}). */
  stoppedBy: "empty" | "budget" | "shutdown" | "lost";
  durationMs: number;
}

/** Error used when an item's handler outlives its deadline. */
export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
}

function outcomeOf<R>(e: unknown): Outcome<R> {
  const error = toError(e);
  if (error instanceof JobCancelError) return { status: "cancelled", error };
  if (error instanceof JobSnoozeError) return { status: "snoozed", seconds: error.seconds, error };
  return { status: "failed", error };
}

/**
 * Runs `fn` with a deadline; a handler that ignores its signal is abandoned, not awaited.
 * Shutdown does not abort running handlers: they finish (within their deadline) and are
 * settled, while items not yet started are released.
 */
async function withDeadline<R>(fn: (signal: AbortSignal) => Promise<R>, ms: number): Promise<R> {
  const ctl = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new DeadlineError(`handler exceeded its deadline of ${ms} ms`);
      ctl.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([fn(ctl.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the loop until the source is empty, the budget is spent or shutdown is signalled. */
export async function runLoop<T, R>(
  source: LoopSource<T, R>,
  opts: LoopOptions,
): Promise<LoopSummary> {
  const now = opts.now ?? Date.now;
  const start = now();
  const s: LoopSummary = {
    ...noCounts(),
    batches: 0,
    stoppedBy: "empty",
    durationMs: 0,
  };
  const stopping = () => opts.signal?.aborted ?? false;
  // Do not start a batch that could not finish inside the budget.
  const budgetSpent = () =>
    opts.budgetMs - (now() - start) <= Math.min(opts.jobTimeoutMs, opts.budgetMs / 2);
  // Claimed together with the previous batch's settle (settleAndClaim).
  let next: T[] | null = null;

  while (true) {
    if (stopping() || budgetSpent()) {
      s.stoppedBy = stopping() ? "shutdown" : "budget";
      if (next?.length && source.release) {
        s.claimed += next.length;
        await source.release(next);
        s.released += next.length;
      }
      break;
    }
    const items = next ?? await source.claim(opts.batchSize, opts.signal);
    next = null;
    if (items.length === 0) {
      if (source.lost?.()) {
        s.stoppedBy = "lost";
        break;
      }
      const wait = source.idle?.() ?? null;
      if (wait === null) {
        s.stoppedBy = "empty";
        break;
      }
      await sleep(wait, opts.signal);
      continue;
    }
    s.batches++;
    s.claimed += items.length;
    const results: Array<{ item: T; outcome: Outcome<R> }> = [];
    const queue = [...items];
    // Every item of the batch is held until the batch is settled: queued ones wait for a
    // lane, finished ones for the settle. The heartbeat keeps ALL of their leases alive, not
    // only the running ones': a batch can outlast the visibility timeout (items behind slow
    // or hung ones), and a lapsed lease means a refused settle and a second run of the job.
    const heartbeat = opts.heartbeatMs && source.extend
      ? setInterval(() => {
        source.extend!(items).catch(() => {});
      }, opts.heartbeatMs)
      : undefined;
    const lane = async () => {
      while (queue.length > 0 && !stopping()) {
        const item = queue.shift()!;
        let outcome: Outcome<R>;
        try {
          const output = await withDeadline(
            (signal) => source.run(item, signal),
            opts.jobTimeoutMs,
          );
          outcome = { status: "completed", output };
        } catch (e) {
          outcome = outcomeOf<R>(e);
        }
        results.push({ item, outcome });
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(opts.concurrency, items.length) }, lane),
      );
    } finally {
      clearInterval(heartbeat);
    }
    if (queue.length > 0 && source.release) {
      await source.release(queue);
      s.released += queue.length;
    }
    if (results.length > 0) {
      const goOn = source.settleAndClaim && queue.length === 0 && !stopping() && !budgetSpent();
      if (goOn) next = await source.settleAndClaim!(results, opts.batchSize, opts.signal);
      else await source.settle(results);
    }
    for (const r of results) {
      if (r.outcome.status === "completed") s.completed++;
      else if (r.outcome.status === "failed") s.failed++;
      else if (r.outcome.status === "cancelled") s.cancelled++;
      else s.snoozed++;
    }
  }
  s.durationMs = now() - start;
  return s;
}
