/**
 * The one HTTP handler behind every queue worker function (`enrich-worker`,
 * `outreach-worker`, `enforce-worker`, `dlq-worker`): {@link makeWorkerHandler}(kind).
 *
 * - `POST /<slug>` with `{ "invocation_id"?: uuid, "async"?: boolean }` drains the kind's
 *   queue until it is empty or `WORKER_BUDGET_MS` is spent and answers the summary
 *   `{kind, claimed, completed, failed, cancelled, snoozed, released, batches, stopped_by,
 *   duration_ms}`. With `"async": true` (the dispatcher over pg_net, whose timeout is 5 s)
 *   it answers 202 `{"accepted":true}` at once and drains in `EdgeRuntime.waitUntil`.
 *   With an `invocation_id` it reports to the dispatcher: `start_invocation` before (a
 *   refused invocation — repeated or expired — drains nothing, so the kind's
 *   max_concurrency holds), `finish_invocation` after.
 * - dlq-worker only: `"window": n` (sent by a dead letter's winning kick, the kick's number):
 *   once q_dlq has run dry, the kick's recheck closes window n of target `dlq`
 *   (`close_kick_window`, which waits for every dead letter whose kick the window
 *   suppressed to commit) and drains once more, so those letters are handled by this run.
 *   The answer then counts both drains.
 * - `GET /<slug>/health` → `{status, db, queue}`: DB reachable and the queue's stats.
 * - Only the service role may call it (verify_jwt checks the signature, we check the role).
 * - Shutdown (`beforeunload`, SIGTERM): stop claiming, finish running jobs, release the rest.
 *
 * @module
 */
import { loadQueueConfig, type QueueConfig } from "../config.ts";
import { type SupabaseClient, z } from "../deps.ts";
import { QueueError, toError } from "../errors.ts";
import { errorResponse, json, readJsonObject, requireServiceRole } from "../http.ts";
import { retryTransient, rpc, serviceClient } from "../supabase.ts";
import { sleep } from "../dispatch/background.ts";
import { closeKickWindowForRecheck, KickWindow } from "../dispatch/kick_window.ts";
import { type DispatchStore, rpcDispatchStore } from "../dispatch/store.ts";
import type { ConsumeSummary, DeadLetter, QueueAdapter } from "./adapter.ts";
import { defaultHandlers, type HandlerRegistry } from "./handlers/mod.ts";
import { createQueueAdapter } from "./mod.ts";
import { type DrainCounts, noCounts } from "../worker_loop.ts";

/** The request body. Unknown keys are ignored (callers may add e.g. "source"). */
export const WorkerRequest = z.object({
  invocation_id: z.string().uuid({ message: "invocation_id must be a uuid" }).optional(),
  async: z.boolean({ invalid_type_error: "async must be true or false" }).optional(),
  /** dlq-worker only: the dead letters' winning kick, whose window the drain rechecks. */
  window: KickWindow.optional(),
});

/** The kick target of dlq-worker (conveyor.dead_letter_jobs_kick). */
const DLQ_KICK_TARGET = "dlq";

/** The summary a drain answers with. */
export interface WorkerSummary extends DrainCounts {
  kind: string;
  batches: number;
  /** Why the drain ended; "refused" = the invocation's dispatch slot was no longer valid. */
  stopped_by: ConsumeSummary["stoppedBy"] | "refused";
  duration_ms: number;
}

/** Converts a consume summary to the JSON shape functions answer with. */
export function toWorkerSummary(s: ConsumeSummary): WorkerSummary {
  return {
    kind: s.kind,
    claimed: s.claimed,
    completed: s.completed,
    failed: s.failed,
    cancelled: s.cancelled,
    snoozed: s.snoozed,
    released: s.released,
    batches: s.batches,
    stopped_by: s.stoppedBy,
    duration_ms: s.durationMs,
  };
}

