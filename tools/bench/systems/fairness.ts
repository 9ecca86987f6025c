/**
 * Fair share and concurrency keys under benchmark (issue 21, docs/fairness.md):
 *
 * - **Overhead with one tenant**: the drain of {@link conveyor.drain} with the kind's
 *   `fair_share` on and off (one tenant has all the work, so fairness has nothing to share:
 *   what it costs is its tenant discovery).
 * - **Noisy neighbour**: tenant A has a large backlog ready; tenants B and C enqueue 20 jobs/s
 *   each; worker loops drain the kind. The figure is B's and C's enqueue → handler start p50,
 *   with A's backlog and fairness on, with it and fairness off, and with A idle; each run also
 *   reports A's throughput over the window.
 * - **Concurrency keys**: jobs over keys with a limit, racing worker loops (some killed
 *   mid-batch: their jobs come back when their leases expire); the most jobs of one key seen
 *   running at once, by the handlers and in the ledger (sampled every few ms), against the
 *   limit, and that every job completed.
 *
 * @module
 */
import postgres from "postgres";
import { type BenchEnv, DBS } from "../env.ts";
import { meter } from "../meter.ts";
import { DeliveryCounter, percentile, sleep } from "../stats.ts";
import type { RunResult } from "../types.ts";
import * as conveyor from "./conveyor.ts";

/** The light tenants (the noisy one, A, is the default tenant the pre-fill enqueues for). */
const TENANT_B = "b0000000-0000-4000-8000-00000000000b";
const TENANT_C = "c0000000-0000-4000-8000-00000000000c";

/** Sets `fair_share` of the benchmark's kind; returns what it was. */
async function setFairShare(sql: postgres.Sql, on: boolean): Promise<boolean> {
  const [r] = await sql<{ was: boolean }[]>`
    update conveyor.job_kinds k set fair_share = ${on}
    from (select fair_share as was from conveyor.job_kinds where kind = ${conveyor.KIND}) old
    where k.kind = ${conveyor.KIND}
    returning old.was`;
  return r?.was ?? true;
}

/** Runs `fn` with the kind's fair share on or off, and puts the setting back after. */
export async function withFairShare<T>(
  env: BenchEnv,
  on: boolean,
  fn: () => Promise<T>,
): Promise<T> {
  const sql = conveyor.conveyorSql(env, 1);
  try {
    const was = await setFairShare(sql, on);
    try {
      return await fn();
    } finally {
      await setFairShare(sql, was);
    }
  } finally {
    await sql.end();
  }
}

/** The drain of one tenant's pre-filled jobs with fair share on or off. */
export async function drainOneTenant(
  env: BenchEnv,
  n: number,
  shape: conveyor.DrainShape,
  via: "sql" | "rpc",
  fair: boolean,
): Promise<RunResult> {
  return await withFairShare(env, fair, async () => {
    const fill = await conveyor.prefill(env, n);
    return { ...await conveyor.drain(env, n, shape, via), fill };
  });
}

/** Sizes of a noisy-neighbour run. */
export interface NoisySizes {
  /** A's ready backlog (0: A idle). */
  backlog: number;
  /** Seconds B and C enqueue for (20 jobs/s each). */
  seconds: number;
  /** Worker loops and their batch (jobs run at once per loop = the batch). */
  workers: number;
  batch: number;
}

/** B's and C's enqueue rate, jobs/s each. */
export const LIGHT_RATE = 20;

interface Timed {
  t0: number;
  tenant: string;
}

/**
 * Noisy neighbour: A's backlog (none when `sizes.backlog` is 0), fair share on or off, B and
 * C enqueueing LIGHT_RATE jobs/s each through queue_job for `sizes.seconds`, the worker loop
 * (direct SQL, settle_and_claim_jobs; an idle loop polls every IDLE_POLL_MS, as a lingering
 * worker does) draining. Value: p50 of B's and C's enqueue → handler
 * start (ms). Figures: B and C p50, the p50 of their queue_job calls (commit included), A's
 * jobs/s over the window, the remaining rate (A's jobs/s minus B's and C's offered load: what
 * the fairness-off run leaves A), jobs/s in all.
 */
