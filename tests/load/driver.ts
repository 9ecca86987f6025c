/**
 * The ledger-checked load driver (issue 10), shared by the short reliability suite
 * (`tests/reliability_*_test.ts`) and the soak (`tests/load/soak.ts`):
 *
 * 1. {@link planJobs}: N jobs with known idempotency keys, a deterministic mix of kinds,
 *    priorities, delays and behaviours chosen by payload (`ok`, `transient` = fails its first
 *    k attempts, `poison` = cancels itself, `always` = fails every attempt, `hang` = ignores
 *    its deadline on its first h attempts), each with the terminal state it must reach.
 * 2. {@link enqueueJobs}: `queue_job` over the gateway, retried with the SAME key on any
 *    transport error or 5xx until acknowledged (idempotency makes a retry of a committed
 *    enqueue harmless), optionally paced at a rate.
 * 3. {@link loadHandler}: the handler of the test's job kinds; it acts out the payload's
 *    behaviour and reports every execution (start, end) to a recorder. It runs in the REAL
 *    worker loop and pgmq adapter: in-process ({@link startWorkers}) or in worker processes
 *    the test can SIGKILL (`worker_process.ts`, {@link spawnWorkerProcess}).
 * 4. {@link checkLedger}: after the drain, every planned job against the ledger: lost (no
 *    row, or not terminal), in the wrong terminal state, processing rows, messages left in
 *    the kind's queues, double completions (`completed` events, with audit 'full'), claims
 *    (the ledger's attempts) beyond the designed
 *    attempts (redeliveries), settle refusals, and duplicates: jobs whose handler ran to
 *    success more than once (at-least-once shows here, and only where a fault was injected).
 *
 * @module
 */
import type { Sql } from "postgres";
import type { SupabaseClient } from "@supabase/supabase-js";
import type { QueueConfig } from "../../supabase/functions/_shared/config.ts";
import { JobCancelError, toError } from "../../supabase/functions/_shared/errors.ts";
import type { JobHandler, Priority } from "../../supabase/functions/_shared/queue/adapter.ts";
import { PgmqQueueAdapter } from "../../supabase/functions/_shared/queue/pgmq_adapter.ts";

/** What a job's handler does. */
export type Mode = "ok" | "transient" | "poison" | "always" | "hang";

/** The payload of a load job: its behaviour. */
export interface LoadPayload {
  run: string;
  i: number;
  mode: Mode;
  /** transient: attempts that fail before one succeeds. */
  fail_times: number;
  /** hang: attempts that never return (the loop's deadline abandons them). */
  hang_attempts: number;
  /** Work time of an attempt that returns. */
  sleep_ms: number;
}

/** One planned job and where it must end. */
export interface PlannedJob {
  key: string;
  kind: string;
  priority: Priority;
  delaySeconds?: number;
  payload: LoadPayload;
  expect: "completed" | "failed";
  /** Attempts it takes without faults (claims beyond this are redeliveries). */
  designedAttempts: number;
}

/** Relative weights of the behaviours. */
export interface Mix {
  ok: number;
  transient: number;
  poison: number;
  always: number;
  hang: number;
}

/** Options of {@link planJobs}. */
export interface PlanOptions {
  /** Unique run id: keys are `<run>:<i>`. */
  run: string;
  kinds: string[];
  n: number;
  /** Attempts the workers allow (QUEUE_MAX_ATTEMPTS). */
  maxAttempts: number;
  mix?: Partial<Mix>;
  /** Share of jobs enqueued with a delay of 1..maxDelaySec seconds. */
  delayedShare?: number;
  maxDelaySec?: number;
  /** Work time range of an attempt, ms. */
  sleepMs?: [number, number];
  seed?: number;
}