/** Options of {@link makeWorkerHandler}; everything defaults to the environment. */
export interface WorkerHandlerOptions {
  config?: QueueConfig;
  client?: SupabaseClient;
  registry?: HandlerRegistry;
  adapter?: QueueAdapter;
  /** Shutdown signal (default: this process's beforeunload/SIGTERM). */
  signal?: AbortSignal;
  /** Where dlq-worker closes kick windows (default: `close_kick_window` over `client`). */
  kickWindows?: Pick<DispatchStore, "closeKickWindow">;
}

// ---------------------------------------------------------------------------------------
// process-wide shutdown: one controller, aborted on beforeunload or SIGTERM

const shutdown = new AbortController();
let shutdownHooked = false;

function hookShutdown(): void {
  if (shutdownHooked) return;
  shutdownHooked = true;
  const stop = () => {
    if (!shutdown.signal.aborted) {
      console.log(
        JSON.stringify({ level: "info", msg: "shutdown: stop claiming, release held jobs" }),
      );
      shutdown.abort(new QueueError("shutting_down", "the function is shutting down"));
    }
  };
  globalThis.addEventListener("beforeunload", stop);
  try {
    Deno.addSignalListener("SIGTERM", stop);
  } catch {
    // Not available everywhere (hosted isolates, Windows): beforeunload covers it.
  }
}

// ---------------------------------------------------------------------------------------
// dispatcher hand-shake (RPCs owned by the dispatcher's migration)

const missingRpcLogged = new Set<string>();

function isMissingFunction(e: unknown): boolean {
  const cause = (toError(e) as { cause?: { code?: string; message?: string } }).cause;
  const msg = `${toError(e).message} ${cause?.message ?? ""}`;
  return cause?.code === "PGRST202" || cause?.code === "42883" ||
    /could not find the function|function .* does not exist/i.test(msg);
}

/**
 * Calls a dispatcher RPC; a failure is logged, not thrown. With `retry`, called again through
 * an API outage (retryTransient): the invocation hand-shake must reach the database, or the
 * kind's dispatch slot stays taken until its lease runs out.
 */
