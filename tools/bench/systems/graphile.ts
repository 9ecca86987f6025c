/**
 * graphile-worker 0.18.0 under benchmark, run by Deno's npm support (the anchors ran it on
 * Node 20). Every run starts from a fresh schema: `DROP SCHEMA graphile_worker CASCADE`,
 * then `runMigrations`. Pool size is max(10, concurrency + 2), following its docs.
 *
 * @module
 */
import postgres from "postgres";
import { makeWorkerUtils, run, runMigrations } from "npm:graphile-worker@0.18.0";
import type { Logger as GwLogger, WorkerUtils } from "npm:graphile-worker@0.18.0";
import { Logger } from "npm:graphile-worker@0.18.0";
import { type BenchEnv, DBS } from "../env.ts";
import { meter } from "../meter.ts";
import { DeliveryCounter, drainRun, enqueueRun, waitUntil, withTimeout } from "../stats.ts";
import type { RunResult } from "../types.ts";
import { latencyResult, loops } from "./conveyor.ts";

/** The pinned version. */
export const GRAPHILE_VERSION = "0.18.0";

const TASK = "bench";

/** Errors only: graphile logs every worker start/stop at info. */
const quiet: GwLogger = new Logger(() => (level: string, message: string) => {
  if (level === "error") console.error(`graphile-worker: ${message}`);
});

async function fresh(env: BenchEnv): Promise<void> {
  const sql = postgres(env.url(DBS.graphile), { max: 1, onnotice: () => {} });
  try {
    await sql`drop schema if exists graphile_worker cascade`;
  } finally {
    await sql.end();
  }
  await runMigrations({ connectionString: env.url(DBS.graphile), logger: quiet });
}

async function counts(env: BenchEnv) {
  const sql = postgres(env.url(DBS.graphile), { max: 1, onnotice: () => {} });
  try {
    const [r] = await sql<{ rows: number; distinct: number }[]>`
      select count(*)::int as rows, count(distinct payload ->> 'i')::int as distinct
      from graphile_worker._private_jobs`;
    return r!;
  } finally {
    await sql.end();
  }
}

/**
 * An enqueue run of `n` jobs on worker utils over a fresh schema (pool 12, as the anchors):
 * `enqueue` does the timed part and returns its seconds; the cost is metered around it.
 */
async function enqueueWith(
  env: BenchEnv,
  n: number,
  enqueue: (utils: WorkerUtils) => Promise<number>,
): Promise<RunResult> {
  await fresh(env);
  const utils = await makeWorkerUtils({
    connectionString: env.url(DBS.graphile),
    maxPoolSize: 12,
    logger: quiet,
  });
  try {
    const done = await meter(env);
    const seconds = await enqueue(utils);
    const cost = await done(n);
    return enqueueRun(n, await counts(env), seconds, cost);
  } finally {
    await utils.release();
  }
}

/** `addJob()` from `conc` loops (pool 12, as the anchors). */
export function addJob(env: BenchEnv, n: number, conc: number): Promise<RunResult> {
  return enqueueWith(env, n, (utils) => loops(n, conc, (i) => utils.addJob(TASK, { i })));
}

/** `addJobs()` with `chunk` jobs per call, sequential. */
export function addJobs(env: BenchEnv, n: number, chunk: number): Promise<RunResult> {
  return enqueueWith(env, n, async (utils) => {
    const t0 = performance.now();
    for (let s = 0; s < n; s += chunk) {
      await utils.addJobs(
        Array.from(
          { length: Math.min(chunk, n - s) },
          (_, k) => ({ identifier: TASK, payload: { i: s + k } }),
        ),
      );
    }
    return (performance.now() - t0) / 1000;
  });
}

/** How graphile-worker runs. */
export interface RunShape {
  concurrency: number;
  /** localQueue size (off when absent). */
  localQueue?: number;
  refetchDelayMs?: number;
  /** -1 = off (the default). */
  completeJobBatchDelay: number;
}

/**
 * End-to-end: pre-fill with addJobs (untimed), settle, then `run()` with a no-op task.
 * Timed from the first task call until `_private_jobs` is empty.
 */
