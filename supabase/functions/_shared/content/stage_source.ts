/**
 * A content stage as a {@link LoopSource} of the shared worker loop: claim ONE item per
 * lease (`claim_content_stage`, which also consumes the worker's invocation), run the
 * stage's handler, settle (`settle_content_stages`, which makes the next stage ready and
 * pushes its worker), heartbeat (`extend_content_stages`) and release on shutdown
 * (`release_content_stages`). Every transition is one RPC; this file only passes arguments.
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { toError } from "../errors.ts";
import type { ConcurrencyOverrides } from "../dispatch/overrides.ts";
import { rpc } from "../supabase.ts";
import type { LoopSource } from "../worker_loop.ts";
import type { ContentBrief, ContentStage, JsonObject, StageHandler } from "./types.ts";

/** A claimed stage item (`conveyor.content_claim`). */
export interface StageItem {
  job_id: string;
  stage: ContentStage;
  lease_id: string;
  attempt: number;
  max_attempts: number;
  brief: ContentBrief;
  outputs: Record<string, JsonObject>;
  lease_expires_at: string;
}

/** Thrown into the loop for an item handed back at shutdown (it is not settled). */
export class StageReleasedError extends Error {
  override readonly name = "StageReleasedError";
}

/** Options of {@link stageSource}. */
export interface StageSourceOptions {
  client: SupabaseClient;
  stage: ContentStage;
  handler: StageHandler;
  /** Names the worker in leases and events. */
  worker: string;
  /** The invocation the dispatcher started this worker for (its first claim consumes it). */
  invocationId?: string;
  leaseSec: number;
  /** CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY overrides: this stage's limits its own claims, the
   * next stage's limits the push trigger. */
  overrides: ConcurrencyOverrides;
  /** Shutdown: running handlers are abandoned and their items released. */
  shutdown: AbortSignal;
}

/** Counters a stage source keeps besides the loop's summary. */
export interface StageSourceStats {
  /** Items handed back (not started, or abandoned at shutdown). */
  released: number;
  /** Of those, items abandoned while their handler ran (the loop counts them as failed). */
  releasedWhileRunning: number;
}

const leaseOf = (i: StageItem) => ({ job_id: i.job_id, stage: i.stage, lease_id: i.lease_id });

/** Builds the loop source of one stage worker run. */
export function stageSource(
  o: StageSourceOptions,
): LoopSource<StageItem, JsonObject> & { stats: StageSourceStats } {
  const released = new Set<StageItem>();
  const stats: StageSourceStats = { released: 0, releasedWhileRunning: 0 };

  async function release(items: StageItem[]): Promise<void> {
    const fresh = items.filter((i) => !released.has(i));
    if (fresh.length === 0) return;
    for (const i of fresh) released.add(i);
    stats.released += fresh.length;
    await rpc(o.client, "release_content_stages", {
      p_worker: o.worker,
      p_leases: fresh.map(leaseOf),
    });
  }

  return {
    stats,
    async claim(max) {
      if (max < 1 || o.shutdown.aborted) return [];
      const rows = await rpc<StageItem[]>(o.client, "claim_content_stage", {
        p_stage: o.stage,
        p_worker: o.worker,
        p_invocation_id: o.invocationId ?? null,
        p_lease_sec: o.leaseSec,
        p_max_concurrency: Object.hasOwn(o.overrides, o.stage) ? o.overrides[o.stage] : null,
      });
      return rows ?? [];
    },

    async run(item, signal) {
      const ctl = new AbortController();
      const abort = (reason: unknown) => ctl.abort(reason);
      signal.addEventListener("abort", () => abort(signal.reason), { once: true });
      let onShutdown: (() => void) | undefined;
      const stopped = new Promise<never>((_, reject) => {
        onShutdown = () => {
          abort(o.shutdown.reason);
          reject(new StageReleasedError("released at shutdown"));
        };
        if (o.shutdown.aborted) onShutdown();
        else o.shutdown.addEventListener("abort", onShutdown, { once: true });
      });
      stopped.catch(() => {}); // observed below; never an unhandled rejection
      try {
        return await Promise.race([
          Promise.resolve().then(() =>
            o.handler({
              jobId: item.job_id,
              stage: item.stage,
              attempt: item.attempt,
              maxAttempts: item.max_attempts,
              brief: item.brief,
              outputs: item.outputs ?? {},
              signal: ctl.signal,
            })
          ),
          stopped,
        ]);
      } catch (e) {
        if (e instanceof StageReleasedError) {
          stats.releasedWhileRunning++;
          await release([item]);
        }
        throw e;
      } finally {
        if (onShutdown) o.shutdown.removeEventListener("abort", onShutdown);
      }
    },

    async settle(results) {
      const live = results.filter((r) => !released.has(r.item));
      if (live.length === 0) return;
      const payload = live.map(({ item, outcome }) => {
        const base = leaseOf(item);
        switch (outcome.status) {
          case "completed":
            return { ...base, status: "completed", output: outcome.output ?? {} };
          case "snoozed":
            return { ...base, status: "snoozed", snooze_seconds: outcome.seconds };
          default: {
            const err = toError(outcome.error);
            return {
              ...base,
              status: outcome.status,
              error: { message: err.message, stack: err.stack ?? null },
            };
          }
        }
      });
      await rpc(o.client, "settle_content_stages", {
        p_worker: o.worker,
        p_results: payload,
        p_overrides: o.overrides,
      });
    },

    async extend(items) {
      await rpc(o.client, "extend_content_stages", {
        p_worker: o.worker,
        p_leases: items.map(leaseOf),
        p_lease_sec: o.leaseSec,
      });
    },

    release,
  };
}