async function tolerantRpc<T>(
  client: SupabaseClient,
  fn: string,
  args: Record<string, unknown>,
  retry = false,
): Promise<T | undefined> {
  try {
    const call = () => rpc<T>(client, fn, args);
    return await (retry ? retryTransient(call) : call());
  } catch (e) {
    if (isMissingFunction(e)) {
      if (!missingRpcLogged.has(fn)) {
        missingRpcLogged.add(fn);
        console.warn(JSON.stringify({
          level: "warn",
          msg: `${fn} is not deployed (dispatcher migration missing): carrying on without it`,
        }));
      }
      return undefined;
    }
    console.error(
      JSON.stringify({ level: "error", msg: `${fn} failed`, error: toError(e).message }),
    );
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------

/** Builds the request handler of the worker function for `kind` ("dlq" for dead letters). */
export function makeWorkerHandler(
  kind: string,
  opts: WorkerHandlerOptions = {},
): (req: Request) => Promise<Response> {
  // A bad configuration stops start-up with a message naming the variable.
  const config = opts.config ?? loadQueueConfig();
  const slug = kind === "dlq" ? "dlq-worker" : `${kind}-worker`;
  let client: SupabaseClient | undefined = opts.client;
  let adapter: Promise<QueueAdapter> | undefined = opts.adapter
    ? Promise.resolve(opts.adapter)
    : undefined;
  let registry: HandlerRegistry | undefined = opts.registry;
  const signal = opts.signal ?? shutdown.signal;
  if (!opts.signal) hookShutdown();

  const getClient = () => (client ??= serviceClient());
  let kickWindows = opts.kickWindows;
  const getKickWindows = () => (kickWindows ??= rpcDispatchStore(getClient()));
  const getAdapter = () => (adapter ??= createQueueAdapter(config, { client: getClient() }));
  signal.addEventListener("abort", () => {
    // Stop every drain of this process; their loops release what they hold.
    if (adapter) void adapter.then((a) => a.shutdown()).catch(() => {});
  }, { once: true });

  /**
   * The queue ran dry. A job that becomes due later (a delay, a retry backoff) gets no kick
   * of its own, so without this it would wait for cron's next minute. If one is due within
   * QUEUE_DUE_WAIT_MAX_MS, wake up then and ask for a worker through the same
   * capacity-checked trigger the dispatcher uses (`trigger_queue_worker`, reason "due"):
   * this drain ends now and gives its slot back, so new work is still started by kicks at
   * once, and the trigger starts nobody if another worker is already on it. Returns the
   * wait in ms, or null when nothing was scheduled.
   */
  let wakeAt = 0;
  async function scheduleDueWake(): Promise<number | null> {
    if (config.provider !== "pgmq" || config.dueWaitMaxMs <= 0 || signal.aborted) return null;
    const next = await tolerantRpc<string | null>(getClient(), "queue_next_due_at", {
      p_kind: kind,
    });
    if (!next) return null;
    const at = Date.parse(next) + 50;
    const wait = Math.max(0, at - Date.now());
    // One wake per due time per process: a wake already set for this time or earlier leads
    // to this one (the worker it starts schedules the next wake when it runs dry).
    if (wait > config.dueWaitMaxMs || (wakeAt > Date.now() && wakeAt <= at)) return null;
    wakeAt = at;
    const wake = (async () => {
      await sleep(wait, signal);
      if (wakeAt === at) wakeAt = 0;
      if (signal.aborted) return;
      await tolerantRpc(getClient(), "trigger_queue_worker", {
        p_kind: kind,
        p_count: 1,
        p_reason: "due",
      });
    })();
    const rt = (globalThis as { EdgeRuntime?: { waitUntil?: (p: Promise<unknown>) => void } })
      .EdgeRuntime;
    rt?.waitUntil?.(wake);
    return wait;
  }

  /**
   * Drains q_dlq, and with a kick's `window` rechecks it: once it has run dry (not on budget
   * or shutdown: the rest waits for the next kick or cron, as it would without a window),
   * closes the window, then drains again with what is left of the budget, as
   * `<worker>:recheck-<window>` (the name process_dead_letters records on each letter).
   */
  async function drainDeadLetters(
    a: QueueAdapter,
    worker: string,
    window: number | undefined,
  ): Promise<ConsumeSummary> {
    const consume = (workerId: string, budgetMs?: number) =>
      a.consumeDeadLetters((d: DeadLetter) => {
        console.log(JSON.stringify({
          level: "warn",
          msg: "job dead-lettered",
          alert: "dead_letter",
          job_id: d.jobId,
          tenant_id: d.tenantId,
          kind: d.kind,
          reason: d.reason,
          attempts: d.attempts,
          alert_id: d.alertId,
          alert_count: d.alertCount,
        }));
      }, { signal, workerId, budgetMs });
    const first = await consume(worker);
    if (window === undefined || first.stoppedBy !== "empty") return first;
    await closeKickWindowForRecheck(getKickWindows(), DLQ_KICK_TARGET, window);
    const again = await consume(
      `${worker}:recheck-${window}`,
      Math.max(0, config.budgetMs - first.durationMs),
    );
    const both = {
      ...again,
      batches: first.batches + again.batches,
      durationMs: first.durationMs + again.durationMs,
    };
    for (const k of Object.keys(noCounts()) as Array<keyof DrainCounts>) {
      both[k] = first[k] + again[k];
    }
    return both;
  }

  async function drain(
    invocationId: string | undefined,
    window: number | undefined,
  ): Promise<WorkerSummary> {
    const a = await getAdapter();
    const worker =
      `${slug}:${(Deno.env.get("SB_EXECUTION_ID") ?? crypto.randomUUID()).slice(0, 8)}` +
      (invocationId ? `:${invocationId.slice(0, 8)}` : "");
    if (invocationId) {
      const known = await tolerantRpc<boolean>(getClient(), "start_invocation", {
        p_invocation_id: invocationId,
        p_worker: worker,
      }, true);
      if (known === false) {
        // The dispatcher's slot for this call is gone (a repeated delivery, or it expired
        // before we started): draining now could exceed the kind's max_concurrency. A
        // later dispatch cycle starts a worker with a fresh slot.
        console.warn(JSON.stringify({
          level: "warn",
          msg: "unknown, expired or already started invocation: not draining",
          invocation_id: invocationId,
        }));
        return {
          kind,
          ...noCounts(),
          batches: 0,
          stopped_by: "refused",
          duration_ms: 0,
        };
      }
    }
    let summary: WorkerSummary;
    let dueWake: number | null = null;
    try {
      let s: ConsumeSummary;
      if (kind === "dlq") {
        s = await drainDeadLetters(a, worker, window);
      } else {
        registry ??= defaultHandlers(getClient());
        const handler = registry.get(kind);
        if (!handler) {
          throw new QueueError("not_found", `no handler registered for kind "${kind}"`);
        }
        s = await a.consume(kind, handler, { signal, workerId: worker, invocationId });
        if (s.stoppedBy === "empty") dueWake = await scheduleDueWake();
      }
      summary = toWorkerSummary(s);
    } catch (e) {
      if (invocationId) {
        await tolerantRpc(getClient(), "finish_invocation", {
          p_invocation_id: invocationId,
          p_summary: { kind, error: toError(e).message },
        }, true);
      }
      throw e;
    }
    console.log(JSON.stringify({
      level: "info",
      msg: "drain finished",
      worker,
      ...summary,
      due_wake_ms: dueWake,
    }));
    if (invocationId) {
      await tolerantRpc(getClient(), "finish_invocation", {
        p_invocation_id: invocationId,
        p_summary: summary,
      }, true);
    }
    return summary;
  }

  async function health(): Promise<Response> {
    try {
      const [h, stats] = await Promise.all([
        rpc<Record<string, unknown>>(getClient(), "conveyor_health"),
        rpc<Array<Record<string, unknown>>>(getClient(), "queue_stats", { p_since: "1 hour" }),
      ]);
      const queue = kind === "dlq"
        ? (stats ?? []).filter((r) => r.tier === "dead_letter")
        : (stats ?? []).filter((r) => r.kind === kind);
      const ok = h?.ok === true;
      return json({
        status: ok ? "ok" : "degraded",
        db: "ok",
        kind,
        provider: config.provider,
        queue,
        health: h,
      }, ok ? 200 : 503);
    } catch (e) {
      return json({ status: "error", db: "error", kind, error: toError(e).message }, 503);
    }
  }

  return async (req: Request): Promise<Response> => {
    try {
      requireServiceRole(req);
      const path = new URL(req.url).pathname.replace(/\/+$/, "");
      if (req.method === "GET" && path.endsWith("/health")) return await health();
      if (req.method !== "POST") {
        return json({ error: "method_not_allowed", message: "use POST (or GET /health)" }, 405, {
          allow: "GET, POST",
        });
      }
      if (signal.aborted) throw new QueueError("shutting_down", "the function is shutting down");
      const parsed = WorkerRequest.safeParse(await readJsonObject(req));
      if (!parsed.success) {
        throw new QueueError(
          "bad_request",
          parsed.error.issues.map((i) => i.message).join("; "),
        );
      }
      const { invocation_id: invocationId, async: inBackground, window } = parsed.data;
      if (window !== undefined && kind !== "dlq") {
        // A job kind's kicks go to the dispatcher, whose recheck closes their windows.
        throw new QueueError(
          "bad_request",
          `window is for dlq-worker only (${slug}'s kicks go to the dispatcher)`,
        );
      }
      if (inBackground) {
        const work = drain(invocationId, window).catch((e) => {
          console.error(
            JSON.stringify({ level: "error", msg: "drain failed", error: toError(e).message }),
          );
        });
        const rt = (globalThis as { EdgeRuntime?: { waitUntil?: (p: Promise<unknown>) => void } })
          .EdgeRuntime;
        if (rt?.waitUntil) rt.waitUntil(work);
        else await work; // no background runtime: finish before answering
        return json({ accepted: true }, 202);
      }
      return json(await drain(invocationId, window));
    } catch (e) {
      return errorResponse(e);
    }
  };
}
