/**
 * Conveyor through its push path, with the pg_net worker and the edge functions running as
 * the stack runs them: enqueue → debounced dispatcher kick (sent by pg_net after COMMIT) →
 * content-queue-dispatcher → pg_net → the worker function → claim. And the content pipeline:
 * queue_content_job → six stage workers, each completed stage triggering the next.
 *
 * The clock for "started" is the database's (jobs.started_at is set by the claim; the
 * pipeline's created_at/finished_at); the benchmark runs on the same host, so client and
 * server read the same system clock.
 *
 * @module
 */
import { type BenchEnv, DISPATCHER_CRON_JOB } from "../env.ts";
import { meter } from "../meter.ts";
import { DeliveryCounter, percentile, sleep } from "../stats.ts";
import type { RunResult } from "../types.ts";
import { conveyorSql, httpRpc, KIND, latencyResult, loops, reset } from "./conveyor.ts";

/** Polls `q` every `everyMs` until it returns a row, or throws after `timeoutMs`. */
async function pollRow<T>(
  q: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs: number,
  what: string,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const r = await q();
    if (r !== undefined) return r;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Enqueue (queue_job over SQL) → claimed by a worker function started by the push kick.
 * One job in flight: the next is enqueued once the previous one has completed.
 */
export async function latencyPush(
  env: BenchEnv,
  samples: number,
  warmup: number,
): Promise<RunResult> {
  await reset(env);
  await env.startNetWorker();
  await env.setPush(true);
  const sql = conveyorSql(env, 2);
  const counter = new DeliveryCounter();
  const lat: number[] = [];
  try {
    const tag = crypto.randomUUID().slice(0, 8);
    let done;
    for (let i = 0; i < warmup + samples; i++) {
      if (i === warmup) done = await meter(env);
      const key = `${tag}-${i}`;
      const body = {
        idempotency_key: key,
        kind: KIND,
        payload: { email: `bench+${i}@example.com` },
      };
      const t0 = Date.now();
      await sql`select public.queue_job(${sql.json(body)})`;
      const started = await pollRow(
        async () => {
          const [r] = await sql<{ ms: number }[]>`
          select extract(epoch from started_at) * 1000 as ms from public.jobs
          where idempotency_key = ${key} and started_at is not null`;
          return r ? Number(r.ms) : undefined;
        },
        30_000,
        2,
        `job ${key} to be claimed`,
      );
      await pollRow(
        async () => {
          const [r] =
            await sql`select 1 from public.jobs where idempotency_key = ${key} and status = 'completed'`;
          return r ? true : undefined;
        },
        30_000,
        5,
        `job ${key} to complete`,
      );
      counter.hit(key);
      if (i >= warmup) lat.push(started - t0);
    }
    const cost = await done?.(samples);
    const [dup] = await sql<{ n: number }[]>`
      select coalesce(sum(attempts - 1), 0)::int as n from public.jobs`;
    const delivery = counter.check(warmup + samples);
    delivery.duplicates = dup!.n;
    return latencyResult(lat, delivery, cost);
  } finally {
    await env.setPush(false);
    await sql.end();
  }
}

function brief(i: number) {
  return { topic: `benchmark topic ${i}`, audience: "engineers", keywords: ["queues", "postgres"] };
}

/** Six-stage check: every job completed with each stage completed once. */
async function pipelineDelivery(env: BenchEnv, tag: string, n: number) {
  const sql = conveyorSql(env, 1);
  try {
    const [r] = await sql<{ done: number; stages: number; extra: number }[]>`
      select count(*) filter (where j.status = 'completed')::int as done,
             (select count(*)::int from public.content_job_stages s
              join public.content_jobs j2 on j2.id = s.job_id
              where j2.idempotency_key like ${tag + "%"} and s.status = 'completed') as stages,
             (select coalesce(sum(s.attempts - 1), 0)::int from public.content_job_stages s
              join public.content_jobs j2 on j2.id = s.job_id
              where j2.idempotency_key like ${tag + "%"}) as extra
      from public.content_jobs j where j.idempotency_key like ${tag + "%"}`;
    return {
      expected: n,
      distinct: r!.done,
      duplicates: r!.extra,
      lost: Math.max(n - r!.done, n * 6 - r!.stages),
    };
  } finally {
    await sql.end();
  }
}

/** Waits until `n` content jobs of `tag` are finished; returns them. */
async function waitContent(env: BenchEnv, tag: string, n: number, timeoutMs: number) {
  const sql = conveyorSql(env, 1);
  try {
    return await pollRow(
      async () => {
        const rows = await sql<{ key: string; created: number; finished: number }[]>`
        select idempotency_key as key, extract(epoch from created_at) * 1000 as created,
               extract(epoch from finished_at) * 1000 as finished
        from public.content_jobs
        where idempotency_key like ${tag + "%"} and finished_at is not null`;
        return rows.length >= n
          ? rows.map((r) => ({
            key: r.key,
            created: Number(r.created),
            finished: Number(r.finished),
          }))
          : undefined;
      },
      timeoutMs,
      20,
      `${n} content jobs to finish`,
    );
  } finally {
    await sql.end();
  }
}

/** One content job at a time through the six stages: p50/p95/p99 of created → finished. */
export async function pipelineLatency(env: BenchEnv, samples: number): Promise<RunResult> {
  await env.startNetWorker();
  await env.setPush(true);
  try {
    const warm = `w${crypto.randomUUID().slice(0, 6)}-`;
    await httpRpc(env, "queue_content_job", { idempotency_key: `${warm}0`, brief: brief(0) });
    await waitContent(env, warm, 1, 120_000);
    const tag = `l${crypto.randomUUID().slice(0, 6)}-`;
    const lat: number[] = [];
    const done = await meter(env);
    for (let i = 0; i < samples; i++) {
      const t0 = Date.now();
      await httpRpc(env, "queue_content_job", { idempotency_key: `${tag}${i}`, brief: brief(i) });
      const rows = await waitContent(env, `${tag}${i}`, 1, 60_000);
      lat.push(rows[0]!.finished - t0);
    }
    const cost = await done(samples);
    return latencyResult(lat, await pipelineDelivery(env, tag, samples), cost);
  } finally {
    await env.setPush(false);
  }
}

/**
 * Cron only: push kicks and push triggers off, pg_cron's dispatcher job (every minute) the
 * only thing that starts workers (a cron-started dispatcher keeps cycling while work is in
 * flight: `dispatcher_sweep_ms`). `n` jobs are enqueued at random moments of one minute, so
 * their phase against the tick is uniform: p50/p99 of created → finished.
 */
export async function pipelineCronOnly(env: BenchEnv, n: number): Promise<RunResult> {
  await env.startNetWorker();
  await env.setPush(false);
  const sql = conveyorSql(env, 1);
  const job = DISPATCHER_CRON_JOB;
  try {
    await sql`select cron.alter_job(jobid, active := true) from cron.job where jobname = ${job}`;
    const tag = `c${crypto.randomUUID().slice(0, 6)}-`;
    const at = Array.from({ length: n }, () => Math.random() * 60_000).sort((a, b) => a - b);
    const sent: number[] = [];
    const done = await meter(env);
    const t0 = Date.now();
    for (let i = 0; i < n; i++) {
      await sleep(Math.max(0, t0 + at[i]! - Date.now()));
      sent.push(Date.now());
      await httpRpc(env, "queue_content_job", { idempotency_key: `${tag}${i}`, brief: brief(i) });
    }
    const rows = await waitContent(env, tag, n, 300_000);
    const cost = await done(n);
    const byKey = new Map(rows.map((r) => [r.key, r.finished]));
    const lat = sent.map((s, i) => byKey.get(`${tag}${i}`)! - s);
    if (rows.length !== n || lat.some((x) => !Number.isFinite(x))) {
      throw new Error(`cron-only: ${rows.length} of ${n} jobs finished`);
    }
    return latencyResult(lat, await pipelineDelivery(env, tag, n), cost);
  } finally {
    await sql`select cron.alter_job(jobid, active := false) from cron.job where jobname = ${job}`;
    await sql.end();
  }
}

/** `n` content jobs enqueued from 10 loops over HTTP: jobs/s from the first enqueue to the last finish. */
export async function pipelineThroughput(env: BenchEnv, n: number): Promise<RunResult> {
  await env.startNetWorker();
  await env.setPush(true);
  try {
    const tag = `t${crypto.randomUUID().slice(0, 6)}-`;
    const done = await meter(env);
    const t0 = Date.now();
    await loops(
      n,
      10,
      (i) => httpRpc(env, "queue_content_job", { idempotency_key: `${tag}${i}`, brief: brief(i) }),
    );
    const rows = await waitContent(env, tag, n, 600_000);
    const cost = await done(n);
    const seconds = (Math.max(...rows.map((r) => r.finished)) - t0) / 1000;
    const stageLat = rows.map((r) => r.finished - r.created);
    return {
      value: n / seconds,
      p95: percentile(stageLat, 95),
      p99: percentile(stageLat, 99),
      n,
      seconds,
      cost,
      delivery: await pipelineDelivery(env, tag, n),
    };
  } finally {
    await env.setPush(false);
  }
}

/** Why a push case cannot run in this checkout (null: it can). */
export async function pushMissing(
  env: BenchEnv,
  what: "kick" | "pipeline",
): Promise<string | null> {
  const sql = conveyorSql(env, 1);
  try {
    const [r] = await sql<{ kick: boolean; pipeline: boolean }[]>`
      select to_regprocedure('conveyor.kick(text)') is not null as kick,
             to_regclass('public.content_jobs') is not null
               and to_regprocedure('public.queue_content_job(jsonb)') is not null as pipeline`;
    if (what === "kick") return r!.kick ? null : "not measured (no push kick in this checkout)";
    return r!.pipeline ? null : "not measured (pipeline not present)";
  } finally {
    await sql.end();
  }
}
