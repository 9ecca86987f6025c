/**
 * What a benchmark run measures: every case of every workload of issue 9, with its sizes
 * for the full run and for `--quick`. Each case is one system with one configuration; the
 * runner alternates them within every repetition.
 *
 * @module
 */
import type { BenchEnv } from "./env.ts";
import * as conveyor from "./systems/conveyor.ts";
import * as push from "./systems/conveyor_push.ts";
import * as fairness from "./systems/fairness.ts";
import * as graphile from "./systems/graphile.ts";
import * as pgboss from "./systems/pgboss.ts";
import * as raw from "./systems/raw.ts";
import type { Case, WorkloadId } from "./types.ts";

/** Sizes of one run mode. */
export interface Sizes {
  reps: number;
  enqueue: number;
  rpc: number;
  batch: number;
  batchChunk: number;
  drain: number;
  /** pg-boss at batchSize 1 is bounded by polling (~20 jobs/s): a small run. */
  drainPolled: number;
  /** Samples per run of a latency case (p99 is reported from ≥ 200 only, or with its n). */
  latency: number;
  latencyPolled: number;
  /** Samples of the push path (a worker function per job: slower per sample). */
  latencyPush: number;
  pipelineLatency: number;
  /** Content jobs of the cron-only case, spread over one pg_cron minute (0 = skip). */
  pipelineCron: number;
  pipelineJobs: number;
  backlogSmall: number;
  backlogLarge: number;
  /** Jobs drained (timed) out of each backlog. */
  backlogMeasure: number;
  /** Conveyor's polling worker's idle interval. */
  pollMs: number;
  /** Noisy neighbour: tenant A's ready backlog, and the seconds B and C enqueue for. */
  fairBacklog: number;
  fairSeconds: number;
  /** Concurrency keys: jobs (over 50 keys, limit 2, 8 racing workers). */
  fairKeysJobs: number;
}

/** The full run (docs/benchmarks.md). */
export const FULL: Sizes = {
  reps: 3,
  enqueue: 4000,
  rpc: 5000,
  batch: 20000,
  batchChunk: 1000,
  drain: 50000,
  drainPolled: 200,
  latency: 200,
  // pg-boss polling only: its p50 is the 2 s poll interval; 200 samples would take 7 minutes,
  // so it reports p50 and no p99.
  latencyPolled: 5,
  latencyPush: 200,
  pipelineLatency: 200,
  pipelineCron: 200,
  pipelineJobs: 1000,
  backlogSmall: 10_000,
  backlogLarge: 1_000_000,
  backlogMeasure: 8_000,
  pollMs: 100,
  fairBacklog: 100_000,
  fairSeconds: 15,
  fairKeysJobs: 1000,
};

/** `--quick`: every code path, small sizes, one repetition (< 3 minutes). */
export const QUICK: Sizes = {
  reps: 1,
  enqueue: 300,
  rpc: 500,
  batch: 4000,
  batchChunk: 1000,
  drain: 20000,
  drainPolled: 20,
  latency: 30,
  latencyPolled: 1,
  latencyPush: 10,
  pipelineLatency: 5,
  pipelineCron: 0,
  pipelineJobs: 50,
  backlogSmall: 5_000,
  backlogLarge: 50_000,
  backlogMeasure: 4_000,
  pollMs: 100,
  fairBacklog: 20_000,
  fairSeconds: 4,
  fairKeysJobs: 1000,
};

/** `--smoke`: one tiny run of every case, the same code paths (a faster local check). */
export const SMOKE: Sizes = {
  reps: 1,
  enqueue: 40,
  rpc: 40,
  batch: 400,
  batchChunk: 200,
  drain: 400,
  drainPolled: 10,
  latency: 3,
  latencyPolled: 1,
  latencyPush: 1,
  pipelineLatency: 1,
  pipelineCron: 0,
  pipelineJobs: 2,
  backlogSmall: 300,
  backlogLarge: 600,
  backlogMeasure: 200,
  pollMs: 50,
  fairBacklog: 1_000,
  fairSeconds: 1,
  fairKeysJobs: 200,
};

const V = { conveyor: "main", pgboss: pgboss.PGBOSS_VERSION, graphile: graphile.GRAPHILE_VERSION };

