/**
 * The default {@link QueueAdapter}: Conveyor's own SQL API over pgmq, called through
 * PostgREST with supabase-js (service role). publish → `queue_job`; consume → the shared
 * worker loop over `claim_jobs` / ONE `settle_jobs` per batch (or, while the loop goes on, ONE
 * `settle_and_claim_jobs`: the settle and the next claim in one request) / `extend_jobs` (heartbeat) /
 * `release_jobs` (shutdown); dead letters → `process_dead_letters`. Retry policy (attempts,
 * backoff) is applied by SQL from the values passed here.
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import type { QueueConfig } from "../config.ts";
import { toError } from "../errors.ts";
import { retryTransient, rpc, transientRpcError } from "../supabase.ts";
import type { LoopSource, Outcome } from "../worker_loop.ts";
import {
  type ConsumeOptions,
  type ConsumeSummary,
  ConsumeTracker,
  type DeadLetter,
  type Job,
  type JobHandler,
  type Priority,
  type PublishOptions,
  type QueueAdapter,
  queueJobBody,
  workerId,
} from "./adapter.ts";

/** A row of `claim_jobs` (conveyor.claimed_job). */
interface ClaimedRow {
  job_id: string;
  lease_id: string;
  kind: string;
  queue_name: string;
  msg_id: number;
  tenant_id: string;
  priority: Priority;
  attempt: number;
  max_attempts: number | null;
  payload: Record<string, unknown>;
  headers: Record<string, unknown> | null;
  enqueued_at: string;
  locked_until: string;
}

/** What `settle_and_claim_jobs` answers. */
interface SettleAndClaim {
  settled: SettleRow[];
  claimed: ClaimedRow[];
  throttled?: boolean;
  invocation_lost?: boolean;
}

/** A row of `settle_jobs`. */
interface SettleRow {
  job_id: string;
  accepted: boolean;
  outcome: string;
}

/** A row of `process_dead_letters`. */
interface DeadRow {
  msg_id: number;
  dead_letter_id: string | null;
  job_id: string | null;
  tenant_id: string;
  kind: string;
  reason: string | null;
  attempts: number | null;
  alert_id: string | null;
  alert_count: number | null;
}

/** How long a drain whose jobs are held back by a rate limit waits before claiming again. */
export const THROTTLED_WAIT_MS = 250;

/** How often a drain polls its empty queue while it lingers (QUEUE_IDLE_LINGER_MS). */
export const IDLE_POLL_MS = 25;

/** Largest batch for which the loop settles and claims in one call (settle_and_claim_jobs). */
export const COMBINED_MAX_BATCH = 25;

/** Serialisable form of an error for the ledger's errors array. */
function errorJson(e: Error): { message: string; stack?: string } {
  return { message: e.message || e.name, stack: e.stack };
}

/** The settle_jobs result element for one outcome. */
export function settleEntry(
  row: { job_id: string; lease_id: string },
  outcome: Outcome<unknown>,
): Record<string, unknown> {
  const base = { job_id: row.job_id, lease_id: row.lease_id, status: outcome.status };
  switch (outcome.status) {
    case "completed":
      return { ...base, output: outcome.output === undefined ? null : outcome.output };
    case "failed":
    case "cancelled":
      return { ...base, error: errorJson(outcome.error) };
    case "snoozed":
      return { ...base, snooze_seconds: Math.max(0, Math.round(outcome.seconds)) };
  }
}

/** QueueAdapter over Conveyor's SQL functions (pgmq underneath). */
export class PgmqQueueAdapter implements QueueAdapter {
  readonly provider = "pgmq" as const;
  readonly #client: SupabaseClient;
  readonly #config: QueueConfig;
  readonly #loops: ConsumeTracker;

  constructor(client: SupabaseClient, config: QueueConfig) {
    this.#client = client;
    this.#config = config;
    this.#loops = new ConsumeTracker(config);
  }

