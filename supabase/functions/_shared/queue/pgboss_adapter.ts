/**
 * The pg-boss {@link QueueAdapter} (`QUEUE_PROVIDER=pgboss`): the same interface and
 * semantics as the pgmq provider on the `pg-boss` package, connected with SUPABASE_DB_URL,
 * in its own schema (`PG_BOSS_SCHEMA`, default `pgboss`).
 *
 * - one pg-boss queue per kind (`q_<kind>`) with a dead-letter queue (`q_<kind>.dlq`);
 *   priorities fast|normal|bulk → 2|1|0 (pg-boss fetches higher first);
 * - retries from the config: retryLimit = QUEUE_MAX_ATTEMPTS − 1 (critical: 5 attempts),
 *   retryDelay/retryDelayMax from the backoff settings with retryBackoff on; the visibility
 *   timeout is the queue's expireInSeconds (an active job past it is retried by pg-boss's
 *   supervisor: a killed worker's job comes back);
 * - idempotency: the job id is derived from (kind, tenant, idempotency key), so the same key
 *   returns the same id and pg-boss's insert-on-conflict enqueues nothing new;
 * - consume drains through the shared worker loop with `fetch` and settles with
 *   `complete`/`fail` fenced to the fetched attempt (a stale ack affects nothing);
 *   cancel → copied to the DLQ and cancelled; snooze and release → cancelled, resumed and
 *   given back the attempt they did not use;
 * - graceful stop: loops stop claiming, running jobs finish, the rest is released, then
 *   `stop({ graceful: true })`.
 *
 * @module
 */
import type { QueueConfig } from "../config.ts";
import { loadPgBoss, type PgBoss, type PgBossJobWithMetadata } from "../deps.ts";
import { QueueError, toError } from "../errors.ts";
import type { LoopSource, Outcome } from "../worker_loop.ts";
import {
  checkPublish,
  type ConsumeOptions,
  type ConsumeSummary,
  ConsumeTracker,
  type DeadLetter,
  type Job,
  type JobHandler,
  type Priority,
  type PublishOptions,
  type QueueAdapter,
  workerId,
} from "./adapter.ts";
import { jobLogger } from "./pgmq_adapter.ts";

/** pg-boss priority of each tier (higher is fetched first). */
export const PGBOSS_PRIORITY: Readonly<Record<Priority, number>> = { fast: 2, normal: 1, bulk: 0 };

const DEFAULT_TENANT = "00000000-0000-0000-0000-000000000000";
const CRITICAL_MAX_ATTEMPTS = 5;

/** What a job carries in pg-boss's `data`. */
interface JobData {
  kind: string;
  tenant_id: string;
  payload: Record<string, unknown>;
  headers: Record<string, unknown> | null;
  critical: boolean;
  idempotency_key: string;
  /** Set on copies this adapter puts in the DLQ itself (cancelled jobs). */
  dead?: { reason: string; attempts: number; source_id: string };
}

type BossJob = PgBossJobWithMetadata<JobData>;

/** The pg-boss queue of a kind. */
export function pgBossQueue(kind: string): string {
  return `q_${kind}`;
}

/** The dead-letter queue of a kind's queue. */
export function pgBossDlq(kind: string): string {
  return `${pgBossQueue(kind)}.dlq`;
}

