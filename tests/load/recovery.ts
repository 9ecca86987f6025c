/**
 * The recovery measurements of issue 17: `deno task recovery [--faults …] [--runs 2] …`.
 *
 * Starts a private stack (its own folder and free ports, like `deno task soak`) and, for each
 * fault, puts a steady mixed load through it exactly as production runs: `queue_job` over
 * the gateway at a fixed rate per kind (enrich and enforce, and outreach, whose `sendgrid`
 * token bucket limits it), with the shipped worker functions started by the dispatcher
 * (kicks, cron) over pg_net. After a pre-fault period it injects the fault, watches for an
 * observation period, stops the load, waits for the drain and checks every acknowledged job
 * against the ledger. Completions per kind per second are sampled from the ledger every
 * second (the only record of the jobs a `db:reset` wipes) and read again after the drain.
 *
 * The faults:
 *
 * - `worker`:     `kill -9` of the process serving one kind's worker function (the kind
 *                 rotates: enrich, enforce, outreach); over at once.
 * - `gateway`:    `kill -9` of the gateway (Kong's part and, locally, the functions host: one
 *                 process); over when the supervisor's new gateway answers `/health` with
 *                 the database reachable.
 * - `functions`:  the functions host is not a process of its own (it runs inside the
 *                 gateway, so `gateway` kills it too); this kills every function process at
 *                 once instead (workers and dispatcher: an edge runtime losing its isolates),
 *                 the gateway staying up. Over at once.
 * - `postgrest`:  `kill -9` of PostgREST; over when `/health` says the database is reachable.
 * - `pg-restart`: `pg_ctl restart -w -m immediate`; over when it returns (Postgres accepts
 *                 connections again).
 * - `db-reset`:   `deno task db:reset` on the running stack; over when it returns. The ledger
 *                 is wiped by design: the jobs acknowledged before it are gone, those
 *                 acknowledged after it must all complete.
 *
 * Reported per run: the pre-fault rate per kind, the fault's duration, the seconds from the
 * fault's end until each kind is back to ≥ 50 % of its pre-fault rate (for good: see
 * recovery_analysis.ts), jobs lost, jobs completed twice (accepted completions: the stack runs
 * with `audit = 'full'`, so every claim and success is an event), jobs run again with the
 * claim that preceded the fault, HTTP answers by status (only 2xx, 4xx and 503 are allowed; a
 * refused connection while the gateway is dead is counted as "no answer"), and the machine's
 * load. Before the faults it measures how a full token bucket drains: a new tenant's 200
 * outreach jobs, claims/s and completions/s against the bucket's refill rate.
 *
 * Writes `report.md` and `results.json` to `<out>/<timestamp>/` and `<out>/latest/`.
 *
 * @module
 */
import { resolve } from "node:path";
import postgres, { type Sql } from "postgres";
import { cliArgs, usageExit } from "../../tools/args.ts";
import { Cluster } from "../../tools/stack/cluster.ts";
import { findPgBin } from "../../tools/stack/pg_binaries.ts";
import { freePort } from "../../tools/stack/proc.ts";
import { REPO_ROOT } from "../../tools/stack/state.ts";
import { stackInfo } from "../../tools/stack/supervisor.ts";
import { stackProcs } from "../../tools/test/procs.ts";
import { type Api, postRpc } from "./driver.ts";
import {
  allowedAnswer,
  answerClass,
  type Completion,
  type KindRecovery,
  recoveryOf,
} from "./recovery_analysis.ts";

const FAULTS = ["worker", "gateway", "functions", "postgrest", "pg-restart", "db-reset"] as const;
type Fault = typeof FAULTS[number];

const USAGE = `usage: deno task recovery [--faults ${FAULTS.join(",")}] [--runs 2]
                          [--rate 4] [--limited-rate 2] [--pre 20] [--post 45]
                          [--no-bucket] [--dir .stack/recovery] [--out .artifacts/recovery] [--keep]

Measures how fast the system is back after each fault, under a steady mixed load through a
private stack: per kind the pre-fault rate, the fault's duration, the seconds from the
fault's end until the kind is back to >= 50 % of that rate, jobs lost and completed twice,
HTTP answers by status. First it measures how a full token bucket drains (--no-bucket skips
it). Takes about 3 minutes per run. Report: <out>/latest/report.md (+ results.json).

  --faults LIST     comma-separated, in this order by default: ${FAULTS.join(", ")}
  --runs N          runs of each fault (default 2)
  --rate N          jobs/s of each unlimited kind, enrich and enforce (default 4)
  --limited-rate N  jobs/s of outreach, the rate-limited kind (default 2; its bucket refills 5/s)
  --pre S           pre-fault period the rate is taken from (default 20)
  --post S          observation period after the fault's end (default 45)
  --no-bucket       skip the token-bucket measurement
  --dir D           the private stack's folder (default .stack/recovery)
  --out D           where the report goes (default .artifacts/recovery)
  --keep            leave the stack running afterwards
  -h, --help        this text`;