/** Drain shapes at equal batch and concurrency (A) and tuned (B). */
const A = { workers: 10, batch: 10, concurrency: 10 };
const B = { workers: 4, batch: 100, concurrency: 100 };
/** One pgmq worker function as the queue config's defaults run it (QUEUE_BATCH_SIZE 10, QUEUE_CONCURRENCY 4), two invocations (a kind's default max_concurrency). */
const D = { workers: 2, batch: 10, concurrency: 4 };

function shape(s: { workers: number; batch: number; concurrency: number }): string {
  return `${s.workers} worker loops × batch ${s.batch}, ${s.concurrency} jobs run at once per loop`;
}

/** Every case, grouped by workload, for the given sizes. */
export function buildPlan(z: Sizes): Case[] {
  const cases: Case[] = [];
  const add = (c: Case) => cases.push(c);

  // 1) Single-call enqueue at concurrency 1 and 10.
  for (const conc of [1, 10]) {
    const pool = `concurrency=${conc}`;
    add({
      workload: "enqueue",
      id: `enqueue.conveyor-sql.c${conc}`,
      system: "Conveyor queue_job (SQL)",
      version: V.conveyor,
      settings: `${pool}, postgres.js pool=${conc}, prepared`,
      size: z.enqueue,
      run: (e) => conveyor.enqueueSingle(e, z.enqueue, conc, "sql"),
    });
    add({
      workload: "enqueue",
      id: `enqueue.conveyor-http.c${conc}`,
      system: "Conveyor queue_job (HTTP gateway)",
      version: V.conveyor,
      settings: `${pool}, fetch keep-alive → gateway → PostgREST (db-pool 10)`,
      size: z.enqueue,
      run: (e) => conveyor.enqueueSingle(e, z.enqueue, conc, "http"),
    });
    add({
      workload: "enqueue",
      id: `enqueue.pgboss.c${conc}`,
      system: "pg-boss send()",
      version: V.pgboss,
      settings: `${pool}, pool=10`,
      size: z.enqueue,
      run: (e) => pgboss.send(e, z.enqueue, conc),
    });
    add({
      workload: "enqueue",
      id: `enqueue.graphile.c${conc}`,
      system: "graphile-worker addJob()",
      version: V.graphile,
      settings: `${pool}, pool=12`,
      size: z.enqueue,
      run: (e) => graphile.addJob(e, z.enqueue, conc),
    });
    add({
      workload: "enqueue",
      id: `enqueue.raw.c${conc}`,
      system: "raw SQL INSERT (ceiling)",
      version: "postgres.js",
      settings: `${pool}, pool=${conc}, prepared`,
      size: z.enqueue,
      run: (e) => raw.insertSingle(e, z.enqueue, conc),
    });
  }

  // Issue 4: the gateway vs direct SQL for an RPC doing one INSERT, concurrency 10.
  for (const via of ["sql", "http"] as const) {
    add({
      workload: "rpc",
      id: `rpc.${via}`,
      system: via === "sql" ? "bench_insert() over SQL" : "bench_insert() over the gateway",
      version: V.conveyor,
      settings: via === "sql"
        ? "concurrency=10, postgres.js pool=10"
        : "concurrency=10, fetch → gateway → PostgREST",
      size: z.rpc,
      unit: "req/s",
      run: (e) => conveyor.rpcInsert(e, z.rpc, 10, via),
    });
  }

  // 2) Batch enqueue.
  const chunk = z.batchChunk;
  add({
    workload: "batch",
    id: "batch.conveyor-sql",
    system: "Conveyor queue_jobs (SQL)",
    version: V.conveyor,
    settings: `${chunk} jobs/call, sequential`,
    size: z.batch,
    run: (e) => conveyor.enqueueBatch(e, z.batch, chunk, "sql"),
  });
  add({
    workload: "batch",
    id: "batch.conveyor-http",
    system: "Conveyor queue_jobs (HTTP gateway)",
    version: V.conveyor,
    settings: `${chunk} jobs/call, sequential`,
    size: z.batch,
    run: (e) => conveyor.enqueueBatch(e, z.batch, chunk, "http"),
  });
  add({
    workload: "batch",
    id: "batch.pgboss",
    system: "pg-boss insert()",
    version: V.pgboss,
    settings: `${chunk} jobs/call, sequential, pool=10`,
    size: z.batch,
    run: (e) => pgboss.insert(e, z.batch, chunk),
  });
  add({
    workload: "batch",
    id: "batch.graphile",
    system: "graphile-worker addJobs()",
    version: V.graphile,
    settings: `${chunk} jobs/call, sequential, pool=12`,
    size: z.batch,
    run: (e) => graphile.addJobs(e, z.batch, chunk),
  });
  add({
    workload: "batch",
    id: "batch.raw",
    system: "raw SQL multi-row INSERT (ceiling)",
    version: "postgres.js",
    settings: `${chunk} rows/statement, sequential`,
    size: z.batch,
    run: (e) => raw.insertBatch(e, z.batch, chunk),
  });

  // 3) End-to-end drain, no-op handler.
  const n = z.drain;
  const drainConveyor = (
    id: string,
    s: typeof A,
    via: "sql" | "rpc",
    label: string,
    audit?: "full",
  ) =>
    add({
      workload: "drain",
      id,
      system: (via === "sql"
        ? "Conveyor worker loop, direct SQL (claim_jobs/settle_jobs)"
        : "Conveyor worker loop, RPC (QueueAdapter → gateway)") +
        (audit ? `, audit = '${audit}'` : ""),
      version: V.conveyor,
      settings: `${label}: ${shape(s)}`,
      size: n,
      run: async (e: BenchEnv) => {
        const go = async () => {
          const fill = await conveyor.prefill(e, n);
          return { ...await conveyor.drain(e, n, s, via), fill };
        };
        return audit ? await conveyor.withAudit(e, audit, go) : await go();
      },
    });
  // The headline row: the production worker path (issue 16); the direct-SQL loop second.
  drainConveyor("drain.conveyor-rpc.A", A, "rpc", "equal b10/c10");
  drainConveyor("drain.conveyor-sql.A", A, "sql", "equal b10/c10");
  drainConveyor("drain.conveyor-rpc-audit.A", A, "rpc", "equal b10/c10", "full");
  drainConveyor("drain.conveyor-rpc.D", D, "rpc", "defaults");
  drainConveyor("drain.conveyor-sql.B", B, "sql", "tuned b100");
  drainConveyor("drain.conveyor-rpc.B", B, "rpc", "tuned b100");
  const boss = (id: string, label: string, s: pgboss.WorkShape, size = n, reps?: number) =>
    add({
      workload: "drain",
      id,
      system: "pg-boss work()",
      version: V.pgboss,
      settings: `${label}: batchSize=${s.batchSize} localConcurrency=${s.localConcurrency} ` +
        `poll=${s.pollingIntervalSeconds}s${
          s.burstWhenBatchFull ? " burstWhenBatchFull" : ""
        } pool=10`,
      size,
      reps,
      run: (e) => pgboss.work(e, size, s),
    });
  boss("drain.pgboss.A", "equal b10/c10", {
    batchSize: 10,
    localConcurrency: 10,
    pollingIntervalSeconds: 0.5,
    burstWhenBatchFull: true,
  });
  boss("drain.pgboss.B", "tuned b100", {
    batchSize: 100,
    localConcurrency: 4,
    pollingIntervalSeconds: 0.5,
    burstWhenBatchFull: true,
  });
  boss(
    "drain.pgboss.D",
    "batchSize 1 (default), polling-bound",
    {
      batchSize: 1,
      localConcurrency: 10,
      pollingIntervalSeconds: 0.5,
      burstWhenBatchFull: false,
    },
    z.drainPolled,
    1,
  );
  const gw = (id: string, label: string, s: graphile.RunShape) =>
    add({
      workload: "drain",
      id,
      system: "graphile-worker run()",
      version: V.graphile,
      settings: `${label}: concurrency=${s.concurrency} ` +
        (s.localQueue
          ? `localQueue.size=${s.localQueue} refetchDelay=${s.refetchDelayMs}ms `
          : "localQueue off ") +
        `completeJobBatchDelay=${s.completeJobBatchDelay} pool=${Math.max(10, s.concurrency + 2)}`,
      size: n,
      run: (e) => graphile.work(e, n, s),
    });
  gw("drain.graphile.D", "defaults", { concurrency: 10, completeJobBatchDelay: -1 });
  gw("drain.graphile.A", "tuned c10", {
    concurrency: 10,
    localQueue: 11,
    refetchDelayMs: 10,
    completeJobBatchDelay: 0,
  });
  gw("drain.graphile.B", "tuned (perfTest)", {
    concurrency: 24,
    localQueue: 500,
    refetchDelayMs: 10,
    completeJobBatchDelay: 0,
  });
  for (const [batch, clients] of [[10, 8], [100, 4]] as const) {
    add({
      workload: "drain",
      id: `drain.pgmq.b${batch}`,
      system: "raw pgmq read+archive, one statement (ceiling)",
      version: "pgmq 1.5.1 API (local compat)",
      settings: `batch=${batch}, ${clients} clients`,
      size: n,
      run: (e) => raw.pgmqReadArchive(e, n, batch, clients),
    });
  }

  // 4) Latency enqueue → handler start, one job in flight.
  add({
    workload: "latency",
    id: "latency.conveyor-poll",
    system: "Conveyor, polling worker (no push kick)",
    version: V.conveyor,
    settings:
      `queue_job over SQL; worker loop polls claim_jobs every ${z.pollMs} ms when idle, no LISTEN`,
    size: z.latency,
    unit: "ms",
    run: (e) => conveyor.latencyPolling(e, z.latency, z.pollMs),
  });
  add({
    workload: "latency",
    id: "latency.conveyor-push",
    system: "Conveyor, push kick → dispatcher → worker function",
    version: V.conveyor,
    settings:
      "queue_job over SQL; kick (debounced, pg_net after COMMIT) → content-queue-dispatcher → " +
      "pg_net → enrich-worker (functions host) → claim_jobs; started = jobs.started_at; next job after completion",
    size: z.latencyPush,
    unit: "ms",
    skip: (e) => push.pushMissing(e, "kick"),
    run: (e) => push.latencyPush(e, z.latencyPush, 3),
  });
  add({
    workload: "latency",
    id: "latency.pgboss-notify",
    system: "pg-boss, LISTEN/NOTIFY",
    version: V.pgboss,
    settings: "batchSize=1 localConcurrency=1, useListenNotify + queue notify, send()",
    size: z.latency,
    unit: "ms",
    run: (e) => pgboss.latency(e, z.latency, true, Math.min(50, z.latency)),
  });
  add({
    workload: "latency",
    id: "latency.pgboss-poll",
    system: "pg-boss, polling only",
    version: V.pgboss,
    settings: "batchSize=1 localConcurrency=1, pollingIntervalSeconds=2 (default), send()",
    size: z.latencyPolled,
    unit: "ms",
    reps: 1,
    run: (e) => pgboss.latency(e, z.latencyPolled, false, 1),
  });
  add({
    workload: "latency",
    id: "latency.graphile",
    system: "graphile-worker, LISTEN/NOTIFY",
    version: V.graphile,
    settings: "concurrency=1 defaults, add_job() via SQL",
    size: z.latency,
    unit: "ms",
    run: (e) => graphile.latency(e, z.latency, Math.min(100, z.latency)),
  });

  // 5) Backlog scale: the same drain with a small and a large backlog waiting.
  for (const backlog of [z.backlogSmall, z.backlogLarge]) {
    add({
      workload: "backlog",
      id: `backlog.conveyor-sql.${backlog}`,
      system: "Conveyor worker loop, direct SQL",
      version: V.conveyor,
      settings: `${backlog.toLocaleString("en-US")} waiting; first ${
        z.backlogMeasure.toLocaleString("en-US")
      } drained; ${shape(A)}`,
      size: z.backlogMeasure,
      run: async (e) => {
        const fill = await conveyor.prefill(e, backlog);
        const r = await conveyor.drain(e, backlog, A, "sql", { stopAfter: z.backlogMeasure });
        return { ...r, fill };
      },
    });
  }
  // 6) Content pipeline (push path, stage workers in the functions host).
  add({
    workload: "pipeline",
    id: "pipeline.latency",
    system: "Conveyor content pipeline, one job at a time",
    version: V.conveyor,
    settings:
      "queue_content_job over HTTP → six stage workers (push triggers); created → finished; " +
      "stage limits from content_stage_config",
    size: z.pipelineLatency,
    unit: "ms",
    skip: (e) => push.pushMissing(e, "pipeline"),
    run: (e) => push.pipelineLatency(e, z.pipelineLatency),
  });
  add({
    workload: "pipeline",
    id: "pipeline.cron-only",
    system: "Conveyor content pipeline, cron only (no push)",
    version: V.conveyor,
    settings: "push_kicks off: only pg_cron's `planperfect-content-queue-dispatcher` " +
      `(every minute) starts work; ${z.pipelineCron} jobs enqueued at random moments of one ` +
      "minute; created → finished",
    size: z.pipelineCron,
    unit: "ms",
    reps: 1,
    skip: async (e) =>
      z.pipelineCron === 0
        ? "full run only (it waits for pg_cron's minute ticks)"
        : await push.pushMissing(e, "pipeline"),
    run: (e) => push.pipelineCronOnly(e, z.pipelineCron),
  });
  add({
    workload: "pipeline",
    id: "pipeline.throughput",
    system: "Conveyor content pipeline, throughput",
    version: V.conveyor,
    settings:
      `${z.pipelineJobs} jobs enqueued from 10 loops over HTTP; first enqueue → last finish`,
    size: z.pipelineJobs,
    reps: 1,
    skip: (e) => push.pushMissing(e, "pipeline"),
    run: (e) => push.pipelineThroughput(e, z.pipelineJobs),
  });
  // 7) Fair share and concurrency keys (issue 21).
  for (const via of ["sql", "rpc"] as const) {
    for (const on of [true, false]) {
      add({
        workload: "fairness",
        id: `fair.overhead-${via}.${on ? "on" : "off"}`,
        system: `Conveyor drain, one tenant, fair share ${on ? "on" : "off"} (` +
          (via === "sql" ? "direct SQL" : "RPC path") + ")",
        version: V.conveyor,
        settings: `conveyor.job_kinds.fair_share = ${on}; equal b10/c10: ${shape(A)}`,
        size: n,
        run: (e) => fairness.drainOneTenant(e, n, A, via, on),
      });
    }
  }
  const noisy = { backlog: z.fairBacklog, seconds: z.fairSeconds, workers: 10, batch: 10 };
  for (
    const [mode, label] of [["idle", "A idle"], ["on", "fair share on"], ["off", "fair share off"]]
  ) {
    add({
      workload: "fairness",
      id: `fair.noisy.${mode}`,
      system: `Noisy neighbour: B and C enqueue → start, ${label}`,
      version: V.conveyor,
      settings: (mode === "idle"
        ? "tenant A has nothing queued"
        : `tenant A has ${z.fairBacklog.toLocaleString("en-US")} jobs ready`) +
        `; B and C enqueue ${fairness.LIGHT_RATE} jobs/s each for ${z.fairSeconds} s with queue_job; ` +
        `10 worker loops × batch 10 (direct SQL, settle_and_claim_jobs), no-op handler`,
      size: 2 * fairness.LIGHT_RATE * z.fairSeconds,
      unit: "ms",
      run: (e) =>
        fairness.noisyNeighbour(
          e,
          { ...noisy, backlog: mode === "idle" ? 0 : noisy.backlog },
          mode !== "off",
        ),
    });
  }
  add({
    workload: "fairness",
    id: "fair.keys",
    system: "Concurrency keys: racing workers with kills",
    version: V.conveyor,
    settings: `${z.fairKeysJobs.toLocaleString("en-US")} jobs over 50 keys, concurrency_limit 2; ` +
      "8 loops × batch 10 (settle_and_claim_jobs, 2 s leases), jobs run 5–25 ms; two loops killed " +
      "every 20th batch (their jobs come back when the leases expire); ledger sampled every ~2 ms",
    size: z.fairKeysJobs,
    run: (e) =>
      fairness.concurrencyKeys(e, { jobs: z.fairKeysJobs, keys: 50, limit: 2, workers: 8 }),
  });
  return cases;
}

/** The order workloads run in: the push workloads last, once the pg_net worker is up. */
export const RUN_ORDER: WorkloadId[] = [
  "enqueue",
  "rpc",
  "batch",
  "drain",
  "backlog",
  "fairness",
  "latency",
  "pipeline",
];

/** Workloads in report order, with their titles. */
export const WORKLOADS: Array<{ id: WorkloadId; title: string }> = [
  { id: "enqueue", title: "1. Enqueue, one job per call" },
  { id: "rpc", title: "1b. Gateway vs direct SQL: an RPC doing one INSERT (issue 4)" },
  { id: "batch", title: "2. Enqueue in batches" },
  { id: "drain", title: "3. End-to-end drain, no-op handler" },
  { id: "latency", title: "4. Latency, enqueue → handler start (one job in flight)" },
  { id: "backlog", title: "5. Backlog scale" },
  { id: "pipeline", title: "6. Content pipeline" },
  { id: "fairness", title: "7. Fair share and concurrency keys (issue 21)" },
];
