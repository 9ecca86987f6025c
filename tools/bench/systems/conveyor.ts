/**
 * Conveyor under benchmark: enqueue through `queue_job` / `queue_jobs` over SQL
 * (postgres.js) and over HTTP (the gateway), and consumption through THE worker loop
 * (`_shared/worker_loop.ts`), either as workers run it (the pgmq QueueAdapter: supabase-js →
 * gateway → claim_jobs / settle_jobs) or with the same loop calling claim_jobs / settle_jobs
 * over a direct SQL connection.
 *
 * @module
 */
import postgres from "postgres";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { pathToFileURL } from "node:url";
import type * as ConfigMod from "../../../supabase/functions/_shared/config.ts";
import type * as AdapterMod from "../../../supabase/functions/_shared/queue/pgmq_adapter.ts";
import type * as LoopMod from "../../../supabase/functions/_shared/worker_loop.ts";
import type { LoopSource } from "../../../supabase/functions/_shared/worker_loop.ts";
import { type BenchEnv, DBS } from "../env.ts";
import { type Cost, meter } from "../meter.ts";
import {
  DeliveryCounter,
  enqueueRun,
  percentile,
  sleep,
  waitUntil,
  withTimeout,
} from "../stats.ts";
import type { RunResult } from "../types.ts";

/** The worker runtime under test: the QueueAdapter, the worker loop and the config loader. */
export interface Runtime {
  adapter: typeof AdapterMod;
  loop: typeof LoopMod;
  config: typeof ConfigMod;
}

const runtimes = new Map<string, Promise<Runtime>>();

/**
 * Loads the worker runtime from the tree under test (the HEAD export), not from this
 * checkout, so the figures belong to one commit: its SQL and its worker code together.
 */
export function runtime(env: BenchEnv): Promise<Runtime> {
  const root = env.source.root;
  let r = runtimes.get(root);
  if (!r) {
    const url = (p: string) => pathToFileURL(`${root}/supabase/functions/_shared/${p}`).href;
    r = Promise.all([
      import(url("queue/pgmq_adapter.ts")),
      import(url("worker_loop.ts")),
      import(url("config.ts")),
    ]).then(([adapter, loop, config]) => ({ adapter, loop, config }));
    runtimes.set(root, r);
  }
  return r;
}

/** The kind every benchmark job uses (no rate limiter). */
export const KIND = "enrich";

/** The pgmq tables behind the kinds' queues and the dead-letter queue. */
const LEDGER_TABLES = [
  "public.job_events",
  "public.critical_jobs",
  "public.dead_letter_jobs",
  "public.idempotency_keys",
  "public.jobs",
];

/** A postgres.js pool on the Conveyor database. */
export function conveyorSql(env: BenchEnv, max: number) {
  return postgres(env.url(DBS.conveyor), { max, onnotice: () => {}, prepare: true });
}

/** Empties the ledger and every pgmq queue (a fresh state per run). */
export async function reset(env: BenchEnv): Promise<void> {
  const sql = conveyorSql(env, 1);
  try {
    const queues = await sql<{ queue_name: string }[]>`select queue_name from pgmq.meta`;
    const pgmq = queues.flatMap((q) => [`pgmq."q_${q.queue_name}"`, `pgmq."a_${q.queue_name}"`]);
    await sql.unsafe(`truncate ${[...LEDGER_TABLES, ...pgmq].join(", ")} cascade`);
  } finally {
    await sql.end();
  }
}

/** queue_job's body for job `i` of run `tag`. */
export function body(tag: string, i: number): Record<string, unknown> {
  return { idempotency_key: `${tag}-${i}`, kind: KIND, payload: { i } };
}