export async function noisyNeighbour(
  env: BenchEnv,
  sizes: NoisySizes,
  fair: boolean,
): Promise<RunResult> {
  return await withFairShare(env, fair, async () => {
    if (sizes.backlog > 0) await conveyor.prefill(env, sizes.backlog);
    else await conveyor.reset(env);
    const admin = conveyor.conveyorSql(env, 1);
    try {
      await admin`insert into public.tenants (id, name)
                  values (${TENANT_B}, 'bench-b'), (${TENANT_C}, 'bench-c')
                  on conflict (id) do nothing`;
    } finally {
      await admin.end();
    }
    return await noisyRun(env, sizes);
  });
}

async function noisyRun(env: BenchEnv, sizes: NoisySizes): Promise<RunResult> {
  const rt = await conveyor.runtime(env);
  const sql = conveyor.conveyorSql(env, sizes.workers + 1);
  const enq = conveyor.conveyorSql(env, 2);
  const lat: Record<string, number[]> = { B: [], C: [] };
  const counter = new DeliveryCounter();
  const aStarts: number[] = [];
  let stopping = false;
  const stop = new AbortController();
  let window = { from: Infinity, to: Infinity };
  let failedCalls = 0;
  const expectLight: string[] = [];
  // How long each light job's queue_job call took (commit included): the part of its wait
  // before any claim can see it.
  const enqMs: number[] = [];
  try {
    await Promise.all(Array.from({ length: sizes.workers }, () => sql`select 1`));
    await enq`select 1`;
    const onJob = (row: { job_id: string; payload?: Record<string, unknown> }) => {
      const now = performance.now();
      const p = row.payload as Timed | undefined;
      if (p && typeof p.t0 === "number") {
        counter.hit(row.job_id);
        lat[p.tenant]!.push(now - p.t0);
      } else if (now >= window.from && now <= window.to) aStarts.push(now);
    };
    const loops = Array.from({ length: sizes.workers }, async (_, w) => {
      const source = conveyor.sqlSource(rt, sql, `bench-noisy-${w}`, onJob, true, true);
      // An idle loop polls as a lingering worker does (the adapter's IDLE_POLL_MS).
      source.idle = () => (stopping ? null : rt.adapter.IDLE_POLL_MS ?? 25);
      // A call that fails (a deadlock victim) ends the loop, as it ends a worker function;
      // another worker takes over, as the dispatcher would start one.
      while (!stopping) {
        try {
          await rt.loop.runLoop(source, {
            batchSize: sizes.batch,
            concurrency: sizes.batch,
            budgetMs: 3_600_000,
            jobTimeoutMs: 60_000,
            signal: stop.signal,
          });
        } catch (e) {
          failedCalls++;
          env.log(`fair.noisy: a worker loop failed (${(e as Error).message}); restarted`);
        }
      }
    });
    // Let the loops reach their steady state on A's backlog first.
    await sleep(sizes.backlog > 0 ? 500 : 100);
    const done = await meter(env);
    const tag = crypto.randomUUID().slice(0, 8);
    const ticks = Math.round(sizes.seconds * LIGHT_RATE);
    const start = performance.now();
    window = { from: start, to: start + sizes.seconds * 1000 };
    for (let k = 0; k < ticks; k++) {
      const at = start + (k * 1000) / LIGHT_RATE;
      const wait = at - performance.now();
      if (wait > 0) await sleep(wait);
      // B's and C's job of this tick at once, each on its own connection (a postgres.js query
      // runs when awaited, so each is awaited here, not collected for later).
      await Promise.all((["B", "C"] as const).map(async (tenant) => {
        const t0 = performance.now();
        const body = {
          idempotency_key: `${tag}-${tenant}-${k}`,
          kind: conveyor.KIND,
          tenant_id: tenant === "B" ? TENANT_B : TENANT_C,
          payload: { t0, tenant },
        };
        await enq`select public.queue_job(${enq.json(body as postgres.JSONValue)}) as id`;
        enqMs.push(performance.now() - t0);
      }));
    }
    const end = performance.now();
    window = { from: start, to: end };
    // Every light job has to start (with fairness off, behind all of A's backlog).
    const total = ticks * 2;
    const deadline = performance.now() + 600_000;
    while (counter.distinct < total && performance.now() < deadline) await sleep(20);
    const cost = await done(counter.calls + aStarts.length);
    stopping = true;
    stop.abort();
    await Promise.all(loops);
    for (let k = 0; k < ticks; k++) {
      for (const t of ["B", "C"]) expectLight.push(`${tag}-${t}-${k}`);
    }
    const ids = (await sql<{ id: string }[]>`
      select id from public.jobs where idempotency_key = any (${expectLight})`).map((r) => r.id);
    const delivery = counter.check(ids);
    const all = [...lat.B!, ...lat.C!];
    const seconds = (end - start) / 1000;
    const aRate = aStarts.length / seconds;
    return {
      value: percentile(all, 50),
      p95: percentile(all, 95),
      p99: percentile(all, 99),
      max: Math.max(...all),
      n: all.length,
      seconds,
      delivery,
      cost,
      figures: {
        b_p50_ms: percentile(lat.B!, 50),
        c_p50_ms: percentile(lat.C!, 50),
        enqueue_p50_ms: percentile(enqMs, 50),
        a_jobs_per_s: aRate,
        remaining_jobs_per_s: Math.max(0, aRate - 2 * LIGHT_RATE),
        jobs_per_s: (aStarts.length + all.length) / seconds,
        failed_calls: failedCalls,
      },
    };
  } finally {
    stopping = true;
    stop.abort();
    await sql.end();
    await enq.end();
  }
}