/** A deterministic uuid (version 8, RFC 9562) for an idempotency key. */
export async function idempotentId(kind: string, tenant: string, key: string): Promise<string> {
  const bytes = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${kind}\0${tenant}\0${key}`)),
  ).slice(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

function tierOf(priority: number): Priority {
  return priority >= 2 ? "fast" : priority <= 0 ? "bulk" : "normal";
}

/** QueueAdapter over pg-boss. Create with {@link PgBossQueueAdapter.start}. */
export class PgBossQueueAdapter implements QueueAdapter {
  readonly provider = "pgboss" as const;
  readonly #boss: PgBoss;
  readonly #config: QueueConfig;
  readonly #kinds: readonly string[];
  readonly #loops: ConsumeTracker;
  #alertFn: boolean | undefined;

  private constructor(boss: PgBoss, config: QueueConfig, kinds: readonly string[]) {
    this.#boss = boss;
    this.#config = config;
    this.#kinds = kinds;
    this.#loops = new ConsumeTracker(config);
  }

  /** Connects, installs/migrates pg-boss's schema and creates the kinds' queues. */
  static async start(
    dbUrl: string,
    config: QueueConfig,
    kinds: readonly string[],
  ): Promise<PgBossQueueAdapter> {
    const { PgBoss } = await loadPgBoss();
    const boss = new PgBoss({
      connectionString: dbUrl,
      schema: config.pgBossSchema,
      max: Math.max(2, Math.min(10, config.concurrency + 2)),
      schedule: false,
      application_name: "conveyor-pgboss",
    });
    boss.on(
      "error",
      (e: unknown) =>
        console.error(
          JSON.stringify({ level: "error", msg: "pg-boss", error: toError(e).message }),
        ),
    );
    await boss.start();
    const a = new PgBossQueueAdapter(boss, config, kinds);
    await a.#ensureQueues();
    return a;
  }

  get #retry() {
    const c = this.#config;
    return {
      retryLimit: c.maxAttempts - 1,
      retryDelay: Math.max(1, Math.ceil(c.backoffBaseMs / 1000)),
      retryBackoff: true,
      retryDelayMax: Math.max(1, Math.ceil(c.backoffMaxMs / 1000)),
      expireInSeconds: c.visibilitySec,
      deleteAfterSeconds: c.retentionHours * 3600,
    };
  }

  async #ensureQueues(): Promise<void> {
    for (const kind of this.#kinds) {
      const dlq = pgBossDlq(kind);
      if (!(await this.#boss.getQueue(dlq))) {
        await this.#boss.createQueue(dlq, { ...this.#retry, retryLimit: 0 });
      }
      const name = pgBossQueue(kind);
      const options = { ...this.#retry, deadLetter: dlq };
      if (await this.#boss.getQueue(name)) await this.#boss.updateQueue(name, options);
      else await this.#boss.createQueue(name, options);
    }
  }

  async publish(job: PublishOptions): Promise<string> {
    this.#loops.assertOpen();
    checkPublish(job, this.#kinds);
    if (job.concurrencyKey !== undefined) {
      // pg-boss limits a queue, not a key of a queue: refusing beats running over the limit.
      throw new QueueError(
        "bad_request",
        "queue_job: concurrency_key needs QUEUE_PROVIDER=pgmq (pg-boss has no per-key limit)",
      );
    }
    const tenant = job.tenantId ?? DEFAULT_TENANT;
    const id = await idempotentId(job.kind, tenant, job.idempotencyKey);
    const data: JobData = {
      kind: job.kind,
      tenant_id: tenant,
      payload: job.payload ?? {},
      headers: job.headers ?? null,
      critical: job.critical ?? false,
      idempotency_key: job.idempotencyKey,
    };
    const startAfter = job.delaySeconds !== undefined
      ? job.delaySeconds
      : job.executeAfter !== undefined
      ? new Date(job.executeAfter)
      : undefined;
    // An existing id is a no-op insert (null): same key, same job.
    await this.#boss.send(pgBossQueue(job.kind), data, {
      id,
      priority: PGBOSS_PRIORITY[job.priority ?? "normal"],
      ...(startAfter !== undefined ? { startAfter } : {}),
      ...(job.critical ? { retryLimit: CRITICAL_MAX_ATTEMPTS - 1 } : {}),
    });
    return id;
  }

  /** Gives a fetched job back without spending its attempt (cancel, resume, +1 retry). */
  async #handBack(name: string, job: BossJob, startAfter?: number): Promise<void> {
    await this.#boss.cancel(name, { id: job.id, retryCount: job.retryCount });
    await this.#boss.resume(name, job.id);
    await this.#boss.update(name, undefined, {
      id: job.id,
      retryLimit: job.retryLimit + 1,
      ...(startAfter ? { startAfter } : {}),
    });
  }

  async #settle(
    name: string,
    kind: string,
    results: Array<{ item: BossJob; outcome: Outcome<unknown> }>,
  ) {
    await Promise.all(results.map(async ({ item, outcome }) => {
      const attempt = { id: item.id, retryCount: item.retryCount };
      switch (outcome.status) {
        case "completed": {
          const out = outcome.output;
          const data = out !== null && typeof out === "object" && !Array.isArray(out)
            ? out as object
            : { value: out ?? null };
          // CommandResponse is untyped in 12.38; at run time it carries `affected`.
          const r = await this.#boss.complete(name, attempt, data) as { affected?: number };
          if (r.affected === 0) {
            console.warn(
              JSON.stringify({
                level: "warn",
                msg: "settle refused (lease lost)",
                job_id: item.id,
              }),
            );
          }
          return;
        }
        case "failed":
          await this.#boss.fail(name, attempt, {
            message: outcome.error.message,
            stack: outcome.error.stack,
          });
          return;
        case "cancelled": {
          const reason = `cancelled: ${outcome.error.message}`;
          await this.#boss.send(
            pgBossDlq(kind),
            {
              ...item.data,
              dead: { reason, attempts: item.retryCount + 1, source_id: item.id },
            } satisfies JobData,
            { retryLimit: 0 },
          );
          await this.#boss.cancel(name, attempt);
          return;
        }
        case "snoozed":
          await this.#handBack(name, item, Math.max(1, Math.round(outcome.seconds)));
          return;
      }
    }));
  }

  consume<P = Record<string, unknown>, R = unknown>(
    kind: string,
    handler: JobHandler<P, R>,
    opts: ConsumeOptions = {},
  ): Promise<ConsumeSummary> {
    if (!this.#kinds.includes(kind)) {
      return Promise.reject(new QueueError("not_found", `no pg-boss queue for kind "${kind}"`));
    }
    const name = pgBossQueue(kind);
    const worker = opts.workerId ?? workerId(`pgboss:${kind}`);
    const source: LoopSource<BossJob, R> = {
      claim: (max) => this.#boss.fetch<JobData>(name, { batchSize: max, includeMetadata: true }),
      run: (b, signal) => {
        const job: Job<P> = {
          id: b.id,
          kind,
          tenantId: b.data?.tenant_id ?? DEFAULT_TENANT,
          priority: tierOf(b.priority),
          attempt: b.retryCount + 1,
          maxAttempts: b.retryLimit + 1,
          payload: (b.data?.payload ?? {}) as P,
          headers: b.data?.headers ?? null,
          enqueuedAt: new Date(b.createdOn),
        };
        return handler(job, { signal, log: jobLogger(worker, job) });
      },
      settle: (results) => this.#settle(name, kind, results),
      release: async (items) => {
        for (const b of items) await this.#handBack(name, b);
      },
    };
    return this.#loops.run(kind, source, opts);
  }

  async #raiseAlert(tenant: string, kind: string, reason: string | null) {
    // The alert lives in Conveyor's schema when it is there (public.raise_dead_letter_alert);
    // pg-boss on a database without it just logs.
    const db = this.#boss.getDb();
    if (this.#alertFn === undefined) {
      const { rows } = await db.executeSql(
        "select to_regprocedure('public.raise_dead_letter_alert(uuid,text,text,timestamptz)') is not null as ok",
      );
      this.#alertFn = rows[0]?.ok === true;
    }
    if (!this.#alertFn) return { alert_id: null, alert_count: null };
    const { rows } = await db.executeSql(
      "select alert_id, alert_count from public.raise_dead_letter_alert($1, $2, $3)",
      [tenant, kind, reason],
    );
    return rows[0] ?? { alert_id: null, alert_count: null };
  }

  consumeDeadLetters(
    onDead: (dead: DeadLetter) => Promise<void> | void,
    opts: ConsumeOptions = {},
  ): Promise<ConsumeSummary> {
    type Item = { queue: string; kind: string; job: BossJob };
    const source: LoopSource<Item, void> = {
      claim: async (max) => {
        for (const kind of this.#kinds) {
          const queue = pgBossDlq(kind);
          const jobs = await this.#boss.fetch<JobData>(queue, {
            batchSize: max,
            includeMetadata: true,
          });
          if (jobs.length) return jobs.map((job) => ({ queue, kind, job }));
        }
        return [];
      },
      run: async ({ kind, job }) => {
        const d = job.data;
        let reason = d?.dead?.reason ?? null;
        if (!reason && job.sourceName && job.sourceId) {
          const [src] = await this.#boss.findJobs(job.sourceName, { id: job.sourceId });
          const out = src?.output as { message?: string } | undefined;
          reason = out?.message ?? "retries exhausted";
        }
        const tenant = d?.tenant_id ?? DEFAULT_TENANT;
        const alert = await this.#raiseAlert(tenant, kind, reason);
        await onDead({
          jobId: d?.dead?.source_id ?? job.sourceId ?? null,
          tenantId: tenant,
          kind,
          reason,
          attempts: d?.dead?.attempts ?? (job.sourceRetryCount ?? 0) + 1,
          alertId: alert.alert_id ?? null,
          alertCount: alert.alert_count === null ? null : Number(alert.alert_count),
        });
      },
      settle: async (results) => {
        for (const { item } of results) {
          await this.#boss.complete(item.queue, {
            id: item.job.id,
            retryCount: item.job.retryCount,
          });
        }
      },
    };
    return this.#loops.run("dlq", source, opts);
  }

  async shutdown(): Promise<void> {
    if (!(await this.#loops.close())) return;
    await this.#boss.stop({ graceful: true, close: true, timeout: 10_000 });
  }
}
