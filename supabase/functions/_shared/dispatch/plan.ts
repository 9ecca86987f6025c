/**
 * The dispatcher's decision, as a pure function of the backlog and the env overrides:
 * for each enabled target with ready work, `min(max_concurrency − in_flight,
 * trigger_batch_size, ready)` workers. SQL re-checks every trigger under the target's lock,
 * so a stale backlog (another dispatcher racing) can only lead to fewer workers, never more.
 *
 * @module
 */
import type { ConcurrencyOverrides } from "./overrides.ts";

/** Where backlog comes from: content stages, or pgmq job kinds. */
export type DispatchSource = "content" | "queue";

/** One row of `get_dispatch_backlog()`. */
export interface BacklogRow {
  source: DispatchSource;
  /** The content stage or the job kind. */
  target: string;
  queue: string;
  enabled: boolean;
  max_concurrency: number;
  trigger_batch_size: number;
  ready_count: number;
  in_flight_count: number;
}

/** Workers to start for one target. */
export interface PlannedTrigger {
  source: DispatchSource;
  target: string;
  queue: string;
  count: number;
  /** The env override to pass to SQL, or null to let SQL use the table's current value. */
  maxOverride: number | null;
}

/** The env override that applies to a row, if any (only content stages have overrides). */
export function overrideFor(row: BacklogRow, overrides: ConcurrencyOverrides): number | null {
  if (row.source !== "content") return null;
  return Object.hasOwn(overrides, row.target) ? overrides[row.target]! : null;
}

/** The max_concurrency in force for a row: 0 when disabled, else the override or the table's. */
export function effectiveMax(row: BacklogRow, overrides: ConcurrencyOverrides): number {
  if (!row.enabled) return 0;
  return overrideFor(row, overrides) ?? Number(row.max_concurrency);
}

/** The triggers of one dispatch cycle. */
export function planDispatch(
  rows: BacklogRow[],
  overrides: ConcurrencyOverrides,
): PlannedTrigger[] {
  const plan: PlannedTrigger[] = [];
  for (const row of rows) {
    const ready = Number(row.ready_count);
    const max = effectiveMax(row, overrides);
    if (max <= 0 || ready <= 0) continue;
    const slots = max - Number(row.in_flight_count);
    const count = Math.min(slots, Number(row.trigger_batch_size), ready);
    if (count <= 0) continue;
    plan.push({
      source: row.source,
      target: row.target,
      queue: row.queue,
      count,
      maxOverride: overrideFor(row, overrides),
    });
  }
  return plan;
}

/**
 * True when nothing is in flight and nothing dispatchable is ready: a sweeping dispatcher
 * stops then.
 */
export function isIdle(rows: BacklogRow[], overrides: ConcurrencyOverrides): boolean {
  return rows.every((r) =>
    Number(r.in_flight_count) === 0 &&
    (Number(r.ready_count) === 0 || effectiveMax(r, overrides) === 0)
  );
}
