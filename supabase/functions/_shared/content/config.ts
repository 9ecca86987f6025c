/**
 * Stage worker configuration from the environment, validated with zod; a bad value stops
 * the worker with a message naming the variable.
 *
 * @module
 */
import { z } from "../deps.ts";
import { envInt } from "../config.ts";
import { QueueError } from "../errors.ts";
import { type ConcurrencyOverrides, readConcurrencyOverrides } from "../dispatch/overrides.ts";

const schema = z.object({
  // Edge functions get 150 s of wall clock on the free tier: stop claiming well before.
  CONTENT_WORKER_BUDGET_MS: envInt("CONTENT_WORKER_BUDGET_MS", 120_000, 1_000, 3_600_000),
  CONTENT_STAGE_TIMEOUT_MS: envInt("CONTENT_STAGE_TIMEOUT_MS", 30_000, 100, 3_600_000),
  CONTENT_LEASE_SEC: envInt("CONTENT_LEASE_SEC", 60, 1, 3_600),
  CONTENT_HEARTBEAT_MS: envInt("CONTENT_HEARTBEAT_MS", 20_000, 0, 3_600_000),
  CONTENT_RETRY_WAIT_MAX_MS: envInt("CONTENT_RETRY_WAIT_MAX_MS", 15_000, 0, 600_000),
});

/** Validated stage worker configuration. */
export interface StageWorkerConfig {
  /** Stop claiming once this much wall clock has passed. */
  budgetMs: number;
  /** Deadline of one stage handler. */
  stageTimeoutMs: number;
  /** Lease of a claim; longer than the deadline so a live handler never loses its lease. */
  leaseSec: number;
  /** Lease heartbeat interval (0 = none). */
  heartbeatMs: number;
  /** Longest a worker waits for the retry of an item it failed (within its budget). */
  retryWaitMaxMs: number;
  /** CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY overrides. */
  overrides: ConcurrencyOverrides;
}

/** Reads and validates the configuration. */
export function loadStageWorkerConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): StageWorkerConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new QueueError(
      "config_invalid",
      `invalid stage worker configuration: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
    );
  }
  const c = parsed.data;
  if (c.CONTENT_STAGE_TIMEOUT_MS >= c.CONTENT_LEASE_SEC * 1000) {
    throw new QueueError(
      "config_invalid",
      "invalid stage worker configuration: CONTENT_STAGE_TIMEOUT_MS must be shorter than " +
        "CONTENT_LEASE_SEC, or a stage could be claimed again while its handler still runs",
    );
  }
  return {
    budgetMs: c.CONTENT_WORKER_BUDGET_MS,
    stageTimeoutMs: c.CONTENT_STAGE_TIMEOUT_MS,
    leaseSec: c.CONTENT_LEASE_SEC,
    heartbeatMs: c.CONTENT_HEARTBEAT_MS,
    retryWaitMaxMs: c.CONTENT_RETRY_WAIT_MAX_MS,
    overrides: readConcurrencyOverrides(env),
  };
}
