/**
 * pg-boss 12.38.0 under benchmark, run by Deno's npm support (the anchors ran it on Node 20).
 * Every run starts from a fresh schema: `DROP SCHEMA pgboss CASCADE`, `start()` (which
 * installs it), `createQueue` with default options. Maintenance and monitoring stay at
 * their defaults, as in the anchors.
 *
 * @module
 */
import postgres from "postgres";
import { PgBoss } from "npm:pg-boss@12.38.0";
import { type BenchEnv, DBS } from "../env.ts";
import { meter } from "../meter.ts";
import { DeliveryCounter, drainRun, enqueueRun, waitUntil, withTimeout } from "../stats.ts";
import type { RunResult } from "../types.ts";
import { latencyResult, loops } from "./conveyor.ts";

/** The pinned version. */
export const PGBOSS_VERSION = "12.38.0";

const QUEUE = "bench";

/** A started pg-boss on a fresh schema with the bench queue. */
async function fresh(
  env: BenchEnv,
  opts: { pool: number; listen?: boolean; notifyQueue?: boolean },
): Promise<PgBoss> {
  const sql = postgres(env.url(DBS.pgboss), { max: 1, onnotice: () => {} });
  try {
    await sql`drop schema if exists pgboss cascade`;
  } finally {
    await sql.end();
  }
  const boss = new PgBoss({
    connectionString: env.url(DBS.pgboss),
    max: opts.pool,
    useListenNotify: opts.listen ?? false,
  });
  boss.on("error", (e: unknown) => env.log(`pg-boss error: ${(e as Error).message}`));
  await boss.start();
  await boss.createQueue(QUEUE, opts.notifyQueue ? { notify: true } : {});
  return boss;
}

async function stop(boss: PgBoss): Promise<void> {
  await boss.stop({ graceful: false, close: true, timeout: 5_000 });
}

async function countJobs(env: BenchEnv, where = "true") {
  const sql = postgres(env.url(DBS.pgboss), { max: 1, onnotice: () => {} });
  try {
    const [r] = await sql.unsafe<{ rows: number; distinct: number; open: number }[]>(`
      select count(*)::int as rows, count(distinct data ->> 'i')::int as distinct,
             count(*) filter (where state <> 'completed')::int as open
      from pgboss.job where name = '${QUEUE}' and ${where}`);
    return r!;
  } finally {
    await sql.end();
  }
}

/**
 * An enqueue run of `n` jobs on a fresh instance (pool = 10, as the anchors): `enqueue`
 * does the timed part and returns its seconds; the cost is metered around it.
 */
async function enqueueWith(
  env: BenchEnv,
  n: number,
  enqueue: (boss: PgBoss) => Promise<number>,
): Promise<RunResult> {
  const boss = await fresh(env, { pool: 10 });
  try {
    const done = await meter(env);
    const seconds = await enqueue(boss);
    const cost = await done(n);
    const r = await countJobs(env);
    return enqueueRun(n, r, seconds, cost);
  } finally {
    await stop(boss);
  }
}

/** `send()` from `conc` loops (pool = 10, as the anchors). */
export function send(env: BenchEnv, n: number, conc: number): Promise<RunResult> {
  return enqueueWith(env, n, (boss) => loops(n, conc, (i) => boss.send(QUEUE, { i })));
}

/** `insert()` with `chunk` jobs per call, sequential. */
export function insert(env: BenchEnv, n: number, chunk: number): Promise<RunResult> {
  return enqueueWith(env, n, async (boss) => {
    const t0 = performance.now();
    for (let s = 0; s < n; s += chunk) {
      await boss.insert(
        QUEUE,
        Array.from({ length: Math.min(chunk, n - s) }, (_, k) => ({ data: { i: s + k } })),
      );
    }
    return (performance.now() - t0) / 1000;
  });
}

/** How pg-boss works a queue. */
export interface WorkShape {
  batchSize: number;
  localConcurrency: number;
  pollingIntervalSeconds: number;
  burstWhenBatchFull: boolean;
}

/**
 * End-to-end: pre-fill `n` jobs with insert() (untimed), settle, then `work()` with a no-op
 * handler. Timed from the first handler call until every job shows `completed`.
 */
export async function work(env: BenchEnv, n: number, shape: WorkShape): Promise<RunResult> {
  const boss = await fresh(env, { pool: 10 });
  try {
    for (let s = 0; s < n; s += 5000) {
      await boss.insert(
        QUEUE,
        Array.from({ length: Math.min(5000, n - s) }, (_, k) => ({ data: { i: s + k } })),
      );
    }
    await env.settle(DBS.pgboss);
    const done = await meter(env);
    const counter = new DeliveryCounter();
    let t0 = 0;
    await boss.work(QUEUE, {
      batchSize: shape.batchSize,
      localConcurrency: shape.localConcurrency,
      pollingIntervalSeconds: shape.pollingIntervalSeconds,
      burstWhenBatchFull: shape.burstWhenBatchFull,
    }, (jobs: { id: string }[]) => {
      if (t0 === 0) t0 = performance.now();
      for (const j of jobs) counter.hit(j.id);
      return Promise.resolve();
    });
    const limit = 600_000;
    await waitUntil(() => counter.calls >= n, limit, 5);
    const sql = postgres(env.url(DBS.pgboss), { max: 1, onnotice: () => {} });
    let ids: string[];
    let seconds: number;
    let cost;
    try {
      await waitUntil(
        async () => {
          const [r] = await sql`select count(*)::int as open from pgboss.job
          where name = ${QUEUE} and state <> 'completed'`;
          return r!.open === 0;
        },
        limit,
        10,
      );
      seconds = (performance.now() - t0) / 1000;
      cost = await done(n);
      ids = (await sql<{ id: string }[]>`select id from pgboss.job where name = ${QUEUE}`).map((
        r,
      ) => r.id);
    } finally {
      await sql.end();
    }
    await boss.offWork(QUEUE, { wait: false });
    return drainRun(n, seconds, counter.check(ids), cost);
  } finally {
    await stop(boss);
  }
}

/**
 * Enqueue → handler start, one job in flight (batchSize 1, localConcurrency 1): with
 * LISTEN/NOTIFY (`useListenNotify` + a `notify` queue) or polling only (interval 2 s, the
 * default). Warm-up: `warmup` sequential sends.
 */
export async function latency(
  env: BenchEnv,
  samples: number,
  notify: boolean,
  warmup: number,
): Promise<RunResult> {
  const boss = await fresh(env, { pool: 10, listen: notify, notifyQueue: notify });
  try {
    const counter = new DeliveryCounter();
    let waiting: ((t: number) => void) | null = null;
    await boss.work(QUEUE, { batchSize: 1, localConcurrency: 1 }, (jobs: { id: string }[]) => {
      const t = performance.now();
      for (const j of jobs) counter.hit(j.id);
      waiting?.(t);
      return Promise.resolve();
    });
    const lat: number[] = [];
    let done;
    for (let i = 0; i < warmup + samples; i++) {
      if (i === warmup) done = await meter(env);
      const started = new Promise<number>((r) => (waiting = r));
      const t0 = performance.now();
      await boss.send(QUEUE, { i });
      const t1 = await withTimeout(started, 30_000, `job ${i} to start`);
      if (i >= warmup) lat.push(t1 - t0);
    }
    const cost = await done?.(samples);
    await boss.offWork(QUEUE, { wait: false });
    return latencyResult(lat, counter.check(warmup + samples), cost);
  } finally {
    await stop(boss);
  }
}
