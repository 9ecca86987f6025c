/**
 * Small statistics for benchmark runs: median and range over repetitions, percentiles of
 * latency samples, and the per-job delivery check every run ends with.
 *
 * @module
 */
import type { Cost } from "./meter.ts";
import type { RunResult } from "./types.ts";

/** Median of `xs` (NaN for none). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The p-th percentile (0–100) of `xs`, nearest-rank. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

/** What a delivery check found: jobs expected, seen, seen more than once, never seen. */
export interface Delivery {
  expected: number;
  distinct: number;
  /** Extra deliveries (sum over jobs of count − 1). */
  duplicates: number;
  lost: number;
}

/**
 * An enqueue run's result: its rate, its cost and its delivery, read from the rows it left
 * (one row per job, `distinct` of the jobs' marks).
 */
export function enqueueRun(
  n: number,
  r: { rows: number; distinct: number },
  seconds: number,
  cost: Cost,
): RunResult {
  return {
    value: n / seconds,
    n,
    seconds,
    cost,
    delivery: {
      expected: n,
      distinct: r.distinct,
      duplicates: r.rows - r.distinct,
      lost: n - r.distinct,
    },
  };
}

/**
 * A drain run's result: `n` jobs processed in `seconds`, its delivery check, and its cost
 * (WAL per job shown beside it).
 */
export function drainRun(n: number, seconds: number, delivery: Delivery, cost: Cost): RunResult {
  return { value: n / seconds, n, seconds, delivery, walPerJob: cost.walB, cost };
}

/**
 * Counts handler calls per job id. `expect(ids)` then compares against the ids that had to
 * be processed: each exactly once.
 */
export class DeliveryCounter {
  readonly #seen = new Map<string, number>();
  /** Handler calls so far. */
  calls = 0;

  /** Records one handler call for `id`. */
  hit(id: string | number): void {
    const k = String(id);
    this.#seen.set(k, (this.#seen.get(k) ?? 0) + 1);
    this.calls++;
  }

  /** Distinct ids seen. */
  get distinct(): number {
    return this.#seen.size;
  }

  /** Compares with the expected ids (or only a count when ids are not known up front). */
  check(expected: Iterable<string | number> | number): Delivery {
    let dup = 0;
    for (const n of this.#seen.values()) dup += n - 1;
    if (typeof expected === "number") {
      return {
        expected,
        distinct: this.#seen.size,
        duplicates: dup,
        lost: Math.max(0, expected - this.#seen.size),
      };
    }
    let total = 0;
    let lost = 0;
    for (const id of expected) {
      total++;
      if (!this.#seen.has(String(id))) lost++;
    }
    return { expected: total, distinct: this.#seen.size, duplicates: dup, lost };
  }
}

/** Formats a rate: 12,345 or 12.3 for small values. */
export function fmtRate(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x >= 100) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(1);
}

/** Formats milliseconds with sensible precision. */
export function fmtMs(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x >= 100) return Math.round(x).toLocaleString("en-US");
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** Sleeps `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every `everyMs` until it is true or `timeoutMs` passes; returns whether it held. */
export async function waitUntil(
  cond: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 10,
): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (await cond()) return true;
    await sleep(everyMs);
  }
  return await cond();
}

/** `p`, or an error naming `what` after `ms` (a benchmark never hangs on a lost job). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