const { values } = cliArgs(USAGE, {
  options: {
    faults: { type: "string", default: FAULTS.join(",") },
    runs: { type: "string", default: "2" },
    rate: { type: "string", default: "4" },
    "limited-rate": { type: "string", default: "2" },
    pre: { type: "string", default: "20" },
    post: { type: "string", default: "45" },
    "no-bucket": { type: "boolean", default: false },
    dir: { type: "string", default: ".stack/recovery" },
    out: { type: "string", default: ".artifacts/recovery" },
    keep: { type: "boolean", default: false },
  },
});
const RUNS = Number(values.runs);
const RATE = Number(values.rate);
const LIMITED_RATE = Number(values["limited-rate"]);
const PRE_S = Number(values.pre);
const POST_S = Number(values.post);
for (
  const [k, v] of [["runs", RUNS], ["rate", RATE], ["limited-rate", LIMITED_RATE], [
    "pre",
    PRE_S,
  ], ["post", POST_S]] as const
) {
  if (!(v > 0)) usageExit(`--${k} must be a positive number, got "${values[k]}"`);
}
const SELECTED: Fault[] = [];
for (const f of values.faults!.split(",").map((s) => s.trim()).filter(Boolean)) {
  if (!(FAULTS as readonly string[]).includes(f)) {
    usageExit(`unknown fault "${f}"; faults: ${FAULTS.join(", ")}`);
  }
  SELECTED.push(f as Fault);
}
const DIR = resolve(REPO_ROOT, values.dir!);
const OUT = resolve(REPO_ROOT, values.out!);
/** Load before the pre-fault period: workers started, rates settled. */
const WARM_S = 10;
const DRAIN_MS = 240_000;
const RUN = `recovery:${crypto.randomUUID().slice(0, 8)}`;
const KINDS = ["enrich", "enforce", "outreach"] as const;
const LIMITED = "outreach";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const hms = () => new Date().toISOString().slice(11, 19);
const log = (l: string) => console.log(`[recovery ${hms()}] ${l}`);

// ---------------------------------------------------------------------------------------
// the machine

/** The 1-minute load average. */
function loadAvg(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

/** CPU time counters (all, idle) from /proc/stat, to compute how busy the machine was. */
function cpuTimes(): { total: number; idle: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1)
    .map(Number);
  return { total: f.reduce((s, n) => s + n, 0), idle: f[3]! + (f[4] ?? 0) };
}

function busyPercent(a: { total: number; idle: number }, b: { total: number; idle: number }) {
  const t = b.total - a.total;
  return t > 0 ? Math.round(100 * (1 - (b.idle - a.idle) / t)) : 0;
}

// ---------------------------------------------------------------------------------------
// the stack

async function stackCmd(cmd: "up" | "down" | "reset", ports?: { api: number; db: number }) {
  const args = ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, cmd, "--dir", DIR];
  if (ports) args.push("--api-port", String(ports.api), "--db-port", String(ports.db));
  const res = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
  if (!res.success && cmd !== "down") throw new Error(`stack ${cmd} failed:\n${text.slice(-2000)}`);
  return text;
}