  get #policy() {
    return {
      max_attempts: this.#config.maxAttempts,
      backoff_base_ms: this.#config.backoffBaseMs,
      backoff_max_ms: this.#config.backoffMaxMs,
    };
  }

  async publish(job: PublishOptions): Promise<string> {
    this.#loops.assertOpen();
    // queue_job(jsonb) has one unnamed parameter: the whole object is the body.
    const id = await rpc<number>(this.#client, "queue_job", queueJobBody(job));
    return String(id);
  }

  consume<P = Record<string, unknown>, R = unknown>(
    kind: string,
    handler: JobHandler<P, R>,
    opts: ConsumeOptions = {},
  ): Promise<ConsumeSummary> {
    const worker = opts.workerId ?? workerId(`pgmq:${kind}`);
    const batch = opts.batchSize ?? this.#config.batchSize;
    const client = this.#client;
    const vt = this.#config.visibilitySec;
    const policy = this.#policy;
    const invocation = opts.invocationId ?? null;
    const lingerMs = this.#config.idleLingerMs;
    // What the last claim said: work held back by a rate limit, the dispatch slot lapsed.
    let throttled = false;
    let lost = false;
    let lastWorkAt = Date.now();
    // Every claim goes through settle_and_claim_jobs (with nothing to settle for the first
    // one): it beats the invocation's heart and says why it came back empty. Through an API
    // outage (a gateway, PostgREST or Postgres restart) it is called again until the API is
    // back (retryTransient), so the drain keeps its slot and the results it holds; a claim
    // with nothing to settle stops waiting at shutdown and claims nothing.
    const settleAndClaim = async (
      results: Array<{ item: ClaimedRow; outcome: Outcome<R> }>,
      max: number,
      signal?: AbortSignal,
    ) => {
      const call = () =>
        rpc<SettleAndClaim>(client, "settle_and_claim_jobs", {
          p_worker: worker,
          p_results: results.map((x) => settleEntry(x.item, x.outcome)),
          p_kind: kind,
          p_qty: max,
          p_vt: vt,
          p_policy: policy,
          p_invocation: invocation,
        });
      let r: SettleAndClaim;
      try {
        r = await retryTransient(call, { signal: results.length ? undefined : signal });
      } catch (e) {
        if (results.length === 0 && signal?.aborted && transientRpcError(e)) return [];
        throw e;
      }
      warnRefused(worker, r.settled);
      throttled = r.throttled === true;
      lost = r.invocation_lost === true;
      if (r.claimed.length > 0) lastWorkAt = Date.now();
      return r.claimed;
    };
    const source: LoopSource<ClaimedRow, R> = {
      claim: (max, signal) => settleAndClaim([], max, signal),
      run: (row, signal) => {
        const job: Job<P> = {
          id: row.job_id,
          kind: row.kind,
          tenantId: row.tenant_id,
          priority: row.priority,
          attempt: row.attempt,
          maxAttempts: row.max_attempts ?? policy.max_attempts,
          payload: (row.payload ?? {}) as P,
          headers: row.headers,
          enqueuedAt: new Date(row.enqueued_at),
        };
        return handler(job, { signal, log: jobLogger(worker, job) });
      },
      settle: async (results) => {
        const rows = await retryTransient(() =>
          rpc<SettleRow[]>(client, "settle_jobs", {
            p_worker: worker,
            p_results: results.map((r) => settleEntry(r.item, r.outcome)),
            p_policy: policy,
          })
        );
        warnRefused(worker, rows);
      },
      // The steady state in one request: this batch's settle and the next claim. Only for
      // small batches: measured with tools/bench/profile.ts ab, it drains batches of 10
      // ~1.25× faster over HTTP, but batches of 100 ~15 % slower than two calls.
      settleAndClaim: batch > COMBINED_MAX_BATCH ? undefined : settleAndClaim,
      extend: async (rows) => {
        await rpc(client, "extend_jobs", {
          p_worker: worker,
          p_leases: rows.map((r) => ({ job_id: r.job_id, lease_id: r.lease_id })),
          p_vt: vt,
          p_invocation: invocation,
        });
      },
      release: async (rows) => {
        await retryTransient(() =>
          rpc(client, "release_jobs", {
            p_worker: worker,
            p_leases: rows.map((r) => ({ job_id: r.job_id, lease_id: r.lease_id })),
          })
        );
      },
      // Jobs held back by a rate limit: come back when a token may be there. Otherwise linger
      // a little for work that arrives just after the queue ran dry (it starts within a poll,
      // not after the dispatcher's debounced kick).
      idle: () => {
        if (throttled) return THROTTLED_WAIT_MS;
        return Date.now() - lastWorkAt < lingerMs ? IDLE_POLL_MS : null;
      },
      lost: () => lost,
    };
    return this.#track(kind, source, opts);
  }

  consumeDeadLetters(
    onDead: (dead: DeadLetter) => Promise<void> | void,
    opts: ConsumeOptions = {},
  ): Promise<ConsumeSummary> {
    const worker = opts.workerId ?? workerId("pgmq:dlq");
    const client = this.#client;
    // process_dead_letters acknowledges, alerts and archives in its own transaction: the
    // claim IS the settle, so running an entry only reports it.
    const source: LoopSource<DeadRow, void> = {
      claim: (max) =>
        rpc<DeadRow[]>(client, "process_dead_letters", { p_worker: worker, p_qty: max }),
      run: async (row) => {
        await onDead({
          jobId: row.job_id,
          tenantId: row.tenant_id,
          kind: row.kind,
          reason: row.reason,
          attempts: row.attempts,
          alertId: row.alert_id,
          alertCount: row.alert_count === null ? null : Number(row.alert_count),
        });
      },
      settle: () => Promise.resolve(),
    };
    return this.#track("dlq", source, opts);
  }

  #track<T, R>(kind: string, source: LoopSource<T, R>, opts: ConsumeOptions) {
    // A heartbeat every 5 s (or three per visibility timeout, if that is shorter): the
    // invocation's slot (a 15 s lease) and the jobs' leases never lapse while jobs run.
    const heartbeatMs = Math.max(
      1_000,
      Math.min(5_000, Math.floor((this.#config.visibilitySec * 1000) / 3)),
    );
    return this.#loops.run(kind, source, opts, { heartbeatMs });
  }

  async shutdown(): Promise<void> {
    await this.#loops.close();
  }
}

/** Logs each settle the database refused (the lease was lost). */
function warnRefused(worker: string, rows: SettleRow[] | null): void {
  for (const r of rows ?? []) {
    if (!r.accepted) {
      console.warn(JSON.stringify({
        level: "warn",
        worker,
        msg: "settle refused (lease lost: another claim holds the job or it expired)",
        job_id: r.job_id,
        outcome: r.outcome,
      }));
    }
  }
}

/** A JSON log line writer bound to one job. */
export function jobLogger(worker: string, job: Pick<Job, "id" | "kind" | "attempt">) {
  return (message: string, extra: Record<string, unknown> = {}) => {
    try {
      console.log(JSON.stringify({
        level: "info",
        worker,
        job_id: job.id,
        kind: job.kind,
        attempt: job.attempt,
        msg: message,
        ...extra,
      }));
    } catch (e) {
      console.log(`${worker} ${job.id}: ${message} (${toError(e).message})`);
    }
  };
}
