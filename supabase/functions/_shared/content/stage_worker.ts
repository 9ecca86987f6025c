/**
 * The one stage runner behind the six content workers: `createStageWorker("research")`.
 *
 * - `POST /<stage>-worker` with `{"invocation_id"?, "stage"?, "async"?, "source"?}` (what
 *   `trigger_content_worker` sends over pg_net). With `"async": true` it answers 202 at
 *   once and works in `EdgeRuntime.waitUntil`; otherwise it works first and answers the
 *   summary `{stage, invocation_id, claimed, completed, failed, cancelled, snoozed,
 *   released, retry_waits, stopped_by, duration_ms}`.
 * - Work = the shared worker loop over the stage (`stage_source.ts`), one item per lease,
 *   until the stage has nothing claimable for it (empty, or max_concurrency reached), the
 *   time budget is spent, or the function shuts down. A worker that failed an item waits
 *   for its retry if the backoff ends within its budget (so a retry does not wait for the
 *   next cron minute). At the end it reports `finish_invocation`, which starts a successor
 *   when it stopped with work left (budget, shutdown).
 * - Only the service role may call it (verify_jwt checks the signature, we check the role).
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { z } from "../deps.ts";
import { QueueError, toError } from "../errors.ts";
import { errorResponse, json, readJsonObject, requireServiceRole } from "../http.ts";
import { rpc, serviceClient } from "../supabase.ts";
import { type DrainCounts, type LoopSummary, noCounts, runLoop } from "../worker_loop.ts";
import { runInBackground, shutdownSignal, sleep, type WaitUntil } from "../dispatch/background.ts";
import { loadStageWorkerConfig, type StageWorkerConfig } from "./config.ts";
import { stageHandlers } from "./registry.ts";
import { stageSource } from "./stage_source.ts";
import type { ContentStage, StageRegistry } from "./types.ts";

/** The request body. Unknown keys are ignored. */
export const StageWorkerRequest = z.object({
  invocation_id: z.string().uuid({ message: "invocation_id must be a uuid" }).optional(),
  stage: z.string({ invalid_type_error: "stage must be a string" }).optional(),
  async: z.boolean({ invalid_type_error: "async must be true or false" }).optional(),
  source: z.string({ invalid_type_error: "source must be a string" }).optional(),
});

/** What one run of a stage worker did. */
export interface StageRunSummary extends DrainCounts {
  stage: ContentStage;
  invocation_id: string | null;
  retry_waits: number;
  stopped_by: LoopSummary["stoppedBy"] | "error";
  duration_ms: number;
}

/** Options of {@link createStageWorker}; everything defaults to the environment. */
export interface StageWorkerOptions {
  client?: SupabaseClient;
  /** Handlers to use instead of the registry's (e.g. a test's). */
  handlers?: Partial<StageRegistry>;
  /** Environment (default: Deno.env). */
  env?: Record<string, string | undefined>;
  /** Shutdown signal (default: the process's beforeunload). */
  signal?: AbortSignal;
  /** Background runner (default: EdgeRuntime.waitUntil). */
  waitUntil?: WaitUntil;
}

function log(fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ level: "info", ...fields }));
}

/** Builds the request handler of the worker function of `stage`. */
export function createStageWorker(
  stage: ContentStage,
  opts: StageWorkerOptions = {},
): (req: Request) => Promise<Response> {
  // A bad configuration stops start-up with a message naming the variable.
  const config: StageWorkerConfig = loadStageWorkerConfig(opts.env ?? Deno.env.toObject());
  const handler = opts.handlers?.[stage] ?? stageHandlers[stage];
  const shutdown = opts.signal ?? shutdownSignal();
  let client = opts.client;
  const getClient = () => (client ??= serviceClient());
  const execution = (Deno.env.get("SB_EXECUTION_ID") ?? crypto.randomUUID()).slice(0, 8);

  async function work(invocationId: string | undefined): Promise<StageRunSummary> {
    const started = performance.now();
    const worker = `${stage}-worker:${execution}:${
      (invocationId ?? crypto.randomUUID()).slice(0, 8)
    }`;
    const s: StageRunSummary = {
      stage,
      invocation_id: invocationId ?? null,
      ...noCounts(),
      retry_waits: 0,
      stopped_by: "empty",
      duration_ms: 0,
    };
    const left = () => config.budgetMs - (performance.now() - started);
    const source = stageSource({
      client: getClient(),
      stage,
      handler,
      worker,
      invocationId,
      leaseSec: config.leaseSec,
      overrides: config.overrides,
      shutdown,
    });
    try {
      while (true) {
        const r = await runLoop(source, {
          batchSize: 1, // one item per lease: live leases = handlers running
          concurrency: 1,
          budgetMs: Math.max(0, left()),
          jobTimeoutMs: config.stageTimeoutMs,
          heartbeatMs: config.heartbeatMs,
          signal: shutdown,
        });
        s.claimed += r.claimed;
        s.completed += r.completed;
        s.failed += r.failed;
        s.cancelled += r.cancelled;
        s.snoozed += r.snoozed;
        s.stopped_by = r.stoppedBy;
        if (r.stoppedBy !== "empty" || r.failed === 0) break;
        // It failed something: wait for the retry if its backoff ends within the budget.
        const next = await rpc<string | null>(getClient(), "content_stage_next_ready_at", {
          p_stage: stage,
        });
        if (!next) break;
        const wait = Math.max(0, new Date(next).getTime() - Date.now()) + 50;
        if (wait > config.retryWaitMaxMs || wait > left() - config.stageTimeoutMs) break;
        s.retry_waits++;
        await sleep(wait, shutdown);
      }
    } catch (e) {
      s.stopped_by = "error";
      throw e;
    } finally {
      // Released items were counted as failed by the loop: they were handed back instead.
      s.released = source.stats.released;
      s.failed = Math.max(0, s.failed - source.stats.releasedWhileRunning);
      if (shutdown.aborted && s.stopped_by !== "error") s.stopped_by = "shutdown";
      s.duration_ms = Math.round(performance.now() - started);
      if (invocationId) {
        await rpc(getClient(), "finish_invocation", {
          p_invocation_id: invocationId,
          p_summary: { ...s, max_concurrency_overrides: config.overrides },
        }).catch((e) =>
          console.error(JSON.stringify({
            level: "error",
            msg: "finish_invocation failed",
            error: toError(e).message,
          }))
        );
      }
      if (s.claimed > 0 || s.stopped_by !== "empty") {
        log({ msg: "stage worker finished", worker, ...s });
      }
    }
    return s;
  }

  return async (req: Request): Promise<Response> => {
    try {
      if (req.method !== "POST") {
        return json({ error: "method_not_allowed", message: "use POST" }, 405, { allow: "POST" });
      }
      requireServiceRole(req);
      if (shutdown.aborted) throw new QueueError("shutting_down", "the function is shutting down");
      const parsed = StageWorkerRequest.safeParse(await readJsonObject(req));
      if (!parsed.success) {
        throw new QueueError("bad_request", parsed.error.issues.map((i) => i.message).join("; "));
      }
      const { invocation_id: invocationId, async: inBackground } = parsed.data;
      if (parsed.data.stage !== undefined && parsed.data.stage !== stage) {
        throw new QueueError(
          "bad_request",
          `this is the ${stage} worker; it cannot run stage "${parsed.data.stage}"`,
        );
      }
      if (inBackground) {
        runInBackground(() => work(invocationId), opts.waitUntil);
        return json({ accepted: true, stage, invocation_id: invocationId ?? null }, 202);
      }
      return json(await work(invocationId));
    } catch (e) {
      return errorResponse(e);
    }
  };
}
