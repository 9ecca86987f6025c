/**
 * Seed 002's `QueueAdapter`: the interface code is written against, whatever queue runs
 * underneath (`QUEUE_PROVIDER=pgmq`, the default, or `pgboss`). `publish` enqueues with the
 * same options `queue_job` takes; `consume` drains a kind's queue through the shared worker
 * loop until it is empty, the time budget is spent or shutdown is asked for; `shutdown`
 * stops every consume (running jobs finish and are settled, claimed-but-unstarted ones are
 * released) and closes connections.
 *
 * @module
 */
import { QueueError } from "../errors.ts";
import { type LoopOptions, type LoopSource, type LoopSummary, runLoop } from "../worker_loop.ts";
import type { QueueConfig } from "../config.ts";

/** Priority tiers: a consume takes fast before normal before bulk. */
export type Priority = "fast" | "normal" | "bulk";

/** The tiers, in claim order. */
export const PRIORITIES: readonly Priority[] = ["fast", "normal", "bulk"];

/** The job kinds the shipped queues serve (the allow-list of `queue_job`). */
export type JobKind = "enrich" | "outreach" | "enforce";

/** Every shipped kind. */
export const JOB_KINDS: readonly JobKind[] = ["enrich", "outreach", "enforce"];

/** Options of {@link QueueAdapter.publish}: the body of `queue_job`, camel-cased. */
export interface PublishOptions {
  /** Required; the same key returns the same id and enqueues nothing new. */
  idempotencyKey: string;
  kind: string;
  payload?: Record<string, unknown>;
  /** Default "normal". */
  priority?: Priority;
  /** Not claimable before this many seconds (give this or executeAfter). */
  delaySeconds?: number;
  /** Not claimable before this time (ISO string or Date). */
  executeAfter?: string | Date;
  headers?: Record<string, unknown>;
  /** More attempts (5 instead of the configured maximum). */
  critical?: boolean;
  /**
   * At most the key's limit of jobs of this kind and tenant with this key run at once (e.g.
   * `user:42`); the others wait. 1–255 characters. pgmq provider only.
   */
  concurrencyKey?: string;
  /**
   * The key's limit this job asks for (1–1000; default: the kind's, 1). An operator's
   * override for the key wins (docs/fairness.md).
   */
  concurrencyLimit?: number;
  /** Trusted callers only; default tenant otherwise. */
  tenantId?: string;
}

/** A job as a handler sees it. */
export interface Job<P = Record<string, unknown>> {
  /** The job's id (pgmq: the ledger's uuid; pg-boss: its job id). */
  id: string;
  kind: string;
  tenantId: string;
  priority: Priority;
  /** 1-based attempt number of this run. */
  attempt: number;
  /** Attempts allowed before the job is dead-lettered. */
  maxAttempts: number;
  payload: P;
  headers: Record<string, unknown> | null;
  enqueuedAt: Date;
}

/** What a handler gets besides the job. */
export interface HandlerContext {
  /** Aborted when the job's deadline passes. */
  signal: AbortSignal;
  /** Structured log line tagged with the job. */
  log: (message: string, extra?: Record<string, unknown>) => void;
}

/**
 * Runs one job. Return the output (stored with the job); throw to fail it (retried with
 * backoff), `JobCancelError` to fail it for good, `JobSnoozeError` to run it later.
 */
export type JobHandler<P = Record<string, unknown>, R = unknown> = (
  job: Job<P>,
  ctx: HandlerContext,
) => Promise<R>;

/** Options of {@link QueueAdapter.consume}; defaults come from the queue config. */
export interface ConsumeOptions {
  /** Stop claiming when aborted; running jobs finish, unstarted ones are released. */
  signal?: AbortSignal;
  budgetMs?: number;
  batchSize?: number;
  concurrency?: number;
  jobTimeoutMs?: number;
  /** Name recorded as the claimer (default: provider + random suffix). */
  workerId?: string;
  /**
   * The dispatcher's invocation this drain runs for: its claims and heartbeats keep the
   * invocation's slot alive, and the drain stops claiming once the slot has lapsed.
   */
  invocationId?: string;
}

/** What one consume did. */
export type ConsumeSummary = LoopSummary & { kind: string };

/** A dead-lettered job, as the dead-letter consumer sees it. */
export interface DeadLetter {
  jobId: string | null;
  tenantId: string;
  kind: string;
  reason: string | null;
  attempts: number | null;
  /** The open `dead_letter` alert this raised or bumped, if any. */
  alertId: string | null;
  alertCount: number | null;
}

/** Seed 002's queue abstraction. */
export interface QueueAdapter {
  /** Which provider this is. */
  readonly provider: "pgmq" | "pgboss";
  /** Enqueues a job; returns its id as a string (pgmq: the message id). */
  publish(job: PublishOptions): Promise<string>;
  /** Drains `kind`'s queue with `handler`. */
  consume<P = Record<string, unknown>, R = unknown>(
    kind: string,
    handler: JobHandler<P, R>,
    opts?: ConsumeOptions,
  ): Promise<ConsumeSummary>;
  /** Drains the dead-letter queue: acknowledges each entry, raises alerts, calls `onDead`. */
  consumeDeadLetters(
    onDead: (dead: DeadLetter) => Promise<void> | void,
    opts?: ConsumeOptions,
  ): Promise<ConsumeSummary>;
  /** Stops every consume and releases what it holds, then closes connections. */
  shutdown(): Promise<void>;
}

