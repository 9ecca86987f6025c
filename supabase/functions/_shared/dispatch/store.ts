/**
 * What the dispatcher needs from the database, behind an interface so the cycle can run
 * against any client (supabase-js RPC in the functions; a direct connection in tests).
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { rpc } from "../supabase.ts";
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
}

/** The store over PostgREST RPC (`get_dispatch_backlog`, `trigger_content_worker`, `trigger_queue_worker`). */
export function rpcDispatchStore(client: SupabaseClient): DispatchStore {
  return {
    async backlog() {
      return (await rpc<BacklogRow[]>(client, "get_dispatch_backlog")) ?? [];
    },
    async trigger(req) {
      const n = req.source === "content"
        ? await rpc<number>(client, "trigger_content_worker", {
          p_stage: req.target,
          p_count: req.count,
          p_max_concurrency: req.maxConcurrency,
          p_reason: req.reason,
        })
        : await rpc<number>(client, "trigger_queue_worker", {
          p_kind: req.target,
          p_count: req.count,
          p_max_concurrency: req.maxConcurrency,
          p_reason: req.reason,
        });
      return Number(n ?? 0);
    },
  };
}
