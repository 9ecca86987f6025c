/**
 * The soak (issue 10): `deno task soak [--minutes 10] [--rate 20] [--content-every 4]
 * [--sample-sec 10] [--dir .stack/soak] [--out .artifacts/soak] [--keep]`.
 *
 * Starts a private stack (its own folder and free ports, like `deno task test`), then for
 * `--minutes` puts a steady mixed load through it exactly as production runs: `queue_job`
 * over the gateway (enrich, enforce, outreach; fast/normal/bulk; some delayed; some enrich
 * jobs without an email, which their handler cancels: designed to end in the dead-letter
 * queue) and `queue_content_job`, with the shipped worker functions started by the
 * dispatcher (kicks, pushes, cron) over pg_net. Nothing is called by hand.
 *
 * Every `--sample-sec` it records throughput, enqueue→completion latency (p50/p99 of the
 * jobs finished in the interval; from the due time for delayed jobs), the backlog, dead
 * tuples (pg_stat_user_tables.n_dead_tup) and table sizes, and the resident memory of the
 * gateway, the pg_net worker and the function processes (/proc/<pid>/status VmRSS). After
 * the load it waits for the drain and checks every job against the ledger.
 *
 * It fails (exit 1) when a job is lost, ends in the wrong state or is completed twice, the
 * drain does not finish, or something keeps growing: the mean of the last third of the
 * load phase against the middle third, with a tolerance, for memory, dead tuples, the live
 * queue tables and the backlog. (The ledger, the archives, the invocation log and pg_net's
 * responses grow by design until retention prunes them, after hours: reported, not gated.)
 *
 * Writes `report.md`, `chart.svg` and `samples.json` to `<out>/<timestamp>/` and `<out>/latest/`.
 *
 * @module
 */
import { resolve } from "node:path";
import postgres, { type Sql } from "postgres";
import { cliArgs, usageExit } from "../../tools/args.ts";
import { freePort } from "../../tools/stack/proc.ts";
import { REPO_ROOT } from "../../tools/stack/state.ts";
import { stackInfo } from "../../tools/stack/supervisor.ts";
import { type ProcInfo, stackProcs } from "../../tools/test/procs.ts";
import { type Api, brokenConnection, postRpc } from "./driver.ts";
import { lineChart, short } from "./svg.ts";

const USAGE =
  `usage: deno task soak [--minutes 10] [--rate 20] [--content-every 4] [--sample-sec 10]
                      [--dir .stack/soak] [--out .artifacts/soak] [--keep]

Steady mixed load through a private stack for --minutes, checked against the ledger; fails
(exit 1) on a lost, duplicated or wrongly settled job, a drain that does not finish, or
something that keeps growing. Report: <out>/latest/report.md (+ chart.svg, samples.json).

  --minutes N        length of the load phase (default 10)
  --rate N           queue jobs per second (default 20)
  --content-every S  one content job every S seconds (default 4)
  --sample-sec S     sampling interval (default 10)
  --dir D            the private stack's folder (default .stack/soak)
  --out D            where the report goes (default .artifacts/soak)
  --keep             leave the stack running afterwards
  -h, --help         this text`;

const { values } = cliArgs(USAGE, {
  options: {
    minutes: { type: "string", default: "10" },
    rate: { type: "string", default: "20" },
    "content-every": { type: "string", default: "4" },
    "sample-sec": { type: "string", default: "10" },
    dir: { type: "string", default: ".stack/soak" },
    out: { type: "string", default: ".artifacts/soak" },
    keep: { type: "boolean", default: false },
  },
});
const MINUTES = Number(values.minutes);
const RATE = Number(values.rate);
const CONTENT_EVERY_S = Number(values["content-every"]);
const SAMPLE_S = Number(values["sample-sec"]);
const DIR = resolve(REPO_ROOT, values.dir!);
const OUT = resolve(REPO_ROOT, values.out!);
const DRAIN_MS = 300_000;
for (
  const [k, v] of [
    ["minutes", MINUTES],
    ["rate", RATE],
    ["content-every", CONTENT_EVERY_S],
    ["sample-sec", SAMPLE_S],
  ] as const
) {
  if (!(v > 0)) usageExit(`--${k} must be a positive number, got "${values[k]}"`);
}