/** Does the gateway answer /health with the database reachable (PostgREST ready)? */
async function apiReady(api: Api): Promise<boolean> {
  try {
    const res = await fetch(`${api.url}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = await res.json();
    return res.ok && body?.db === true;
  } catch {
    return false;
  }
}

/** Polls {@link apiReady} every 100 ms; the time it first said yes. */
async function waitApiReady(api: Api, ms = 120_000): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await apiReady(api)) return Date.now();
    await sleep(100);
  }
  throw new Error(`the API did not serve again within ${ms / 1000} s`);
}

/** Every claim and success is an event: what "completed twice" is counted from. */
async function auditFull(sql: Sql): Promise<void> {
  await sql`update conveyor.settings set value = '"full"' where key = 'audit'`;
}

// ---------------------------------------------------------------------------------------
// the load

/** One job the load enqueued. */
interface Sent {
  key: string;
  kind: string;
  /** When queue_job answered 200 (ms since the epoch); null: never acknowledged. */
  ackAt: number | null;
}

function jobBody(key: string, kind: string, i: number, tenant?: string): Record<string, unknown> {
  const payload = kind === "enrich"
    ? { email: `User${i}@Example.com`, name: `user ${i}` }
    : kind === "enforce"
    ? { subject: `user-${i}`, email: `user${i}@example.com`, country: "FR" }
    : {
      to: `user${i}@example.com`,
      template: "welcome",
      vars: { first_name: `User${i}`, company: "Conveyor" },
    };
  const body: Record<string, unknown> = { idempotency_key: key, kind, payload };
  if (tenant) body.tenant_id = tenant;
  return body;
}

/** Open-loop `queue_job` at a fixed rate per kind; every request retried with its key. */
class Load {
  readonly jobs: Sent[] = [];
  readonly answers = new Map<string, number>();
  /** Answers outside 2xx/4xx/503/no-answer, with when (ms since the epoch) and text. */
  readonly bad: Array<{ at: number; cls: string; text: string }> = [];
  /** A sample text per 4xx class. */
  readonly samples = new Map<string, string>();
  #stopped = false;
  readonly #loops: Promise<void>[] = [];
  readonly #inFlight = new Set<Promise<void>>();

  constructor(readonly api: Api, readonly prefix: string, readonly rates: Record<string, number>) {}

  start(): this {
    const t0 = performance.now();
    for (const [kind, rate] of Object.entries(this.rates)) {
      this.#loops.push((async () => {
        for (let i = 0; !this.#stopped; i++) {
          const wait = t0 + (i * 1000) / rate - performance.now();
          if (wait > 0) await sleep(wait);
          if (this.#stopped) break;
          const p = this.#send(kind, i);
          this.#inFlight.add(p);
          void p.finally(() => this.#inFlight.delete(p));
        }
      })());
    }
    return this;
  }

  async #send(kind: string, i: number): Promise<void> {
    const job: Sent = { key: `${this.prefix}:${kind}:${i}`, kind, ackAt: null };
    this.jobs.push(job);
    const deadline = Date.now() + 180_000;
    for (let backoff = 100;; backoff = Math.min(backoff * 2, 1_000)) {
      const r = await postRpc(this.api, "queue_job", jobBody(job.key, kind, i));
      const cls = answerClass(r.status, r.text);
      this.answers.set(cls, (this.answers.get(cls) ?? 0) + 1);
      if (r.status === 200) {
        job.ackAt = Date.now();
        return;
      }
      if (!allowedAnswer(cls) && !cls.startsWith("no answer")) {
        this.bad.push({ at: Date.now(), cls, text: r.text.slice(0, 300) });
      } else if (!this.samples.has(cls)) this.samples.set(cls, r.text.slice(0, 200));
      // Everything else is retried with the same key (idempotent), as a client would.
      if (Date.now() > deadline) return;
      await sleep(backoff);
    }
  }

  /** Stops enqueueing; resolves when every request has its answer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
    while (this.#inFlight.size) await Promise.all([...this.#inFlight]);
  }
}

// ---------------------------------------------------------------------------------------
// sampling the ledger

/** Reads the jobs of a run that finished in the last 30 s, every second. */
class Sampler {
  /** Job id → its completion. */
  readonly done = new Map<string, Completion>();
  #stop = false;
  #loop: Promise<void> | undefined;
  readonly #sql: Sql;

  constructor(dbUrl: string, readonly prefix: string, readonly onTick: () => void) {
    this.#sql = postgres(dbUrl, {
      max: 1,
      onnotice: () => {},
      connect_timeout: 3,
      idle_timeout: 5,
    });
  }

  start(): this {
    this.#loop = (async () => {
      while (!this.#stop) {
        const next = Date.now() + 1_000;
        try {
          const rows = await Promise.race([
            this.#sql<Array<{ id: string; kind: string; at: number }>>`
              select id::text, kind, (extract(epoch from finished_at) * 1000)::float8 as at
              from public.jobs
              where finished_at > clock_timestamp() - interval '30 seconds'
                and status = 'completed' and idempotency_key like ${this.prefix + ":%"}`,
            sleep(3_000).then(() => null),
          ]);
          for (const r of rows ?? []) this.done.set(r.id, { kind: r.kind, at: r.at });
        } catch {
          // The database is away (the fault): sample again in a second.
        }
        this.onTick();
        await sleep(Math.max(0, next - Date.now()));
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await this.#loop;
    await this.#sql.end({ timeout: 1 }).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------
// the faults

/** What injecting a fault tells. */
interface Injected {
  /** The fault is over (ms since the epoch). */
  end: number;
  detail: string;
}

async function inject(
  fault: Fault,
  n: number,
  ctx: { api: Api; sql: Sql; cluster: Cluster },
): Promise<Injected> {
  const procs = await stackProcs(DIR);
  switch (fault) {
    case "worker": {
      const kind = KINDS[(n - 1) % KINDS.length]!;
      const slug = `${kind}-worker`;
      const victims = procs.functions.filter((f) => f.slug === slug);
      if (!victims.length) throw new Error(`no ${slug} process to kill`);
      const [inv] = await ctx.sql`
        select count(*)::int as n from conveyor.worker_invocations
        where target = ${kind} and status = 'running'`;
      for (const v of victims) Deno.kill(v.pid, "SIGKILL");
      return {
        end: Date.now(),
        detail: `${slug} (pid ${victims.map((v) => v.pid).join(", ")}, ${
          inv!.n
        } running invocation(s))`,
      };
    }
    case "functions": {
      const victims = procs.functions;
      for (const v of victims) Deno.kill(v.pid, "SIGKILL");
      return {
        end: Date.now(),
        detail: `${victims.length} function processes (${
          [...new Set(victims.map((v) => v.slug))].sort().join(", ")
        })`,
      };
    }
    case "gateway": {
      if (!procs.gateway) throw new Error("no gateway process");
      Deno.kill(procs.gateway.pid, "SIGKILL");
      const end = await waitApiReady(ctx.api);
      return {
        end,
        detail:
          `gateway pid ${procs.gateway.pid} with ${procs.functions.length} function processes`,
      };
    }
    case "postgrest": {
      if (!procs.postgrest) throw new Error("no PostgREST process");
      Deno.kill(procs.postgrest.pid, "SIGKILL");
      await sleep(200); // /health must not see the old process still answering
      const end = await waitApiReady(ctx.api);
      return { end, detail: `PostgREST pid ${procs.postgrest.pid}` };
    }
    case "pg-restart": {
      await ctx.cluster.restart("immediate");
      return { end: Date.now(), detail: "pg_ctl restart -w -m immediate" };
    }
    case "db-reset": {
      const out = await stackCmd("reset");
      const end = Date.now();
      await auditFull(ctx.sql).catch((e) => log(`could not set audit full again: ${e}`));
      const pushed = /applied (\d+) migration/.exec(out)?.[1];
      return { end, detail: `deno task db:reset (${pushed ?? "?"} migrations and the seed)` };
    }
  }
}

// ---------------------------------------------------------------------------------------
// one run

/** The ledger's view of one job of a run, after the drain. */
interface JobRow {
  id: string;
  key: string;
  kind: string;
  status: string;
  attempts: number;
  at: number | null;
  completes: number;
  claims: number;
  firstClaim: number | null;
}

/** Everything measured in one run of one fault. */
interface RunResult {
  fault: Fault;
  n: number;
  detail: string;
  at: string;
  /** ms from injecting the fault to its end. */
  faultMs: number;
  /** ms from injecting the fault until /health says the API serves with its database. */
  apiBackMs: number | null;
  /** 1-minute load average when the fault was injected, and the CPU busy % over the run. */
  load1: number;
  cpuBusy: number;
  kinds: KindRecovery[];
  acked: number;
  /** Acknowledged jobs that must be in the ledger (for db-reset: acknowledged after it). */
  required: number;
  lost: string[];
  failed: string[];
  /** Jobs with more than one accepted completion. */
  completedTwice: string[];
  /** Jobs claimed more than once, and of those the ones first claimed before the fault's end. */
  redelivered: number;
  redeliveredBeforeEnd: number;
  /** Seconds after the fault's end until the last job of the run finished. */
  lastDoneS: number | null;
  answers: Record<string, number>;
  badAnswers: Array<{ at: number; cls: string; text: string }>;
  samples: Record<string, string>;
  drained: boolean;
  /** db-reset: what happened to the jobs acknowledged before and during it. */
  wiped?: { before: number; during: number; duringSurvived: number };
}

async function readRun(sql: Sql, prefix: string): Promise<JobRow[]> {
  return await sql<JobRow[]>`
    select j.id::text, j.idempotency_key as key, j.kind, j.status, j.attempts,
           (extract(epoch from j.finished_at) * 1000)::float8 as at,
           count(*) filter (where e.type = 'completed')::int as completes,
           count(*) filter (where e.type = 'claimed')::int as claims,
           (extract(epoch from min(e.created_at) filter (where e.type = 'claimed')) * 1000)::float8
             as "firstClaim"
    from public.jobs j left join public.job_events e on e.job_id = j.id
    where j.idempotency_key like ${prefix + ":%"}
    group by j.id`;
}

async function waitDrained(sql: Sql, prefix: string, keys: string[]): Promise<boolean> {
  const deadline = Date.now() + DRAIN_MS;
  let lastLog = 0;
  while (Date.now() < deadline) {
    try {
      const [c] = await sql`
        select count(*) filter (where status in ('pending', 'processing'))::int as open,
               count(*) filter (where idempotency_key = any(${keys})
                                  and status in ('completed', 'failed'))::int as done
        from public.jobs where idempotency_key like ${prefix + ":%"}`;
      if (c!.open === 0 && c!.done === keys.length) return true;
      if (Date.now() - lastLog > 15_000) {
        lastLog = Date.now();
        log(`  drain: ${c!.done} of ${keys.length} acknowledged jobs finished, ${c!.open} open`);
      }
    } catch {
      // the database is still coming back
    }
    await sleep(1_000);
  }
  return false;
}

async function runFault(
  fault: Fault,
  n: number,
  ctx: { api: Api; sql: Sql; cluster: Cluster; dbUrl: string },
): Promise<RunResult> {
  const prefix = `${RUN}:${fault}:${n}`;
  const rates = { enrich: RATE, enforce: RATE, [LIMITED]: LIMITED_RATE };
  log(`${fault} #${n}: load ${JSON.stringify(rates)} jobs/s; fault in ${WARM_S + PRE_S} s`);
  const cpu0 = cpuTimes();
  const load = new Load(ctx.api, prefix, rates).start();
  let phase = "warm";
  let mark = Date.now();
  let ticks = 0;
  const sampler = new Sampler(ctx.dbUrl, prefix, () => {
    // Progress: the last 3 s per kind, every 3 s.
    if (++ticks % 3) return;
    const now = Date.now();
    const done = [...sampler.done.values()];
    const rate = (k: string) =>
      (done.filter((c) => c.kind === k && c.at >= now - 3_500 && c.at < now - 500).length / 3)
        .toFixed(1);
    log(
      `  ${phase} +${Math.round((now - mark) / 1000)}s  ` +
        KINDS.map((k) => `${k} ${rate(k)}/s`).join("  ") +
        `  acked ${load.jobs.filter((j) => j.ackAt).length}/${load.jobs.length}  load ${
          loadAvg().toFixed(1)
        }`,
    );
  }).start();
  try {
    await sleep(WARM_S * 1000);
    phase = "pre";
    mark = Date.now();
    await sleep(PRE_S * 1000);
    const load1 = loadAvg();
    const start = Date.now();
    phase = "fault";
    mark = start;
    // Watch /health on the side: when the API serves with its database again.
    let apiBack: number | null = null;
    let watching = true;
    const watch = (async () => {
      await sleep(150);
      while (watching && apiBack === null) {
        if (!(await apiReady(ctx.api))) break;
        await sleep(100);
      }
      while (watching && apiBack === null) {
        if (await apiReady(ctx.api)) apiBack = Date.now();
        else await sleep(100);
      }
    })();
    log(`  injecting ${fault}`);
    const inj = await inject(fault, n, ctx);
    phase = "post";
    mark = inj.end;
    log(`  ${fault} over after ${((inj.end - start) / 1000).toFixed(1)} s: ${inj.detail}`);
    await sleep(POST_S * 1000);
    watching = false;
    await watch;
    log("  stopping the load");
    await load.stop();
    const acked = load.jobs.filter((j) => j.ackAt !== null);
    const required = fault === "db-reset" ? acked.filter((j) => j.ackAt! >= inj.end) : acked;
    const drained = await waitDrained(ctx.sql, prefix, required.map((j) => j.key));
    const rows = await readRun(ctx.sql, prefix);
    await sampler.stop();
    // The ledger's finish times, and the sampler's for the jobs a reset wiped.
    const done = new Map(sampler.done);
    for (const r of rows) {
      if (r.status === "completed" && r.at !== null) done.set(r.id, { kind: r.kind, at: r.at });
    }
    const completions = [...done.values()];
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const kinds = KINDS.map((k) =>
      recoveryOf(completions, k, {
        start,
        end: inj.end,
        preMs: PRE_S * 1000,
        postMs: POST_S * 1000,
      })
    );
    const lost = required.filter((j) => {
      const r = byKey.get(j.key);
      return !r || (r.status !== "completed" && r.status !== "failed");
    }).map((j) => j.key);
    const redelivered = rows.filter((r) => r.attempts > 1 || r.claims > 1);
    const finishes = rows.map((r) => r.at).filter((a): a is number => a !== null);
    const result: RunResult = {
      fault,
      n,
      detail: inj.detail,
      at: new Date(start).toISOString(),
      faultMs: inj.end - start,
      apiBackMs: apiBack === null ? null : (apiBack as number) - start,
      load1,
      cpuBusy: busyPercent(cpu0, cpuTimes()),
      kinds,
      acked: acked.length,
      required: required.length,
      lost,
      failed: rows.filter((r) => r.status === "failed").map((r) => r.key),
      completedTwice: rows.filter((r) => r.completes > 1).map((r) => r.key),
      redelivered: redelivered.length,
      redeliveredBeforeEnd: redelivered.filter((r) =>
        r.firstClaim !== null && r.firstClaim < inj.end
      )
        .length,
      lastDoneS: finishes.length ? Math.round((Math.max(...finishes) - inj.end) / 100) / 10 : null,
      answers: Object.fromEntries([...load.answers].sort()),
      badAnswers: load.bad,
      samples: Object.fromEntries(load.samples),
      drained,
    };
    if (fault === "db-reset") {
      const before = acked.filter((j) => j.ackAt! < start);
      const during = acked.filter((j) => j.ackAt! >= start && j.ackAt! < inj.end);
      result.wiped = {
        before: before.length,
        during: during.length,
        duringSurvived: during.filter((j) => byKey.has(j.key)).length,
      };
    }
    log(`  ${summaryLine(result)}`);
    return result;
  } finally {
    await load.stop();
    await sampler.stop();
  }
}

function summaryLine(r: RunResult): string {
  const back = r.kinds.map((k) =>
    `${k.kind} ${k.preRate}/s back ${k.backS === null ? "NOT" : `+${k.backS}s`}`
  ).join(", ");
  return `${r.fault} #${r.n}: fault ${
    (r.faultMs / 1000).toFixed(1)
  } s; ${back}; lost ${r.lost.length}, ` +
    `completed twice ${r.completedTwice.length}, redelivered ${r.redelivered} ` +
    `(${r.redeliveredBeforeEnd} claimed before the fault's end); answers ${
      JSON.stringify(r.answers)
    }${r.drained ? "" : "; NOT DRAINED"}`;
}

// ---------------------------------------------------------------------------------------
// the token bucket

interface BucketResult {
  jobs: number;
  capacity: number;
  refillPerSec: number;
  maxConcurrent: number;
  tokensAtStart: number;
  /** Seconds from the first acknowledgement until `capacity` jobs had completed. */
  burstS: number | null;
  /** After the burst: completions/s and claims/s (tokens taken/s), and over how long. */
  steadyCompletionsPerSec: number;
  steadyClaimsPerSec: number;
  steadyS: number;
  /** Mean tokens left in the bucket during the steady phase (≈ 0: the bucket is the limit). */
  steadyTokens: number;
  totalS: number;
  load1: number;
}

/** A new tenant's full sendgrid bucket, 4 × its capacity of outreach jobs at once. */
async function measureBucket(api: Api, sql: Sql): Promise<BucketResult> {
  const [t] = await sql`
    insert into public.tenants (name) values (${`recovery-bucket-${crypto.randomUUID()}`})
    returning id::text`;
  const tenant = t!.id as string;
  const [b] = await sql`
    select tokens_available::float8 as tokens, capacity::float8 as capacity,
           refill_per_sec::float8 as refill, max_concurrent
    from public.rate_limiters where tenant_id = ${tenant} and service_name = 'sendgrid'`;
  const n = Math.max(100, Math.round(b!.capacity * 4));
  log(
    `bucket: ${n} outreach jobs for a new tenant; sendgrid bucket ${b!.tokens}/${
      b!.capacity
    } tokens, ` +
      `refill ${b!.refill}/s, max_concurrent ${b!.max_concurrent}`,
  );
  const load1 = loadAvg();
  const prefix = `${RUN}:bucket`;
  // Token samples while it drains: tokens as take_rate_limit would compute them now.
  const tokens: Array<{ at: number; tokens: number }> = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [r] = await sql`
        select least(capacity, tokens_available
                 + refill_per_sec * greatest(0, extract(epoch from clock_timestamp() - refilled_at)))
                 ::float8 as tokens
        from public.rate_limiters where tenant_id = ${tenant} and service_name = 'sendgrid'`;
      tokens.push({ at: Date.now(), tokens: r!.tokens });
      await sleep(250);
    }
  })();
  let first = 0;
  const keys = Array.from({ length: n }, (_, i) => `${prefix}:${i}`);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < n) {
      const i = next++;
      for (;;) {
        const r = await postRpc(api, "queue_job", jobBody(keys[i]!, "outreach", i, tenant));
        if (r.status === 200) break;
        await sleep(200);
      }
      first ||= Date.now();
    }
  }));
  log(`bucket: ${n} jobs acknowledged in ${((Date.now() - first) / 1000).toFixed(1)} s`);
  const drained = await waitDrained(sql, prefix, keys);
  sampling = false;
  await sampler;
  const rows = await readRun(sql, prefix);
  const ends = rows.map((r) => r.at!).filter(Boolean).sort((a, c) => a - c);
  const claims = rows.map((r) => r.firstClaim!).filter(Boolean).sort((a, c) => a - c);
  const cap = b!.capacity as number;
  // Steady phase: from the completion after the first capacity's worth (+ a batch) to the last.
  const from = ends[Math.min(ends.length - 1, cap + 10)]!;
  const to = ends.at(-1)!;
  const steadyS = (to - from) / 1000;
  const inSteady = (xs: number[]) => xs.filter((x) => x > from && x <= to).length;
  const steadyTokens = tokens.filter((s) => s.at > from && s.at <= to);
  const result: BucketResult = {
    jobs: n,
    capacity: cap,
    refillPerSec: b!.refill,
    maxConcurrent: b!.max_concurrent,
    tokensAtStart: b!.tokens,
    burstS: ends.length >= cap ? Math.round((ends[cap - 1]! - first) / 100) / 10 : null,
    steadyCompletionsPerSec: Math.round((inSteady(ends) / steadyS) * 100) / 100,
    steadyClaimsPerSec: Math.round((inSteady(claims) / steadyS) * 100) / 100,
    steadyS: Math.round(steadyS * 10) / 10,
    steadyTokens: Math.round(
      (steadyTokens.reduce((s, x) => s + x.tokens, 0) / Math.max(1, steadyTokens.length)) * 100,
    ) / 100,
    totalS: Math.round((to - first) / 100) / 10,
    load1,
  };
  log(
    `bucket: ${drained ? "drained" : "NOT DRAINED"}; first ${cap} done ${result.burstS} s after ` +
      `the first enqueue, then ${result.steadyCompletionsPerSec} completions/s and ` +
      `${result.steadyClaimsPerSec} claims/s over ${result.steadyS} s (refill ${
        b!.refill
      } tokens/s; ` +
      `mean tokens left ${result.steadyTokens})`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------
// the report

function fmtS(ms: number | null): string {
  return ms === null ? "–" : `${(ms / 1000).toFixed(1)} s`;
}

function kindCell(k: KindRecovery): string {
  const back = k.backS === null ? "**not back**" : `**+${k.backS} s**`;
  return `${k.preRate}/s → ${back}`;
}

function reportMd(runs: RunResult[], bucket: BucketResult | null, started: Date): string {
  const lines = [
    `# Recovery ${RUN}`,
    "",
    `Started ${started.toISOString()}; ${Deno.build.os}, ${navigator.hardwareConcurrency} CPUs. ` +
    `Load: enrich and enforce ${RATE} jobs/s each, outreach (rate-limited) ${LIMITED_RATE} jobs/s, ` +
    `through queue_job over the gateway. Pre-fault period ${PRE_S} s, observation ${POST_S} s. ` +
    `"Back" = seconds from the fault's end to the kind's first completion from which on every ` +
    `3-s window finished ≥ 50 % of the pre-fault rate (tests/load/recovery_analysis.ts).`,
    "",
    "| fault | run | fault duration | API serving again | " + KINDS.join(" | ") +
    " | lost | completed twice | redelivered (claimed before the end) | HTTP answers | load 1 min / CPU busy |",
    "| --- | --- | --- | --- | " + KINDS.map(() => "---").join(" | ") +
    " | --- | --- | --- | --- | --- |",
  ];
  for (const r of runs) {
    const answers = Object.entries(r.answers).map(([k, v]) => `${k}: ${v}`).join(", ");
    lines.push(
      `| ${r.fault} | ${r.n} | ${fmtS(r.faultMs)} | ${
        r.apiBackMs === null ? "–" : fmtS(r.apiBackMs)
      } | ` +
        r.kinds.map(kindCell).join(" | ") +
        ` | ${r.lost.length} of ${r.required} | ${r.completedTwice.length} | ${r.redelivered} ` +
        `(${r.redeliveredBeforeEnd}) | ${answers} | ${r.load1.toFixed(1)} / ${r.cpuBusy} % |`,
    );
  }
  lines.push("", "## Details", "");
  for (const r of runs) {
    lines.push(
      `### ${r.fault} #${r.n} (${r.at})`,
      "",
      `- fault: ${r.detail}; over after ${fmtS(r.faultMs)}`,
      `- acknowledged ${r.acked}, required in the ledger ${r.required}, lost ${r.lost.length}` +
        (r.lost.length ? ` (e.g. ${r.lost.slice(0, 3).join(", ")})` : "") +
        `, failed ${r.failed.length}, completed twice ${r.completedTwice.length}` +
        `, drained ${r.drained ? "yes" : "**no**"}; the last job finished ${
          r.lastDoneS === null ? "–" : `${r.lastDoneS} s`
        } after the fault's end`,
      ...(r.wiped
        ? [
          `- the reset wiped the ${r.wiped.before} jobs acknowledged before it (by design); of the ` +
          `${r.wiped.during} acknowledged while it ran, ${r.wiped.duringSurvived} are in the new ledger`,
        ]
        : []),
      ...r.kinds.map((k) =>
        `- ${k.kind}: before ${k.preRate}/s, during ${
          k.duringRate ?? "–"
        }/s, after ${k.postRate}/s; ` +
        `first window back +${k.firstBackS ?? "–"} s, back for good +${k.backS ?? "–"} s; ` +
        `per second after the end: ${k.perSecond.slice(0, 25).join(" ")}`
      ),
      ...(r.badAnswers.length
        ? [`- answers not allowed: ${JSON.stringify(r.badAnswers.slice(0, 5))}`]
        : []),
      ...Object.entries(r.samples).map(([k, v]) => `- a ${k} answer: \`${v}\``),
      "",
    );
  }
  if (bucket) {
    lines.push(
      "## A full token bucket",
      "",
      `A new tenant's \`sendgrid\` bucket (${bucket.tokensAtStart} of ${bucket.capacity} tokens, ` +
        `refill ${bucket.refillPerSec}/s, max_concurrent ${bucket.maxConcurrent}), ${bucket.jobs} ` +
        `outreach jobs enqueued at once (load ${bucket.load1.toFixed(1)}): the first ` +
        `${bucket.capacity} completed ${bucket.burstS} s after the first enqueue; then ` +
        `${bucket.steadyCompletionsPerSec} completions/s and ${bucket.steadyClaimsPerSec} ` +
        `claims/s (tokens taken) over ${bucket.steadyS} s, with ${bucket.steadyTokens} tokens ` +
        `left on average; all ${bucket.jobs} done after ${bucket.totalS} s.`,
      "",
    );
  }
  return lines.join("\n");
}

async function writeReport(md: string, data: unknown): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const dir = `${OUT}/${stamp}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/report.md`, md);
  await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify(data, null, 1));
  await Deno.remove(`${OUT}/latest`, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${OUT}/latest`, { recursive: true });
  for (const f of ["report.md", "results.json"]) {
    await Deno.copyFile(`${dir}/${f}`, `${OUT}/latest/${f}`);
  }
  return `${dir}/report.md`;
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = new Date();
  const ports = { api: freePort(), db: freePort() };
  log(`private stack in ${DIR} on ports ${ports.api}/${ports.db} (load ${loadAvg()})`);
  await stackCmd("down");
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await stackCmd("up", ports);
  const info = await stackInfo(ports.api, ports.db);
  const api: Api = { url: info.apiUrl, serviceKey: info.serviceRoleKey };
  const sql = postgres(info.dbUrl, { max: 2, onnotice: () => {}, connect_timeout: 5 });
  const cluster = new Cluster(
    await findPgBin(),
    `${DIR}/pg`,
    ports.db,
    `${DIR}/logs/postgres.log`,
  );
  const runs: RunResult[] = [];
  let bucket: BucketResult | null = null;
  let code = 0;
  try {
    await auditFull(sql);
    if (!values["no-bucket"]) bucket = await measureBucket(api, sql);
    for (const fault of SELECTED) {
      for (let n = 1; n <= RUNS; n++) {
        runs.push(await runFault(fault, n, { api, sql, cluster, dbUrl: info.dbUrl }));
        await sleep(3_000);
      }
    }
  } catch (e) {
    log(`error: ${(e as Error).stack ?? e}`);
    code = 1;
  } finally {
    const md = reportMd(runs, bucket, started);
    const path = await writeReport(md, { run: RUN, started, runs, bucket });
    console.log("\n" + md.split("\n## Details")[0]);
    log(`report: ${path}`);
    await sql.end({ timeout: 1 }).catch(() => {});
    if (values.keep) log(`stack kept: deno run -A tools/stack/main.ts down --dir ${DIR}`);
    else await stackCmd("down");
  }
  const missed = runs.filter((r) =>
    r.lost.length || r.completedTwice.length || !r.drained || r.badAnswers.length ||
    r.kinds.some((k) => k.backS === null || k.backS > 15)
  );
  for (const r of missed) log(`target missed: ${summaryLine(r)}`);
  return code || (missed.length ? 1 : 0);
}

Deno.exit(await main());