/** Every job in the ledger is there once: counts rows and distinct payloads. */
async function checkEnqueued(env: BenchEnv, n: number) {
  const sql = conveyorSql(env, 1);
  try {
    const [r] = await sql<{ rows: number; distinct: number; msgs: number }[]>`
      select count(*)::int as rows, count(distinct payload ->> 'i')::int as distinct,
             (select count(*)::int from pgmq.q_q_enrich) as msgs
      from public.jobs`;
    const rows = Math.min(r!.rows, r!.msgs);
    return {
      expected: n,
      distinct: r!.distinct,
      duplicates: Math.max(0, r!.rows - r!.distinct),
      lost: Math.max(0, n - Math.min(r!.distinct, rows)),
    };
  } finally {
    await sql.end();
  }
}

/** Runs `n` calls from `conc` loops; returns seconds. */
export async function loops(
  n: number,
  conc: number,
  call: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) await call(next++);
  }));
  return (performance.now() - t0) / 1000;
}

/** POSTs a JSON body to `/rest/v1/rpc/<fn>` as service_role; returns the parsed answer. */
export async function httpRpc(env: BenchEnv, fn: string, payload: unknown): Promise<unknown> {
  const res = await fetch(`${env.apiUrl}/rest/v1/rpc/${fn}`, {
    method: "POST",
    headers: {
      apikey: env.serviceKey,
      authorization: `Bearer ${env.serviceKey}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(payload),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`rpc/${fn}: HTTP ${res.status} ${text}`);
  return text === "" ? null : JSON.parse(text);
}

/** Single-call enqueue: `select queue_job($1)` over SQL, or POST rpc/queue_job. */
export async function enqueueSingle(
  env: BenchEnv,
  n: number,
  conc: number,
  via: "sql" | "http",
): Promise<RunResult> {
  await reset(env);
  const tag = crypto.randomUUID().slice(0, 8);
  let seconds: number;
  let cost;
  if (via === "sql") {
    const sql = conveyorSql(env, conc);
    try {
      await Promise.all(Array.from({ length: conc }, () => sql`select 1`));
      const done = await meter(env);
      seconds = await loops(
        n,
        conc,
        (i) => sql`select public.queue_job(${sql.json(body(tag, i) as postgres.JSONValue)}) as id`,
      );
      cost = await done(n);
    } finally {
      await sql.end();
    }
  } else {
    await httpRpc(env, "bench_insert", { warm: true });
    const done = await meter(env);
    seconds = await loops(n, conc, (i) => httpRpc(env, "queue_job", body(tag, i)));
    cost = await done(n);
  }
  const delivery = await checkEnqueued(env, n);
  return { value: n / seconds, n, seconds, delivery, cost };
}

/** Issue 4: an RPC doing one INSERT, over HTTP and over SQL. */
export async function rpcInsert(
  env: BenchEnv,
  n: number,
  conc: number,
  via: "sql" | "http",
): Promise<RunResult> {
  const sql = conveyorSql(env, via === "sql" ? conc : 1);
  try {
    await sql`truncate public.bench_sink`;
    let seconds: number;
    let done;
    if (via === "sql") {
      await Promise.all(Array.from({ length: conc }, () => sql`select 1`));
      done = await meter(env);
      seconds = await loops(
        n,
        conc,
        (i) => sql`select public.bench_insert(${sql.json({ i })}) as id`,
      );
    } else {
      done = await meter(env);
      seconds = await loops(n, conc, (i) => httpRpc(env, "bench_insert", { i }));
    }
    const cost = await done(n);
    const [r] = await sql<{ rows: number; distinct: number }[]>`
      select count(*)::int as rows, count(distinct body ->> 'i')::int as distinct
      from public.bench_sink`;
    return enqueueRun(n, r!, seconds, cost);
  } finally {
    await sql.end();
  }
}

/** Enqueues `n` jobs with queue_jobs in chunks over SQL (also the drains' pre-fill). */
export async function enqueueBatchSql(
  env: BenchEnv,
  n: number,
  chunk: number,
  tag: string,
  offset = 0,
): Promise<number> {
  const sql = conveyorSql(env, 1);
  try {
    const t0 = performance.now();
    for (let s = 0; s < n; s += chunk) {
      const items = Array.from(
        { length: Math.min(chunk, n - s) },
        (_, k) => body(tag, offset + s + k),
      );
      await sql`select count(*) from public.queue_jobs(${sql.json(items as postgres.JSONValue)})`;
    }
    return (performance.now() - t0) / 1000;
  } finally {
    await sql.end();
  }
}

/** Batch enqueue: queue_jobs with `chunk` jobs per call, sequential, over SQL or HTTP. */
export async function enqueueBatch(
  env: BenchEnv,
  n: number,
  chunk: number,
  via: "sql" | "http",
): Promise<RunResult> {
  await reset(env);
  const tag = crypto.randomUUID().slice(0, 8);
  let seconds: number;
  const done = await meter(env);
  if (via === "sql") seconds = await enqueueBatchSql(env, n, chunk, tag);
  else {
    const t0 = performance.now();
    for (let s = 0; s < n; s += chunk) {
      const items = Array.from({ length: Math.min(chunk, n - s) }, (_, k) => body(tag, s + k));
      await httpRpc(env, "queue_jobs", items);
    }
    seconds = (performance.now() - t0) / 1000;
  }
  const cost = await done(n);
  const delivery = await checkEnqueued(env, n);
  return { value: n / seconds, n, seconds, delivery, cost };
}

/**
 * Pre-fills `n` jobs (untimed) as fast as the enqueue API allows: `queue_jobs` calls of
 * 5,000 bodies built by the server (the same bodies as {@link body}), from two connections;
 * then VACUUM ANALYZE + CHECKPOINT. Returns what the enqueue part took (the fill time a
 * backlog's row reports).
 */
export async function prefill(
  env: BenchEnv,
  n: number,
  opts: { chunk?: number; connections?: number } = {},
): Promise<{ jobs: number; seconds: number }> {
  await reset(env);
  const chunk = opts.chunk ?? 5000;
  const conns = opts.connections ?? 2;
  const tag = crypto.randomUUID().slice(0, 8);
  const sql = conveyorSql(env, conns);
  let seconds: number;
  try {
    await Promise.all(Array.from({ length: conns }, () => sql`select 1`));
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: conns }, async () => {
      while (next < n) {
        const from = next;
        next = Math.min(n, next + chunk);
        await sql`
          select count(*) from public.queue_jobs((
            select jsonb_agg(jsonb_build_object('idempotency_key', ${tag} || '-' || g,
                                                'kind', ${KIND}::text,
                                                'payload', jsonb_build_object('i', g)) order by g)
            from generate_series(${from}::int, ${next - 1}::int) g))`;
      }
    }));
    seconds = (performance.now() - t0) / 1000;
  } finally {
    await sql.end();
  }
  await env.settle(DBS.conveyor);
  return { jobs: n, seconds };
}

/** How a drain consumes: worker loops × batch × jobs run at once per loop. */
export interface DrainShape {
  workers: number;
  batch: number;
  concurrency: number;
  /** SQL path: settle + next claim in one call (default: when the database has it). */
  combined?: boolean;
}

/** The adapter's RPC calls as a loop source, with or without the combined call (A/B). */
function rpcSource(
  rt: Runtime,
  client: SupabaseClient,
  worker: string,
  onJob: (row: Claimed) => void,
  combined: boolean,
): LoopSource<Claimed, null> {
  const call = async <T>(fn: string, args: Record<string, unknown>): Promise<T> => {
    const { data, error } = await client.rpc(fn, args);
    if (error) throw new Error(`${fn}: ${error.message}`);
    return data as T;
  };
  const entries = (results: Array<{ item: Claimed; outcome: LoopMod.Outcome<null> }>) =>
    results.map((r) => rt.adapter.settleEntry(r.item, r.outcome));
  const source: LoopSource<Claimed, null> = {
    claim: (max) =>
      call<Claimed[]>("claim_jobs", {
        p_kind: KIND,
        p_worker: worker,
        p_qty: max,
        p_vt: 90,
        p_policy: POLICY,
      }),
    run: (row) => {
      onJob(row);
      return Promise.resolve(null);
    },
    settle: async (results) => {
      await call("settle_jobs", {
        p_worker: worker,
        p_results: entries(results),
        p_policy: POLICY,
      });
    },
  };
  if (combined) {
    source.settleAndClaim = async (results, max) =>
      (await call<{ claimed: Claimed[] }>("settle_and_claim_jobs", {
        p_worker: worker,
        p_results: entries(results),
        p_kind: KIND,
        p_qty: max,
        p_vt: 90,
        p_policy: POLICY,
      })).claimed;
  }
  return source;
}

/** The audit setting (issue 16: `conveyor.settings` key `audit`), or "unset". */
async function auditMode(sql: postgres.Sql): Promise<string> {
  const [r] = await sql<{ v: string | null }[]>`
    select (select value #>> '{}' from conveyor.settings where key = 'audit') as v`;
  return r!.v ?? "unset";
}

/** Rows in job_events (what a drain appended: the difference of two counts). */
async function countEvents(sql: postgres.Sql): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select count(*)::float8 as n from public.job_events`;
  return r!.n;
}

/**
 * Runs `fn` with `conveyor.settings.audit` set to `mode` (issue 16's audit modes: 'lean',
 * 'full'), and puts the setting back as it was after. Harmless where the data path does not
 * read the setting yet: the drain reports the job_events rows it wrote either way.
 */
export async function withAudit<T>(env: BenchEnv, mode: string, fn: () => Promise<T>): Promise<T> {
  const sql = conveyorSql(env, 1);
  try {
    const [old] = await sql<{ value: unknown }[]>`
      select value from conveyor.settings where key = 'audit'`;
    await sql`
      insert into conveyor.settings (key, value, description)
      values ('audit', ${sql.json(mode)},
              'job_events per transition: lean (failures and operator actions) or full (every transition)')
      on conflict (key) do update set value = excluded.value`;
    try {
      return await fn();
    } finally {
      if (old) {
        await sql`update conveyor.settings set value = ${
          sql.json(old.value as postgres.JSONValue)
        } where key = 'audit'`;
      } else await sql`delete from conveyor.settings where key = 'audit'`;
    }
  } finally {
    await sql.end();
  }
}

/** Does the database under test have settle_and_claim_jobs (an older checkout may not)? */
async function hasSettleAndClaim(sql: postgres.Sql): Promise<boolean> {
  const [r] = await sql<{ ok: boolean }[]>`
    select exists (select 1 from pg_proc where proname = 'settle_and_claim_jobs') as ok`;
  return r!.ok;
}

/** A claimed row (conveyor.claimed_job), as far as the SQL path needs it. */
export interface Claimed {
  job_id: string;
  lease_id: string;
  payload?: Record<string, unknown>;
}

const POLICY = { max_attempts: 3, backoff_base_ms: 1000, backoff_max_ms: 60000 };

/**
 * The worker loop's source over direct SQL: claim_jobs / settle_jobs on a postgres.js pool.
 * `withPayload`: claims return each job's payload too (the fairness workloads read it).
 */
export function sqlSource(
  rt: Runtime,
  sql: postgres.Sql,
  worker: string,
  onJob: (row: Claimed) => void,
  combined: boolean,
  withPayload = false,
): LoopSource<Claimed, null> {
  const entries = (results: Array<{ item: Claimed; outcome: LoopMod.Outcome<null> }>) =>
    results.map((r) => rt.adapter.settleEntry(r.item, r.outcome));
  const source: LoopSource<Claimed, null> = {
    claim: async (max) => [
      ...(withPayload
        ? await sql<Claimed[]>`
          select job_id, lease_id, payload from public.claim_jobs(${KIND}, ${worker}, ${max}, 90,
            null, ${sql.json(POLICY)})`
        : await sql<Claimed[]>`
          select job_id, lease_id from public.claim_jobs(${KIND}, ${worker}, ${max}, 90, null,
            ${sql.json(POLICY)})`),
    ],
    run: (row) => {
      onJob(row);
      return Promise.resolve(null);
    },
    settle: async (results) => {
      const rows = await sql<{ accepted: boolean }[]>`
        select accepted from public.settle_jobs(${worker},
          ${sql.json(entries(results) as postgres.JSONValue)}, ${sql.json(POLICY)})`;
      if (rows.some((r) => !r.accepted)) throw new Error("settle refused");
    },
  };
  if (combined) {
    source.settleAndClaim = async (results, max) => {
      const [r] = await sql<{ r: { settled: { accepted: boolean }[]; claimed: Claimed[] } }[]>`
        select public.settle_and_claim_jobs(${worker},
          ${sql.json(entries(results) as postgres.JSONValue)}, ${KIND}, ${max}, 90,
          ${sql.json(POLICY)}) as r`;
      if (r!.r.settled.some((x) => !x.accepted)) throw new Error("settle refused");
      return r!.r.claimed;
    };
  }
  return source;
}

/**
 * End-to-end drain of the pre-filled queue. The clock starts at the first handler call and
 * stops when every loop has found the queue empty (each settles before it claims again, so
 * the ledger shows every job completed then; checked after).
 */
export async function drain(
  env: BenchEnv,
  n: number,
  shape: DrainShape,
  via: "sql" | "rpc" | "rpc-ab",
  opts: { stopAfter?: number } = {},
): Promise<RunResult> {
  const counter = new DeliveryCounter();
  let t0 = 0;
  let tEnd = 0;
  const stopAfter = opts.stopAfter ?? Infinity;
  const stop = new AbortController();
  const hit = (id: string) => {
    if (t0 === 0) t0 = performance.now();
    counter.hit(id);
    if (counter.calls === stopAfter) {
      tEnd = performance.now();
      stop.abort();
    }
  };
  const sql = conveyorSql(env, shape.workers + 1);
  const rt = await runtime(env);
  try {
    // As the QueueAdapter does: the combined call for small batches only.
    const combined = shape.combined ??
      (shape.batch <= (rt.adapter.COMBINED_MAX_BATCH ?? 25) && await hasSettleAndClaim(sql));
    const audit = await auditMode(sql);
    const events0 = await countEvents(sql);
    if (via === "sql") {
      await Promise.all(Array.from({ length: shape.workers }, () => sql`select 1`));
    }
    const done = await meter(env);
    if (via === "rpc-ab") {
      // A/B only (tools/bench/profile.ts ab): the adapter's calls, with the combined call
      // switched by shape.combined.
      const client = createClient(env.apiUrl, env.serviceKey, {
        auth: { persistSession: false, autoRefreshToken: false },
      });
      await Promise.all(
        Array.from(
          { length: shape.workers },
          (_, w) =>
            rt.loop.runLoop(
              rpcSource(rt, client, `bench-ab-${w}`, (r) => hit(r.job_id), combined),
              {
                batchSize: shape.batch,
                concurrency: shape.concurrency,
                budgetMs: 3_600_000,
                jobTimeoutMs: 60_000,
                signal: stop.signal,
              },
            ),
        ),
      );
    } else if (via === "sql") {
      await Promise.all(
        Array.from({ length: shape.workers }, (_, w) =>
          rt.loop.runLoop(
            sqlSource(rt, sql, `bench-sql-${w}`, (r) => hit(r.job_id), combined),
            {
              batchSize: shape.batch,
              concurrency: shape.concurrency,
              budgetMs: 3_600_000,
              jobTimeoutMs: 60_000,
              signal: stop.signal,
            },
          )),
      );
    } else {
      const client = createClient(env.apiUrl, env.serviceKey, {
        auth: { persistSession: false, autoRefreshToken: false },
      });
      const config = rt.config.loadQueueConfig({});
      const adapter = new rt.adapter.PgmqQueueAdapter(client, config);
      await Promise.all(
        Array.from({ length: shape.workers }, (_, w) =>
          adapter.consume(KIND, (job) => {
            hit(job.id);
            return Promise.resolve(null);
          }, {
            batchSize: shape.batch,
            concurrency: shape.concurrency,
            budgetMs: 3_600_000,
            jobTimeoutMs: 60_000,
            workerId: `bench-rpc-${w}`,
            signal: stop.signal,
          })),
      );
      await adapter.shutdown();
    }
    if (tEnd === 0) tEnd = performance.now();
    const seconds = (tEnd - t0) / 1000;
    const cost = await done(counter.calls);
    const eventsPerJob = (await countEvents(sql) - events0) / Math.max(1, counter.calls);
    const ids = (await sql<{ id: string }[]>`
      select id from public.jobs where status = 'completed'`).map((r) => r.id);
    const [open] = await sql<{ n: number }[]>`
      select count(*)::int as n from public.jobs where status <> 'completed'`;
    const delivery = counter.check(ids);
    // Jobs handled but not completed in the ledger, or completed without a handler call.
    if (opts.stopAfter === undefined) {
      delivery.expected = n;
      delivery.lost = Math.max(delivery.lost, open!.n, n - counter.distinct);
    } else {
      delivery.lost = Math.max(delivery.lost, counter.distinct - ids.length);
    }
    const timed = opts.stopAfter ?? n;
    return {
      value: timed / seconds,
      n: timed,
      seconds,
      delivery,
      walPerJob: cost.walB,
      cost,
      audit: { mode: audit, eventsPerJob },
    };
  } finally {
    await sql.end();
  }
}

/**
 * Enqueue → handler start, one job in flight. No push path is used here: a worker polls
 * claim_jobs every `pollMs` over SQL (LISTEN-free), so latency is about the poll interval.
 */
export async function latencyPolling(
  env: BenchEnv,
  samples: number,
  pollMs: number,
): Promise<RunResult> {
  await reset(env);
  const sql = conveyorSql(env, 2);
  const counter = new DeliveryCounter();
  let waiting: ((t: number) => void) | null = null;
  let running = true;
  const worker = "bench-latency";
  const rt = await runtime(env);
  const source = sqlSource(rt, sql, worker, (r) => {
    counter.hit(r.job_id);
    waiting?.(performance.now());
  }, await hasSettleAndClaim(sql));
  const poller = (async () => {
    while (running) {
      const s = await rt.loop.runLoop(source, {
        batchSize: 1,
        concurrency: 1,
        budgetMs: 3_600_000,
        jobTimeoutMs: 60_000,
      });
      if (s.claimed === 0 && running) await sleep(pollMs);
    }
  })();
  const tag = crypto.randomUUID().slice(0, 8);
  const lat: number[] = [];
  let cost;
  try {
    await sql`select 1`;
    const done = await meter(env);
    for (let i = 0; i < samples; i++) {
      const started = new Promise<number>((r) => (waiting = r));
      const t0 = performance.now();
      await sql`select public.queue_job(${sql.json(body(tag, i) as postgres.JSONValue)})`;
      const t1 = await withTimeout(started, 30_000, `job ${i} to start`);
      lat.push(t1 - t0);
    }
    cost = await done(samples);
  } finally {
    running = false;
    await poller;
    await sql.end();
  }
  await waitUntil(() => counter.calls >= samples, 1000);
  return latencyResult(lat, counter.check(samples), cost);
}

/** p50/p95/p99/max of latency samples (and what they cost, where measured). */
export function latencyResult(
  lat: number[],
  delivery: RunResult["delivery"],
  cost?: Cost,
): RunResult {
  return {
    cost,
    value: percentile(lat, 50),
    p95: percentile(lat, 95),
    p99: percentile(lat, 99),
    max: Math.max(...lat),
    n: lat.length,
    seconds: lat.reduce((a, b) => a + b, 0) / 1000,
    delivery,
  };
}