const log = (l: string) => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${l}`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const RUN = `soak:${crypto.randomUUID().slice(0, 8)}`;

// ---------------------------------------------------------------------------------------
// the stack

async function stack(cmd: "up" | "down", ports?: { api: number; db: number }): Promise<void> {
  const args = ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, cmd, "--dir", DIR];
  if (ports) args.push("--api-port", String(ports.api), "--db-port", String(ports.db));
  const res = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!res.success && cmd === "up") {
    throw new Error(`stack ${cmd} failed:\n${new TextDecoder().decode(res.stderr).slice(-2000)}`);
  }
}

// ---------------------------------------------------------------------------------------
// the load

/** A job the soak enqueued and where it must end. */
interface SoakJob {
  key: string;
  kind: string;
  expect: "completed" | "failed";
}

/** The i-th job of the mix. */
function soakJob(i: number): { job: SoakJob; body: Record<string, unknown> } {
  const key = `${RUN}:${i}`;
  const priority = ["fast", "normal", "normal", "bulk"][i % 4]!;
  const r = (i * 7919) % 100; // a fixed spread over the mix
  let kind: string;
  let payload: Record<string, unknown>;
  let expect: SoakJob["expect"] = "completed";
  if (r < 60) {
    kind = "enrich";
    payload = r < 3
      ? { name: `nobody ${i}` } // no email: the handler cancels it (dead-letter queue)
      : { email: `User${i}@Example.com`, name: `user ${i}`, phone: "+1 555 0100" };
    if (r < 3) expect = "failed";
  } else if (r < 88) {
    kind = "enforce";
    payload = {
      subject: `user-${i}`,
      email: `user${i}@example.com`,
      country: r < 63 ? "IR" : "FR",
    };
  } else {
    kind = "outreach";
    payload = {
      to: `user${i}@example.com`,
      template: "welcome",
      vars: { first_name: `User${i}`, company: "Conveyor" },
    };
  }
  const body: Record<string, unknown> = { idempotency_key: key, kind, payload, priority };
  if (i % 10 === 5) body.delay_seconds = 1 + (i % 4);
  return { job: { key, kind, expect }, body };
}

/** Posts until acknowledged (same key on every retry). */
async function enqueue(api: Api, fn: string, body: unknown, stats: LoadStats): Promise<string> {
  let backoff = 100;
  const deadline = Date.now() + 120_000;
  while (true) {
    const r = await postRpc(api, fn, body);
    if (r.status === 200) return r.text;
    if (r.status !== "network" && r.status < 500 && !brokenConnection(r)) {
      throw new Error(`${fn}: ${r.status} ${r.text}`);
    }
    stats.retries++;
    if (Date.now() > deadline) throw new Error(`${fn}: still failing (${r.status} ${r.text})`);
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 2_000);
  }
}

interface LoadStats {
  jobs: SoakJob[];
  contentIds: string[];
  retries: number;
  /** Enqueues that fell more than a second behind their schedule (the client could not keep up). */
  late: number;
}

/** Paced open-loop load until `until`; resolves when the last request is answered. */
async function runLoad(api: Api, until: number, stats: LoadStats): Promise<void> {
  const start = performance.now();
  let next = 0;
  const lane = async () => {
    while (true) {
      const i = next++;
      const due = start + (i * 1000) / RATE;
      if (Date.now() + (due - performance.now()) >= until) return;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      else if (wait < -1000) stats.late++;
      const { job, body } = soakJob(i);
      await enqueue(api, "queue_job", body, stats);
      stats.jobs.push(job);
    }
  };
  const content = async () => {
    for (let i = 0; Date.now() < until; i++) {
      const body = {
        idempotency_key: `${RUN}:content:${i}`,
        brief: { topic: `soak ${i}`, audience: "operators", keywords: ["ledger", "soak"] },
      };
      stats.contentIds.push(JSON.parse(await enqueue(api, "queue_content_job", body, stats)));
      await sleep(CONTENT_EVERY_S * 1000);
    }
  };
  await Promise.all([...Array.from({ length: 6 }, lane), content()]);
}

// ---------------------------------------------------------------------------------------
// samples

interface Rss {
  gateway: number;
  netWorker: number;
  functions: number;
  bySlug: Record<string, number>;
}

interface Sample {
  /** Minutes since the load started. */
  t: number;
  phase: "load" | "drain";
  completed: number;
  deadLettered: number;
  contentCompleted: number;
  /** Jobs finished per second over the interval. */
  throughput: number;
  p50: number | null;
  p99: number | null;
  /** Jobs due and not started. */
  backlog: number;
  deadTuples: number;
  deadByTable: Record<string, number>;
  /** Bytes per group of tables. */
  sizes: Record<string, number>;
  /** KiB. */
  rss: Rss;
}

const SIZE_GROUPS: Record<string, string> = {
  ledger: `c.relnamespace = 'public'::regnamespace
           and c.relname in ('jobs', 'job_events', 'idempotency_keys', 'dead_letter_jobs')`,
  queues: `c.relnamespace = 'pgmq'::regnamespace and c.relname like 'q\\_%'`,
  archives: `c.relnamespace = 'pgmq'::regnamespace and c.relname like 'a\\_%'`,
  content: `c.relnamespace = 'public'::regnamespace and c.relname like 'content\\_%'`,
  invocations: `c.oid = 'conveyor.worker_invocations'::regclass`,
  pg_net: `c.relnamespace = 'net'::regnamespace`,
};

async function takeSample(
  sql: Sql,
  t: number,
  phase: Sample["phase"],
  since: Date,
): Promise<{ sample: Sample; at: Date }> {
  const [c] = await sql`
    select clock_timestamp() as now,
           count(*) filter (where status = 'completed')::int as completed,
           count(*) filter (where status = 'failed')::int as dead,
           count(*) filter (where status = 'pending' and run_at <= clock_timestamp())::int as backlog
    from public.jobs`;
  const [lat] = await sql`
    select count(*)::int as n,
           percentile_cont(0.5) within group (order by extract(epoch from finished_at - run_at))
             * 1000 as p50,
           percentile_cont(0.99) within group (order by extract(epoch from finished_at - run_at))
             * 1000 as p99
    from public.jobs
    where finished_at > ${since} and finished_at <= ${c!.now} and status = 'completed'`;
  const [fin] = await sql`
    select count(*)::int as n from public.jobs
    where finished_at > ${since} and finished_at <= ${c!.now}`;
  const [cc] = await sql`select count(*)::int as n from public.content_jobs
                         where status = 'completed'`;
  const dead = await sql`
    select schemaname || '.' || relname as name, n_dead_tup::int as n
    from pg_stat_user_tables where schemaname in ('public', 'pgmq', 'conveyor', 'net')`;
  const sizes: Record<string, number> = {};
  for (const [group, where] of Object.entries(SIZE_GROUPS)) {
    const [s] = await sql.unsafe(
      `select coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 as b
       from pg_class c where c.relkind in ('r', 'p') and ${where}`,
    );
    sizes[group] = s!.b as number;
  }
  const procs = await stackProcs(DIR);
  const bySlug: Record<string, number> = {};
  for (const f of procs.functions) bySlug[f.slug] = (bySlug[f.slug] ?? 0) + f.rssKb;
  const rss: Rss = {
    gateway: procs.gateway?.rssKb ?? 0,
    netWorker: procs.netWorker?.rssKb ?? 0,
    functions: procs.functions.reduce((s: number, p: ProcInfo) => s + p.rssKb, 0),
    bySlug,
  };
  const secs = Math.max(0.001, (c!.now.getTime() - since.getTime()) / 1000);
  const deadByTable = Object.fromEntries(dead.map((d) => [d.name as string, d.n as number]));
  return {
    at: c!.now,
    sample: {
      t: Math.round(t * 100) / 100,
      phase,
      completed: c!.completed,
      deadLettered: c!.dead,
      contentCompleted: cc!.n,
      throughput: Math.round((fin!.n / secs) * 10) / 10,
      p50: lat!.n ? Math.round(lat!.p50) : null,
      p99: lat!.n ? Math.round(lat!.p99) : null,
      backlog: c!.backlog,
      deadTuples: dead.reduce((s, d) => s + (d.n as number), 0),
      deadByTable,
      sizes,
      rss,
    },
  };
}

// ---------------------------------------------------------------------------------------
// verdicts

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

/** Last third of the load phase vs the middle third: bounded growth within a tolerance. */
function growthCheck(
  what: string,
  series: number[],
  tolerance: number,
  slack: number,
  fmt: (n: number) => string,
): Check {
  const n = series.length;
  if (n < 6) return { what, ok: true, detail: `too few samples (${n}) to judge` };
  const middle = mean(series.slice(Math.floor(n / 3), Math.floor((2 * n) / 3)));
  const last = mean(series.slice(Math.floor((2 * n) / 3)));
  const limit = middle * (1 + tolerance) + slack;
  return {
    what,
    ok: last <= limit,
    detail: `middle third ${fmt(middle)}, last third ${fmt(last)} (limit ${fmt(limit)})`,
  };
}

/** Percentile of a sorted array. */
function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const ports = { api: freePort(), db: freePort() };
  log(`private stack in ${DIR} on ports ${ports.api}/${ports.db}`);
  await stack("down");
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await stack("up", ports);
  const info = await stackInfo(ports.api, ports.db);
  const api: Api = { url: info.apiUrl, serviceKey: info.serviceRoleKey };
  const sql = postgres(info.dbUrl, { max: 3, onnotice: () => {} });
  const samples: Sample[] = [];
  const checks: Check[] = [];
  const stats: LoadStats = { jobs: [], contentIds: [], retries: 0, late: 0 };
  let drained = false;
  try {
    log(`load: ${RATE} jobs/s + a content job every ${CONTENT_EVERY_S} s for ${MINUTES} min`);
    const t0 = Date.now();
    const until = t0 + MINUTES * 60_000;
    let last = (await sql`select clock_timestamp() as t`)[0]!.t as Date;
    const load = runLoad(api, until, stats);
    let loadDone = false;
    void load.finally(() => (loadDone = true));
    // Sample during the load, then during the drain.
    const drainDeadline = until + DRAIN_MS;
    while (true) {
      await sleep(SAMPLE_S * 1000);
      const phase = loadDone ? "drain" : "load";
      const { sample, at } = await takeSample(sql, (Date.now() - t0) / 60_000, phase, last);
      last = at;
      samples.push(sample);
      log(
        `${sample.phase} t=${sample.t.toFixed(1)}m enqueued=${stats.jobs.length} ` +
          `completed=${sample.completed} dead=${sample.deadLettered} ` +
          `content=${sample.contentCompleted}/${stats.contentIds.length} ` +
          `${sample.throughput}/s p50=${sample.p50}ms p99=${sample.p99}ms backlog=${sample.backlog} ` +
          `dead_tup=${sample.deadTuples} rss gw=${Math.round(sample.rss.gateway / 1024)}M ` +
          `fn=${Math.round(sample.rss.functions / 1024)}M`,
      );
      if (loadDone) {
        const [left] = await sql`
          select (select count(*) from public.jobs where status in ('pending', 'processing'))::int
                 + (select count(*) from public.content_jobs
                    where status not in ('completed', 'failed'))::int as n`;
        if (left!.n === 0) {
          drained = true;
          break;
        }
        if (Date.now() > drainDeadline) break;
      }
    }
    await load;
    checks.push({
      what: "drain",
      ok: drained,
      detail: drained ? "every job and content job finished" : "not drained after 5 minutes",
    });

    // The ledger: every job, where it was designed to end, completed once.
    const rows = await sql<
      Array<{ key: string; status: string; claims: number; completes: number; ms: number | null }>
    >`
      select j.idempotency_key as key, j.status,
             j.attempts as claims,
             count(*) filter (where e.type = 'completed')::int as completes,
             (extract(epoch from j.finished_at - j.run_at) * 1000)::float8 as ms
      from public.jobs j left join public.job_events e on e.job_id = j.id
      where j.idempotency_key like ${RUN + ":%"}
      group by j.id`;
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const lost = stats.jobs.filter((j) => {
      const r = byKey.get(j.key);
      return !r || (r.status !== "completed" && r.status !== "failed");
    });
    const wrong = stats.jobs.filter((j) => {
      const r = byKey.get(j.key);
      return r && (r.status === "completed" || r.status === "failed") && r.status !== j.expect;
    });
    const doubled = rows.filter((r) => r.completes > 1);
    const redelivered = rows.filter((r) => r.claims > 1);
    const content = await sql`
      select status, count(*)::int as n,
             percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at))
               * 1000 as p50,
             percentile_cont(0.99) within group (order by extract(epoch from finished_at - created_at))
               * 1000 as p99
      from public.content_jobs where id = any(${stats.contentIds}) group by 1`;
    const contentDone = content.find((c) => c.status === "completed");
    checks.push(
      {
        what: "lost jobs",
        ok: lost.length === 0,
        detail: `${lost.length} of ${stats.jobs.length}`,
      },
      {
        what: "jobs in the wrong terminal state",
        ok: wrong.length === 0,
        detail: `${wrong.length}${wrong.length ? ` (e.g. ${wrong[0]!.key})` : ""}`,
      },
      { what: "jobs completed twice", ok: doubled.length === 0, detail: `${doubled.length}` },
      {
        what: "content jobs completed",
        ok: (contentDone?.n ?? 0) === stats.contentIds.length,
        detail: `${contentDone?.n ?? 0} of ${stats.contentIds.length}`,
      },
    );

    // Growth: the load phase only (the drain empties things on purpose).
    const loadSamples = samples.filter((s) => s.phase === "load");
    const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
    checks.push(
      growthCheck("gateway RSS", loadSamples.map((s) => s.rss.gateway), 0.25, 30 * 1024, mb),
      growthCheck(
        "function processes RSS",
        loadSamples.map((s) => s.rss.functions),
        0.25,
        60 * 1024,
        mb,
      ),
      growthCheck(
        "pg_net worker RSS",
        loadSamples.map((s) => s.rss.netWorker),
        0.25,
        20 * 1024,
        mb,
      ),
      growthCheck("dead tuples", loadSamples.map((s) => s.deadTuples), 0.5, 20_000, short),
      growthCheck(
        "live queue tables (pgmq q_*)",
        loadSamples.map((s) => s.sizes.queues!),
        0.5,
        2 * 1024 * 1024,
        (b) => `${(b / 1048576).toFixed(1)} MB`,
      ),
      growthCheck("backlog", loadSamples.map((s) => s.backlog), 0.5, 200, short),
    );

    const ms = rows.filter((r) => r.status === "completed" && r.ms !== null).map((r) => r.ms!)
      .sort((a, b) => a - b);
    const report = {
      run: RUN,
      minutes: MINUTES,
      rate: RATE,
      enqueued: stats.jobs.length,
      processed: rows.filter((r) => r.status === "completed" || r.status === "failed").length,
      completed: rows.filter((r) => r.status === "completed").length,
      deadLettered: rows.filter((r) => r.status === "failed").length,
      lost: lost.length,
      doubleCompleted: doubled.length,
      redelivered: redelivered.length,
      retries: stats.retries,
      late: stats.late,
      p50: Math.round(pct(ms, 0.5)),
      p99: Math.round(pct(ms, 0.99)),
      content: {
        enqueued: stats.contentIds.length,
        completed: contentDone?.n ?? 0,
        p50: contentDone ? Math.round(contentDone.p50) : null,
        p99: contentDone ? Math.round(contentDone.p99) : null,
      },
      first: loadSamples[0],
      last: loadSamples.at(-1),
      checks,
    };
    await writeReport(report, samples);
    const failed = checks.filter((c) => !c.ok);
    for (const c of checks) log(`${c.ok ? "ok  " : "FAIL"} ${c.what}: ${c.detail}`);
    log(
      `${report.processed} jobs processed (${report.completed} completed, ${report.deadLettered} ` +
        `dead-lettered by design), lost ${report.lost}, completed twice ${report.doubleCompleted}, ` +
        `redelivered ${report.redelivered}; p50 ${report.p50} ms, p99 ${report.p99} ms`,
    );
    return failed.length ? 1 : 0;
  } finally {
    await sql.end();
    if (values.keep) log(`stack kept: deno run -A tools/stack/main.ts down --dir ${DIR}`);
    else await stack("down");
  }
}

// ---------------------------------------------------------------------------------------
// the report

// deno-lint-ignore no-explicit-any -- the report object is only serialised and printed
async function writeReport(r: any, samples: Sample[]): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const dir = `${OUT}/${stamp}`;
  await Deno.mkdir(dir, { recursive: true });
  const xs = samples.map((s) => s.t);
  const mbs = (f: (s: Sample) => number) => samples.map((s) => Math.round(f(s) / 102.4) / 10);
  const svg = lineChart(xs, [
    {
      title: "Throughput",
      unit: "jobs finished per second",
      series: [{ name: "jobs/s", color: "#2f9e6e", values: samples.map((s) => s.throughput) }],
    },
    {
      title: "Enqueue → completion",
      unit: "ms, jobs finished in the interval",
      series: [
        { name: "p50", color: "#3b6fd8", values: samples.map((s) => s.p50 ?? NaN) },
        { name: "p99", color: "#d64545", values: samples.map((s) => s.p99 ?? NaN) },
      ],
    },
    {
      title: "Resident memory",
      unit: "MB",
      series: [
        { name: "gateway", color: "#3b6fd8", values: mbs((s) => s.rss.gateway) },
        { name: "functions (sum)", color: "#d99a1e", values: mbs((s) => s.rss.functions) },
        { name: "pg_net worker", color: "#8a5cd8", values: mbs((s) => s.rss.netWorker) },
      ],
    },
    {
      title: "Dead tuples and backlog",
      unit: "rows",
      series: [
        { name: "dead tuples", color: "#d64545", values: samples.map((s) => s.deadTuples) },
        { name: "backlog (due)", color: "#2f9e6e", values: samples.map((s) => s.backlog) },
      ],
    },
    {
      title: "Table sizes",
      unit: "MB",
      series: Object.keys(samples[0]?.sizes ?? {}).map((g, i) => ({
        name: g,
        color: ["#3b6fd8", "#2f9e6e", "#d99a1e", "#d64545", "#8a5cd8", "#555555"][i % 6]!,
        values: samples.map((s) => Math.round((s.sizes[g] ?? 0) / 104857.6) / 10),
      })),
    },
  ]);
  const f = r.first as Sample | undefined;
  const l = r.last as Sample | undefined;
  const mb = (kb?: number) => kb === undefined ? "–" : `${(kb / 1024).toFixed(1)} MB`;
  const size = (b?: number) => b === undefined ? "–" : `${(b / 1048576).toFixed(1)} MB`;
  const md = [
    `# Soak ${r.run}`,
    "",
    `${r.minutes} min at ${r.rate} jobs/s (enrich, enforce, outreach; 3 % of enrich designed to be`,
    `dead-lettered) plus a content job every ${CONTENT_EVERY_S} s, through the gateway, the`,
    "dispatcher and the shipped worker functions. Samples every " + `${SAMPLE_S} s.`,
    "",
    "| | |",
    "| --- | --- |",
    `| jobs enqueued / processed | ${r.enqueued} / ${r.processed} (${r.completed} completed, ${r.deadLettered} dead-lettered by design) |`,
    `| lost | ${r.lost} |`,
    `| completed twice | ${r.doubleCompleted} |`,
    `| redelivered (claimed more than once: an upper bound on duplicate runs) | ${r.redelivered} |`,
    `| enqueue → completion p50 / p99 | ${r.p50} ms / ${r.p99} ms |`,
    `| content jobs completed | ${r.content.completed} of ${r.content.enqueued}, p50 ${r.content.p50} ms, p99 ${r.content.p99} ms |`,
    `| enqueue retries / late enqueues | ${r.retries} / ${r.late} |`,
    "",
    "| | first sample | last sample of the load |",
    "| --- | --- | --- |",
    `| time | ${f?.t ?? "–"} min | ${l?.t ?? "–"} min |`,
    `| throughput | ${f?.throughput} jobs/s | ${l?.throughput} jobs/s |`,
    `| gateway RSS | ${mb(f?.rss.gateway)} | ${mb(l?.rss.gateway)} |`,
    `| function processes RSS (sum) | ${mb(f?.rss.functions)} | ${mb(l?.rss.functions)} |`,
    `| pg_net worker RSS | ${mb(f?.rss.netWorker)} | ${mb(l?.rss.netWorker)} |`,
    `| dead tuples | ${f?.deadTuples} | ${l?.deadTuples} |`,
    `| backlog (due, not started) | ${f?.backlog} | ${l?.backlog} |`,
    ...Object.keys(f?.sizes ?? {}).map((g) =>
      `| size: ${g} | ${size(f?.sizes[g])} | ${size(l?.sizes[g])} |`
    ),
    "",
    "Function processes at the end: " +
    Object.entries(l?.rss.bySlug ?? {}).map(([k, v]) => `${k} ${mb(v)}`).join(", "),
    "",
    "## Checks",
    "",
    ...(r.checks as Check[]).map((c) => `- ${c.ok ? "ok" : "**FAIL**"} ${c.what}: ${c.detail}`),
    "",
    "The ledger, the pgmq archives, the invocation log and pg_net's responses grow by design",
    "until retention prunes them (hours); they are charted, not gated.",
    "",
    "![chart](chart.svg)",
    "",
  ].join("\n");
  await Deno.writeTextFile(`${dir}/report.md`, md);
  await Deno.writeTextFile(`${dir}/chart.svg`, svg);
  await Deno.writeTextFile(`${dir}/samples.json`, JSON.stringify({ report: r, samples }, null, 1));
  await Deno.remove(`${OUT}/latest`, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${OUT}/latest`, { recursive: true });
  for (const f of ["report.md", "chart.svg", "samples.json"]) {
    await Deno.copyFile(`${dir}/${f}`, `${OUT}/latest/${f}`);
  }
  log(`report: ${dir}/report.md`);
}

Deno.exit(await main());
