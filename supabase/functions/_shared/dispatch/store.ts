/**
 * What the dispatcher needs from the database, behind an interface so the cycle can run
 * against any client (supabase-js RPC in the functions; a direct connection in tests).
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { retryTransient, rpc } from "../supabase.ts";
import type { BacklogRow, DispatchSource } from "./plan.ts";

/** One trigger call: start up to `count` workers of a target. */
export interface TriggerRequest {
  source: DispatchSource;
  target: string;
  count: number;
  /** The env override (null: the table's value). */
  maxConcurrency: number | null;
  /** Who asked, recorded on the invocations (e.g. `dispatch:cron`). */
  reason: string;
}

/** The dispatcher's database. */
export interface DispatchStore {
  /** Every target's config and counts, in one round trip. */
  backlog(): Promise<BacklogRow[]>;
  /** Starts workers (capacity re-checked in SQL); returns how many were started. */
  trigger(req: TriggerRequest): Promise<number>;
  /**
   * Closes a kick target's debounce window (`window`: the winning kick's number, which the
   * kick sends; default the newest) once every kick it suppressed has committed
   * (`close_kick_window`), so a backlog read after it sees their work. False: it stopped
   * waiting for one (`kick_close_wait_ms`), whose job the next kick or cron picks up.
   */
  closeKickWindow(target: string, window?: number): Promise<boolean>;
}

/**
 * How long a dispatch call keeps calling again while the API is away (PostgREST reconnecting
 * after a Postgres restart or a `db:reset` answers 503, or 400 with an empty code): well
 * inside pg_net's 10 s timeout of a kick or cron call, so the call is answered 200 once the
 * API is back, and 503 (retry later) if it is not.
 */
export const DISPATCH_RETRY_MS = 5_000;

/**
 * The store over PostgREST RPC (`get_dispatch_backlog`, `trigger_content_worker`,
 * `trigger_queue_worker`, `close_kick_window`). All are called again on a transient failure:
 * reading the backlog changes nothing, a trigger repeated after a lost answer re-checks
 * capacity in SQL, so it never starts more workers than the kind's slots, and closing a
 * window twice is closing it once.
 */
export function rpcDispatchStore(
  client: SupabaseClient,
  o: { retryMs?: number } = {},
): DispatchStore {
  const forMs = o.retryMs ?? DISPATCH_RETRY_MS;
  return {
    async backlog() {
      return (await retryTransient(() => rpc<BacklogRow[]>(client, "get_dispatch_backlog"), {
        forMs,
      })) ?? [];
    },
    async trigger(req) {
      const n = await retryTransient(
        () =>
          req.source === "content"
            ? rpc<number>(client, "trigger_content_worker", {
              p_stage: req.target,
              p_count: req.count,
              p_max_concurrency: req.maxConcurrency,
              p_reason: req.reason,
            })
            : rpc<number>(client, "trigger_queue_worker", {
              p_kind: req.target,
              p_count: req.count,
              p_max_concurrency: req.maxConcurrency,
              p_reason: req.reason,
            }),
        { forMs },
      );
      return Number(n ?? 0);
    },
    async closeKickWindow(target, window) {
      const waited = await retryTransient(
        () =>
          rpc<boolean>(client, "close_kick_window", { p_target: target, p_window: window ?? null }),
        { forMs },
      );
      return waited !== false;
    },
  };
}