/** A small deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DEFAULT_MIX: Mix = { ok: 70, transient: 20, poison: 4, always: 3, hang: 0 };

/** Plans `n` jobs; deterministic for a seed. */
export function planJobs(o: PlanOptions): PlannedJob[] {
  const rnd = prng(o.seed ?? 42);
  const mix: Mix = { ...DEFAULT_MIX, ...o.mix };
  const modes = Object.entries(mix) as Array<[Mode, number]>;
  const total = modes.reduce((s, [, w]) => s + w, 0);
  const [lo, hi] = o.sleepMs ?? [5, 40];
  const priorities: Priority[] = ["fast", "normal", "normal", "bulk"];
  const jobs: PlannedJob[] = [];
  for (let i = 0; i < o.n; i++) {
    let pick = rnd() * total;
    let mode: Mode = "ok";
    for (const [m, w] of modes) {
      if (pick < w) {
        mode = m;
        break;
      }
      pick -= w;
    }
    const failTimes = mode === "transient" ? 1 + Math.floor(rnd() * 2) : 0;
    const hangAttempts = mode === "hang" ? (rnd() < 0.5 ? 1 : o.maxAttempts) : 0;
    const payload: LoadPayload = {
      run: o.run,
      i,
      mode,
      fail_times: failTimes,
      hang_attempts: hangAttempts,
      sleep_ms: Math.round(lo + rnd() * (hi - lo)),
    };
    const fails = mode === "poison" ||
      mode === "always" ||
      (mode === "transient" && failTimes >= o.maxAttempts) ||
      (mode === "hang" && hangAttempts >= o.maxAttempts);
    const designedAttempts = mode === "transient"
      ? Math.min(failTimes + 1, o.maxAttempts)
      : mode === "always"
      ? o.maxAttempts
      : mode === "hang"
      ? Math.min(hangAttempts + 1, o.maxAttempts)
      : 1;
    const job: PlannedJob = {
      key: `${o.run}:${i}`,
      kind: o.kinds[i % o.kinds.length]!,
      priority: priorities[Math.floor(rnd() * priorities.length)]!,
      payload,
      expect: fails ? "failed" : "completed",
      designedAttempts,
    };
    if (rnd() < (o.delayedShare ?? 0.1)) {
      job.delaySeconds = 1 + Math.floor(rnd() * (o.maxDelaySec ?? 2));
    }
    jobs.push(job);
  }
  return jobs;
}

// ---------------------------------------------------------------------------------------
// enqueue

/** Where the gateway is. */
export interface Api {
  url: string;
  serviceKey: string;
}

/** Options of {@link enqueueJobs}. */
export interface EnqueueOptions {
  /** Requests in flight at once. Default 8. */
  concurrency?: number;
  /** Jobs per second (paced from the start); default: as fast as possible. */
  ratePerSec?: number;
  /** How long one job's enqueue may keep retrying. Default 120 s. */
  retryForMs?: number;
  signal?: AbortSignal;
}