export async function work(env: BenchEnv, n: number, shape: RunShape): Promise<RunResult> {
  await fresh(env);
  const utils = await makeWorkerUtils({ connectionString: env.url(DBS.graphile), logger: quiet });
  try {
    for (let s = 0; s < n; s += 5000) {
      await utils.addJobs(
        Array.from(
          { length: Math.min(5000, n - s) },
          (_, k) => ({ identifier: TASK, payload: { i: s + k } }),
        ),
      );
    }
  } finally {
    await utils.release();
  }
  const sql = postgres(env.url(DBS.graphile), { max: 1, onnotice: () => {} });
  try {
    const ids =
      (await sql<{ id: string }[]>`select id::text as id from graphile_worker._private_jobs`)
        .map((r) => r.id);
    await env.settle(DBS.graphile);
    const done = await meter(env);
    const counter = new DeliveryCounter();
    let t0 = 0;
    const worker: Record<string, unknown> = { completeJobBatchDelay: shape.completeJobBatchDelay };
    if (shape.localQueue) {
      worker.localQueue = {
        size: shape.localQueue,
        refetchDelay: { durationMs: shape.refetchDelayMs ?? 10 },
      };
    }
    const runner = await run(
      {
        connectionString: env.url(DBS.graphile),
        concurrency: shape.concurrency,
        maxPoolSize: Math.max(10, shape.concurrency + 2),
        noHandleSignals: true,
        logger: quiet,
        taskList: {
          [TASK]: (_payload: unknown, helpers: { job: { id: string } }) => {
            if (t0 === 0) t0 = performance.now();
            counter.hit(String(helpers.job.id));
            return Promise.resolve();
          },
        },
        preset: { worker },
      } as Parameters<typeof run>[0],
    );
    try {
      await waitUntil(() => counter.calls >= n, 600_000, 5);
      await waitUntil(
        async () => {
          const [r] = await sql`select count(*)::int as n from graphile_worker._private_jobs`;
          return r!.n === 0;
        },
        600_000,
        10,
      );
      const seconds = (performance.now() - t0) / 1000;
      const cost = await done(n);
      return drainRun(n, seconds, counter.check(ids), cost);
    } finally {
      await runner.stop();
    }
  } finally {
    await sql.end();
  }
}

/**
 * Enqueue → task start, one job in flight, concurrency 1 and default settings; jobs added
 * with `graphile_worker.add_job()` over SQL, as graphile's own latency test does. Warm-up:
 * `warmup` jobs in one statement, drained, then a 1 s pause.
 */
export async function latency(env: BenchEnv, samples: number, warmup: number): Promise<RunResult> {
  await fresh(env);
  const sql = postgres(env.url(DBS.graphile), { max: 1, onnotice: () => {} });
  const counter = new DeliveryCounter();
  let waiting: ((t: number) => void) | null = null;
  const runner = await run(
    {
      connectionString: env.url(DBS.graphile),
      concurrency: 1,
      noHandleSignals: true,
      logger: quiet,
      taskList: {
        [TASK]: (_payload: unknown, helpers: { job: { id: string } }) => {
          const t = performance.now();
          counter.hit(String(helpers.job.id));
          waiting?.(t);
          return Promise.resolve();
        },
      },
    } as Parameters<typeof run>[0],
  );
  try {
    await sql`select graphile_worker.add_job(${TASK}::text, json_build_object('w', g))
      from generate_series(1, ${warmup}::int) g`;
    await waitUntil(() => counter.calls >= warmup, 60_000, 5);
    await new Promise((r) => setTimeout(r, 1000));
    const lat: number[] = [];
    const done = await meter(env);
    for (let i = 0; i < samples; i++) {
      const started = new Promise<number>((r) => (waiting = r));
      const t0 = performance.now();
      await sql`select graphile_worker.add_job(${TASK}::text, ${JSON.stringify({ i })}::json)`;
      lat.push((await withTimeout(started, 30_000, `job ${i} to start`)) - t0);
    }
    const cost = await done(samples);
    return latencyResult(lat, counter.check(warmup + samples), cost);
  } finally {
    await runner.stop();
    await sql.end();
  }
}