/**
 * Validates publish options with queue_job's messages, for providers that do not call it.
 * Throws QueueError("bad_request").
 */
export function checkPublish(job: PublishOptions, kinds: readonly string[]): void {
  const bad = (m: string) => new QueueError("bad_request", `queue_job: ${m}`);
  if (!job.kind) throw bad("missing kind in payload");
  if (!kinds.includes(job.kind)) throw bad(`unsupported kind ${job.kind}`);
  if (typeof job.idempotencyKey !== "string" || job.idempotencyKey.trim() === "") {
    throw bad("missing idempotency_key");
  }
  if (job.priority !== undefined && !PRIORITIES.includes(job.priority)) {
    throw bad(`unsupported priority ${job.priority} (use fast, normal or bulk)`);
  }
  if (job.delaySeconds !== undefined && job.executeAfter !== undefined) {
    throw bad("give either delay_seconds or execute_after, not both");
  }
  if (
    job.delaySeconds !== undefined &&
    (!Number.isInteger(job.delaySeconds) || job.delaySeconds < 0)
  ) {
    throw bad("delay_seconds must be a whole number of seconds, 0 or more");
  }
  if (job.executeAfter !== undefined && Number.isNaN(new Date(job.executeAfter).getTime())) {
    throw bad("execute_after must be an ISO timestamp");
  }
  if (job.concurrencyKey !== undefined) {
    if (typeof job.concurrencyKey !== "string" || job.concurrencyKey.trim() === "") {
      throw bad("concurrency_key must be a non-empty string");
    }
    if (job.concurrencyKey.length > 255) {
      throw bad("concurrency_key is longer than 255 characters");
    }
  }
  if (job.concurrencyLimit !== undefined) {
    if (
      !Number.isInteger(job.concurrencyLimit) || job.concurrencyLimit < 1 ||
      job.concurrencyLimit > 1000
    ) {
      throw bad("concurrency_limit must be a whole number between 1 and 1000");
    }
    if (job.concurrencyKey === undefined) throw bad("concurrency_limit needs a concurrency_key");
  }
}

/** The body `queue_job` takes for these options. */
export function queueJobBody(job: PublishOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {
    idempotency_key: job.idempotencyKey,
    kind: job.kind,
    payload: job.payload ?? {},
  };
  if (job.priority) body.priority = job.priority;
  if (job.delaySeconds !== undefined) body.delay_seconds = job.delaySeconds;
  if (job.executeAfter !== undefined) {
    body.execute_after = job.executeAfter instanceof Date
      ? job.executeAfter.toISOString()
      : job.executeAfter;
  }
  if (job.headers) body.headers = job.headers;
  if (job.critical !== undefined) body.critical = job.critical;
  if (job.concurrencyKey !== undefined) body.concurrency_key = job.concurrencyKey;
  if (job.concurrencyLimit !== undefined) body.concurrency_limit = job.concurrencyLimit;
  if (job.tenantId) body.tenant_id = job.tenantId;
  return body;
}

/** A fresh worker id: `<prefix>:<8 hex>`. */
export function workerId(prefix: string): string {
  return `${prefix}:${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * The consume loops an adapter has running, and its shutdown: stop claiming everywhere,
 * then wait for every loop to finish or release what it holds. Shared by both adapters.
 */
export class ConsumeTracker {
  readonly #active = new Set<AbortController>();
  readonly #running = new Set<Promise<unknown>>();
  #closed = false;

  constructor(readonly config: QueueConfig) {}

  /** Throws `shutting_down` once the adapter is shut down. */
  assertOpen(): void {
    if (this.#closed) throw new QueueError("shutting_down", "the queue adapter is shut down");
  }

  /** Runs `source` in the worker loop with `opts` over the config's defaults. */
  async run<T, R>(
    kind: string,
    source: LoopSource<T, R>,
    opts: ConsumeOptions,
    extra: Pick<LoopOptions, "heartbeatMs"> = {},
  ): Promise<ConsumeSummary> {
    this.assertOpen();
    const ctl = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, ctl.signal]) : ctl.signal;
    this.#active.add(ctl);
    const c = this.config;
    const run = runLoop(source, {
      batchSize: opts.batchSize ?? c.batchSize,
      concurrency: opts.concurrency ?? c.concurrency,
      budgetMs: opts.budgetMs ?? c.budgetMs,
      jobTimeoutMs: opts.jobTimeoutMs ?? c.jobTimeoutMs,
      ...extra,
      signal,
    });
    this.#running.add(run);
    try {
      return { kind, ...(await run) };
    } finally {
      this.#running.delete(run);
      this.#active.delete(ctl);
    }
  }

  /** Stops every loop and waits for them; false when it was already closed. */
  async close(): Promise<boolean> {
    if (this.#closed) return false;
    this.#closed = true;
    for (const ctl of this.#active) ctl.abort(new QueueError("shutting_down", "shutdown"));
    await Promise.allSettled([...this.#running]);
    return true;
  }
}