/** What {@link enqueueJobs} saw. */
export interface EnqueueStats {
  acknowledged: number;
  /** Attempts that failed with a transport error or a 5xx and were retried. */
  retries: number;
  /** Statuses of the failed attempts (or "network"), with counts. */
  failures: Record<string, number>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/** The body of `queue_job` for a planned job. */
export function queueJobBody(j: PlannedJob): Record<string, unknown> {
  const body: Record<string, unknown> = {
    idempotency_key: j.key,
    kind: j.kind,
    payload: j.payload,
    priority: j.priority,
  };
  if (j.delaySeconds !== undefined) body.delay_seconds = j.delaySeconds;
  return body;
}

/** POSTs one RPC body; the status and text, or "network" when no response came. */
export async function postRpc(
  api: Api,
  fn: string,
  body: unknown,
): Promise<{ status: number | "network"; text: string }> {
  try {
    const res = await fetch(`${api.url}/rest/v1/rpc/${fn}`, {
      method: "POST",
      headers: {
        apikey: api.serviceKey,
        Authorization: `Bearer ${api.serviceKey}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, text: await res.text() };
  } catch (e) {
    return { status: "network", text: toError(e).message };
  }
}

/**
 * PostgREST 12's answer to a request whose database connection broke mid-query (a Postgres
 * restart): 400 with an empty `code` and `message`. Not about the request: retry it.
 */
export function brokenConnection(r: { status: number | "network"; text: string }): boolean {
  if (r.status !== 400) return false;
  try {
    const e = JSON.parse(r.text);
    return e?.code === "" && e?.message === "";
  } catch {
    return false;
  }
}

/**
 * Enqueues every job through the gateway; a transport error, a 5xx or PostgREST's
 * broken-connection 400 ({@link brokenConnection}) is retried with the same idempotency key
 * (at most one job per key results), any other 4xx is a bug and throws.
 */
export async function enqueueJobs(
  api: Api,
  jobs: PlannedJob[],
  o: EnqueueOptions = {},
): Promise<EnqueueStats> {
  const stats: EnqueueStats = { acknowledged: 0, retries: 0, failures: {} };
  const start = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < jobs.length && !o.signal?.aborted) {
      const i = next++;
      const job = jobs[i]!;
      if (o.ratePerSec) {
        const due = start + (i * 1000) / o.ratePerSec;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait, o.signal);
      }
      const deadline = Date.now() + (o.retryForMs ?? 120_000);
      let backoff = 100;
      while (true) {
        const r = await postRpc(api, "queue_job", queueJobBody(job));
        if (r.status === 200) {
          stats.acknowledged++;
          break;
        }
        if (r.status !== "network" && r.status < 500 && !brokenConnection(r)) {
          throw new Error(`queue_job ${job.key}: HTTP ${r.status} ${r.text}`);
        }
        stats.retries++;
        stats.failures[String(r.status)] = (stats.failures[String(r.status)] ?? 0) + 1;
        if (Date.now() > deadline) {
          throw new Error(`queue_job ${job.key}: still failing after retries (${r.text})`);
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1_000);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 8 }, lane));
  return stats;
}

// ---------------------------------------------------------------------------------------
// the handler and the workers

/** One report of the handler: an attempt started, or returned (completed / failed / cancelled). */
export interface ExecutionEvent {
  t: "start" | "end";
  job: string;
  key: string;
  attempt: number;
  worker: string;
  outcome?: "completed" | "failed" | "cancelled";
  at: number;
}

/** The handler of the load kinds: acts out the payload and reports each execution. */
export function loadHandler(
  worker: string,
  record: (e: ExecutionEvent) => void,
): JobHandler<LoadPayload, { i: number; attempt: number }> {
  return async (job) => {
    const p = job.payload;
    const base = { job: job.id, key: `${p.run}:${p.i}`, attempt: job.attempt, worker };
    record({ t: "start", ...base, at: Date.now() });
    const end = (outcome: ExecutionEvent["outcome"]) =>
      record({ t: "end", ...base, outcome, at: Date.now() });
    if (p.mode === "hang" && job.attempt <= p.hang_attempts) {
      // Ignores its abort signal: only the loop's deadline gets the worker past it.
      await new Promise<never>(() => {});
    }
    if (p.sleep_ms > 0) await new Promise((r) => setTimeout(r, p.sleep_ms));
    if (p.mode === "poison") {
      end("cancelled");
      throw new JobCancelError(`poison job ${p.i}`);
    }
    if (p.mode === "always" || (p.mode === "transient" && job.attempt <= p.fail_times)) {
      end("failed");
      throw new Error(`planned failure of job ${p.i} on attempt ${job.attempt}`);
    }
    end("completed");
    return { i: p.i, attempt: job.attempt };
  };
}

/** Worker settings for load tests: short visibility, fast retries. */
export function loadQueueEnv(over: Record<string, string> = {}): Record<string, string> {
  return {
    QUEUE_VISIBILITY_SEC: "3",
    JOB_TIMEOUT_MS: "2000",
    QUEUE_MAX_ATTEMPTS: "8",
    QUEUE_RETRY_BACKOFF_MS_BASE: "200",
    QUEUE_RETRY_BACKOFF_MS_MAX: "1000",
    QUEUE_BATCH_SIZE: "5",
    QUEUE_CONCURRENCY: "5",
    WORKER_BUDGET_MS: "30000",
    ...over,
  };
}

/** In-process workers. */
export interface WorkerPool {
  /** Stops claiming, lets running jobs finish and settle, releases the rest. */
  stop(): Promise<void>;
  /** Errors the loops survived (RPC failures while the gateway or Postgres was away). */
  errors: string[];
}

/**
 * Runs `count` workers in this process, each draining every kind with the real pgmq adapter
 * and worker loop. A loop that throws (gateway or database away) is logged and restarted:
 * what a supervised worker would do.
 */
export function startWorkers(o: {
  client: SupabaseClient;
  config: QueueConfig;
  kinds: string[];
  count: number;
  record: (e: ExecutionEvent) => void;
  name?: string;
}): WorkerPool {
  const ctl = new AbortController();
  const errors: string[] = [];
  const loops: Promise<void>[] = [];
  const adapters: PgmqQueueAdapter[] = [];
  for (let w = 0; w < o.count; w++) {
    const adapter = new PgmqQueueAdapter(o.client, o.config);
    adapters.push(adapter);
    for (const kind of o.kinds) {
      const worker = `${o.name ?? "load"}-${w}-${kind.slice(-4)}`;
      const handler = loadHandler(worker, o.record);
      loops.push((async () => {
        while (!ctl.signal.aborted) {
          try {
            const s = await adapter.consume(kind, handler, {
              signal: ctl.signal,
              workerId: worker,
            });
            if (s.claimed === 0) await sleep(100, ctl.signal);
          } catch (e) {
            errors.push(toError(e).message);
            await sleep(300, ctl.signal);
          }
        }
      })());
    }
  }
  return {
    errors,
    async stop() {
      ctl.abort();
      await Promise.all(loops);
      await Promise.all(adapters.map((a) => a.shutdown()));
    },
  };
}

/** A worker process (`worker_process.ts`) the test can kill. */
export interface WorkerProcess {
  pid: number;
  name: string;
  /** Executions started and not (yet) ended in this process. */
  inFlight: Set<string>;
  exited: Promise<Deno.CommandStatus>;
  kill(signal: Deno.Signal): void;
}

/** Starts a worker process draining `kinds`; its execution reports go to `record`. */
export function spawnWorkerProcess(o: {
  name: string;
  kinds: string[];
  api: Api;
  env: Record<string, string>;
  record: (e: ExecutionEvent) => void;
  log?: (line: string) => void;
}): WorkerProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./worker_process.ts", import.meta.url).pathname],
    env: {
      ...o.env,
      SUPABASE_URL: o.api.url,
      SUPABASE_SERVICE_ROLE_KEY: o.api.serviceKey,
      LOAD_KINDS: o.kinds.join(","),
      LOAD_WORKER_NAME: o.name,
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const inFlight = new Set<string>();
  const onLine = (line: string) => {
    if (!line.startsWith("{")) return o.log?.(`[${o.name}] ${line}`);
    let e: ExecutionEvent;
    try {
      e = JSON.parse(line);
    } catch {
      return; // a line cut short by SIGKILL
    }
    if (e.t !== "start" && e.t !== "end") return o.log?.(`[${o.name}] ${line}`);
    const id = `${e.job}#${e.attempt}`;
    if (e.t === "start") inFlight.add(id);
    else inFlight.delete(id);
    o.record(e);
  };
  const pump = async (s: ReadableStream<Uint8Array>, each: (l: string) => void) => {
    let buf = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        each(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    if (buf) each(buf);
  };
  const pipes = Promise.all([
    pump(child.stdout, onLine),
    pump(child.stderr, (l) => o.log?.(`[${o.name}] ${l}`)),
  ]);
  return {
    pid: child.pid,
    name: o.name,
    inFlight,
    exited: pipes.then(() => child.status),
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    },
  };
}

// ---------------------------------------------------------------------------------------
// the ledger

/** The outcome of {@link checkLedger}. */
export interface LedgerReport {
  planned: number;
  /** Planned jobs with a ledger row. */
  rows: number;
  completed: number;
  deadLettered: number;
  /** Planned jobs with no row, or not in a terminal state. */
  lost: string[];
  /** Terminal, but not in the state they were designed to reach. */
  unexpected: Array<
    { key: string; expect: string; status: string; attempts: number; error: string }
  >;
  /** Ledger rows still `processing`. */
  processing: number;
  /** Messages left in the kinds' pgmq queues (every tier). */
  leftoverMessages: number;
  /** Jobs with more than one accepted completion. */
  doubleCompleted: string[];
  claims: number;
  /** Claims beyond the designed attempts (redeliveries after a lost worker or lease). */
  redeliveries: number;
  settleRefused: number;
  /** Handler executions reported (started). */
  executions: number;
  /** Jobs whose handler returned successfully more than once. */
  duplicates: string[];
  /** duplicates / completed. */
  duplicateRate: number;
}

/** Checks every planned job against the ledger and the execution reports. */
export async function checkLedger(
  sql: Sql,
  jobs: PlannedJob[],
  executions: ExecutionEvent[],
): Promise<LedgerReport> {
  const kinds = [...new Set(jobs.map((j) => j.kind))];
  const rows = await sql<
    Array<{
      key: string;
      status: string;
      attempts: number;
      last_error: string | null;
      claims: number;
      completes: number;
      refused: number;
    }>
  >`
    select j.idempotency_key as key, j.status, j.attempts, j.last_error,
           -- Claims that counted: the ledger's attempts (a release or snooze gives one back).
           j.attempts as claims,
           count(*) filter (where e.type = 'completed')::int as completes,
           count(*) filter (where e.type = 'settle_refused')::int as refused
    from public.jobs j
    left join public.job_events e on e.job_id = j.id
    where j.kind = any(${kinds}) and j.idempotency_key = any(${jobs.map((j) => j.key)})
    group by j.id`;
  const byKey = new Map(rows.map((r) => [r.key, r]));
  let leftover = 0;
  for (const kind of kinds) {
    const [q] = await sql<Array<{ queue_name: string }>>`
      select queue_name from conveyor.job_kinds where kind = ${kind}`;
    for (const tier of ["", "_fast", "_bulk"]) {
      const [c] = await sql.unsafe(`select count(*)::int as n from pgmq.q_${q!.queue_name}${tier}`);
      leftover += c!.n as number;
    }
  }
  const successes = new Map<string, number>();
  for (const e of executions) {
    if (e.t === "end" && e.outcome === "completed") {
      successes.set(e.key, (successes.get(e.key) ?? 0) + 1);
    }
  }
  const r: LedgerReport = {
    planned: jobs.length,
    rows: rows.length,
    completed: rows.filter((x) => x.status === "completed").length,
    deadLettered: rows.filter((x) => x.status === "failed").length,
    lost: [],
    unexpected: [],
    processing: rows.filter((x) => x.status === "processing").length,
    leftoverMessages: leftover,
    doubleCompleted: rows.filter((x) => x.completes > 1).map((x) => x.key),
    claims: 0,
    redeliveries: 0,
    settleRefused: 0,
    executions: executions.filter((e) => e.t === "start").length,
    duplicates: [...successes].filter(([, n]) => n > 1).map(([k]) => k),
    duplicateRate: 0,
  };
  for (const j of jobs) {
    const row = byKey.get(j.key);
    if (!row || (row.status !== "completed" && row.status !== "failed")) {
      r.lost.push(j.key);
      continue;
    }
    if (row.status !== j.expect) {
      r.unexpected.push({
        key: j.key,
        expect: j.expect,
        status: row.status,
        attempts: row.attempts,
        error: row.last_error ?? "",
      });
    }
    r.claims += row.claims;
    r.redeliveries += Math.max(0, row.claims - j.designedAttempts);
    r.settleRefused += row.refused;
  }
  r.duplicateRate = r.completed ? r.duplicates.length / r.completed : 0;
  return r;
}

/** One line for a test log. */
export function formatLedger(r: LedgerReport): string {
  return `planned ${r.planned}, rows ${r.rows}, completed ${r.completed}, dead-lettered ` +
    `${r.deadLettered}, lost ${r.lost.length}, unexpected ${r.unexpected.length}, ` +
    `processing ${r.processing}, leftover messages ${r.leftoverMessages}, claims ${r.claims}, ` +
    `redeliveries ${r.redeliveries}, settle refused ${r.settleRefused}, executions ` +
    `${r.executions}, duplicates ${r.duplicates.length} (${(r.duplicateRate * 100).toFixed(2)} %)`;
}

/** Waits until every planned job is terminal (completed or failed). */
export async function waitForTerminal(
  sql: Sql,
  jobs: PlannedJob[],
  ms: number,
): Promise<void> {
  const kinds = [...new Set(jobs.map((j) => j.kind))];
  const keys = jobs.map((j) => j.key);
  const deadline = Date.now() + ms;
  let left = jobs.length;
  while (true) {
    try {
      const [c] = await sql`
        select count(*)::int as n from public.jobs
        where kind = any(${kinds}) and idempotency_key = any(${keys})
          and status in ('completed', 'failed')`;
      left = jobs.length - (c!.n as number);
      if (left === 0) return;
    } catch {
      // The database is restarting: ask again.
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${left} of ${jobs.length} jobs not terminal`);
    }
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------
// content jobs

/** Creates `n` content jobs through the gateway (same-key retries); returns their ids. */
export async function enqueueContentJobs(
  api: Api,
  run: string,
  n: number,
  o: { ratePerSec?: number; retryForMs?: number } = {},
): Promise<string[]> {
  const ids: string[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    if (o.ratePerSec) {
      const wait = start + (i * 1000) / o.ratePerSec - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const body = {
      idempotency_key: `${run}:content:${i}`,
      brief: { topic: `reliability ${i}`, audience: "SREs", keywords: ["ledger"] },
    };
    const deadline = Date.now() + (o.retryForMs ?? 120_000);
    while (true) {
      const r = await postRpc(api, "queue_content_job", body);
      if (r.status === 200) {
        ids.push(JSON.parse(r.text) as string);
        break;
      }
      if (
        (r.status !== "network" && r.status < 500 && !brokenConnection(r)) || Date.now() > deadline
      ) {
        throw new Error(`queue_content_job ${body.idempotency_key}: ${r.status} ${r.text}`);
      }
      await sleep(200);
    }
  }
  return ids;
}

/** The content jobs' end state. */
export interface ContentReport {
  jobs: number;
  completed: number;
  /** Not completed (failed, or still pending/running). */
  notCompleted: Array<{ id: string; status: string }>;
  /** Stages still in progress, or ready, of these jobs. */
  openStages: number;
  /** (job, stage) pairs completed more than once (a settle accepted twice). */
  doubleCompleted: number;
  /** Stage attempts beyond the first (redone after a lost worker or lease). */
  redoneStages: number;
  exports: number;
}

/** Reads the end state of content jobs `ids`. */
export async function checkContent(sql: Sql, ids: string[]): Promise<ContentReport> {
  const jobs = await sql<Array<{ id: string; status: string }>>`
    select id, status from public.content_jobs where id = any(${ids})`;
  const [st] = await sql`
    select count(*) filter (where status in ('ready', 'in_progress'))::int as open,
           coalesce(sum(greatest(attempts - 1, 0)), 0)::int as redone
    from public.content_job_stages where job_id = any(${ids})`;
  const [dc] = await sql`
    select count(*)::int as n from (
      select job_id, stage from public.content_job_events
      where job_id = any(${ids}) and status = 'completed'
      group by 1, 2 having count(*) > 1) d`;
  const [ex] =
    await sql`select count(*)::int as n from public.content_exports where job_id = any(${ids})`;
  return {
    jobs: jobs.length,
    completed: jobs.filter((j) => j.status === "completed").length,
    notCompleted: jobs.filter((j) => j.status !== "completed"),
    openStages: st!.open,
    doubleCompleted: dc!.n,
    redoneStages: st!.redone,
    exports: ex!.n,
  };
}

/** Waits until every content job in `ids` is completed or failed. */
export async function waitForContent(sql: Sql, ids: string[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let left = ids.length;
  while (true) {
    try {
      const [c] = await sql`select count(*)::int as n from public.content_jobs
                            where id = any(${ids}) and status in ('completed', 'failed')`;
      left = ids.length - (c!.n as number);
      if (left === 0) return;
    } catch {
      // The database is restarting: ask again.
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms: ${left} of ${ids.length} content jobs not done`);
    }
    await sleep(250);
  }
}