/** Sizes of a concurrency keys run. */
export interface KeySizes {
  jobs: number;
  keys: number;
  limit: number;
  workers: number;
}

interface KeyClaimed {
  job_id: string;
  lease_id: string;
  payload: { key: string };
}

/**
 * Concurrency keys: `jobs` jobs over `keys` keys with a limit of `limit`, enqueued with
 * queue_jobs; `workers` loops claim batches of 10 through settle_and_claim_jobs (2 s leases)
 * and run each job 5–25 ms; the first two loops are killed on their first batch and every 10th
 * after it (from the first, so a fast run kills too): the batch is dropped, never settled, and
 * comes back when its leases expire. A sampler reads the ledger
 * (processing jobs with a live lease per key) and the key leases every few ms. Value: jobs/s;
 * figures: the most jobs of one key running at once by each measure, and the limit.
 */
export async function concurrencyKeys(env: BenchEnv, s: KeySizes): Promise<RunResult> {
  await conveyor.reset(env);
  const admin = conveyor.conveyorSql(env, 2);
  const tag = crypto.randomUUID().slice(0, 8);
  const running = new Map<string, number>();
  const counter = new DeliveryCounter();
  let maxHandler = 0;
  let maxLedger = 0;
  let maxLeases = 0;
  let samples = 0;
  let kills = 0;
  let failedCalls = 0;
  let done = false;
  try {
    await admin`select count(*) from public.queue_jobs((
      select jsonb_agg(jsonb_build_object('idempotency_key', ${tag} || '-' || g,
               'kind', ${conveyor.KIND}::text,
               'payload', jsonb_build_object('key', 'k' || (g % ${s.keys}), 'i', g),
               'concurrency_key', 'k' || (g % ${s.keys}),
               'concurrency_limit', ${s.limit}::int) order by g)
      from generate_series(1, ${s.jobs}) g))`;
    await env.settle(DBS.conveyor);
    const sampler = (async () => {
      while (!done) {
        const [r] = await admin<{ ledger: number; leases: number }[]>`
          select coalesce((select max(n) from (
                   select count(*) as n from public.jobs
                   where kind = ${conveyor.KIND} and status = 'processing'
                     and locked_until > clock_timestamp()
                   group by concurrency_key) x), 0)::int as ledger,
                 coalesce((select max(n) from (
                   select count(*) as n from conveyor.key_leases
                   where kind = ${conveyor.KIND} and expires_at > clock_timestamp()
                   group by concurrency_key) y), 0)::int as leases`;
        maxLedger = Math.max(maxLedger, r!.ledger);
        maxLeases = Math.max(maxLeases, r!.leases);
        samples++;
        await sleep(2);
      }
    })();
    const meterDone = await meter(env);
    const t0 = performance.now();
    const worker = async (w: number) => {
      const sql = conveyor.conveyorSql(env, 1);
      let batch: KeyClaimed[] = [];
      let batches = 0;
      try {
        while (!done) {
          const results = batch.map((b) => ({
            job_id: b.job_id,
            lease_id: b.lease_id,
            status: "completed",
          }));
          let r;
          try {
            [r] = await sql<{ r: { claimed: KeyClaimed[] } }[]>`
              select public.settle_and_claim_jobs(${"bench-keys-" + w},
                ${sql.json(results as postgres.JSONValue)}, ${conveyor.KIND}, 10, 2,
                '{"max_attempts": 10}') as r`;
          } catch (e) {
            // A failed call (a deadlock victim) is a lost batch: its leases expire.
            failedCalls++;
            env.log(`fair.keys: a call failed (${(e as Error).message})`);
            batch = [];
            continue;
          }
          batch = r!.r.claimed;
          if (batch.length === 0) {
            await sleep(5);
            continue;
          }
          batches++;
          await Promise.all(batch.map(async (b) => {
            const n = (running.get(b.payload.key) ?? 0) + 1;
            running.set(b.payload.key, n);
            maxHandler = Math.max(maxHandler, n);
            await sleep(5 + Math.random() * 20);
            running.set(b.payload.key, running.get(b.payload.key)! - 1);
          }));
          if (w < 2 && batches % 10 === 1) {
            kills++;
            batch = [];
            continue;
          }
          for (const b of batch) counter.hit(b.job_id);
        }
      } finally {
        await sql.end();
      }
    };
    const loops = Array.from({ length: s.workers }, (_, w) => worker(w));
    const deadline = performance.now() + 600_000;
    let completed = 0;
    while (performance.now() < deadline) {
      const [c] = await admin<{ n: number }[]>`
        select count(*)::int as n from public.jobs
        where kind = ${conveyor.KIND} and status = 'completed'`;
      completed = c!.n;
      if (completed >= s.jobs) break;
      await sleep(50);
    }
    const seconds = (performance.now() - t0) / 1000;
    done = true;
    await Promise.all([...loops, sampler]);
    const cost = await meterDone(s.jobs);
    const ids = (await admin<{ id: string }[]>`
      select id from public.jobs where kind = ${conveyor.KIND} and status = 'completed'`)
      .map((r) => r.id);
    const delivery = counter.check(ids);
    delivery.expected = s.jobs;
    delivery.lost = Math.max(delivery.lost, s.jobs - completed);
    return {
      value: s.jobs / seconds,
      n: s.jobs,
      seconds,
      delivery,
      cost,
      figures: {
        limit: s.limit,
        max_running_handlers: maxHandler,
        max_running_ledger: maxLedger,
        max_running_leases: maxLeases,
        ledger_samples: samples,
        kills,
        failed_calls: failedCalls,
      },
    };
  } finally {
    done = true;
    await admin.end();
  }
}
