/**
 * Queue runtime configuration from the environment (seed 002's variables), validated with
 * zod. A bad value stops start-up with a message naming the variable.
 *
 * @module
 */
import { z } from "./deps.ts";
import { QueueError } from "./errors.ts";

/**
 * A zod field for an integer environment variable: absent or blank → `def`; anything else
 * must be a whole number in [min, max], or validation fails with a message naming `name`.
 */
export const envInt = (name: string, def: number, min: number, max: number) =>
  z.string().optional().transform((v, ctx) => {
    if (v === undefined || v.trim() === "") return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `${name} must be a whole number between ${min} and ${max} (got "${v}")`,
      });
      return z.NEVER;
    }
    return n;
  });

const schema = z.object({
  QUEUE_PROVIDER: z.enum(["pgmq", "pgboss"], {
    errorMap: () => ({ message: 'QUEUE_PROVIDER must be "pgmq" or "pgboss"' }),
  }).default("pgmq"),
  PG_BOSS_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]*$/, {
    message: "PG_BOSS_SCHEMA must be a lower-case SQL identifier",
  }).default("pgboss"),
  QUEUE_VISIBILITY_SEC: envInt("QUEUE_VISIBILITY_SEC", 90, 1, 43_200),
  QUEUE_MAX_ATTEMPTS: envInt("QUEUE_MAX_ATTEMPTS", 3, 1, 100),
  QUEUE_RETRY_BACKOFF_MS_BASE: envInt("QUEUE_RETRY_BACKOFF_MS_BASE", 1_000, 0, 3_600_000),
  QUEUE_RETRY_BACKOFF_MS_MAX: envInt("QUEUE_RETRY_BACKOFF_MS_MAX", 60_000, 0, 86_400_000),
  QUEUE_CONCURRENCY: envInt("QUEUE_CONCURRENCY", 4, 1, 1_000),
  QUEUE_BATCH_SIZE: envInt("QUEUE_BATCH_SIZE", 10, 1, 1_000),
  // pg-boss provider only (its deleteAfterSeconds). With the default pgmq provider retention
  // is the database setting conveyor.settings.retention_hours, read by the hourly pg_cron
  // prune (0056): `update conveyor.settings set value = '168' where key = 'retention_hours'`.
  RETENTION_HOURS: envInt("RETENTION_HOURS", 72, 1, 87_600),
  // Edge functions get 150 s of wall clock on the free tier: stop claiming well before.
  WORKER_BUDGET_MS: envInt("WORKER_BUDGET_MS", 120_000, 1_000, 3_600_000),
  JOB_TIMEOUT_MS: envInt("JOB_TIMEOUT_MS", 60_000, 100, 3_600_000),
  // A drain that found its queue empty waits for a job due this soon (delay, retry) instead
  // of leaving it to the next cron minute; 0 = never wait.
  QUEUE_DUE_WAIT_MAX_MS: envInt("QUEUE_DUE_WAIT_MAX_MS", 15_000, 0, 600_000),
  // A drain whose queue ran dry keeps polling it this long (every 25 ms) before it stops, so
  // a job enqueued meanwhile starts at once instead of waiting for a debounced kick; 0 = stop.
  QUEUE_IDLE_LINGER_MS: envInt("QUEUE_IDLE_LINGER_MS", 1_000, 0, 60_000),
});

/** Validated queue configuration. */
export interface QueueConfig {
  provider: "pgmq" | "pgboss";
  pgBossSchema: string;
  visibilitySec: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  concurrency: number;
  batchSize: number;
  /** pg-boss provider only; pgmq's retention is `conveyor.settings.retention_hours`. */
  retentionHours: number;
  budgetMs: number;
  jobTimeoutMs: number;
  /** Longest a drain waits, once its queue is empty, for a job that becomes due. */
  dueWaitMaxMs: number;
  /** How long a drain keeps polling its empty queue before it stops. */
  idleLingerMs: number;
}

/** Reads and validates the configuration; throws QueueError("config_invalid") naming the variable. */
export function loadQueueConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): QueueConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => i.message).join("; ");
    throw new QueueError("config_invalid", `invalid queue configuration: ${msg}`);
  }
  const c = parsed.data;
  if (c.QUEUE_RETRY_BACKOFF_MS_MAX < c.QUEUE_RETRY_BACKOFF_MS_BASE) {
    throw new QueueError(
      "config_invalid",
      "invalid queue configuration: QUEUE_RETRY_BACKOFF_MS_MAX must not be below QUEUE_RETRY_BACKOFF_MS_BASE",
    );
  }
  if (c.JOB_TIMEOUT_MS >= c.QUEUE_VISIBILITY_SEC * 1000) {
    throw new QueueError(
      "config_invalid",
      "invalid queue configuration: JOB_TIMEOUT_MS must be shorter than QUEUE_VISIBILITY_SEC, " +
        "or a job would become visible to other workers while it still runs",
    );
  }
  return {
    provider: c.QUEUE_PROVIDER,
    pgBossSchema: c.PG_BOSS_SCHEMA,
    visibilitySec: c.QUEUE_VISIBILITY_SEC,
    maxAttempts: c.QUEUE_MAX_ATTEMPTS,
    backoffBaseMs: c.QUEUE_RETRY_BACKOFF_MS_BASE,
    backoffMaxMs: c.QUEUE_RETRY_BACKOFF_MS_MAX,
    concurrency: c.QUEUE_CONCURRENCY,
    batchSize: c.QUEUE_BATCH_SIZE,
    retentionHours: c.RETENTION_HOURS,
    budgetMs: c.WORKER_BUDGET_MS,
    jobTimeoutMs: c.JOB_TIMEOUT_MS,
    dueWaitMaxMs: c.QUEUE_DUE_WAIT_MAX_MS,
    idleLingerMs: c.QUEUE_IDLE_LINGER_MS,
  };
}
