/**
 * The benchmark's outputs: the terminal summary, `docs/benchmarks.md` (tables with versions,
 * settings and machine facts) and `docs/benchmarks.svg` (a bar chart of the ratios, written
 * here as plain SVG text).
 *
 * @module
 */
import type { BenchEnv, MachineFacts } from "./env.ts";
import { WORKLOADS } from "./plan.ts";
import { fmtMs, fmtRate, median } from "./stats.ts";
import type { CaseSummary } from "./types.ts";

/**
 * What a ratio compares: the case's figure (jobs/s, req/s, p50 ms), a cost per job, or one of
 * the case's own figures (`figure:<name>`, RunResult.figures).
 */
export type RatioMetric = "rate" | "pgCpu" | "wal" | `figure:${string}`;

/** A ratio between two medians of the same run, with its target. */
export interface Ratio {
  label: string;
  /** numerator / denominator case ids. */
  num: string;
  den: string;
  /** Default "rate": the cases' medians (jobs/s, req/s). */
  metric?: RatioMetric;
  /** The denominator's metric when it differs from the numerator's. */
  denMetric?: RatioMetric;
  target?: number;
  /** The target is a ceiling (a cost ratio: ≤ target), not a floor. */
  atMost?: boolean;
  /** Filled in from the run. */
  value?: number;
}

/** Conveyor's drain ÷ a peer: jobs/s, Postgres CPU per job and WAL per job (issue 16). */
function versus(
  label: string,
  num: string,
  den: string,
  targets: { rate?: number; pgCpu?: number; wal?: number } = {},
): Ratio[] {
  return [
    { label: `${label}: jobs/s`, num, den, target: targets.rate },
    {
      label: `${label}: Postgres CPU/job`,
      num,
      den,
      metric: "pgCpu",
      target: targets.pgCpu,
      atMost: true,
    },
    { label: `${label}: WAL/job`, num, den, metric: "wal", target: targets.wal, atMost: true },
  ];
}

/** The ratios issues 9, 4 and 16 ask for. */
export function ratioDefs(): Ratio[] {
  return [
    // Issue 16's targets: the production path (RPC through the gateway) against pg-boss.
    ...versus("drain b10/c10, RPC path ÷ pg-boss", "drain.conveyor-rpc.A", "drain.pgboss.A", {
      rate: 1.5,
      pgCpu: 1,
      wal: 1,
    }),
    ...versus("drain b10/c10, SQL path ÷ pg-boss", "drain.conveyor-sql.A", "drain.pgboss.A", {
      rate: 2,
    }),
    ...versus(
      "drain b10/c10, RPC audit=full ÷ pg-boss",
      "drain.conveyor-rpc-audit.A",
      "drain.pgboss.A",
    ),
    ...versus(
      "drain b10/c10, RPC path ÷ graphile defaults",
      "drain.conveyor-rpc.A",
      "drain.graphile.D",
      { rate: 1 },
    ),
    {
      label: "drain b10/c10, SQL path ÷ graphile defaults: jobs/s",
      num: "drain.conveyor-sql.A",
      den: "drain.graphile.D",
      target: 1,
    },
    {
      label: "drain b10, RPC path ÷ raw pgmq read+archive b10",
      num: "drain.conveyor-rpc.A",
      den: "drain.pgmq.b10",
      target: 0.5,
    },
    {
      label: "drain b10, SQL path ÷ raw pgmq read+archive b10",
      num: "drain.conveyor-sql.A",
      den: "drain.pgmq.b10",
      target: 0.5,
    },
    {
      label: "drain b100, SQL path ÷ raw pgmq read+archive b100",
      num: "drain.conveyor-sql.B",
      den: "drain.pgmq.b100",
      target: 0.5,
    },
    {
      label: "drain b100, SQL path ÷ pg-boss b100",
      num: "drain.conveyor-sql.B",
      den: "drain.pgboss.B",
    },
    {
      label: "drain b100, RPC path ÷ pg-boss b100",
      num: "drain.conveyor-rpc.B",
      den: "drain.pgboss.B",
    },
    {
      label: "drain tuned, SQL path b100 ÷ graphile tuned",
      num: "drain.conveyor-sql.B",
      den: "drain.graphile.B",
    },
    {
      // Issue 16: a ratio of HTTP to SQL is not its target (the HTTP path's own cost is,
      // in its own table); the ratio stays for reference.
      label: "queue_job c10, HTTP ÷ SQL",
      num: "enqueue.conveyor-http.c10",
      den: "enqueue.conveyor-sql.c10",
    },
    {
      label: "one-INSERT RPC c10, gateway ÷ SQL (issue 4)",
      num: "rpc.http",
      den: "rpc.sql",
      target: 0.8,
    },
    {
      label: "queue_job c10 (SQL) ÷ bench_insert() (SQL): Postgres CPU/call",
      num: "enqueue.conveyor-sql.c10",
      den: "rpc.sql",
      metric: "pgCpu",
      target: 2,
      atMost: true,
    },
    {
      label: "queue_job c10 (SQL) ÷ raw INSERT",
      num: "enqueue.conveyor-sql.c10",
      den: "enqueue.raw.c10",
    },
    {
      label: "queue_job c10 (SQL) ÷ pg-boss send",
      num: "enqueue.conveyor-sql.c10",
      den: "enqueue.pgboss.c10",
    },
    {
      label: "queue_job c10 (SQL) ÷ graphile addJob",
      num: "enqueue.conveyor-sql.c10",
      den: "enqueue.graphile.c10",
    },
    {
      label: "queue_jobs batch (SQL) ÷ pg-boss insert",
      num: "batch.conveyor-sql",
      den: "batch.pgboss",
    },
    {
      label: "queue_jobs batch (SQL) ÷ graphile addJobs",
      num: "batch.conveyor-sql",
      den: "batch.graphile",
    },
    {
      label: "drain with large backlog ÷ small backlog",
      num: "backlog.large",
      den: "backlog.small",
      target: 0.9,
    },
    // Issue 21's targets.
    {
      label: "fair share overhead, one tenant: drain on ÷ off, direct SQL",
      num: "fair.overhead-sql.on",
      den: "fair.overhead-sql.off",
      target: 0.9,
    },
    {
      label: "fair share overhead, one tenant: drain on ÷ off, RPC path",
      num: "fair.overhead-rpc.on",
      den: "fair.overhead-rpc.off",
      target: 0.9,
    },
    {
      label: "fair share overhead, one tenant: Postgres CPU/job on ÷ off, direct SQL",
      num: "fair.overhead-sql.on",
      den: "fair.overhead-sql.off",
      metric: "pgCpu",
    },
    {
      label: "noisy neighbour: B/C enqueue → start p50, fair share on ÷ A idle",
      num: "fair.noisy.on",
      den: "fair.noisy.idle",
      target: 2,
      atMost: true,
    },
    {
      label: "noisy neighbour: B/C enqueue → start p50, fair share off ÷ A idle",
      num: "fair.noisy.off",
      den: "fair.noisy.idle",
    },
    {
      label: "noisy neighbour: A's jobs/s, fair share on ÷ (fair share off − B's and C's 40/s)",
      num: "fair.noisy.on",
      den: "fair.noisy.off",
      metric: "figure:a_jobs_per_s",
      denMetric: "figure:remaining_jobs_per_s",
      target: 0.8,
    },
    {
      label: "concurrency keys: most running per key, ledger ÷ limit",
      num: "fair.keys",
      den: "fair.keys",
      metric: "figure:max_running_ledger",
      denMetric: "figure:limit",
      target: 1,
      atMost: true,
    },
    {
      label: "concurrency keys: most running per key, handlers ÷ limit",
      num: "fair.keys",
      den: "fair.keys",
      metric: "figure:max_running_handlers",
      denMetric: "figure:limit",
      target: 1,
      atMost: true,
    },
  ];
}

/** A summary's figure for `metric` (undefined when not measured). */
function metricOf(s: CaseSummary, metric: RatioMetric = "rate"): number | undefined {
  if (s.runs.length === 0) return undefined;
  if (metric === "rate") return s.median;
  if (metric.startsWith("figure:")) return s.figures?.[metric.slice("figure:".length)];
  if (metric === "pgCpu") return s.cost?.pgUs;
  return s.cost?.walB ?? s.walPerJob;
}

/** Fills in ratio values from the summaries (backlog.small/large resolve by size). */
export function computeRatios(sums: CaseSummary[]): Ratio[] {
  const backlog = sums.filter((s) => s.case.workload === "backlog");
  const find = (id: string): CaseSummary | undefined => {
    if (id === "backlog.small") return backlog[0];
    if (id === "backlog.large") return backlog[1];
    return sums.find((s) => s.case.id === id);
  };
  return ratioDefs().map((r) => {
    const a = find(r.num);
    const b = find(r.den);
    const x = a && metricOf(a, r.metric);
    const y = b && metricOf(b, r.denMetric ?? r.metric);
    const ok = x !== undefined && y !== undefined && y > 0;
    return { ...r, value: ok ? x / y : undefined };
  });
}

/** Whether a ratio meets its target (null: no target or not measured). */
function met(r: Ratio): boolean | null {
  if (r.value === undefined || r.target === undefined) return null;
  return r.atMost ? r.value <= r.target : r.value >= r.target;
}

function verdict(r: Ratio): string {
  if (r.value === undefined) return "not measured";
  const m = met(r);
  return m === null ? "" : m ? "met" : "MISSED";
}

function targetText(r: Ratio): string {
  return r.target === undefined ? "" : `${r.atMost ? "≤" : "≥"} ${r.target}`;
}

/** µs with sensible precision. */
function fmtUs(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "–";
  return x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1);
}

/** The API's CPU per job, split by process where more than one did work. */
function apiText(s: CaseSummary): string {
  const c = s.cost;
  if (!c) return "–";
  const parts = Object.entries(c.apiParts).filter(([, v]) => v >= 0.5);
  return parts.length > 1
    ? `${fmtUs(c.apiUs)} (${parts.map(([k, v]) => `${k} ${fmtUs(v)}`).join(", ")})`
    : fmtUs(c.apiUs);
}

function walText(s: CaseSummary): string {
  const w = s.cost?.walB ?? s.walPerJob;
  return w === undefined ? "–" : Math.round(w).toLocaleString("en-US");
}

/** Issue 16's audit column: the setting the run had and the events it wrote per job. */
function auditText(s: CaseSummary): string {
  const a = s.runs.map((r) => r.audit).filter((x) => x !== undefined);
  if (a.length === 0) return "–";
  const modes = [...new Set(a.map((x) => x.mode))].join("/");
  return `${modes}, ${median(a.map((x) => x.eventsPerJob)).toFixed(1)} events/job`;
}

/** A case's own figures (medians over its runs), as `name value` pairs. */
export function figuresText(f: Record<string, number> | undefined): string {
  if (!f) return "–";
  return Object.entries(f).map(([k, v]) =>
    `${k} ${k.endsWith("_ms") ? fmtMs(v) : Number.isInteger(v) ? String(v) : fmtRate(v)}`
  ).join(", ");
}

/** A backlog's pre-fill: median seconds and rate of the enqueue part. */
function fillText(s: CaseSummary): string {
  const f = s.runs.map((r) => r.fill).filter((x) => x !== undefined);
  if (f.length === 0) return "–";
  const secs = median(f.map((x) => x.seconds));
  return `${secs.toFixed(1)} s (${fmtRate(f[0]!.jobs / secs)} jobs/s)`;
}

/** p95/p99 of a latency case: shown from ≥ 200 samples per run; below, with its n (or not). */
function tail(s: CaseSummary, v: number | undefined, full: boolean): string {
  const n = s.case.size;
  if (n >= 200) return fmtMs(v ?? NaN);
  return full ? `– (n=${n})` : `${fmtMs(v ?? NaN)} (n=${n})`;
}

/** One row of issue 16's "HTTP path's own cost" table, in ms per request. */
export interface HttpCost {
  label: string;
  http: string;
  sql: string;
  /** API processes' CPU per request, by process, and summed. */
  apiParts: Record<string, number>;
  api: number;
  pgHttp: number;
  pgSql: number;
  /** HTTP's Postgres CPU per request minus SQL's. */
  extraPg: number;
  /** api + extraPg: the target's figure (≤ 0.4 ms). */
  total: number;
}

/** The HTTP path's own cost target (issue 16), ms per request. */
export const HTTP_COST_TARGET_MS = 0.4;

/** The HTTP path's own cost, for each HTTP/SQL pair of this run that has CPU figures. */
export function httpCosts(sums: CaseSummary[]): HttpCost[] {
  const pairs = [
    ["one-INSERT RPC (bench_insert), c10", "rpc.http", "rpc.sql"],
    ["queue_job, c10", "enqueue.conveyor-http.c10", "enqueue.conveyor-sql.c10"],
    ["queue_job, c1", "enqueue.conveyor-http.c1", "enqueue.conveyor-sql.c1"],
  ];
  const out: HttpCost[] = [];
  for (const [label, http, sql] of pairs) {
    const h = sums.find((s) => s.case.id === http)?.cost;
    const q = sums.find((s) => s.case.id === sql)?.cost;
    if (!h || !q) continue;
    const ms = (us: number) => us / 1000;
    const api = ms(h.apiUs);
    const extraPg = ms(h.pgUs - q.pgUs);
    out.push({
      label: label!,
      http: http!,
      sql: sql!,
      apiParts: Object.fromEntries(Object.entries(h.apiParts).map(([k, v]) => [k, ms(v)])),
      api,
      pgHttp: ms(h.pgUs),
      pgSql: ms(q.pgUs),
      extraPg,
      total: api + extraPg,
    });
  }
  return out;
}

function figure(s: CaseSummary): string {
  const unit = s.case.unit ?? "jobs/s";
  return unit === "ms" ? fmtMs(s.median) : fmtRate(s.median);
}

function range(s: CaseSummary): string {
  const unit = s.case.unit ?? "jobs/s";
  const f = unit === "ms" ? fmtMs : fmtRate;
  return s.runs.length > 1 ? `${f(s.min)}–${f(s.max)}` : "–";
}

function status(s: CaseSummary): string {
  if (s.skipped) return s.skipped;
  if (s.failures.length) return `FAILED (${s.failures.join("; ")})`;
  const dup = s.delivered > 0 ? (100 * s.duplicates) / s.delivered : 0;
  return `ok, dup ${dup.toFixed(dup ? 3 : 0)}%`;
}

/** "job", or "req" for a case measured in requests. */
function per(s: CaseSummary): string {
  return s.case.unit === "req/s" ? "req" : s.case.unit === "ms" ? "sample" : "job";
}

/** The terminal summary. */
export function terminalSummary(sums: CaseSummary[], ratios: Ratio[]): string {
  const lines: string[] = [];
  for (const w of WORKLOADS) {
    const rows = sums.filter((s) => s.case.workload === w.id);
    if (rows.length === 0) continue;
    lines.push("", w.title);
    for (const s of rows) {
      const unit = s.case.unit ?? "jobs/s";
      const extra = unit === "ms"
        ? ` p95 ${tail(s, s.p95, false)} p99 ${tail(s, s.p99, false)}`
        : "";
      const c = s.cost;
      const cost = c
        ? ` | µs/${per(s)}: pg ${fmtUs(c.pgUs)} api ${apiText(s)} client ${
          fmtUs(c.clientUs)
        } | WAL ${walText(s)} B`
        : "";
      const audit = s.runs.some((r) => r.audit) ? ` | audit ${auditText(s)}` : "";
      const fill = s.runs.some((r) => r.fill) && w.id === "backlog"
        ? ` | pre-fill ${fillText(s)}`
        : "";
      const figs = s.figures ? ` | ${figuresText(s.figures)}` : "";
      lines.push(
        `  ${s.case.id.padEnd(28)} ${figure(s).padStart(9)} ${unit.padEnd(6)} [${
          range(s)
        }]${extra}${cost}${audit}${fill}${figs}  ${status(s)}`,
      );
    }
  }
  const http = httpCosts(sums);
  if (http.length) {
    lines.push("", `The HTTP path's own cost, ms per request (target ≤ ${HTTP_COST_TARGET_MS})`);
    for (const h of http) {
      lines.push(
        `  ${h.label.padEnd(36)} API ${h.api.toFixed(3)} + extra Postgres ${
          h.extraPg.toFixed(3)
        } (${h.pgHttp.toFixed(3)} − ${h.pgSql.toFixed(3)}) = ${h.total.toFixed(3)} ${
          h.total <= HTTP_COST_TARGET_MS ? "met" : "MISSED"
        }`,
      );
    }
  }
  lines.push("", "Ratios (medians of this run)");
  for (const r of ratios) {
    const v = r.value === undefined ? "–" : r.value.toFixed(2);
    const t = r.target === undefined ? "" : ` (target ${targetText(r)})`;
    lines.push(`  ${r.label.padEnd(60)} ${v.padStart(6)}${t} ${verdict(r)}`);
  }
  return lines.join("\n");
}

/** What the markdown report needs besides the results. */
export interface ReportMeta {
  mode: string;
  started: Date;
  minutes: number;
  machine: MachineFacts;
  loadAfter: string;
  settings: BenchEnv["settings"];
  notes: string;
  command: string;
  source: string;
  /** Highest 1-minute load average sampled between cases. */
  maxLoad: number;
}

function mdTable(head: string[], rows: string[][]): string {
  const esc = (c: string) => c.replaceAll("|", "\\|");
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/** docs/benchmarks.md. */
export function markdown(sums: CaseSummary[], ratios: Ratio[], meta: ReportMeta): string {
  const m = meta.machine;
  const out: string[] = [];
  out.push(
    "# Benchmarks",
    "",
    '<!-- Generated by `deno task bench` (tools/bench). The section "Changes made for performance" comes from tools/bench/notes.md. -->',
    "",
    `Conveyor next to pg-boss and graphile-worker, **in one run, on one PostgreSQL cluster, on this machine**: ` +
      `${meta.mode}, started ${meta.started.toISOString().slice(0, 16).replace("T", " ")} UTC, ` +
      `${
        meta.minutes.toFixed(1)
      } minutes, code under test: ${meta.source}. Command: \`${meta.command}\`.`,
    "",
    ...(meta.maxLoad > 1.5
      ? [
        `**The machine was not quiet during this run**: the 1-minute load reached ${
          meta.maxLoad.toFixed(1)
        } between cases (other work on the shared machine), so spreads are wider than on an idle host.`,
        "",
      ]
      : []),
    "The machine has 2 cores shared by the clients, the gateway, PostgREST and PostgreSQL, so absolute numbers are",
    "noise; the ratios between systems measured in the same run are what count. The anchors measured",
    "earlier on this machine (shared/reference/anchor-benchmarks.md) are for orientation only.",
    "",
    "## Ratios",
    "",
    "Medians of this run. ![ratios](benchmarks.svg)",
    "",
    mdTable(
      ["ratio", "value", "target", ""],
      ratios.map((r) => [
        r.label,
        r.value === undefined ? "–" : r.value.toFixed(2),
        targetText(r),
        verdict(r),
      ]),
    ),
    "",
    "Cost ratios (Postgres CPU/job, WAL/job) are Conveyor's figure ÷ the peer's: below 1 is cheaper.",
    "",
  );
  const http = httpCosts(sums);
  if (http.length) {
    out.push(
      "## The HTTP path's own cost (issue 16)",
      "",
      "What a request costs over HTTP beyond the same call over SQL, in ms of CPU per request: the API",
      "processes' CPU (the gateway with the functions it hosts, and PostgREST where it runs) plus the",
      "extra Postgres CPU the HTTP path needs (its transaction, role switch, claims, pre-request):",
      "the HTTP case's Postgres CPU per request minus the SQL case's. Medians of this run.",
      "",
      mdTable(
        [
          "call",
          "API CPU ms/req",
          "Postgres CPU ms/req, HTTP",
          "Postgres CPU ms/req, SQL",
          "extra Postgres ms/req",
          "HTTP's own cost ms/req",
          "target",
          "",
        ],
        http.map((h) => {
          const parts = Object.entries(h.apiParts).filter(([, v]) => v >= 0.0005);
          return [
            `${h.label} (\`${h.http}\` − \`${h.sql}\`)`,
            h.api.toFixed(3) +
            (parts.length > 1
              ? ` (${parts.map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")})`
              : ""),
            h.pgHttp.toFixed(3),
            h.pgSql.toFixed(3),
            h.extraPg.toFixed(3),
            `**${h.total.toFixed(3)}**`,
            `≤ ${HTTP_COST_TARGET_MS}`,
            h.total <= HTTP_COST_TARGET_MS ? "met" : "MISSED",
          ];
        }),
      ),
      "",
    );
  }
  const full = meta.mode === "full run";
  const version = (s: CaseSummary) =>
    s.case.version === "main" ? meta.source.replace(/^commit /, "") : s.case.version;
  for (const w of WORKLOADS) {
    out.push(`## ${w.title}`, "");
    const rows = sums.filter((s) => s.case.workload === w.id);
    if (rows.length === 0) {
      out.push("Not run in this run (`--only`).", "");
      continue;
    }
    const unit = (s: CaseSummary) => s.case.unit ?? "jobs/s";
    const allMs = rows.every((s) => unit(s) === "ms");
    const someTail = rows.some((s) => s.p99 !== undefined);
    const oneUnit = rows.every((s) => unit(s) === unit(rows[0]!));
    const word = allMs ? "sample" : rows.every((s) => unit(s) === "req/s") ? "req" : "job";
    const costCols = rows.some((s) => s.cost);
    const auditCol = rows.some((s) => s.runs.some((r) => r.audit));
    const fillCol = w.id === "backlog" && rows.some((s) => s.runs.some((r) => r.fill));
    const figCol = rows.some((s) => s.figures);
    const head = [
      "system",
      "version",
      "settings",
      allMs ? "samples/run" : "jobs/run",
      ...(allMs
        ? ["p50 ms", "p95 ms", "p99 ms", "p50 min–max"]
        : [oneUnit ? `median ${unit(rows[0]!)}` : "median", "min–max"]),
      ...(someTail && !allMs ? ["p99 ms"] : []),
      "runs",
      ...(costCols
        ? [
          `Postgres CPU µs/${word}`,
          `API CPU µs/${word}`,
          `client CPU µs/${word}`,
          `WAL B/${word}`,
        ]
        : []),
      ...(auditCol ? ["audit (setting, job_events rows/job)"] : []),
      ...(fillCol ? ["pre-fill (untimed)"] : []),
      ...(figCol ? ["figures (medians)"] : []),
      "check",
    ];
    out.push(mdTable(
      head,
      rows.map((s) => [
        s.case.system,
        version(s),
        s.case.settings,
        s.case.size.toLocaleString("en-US"),
        ...(allMs
          ? [
            `**${fmtMs(s.median)}**`,
            tail(s, s.p95, full),
            tail(s, s.p99, full),
            range(s),
          ]
          : [`**${figure(s)}**${oneUnit ? "" : ` ${unit(s)}`}`, range(s)]),
        ...(someTail && !allMs ? [s.p99 === undefined ? "–" : tail(s, s.p99, full)] : []),
        String(s.runs.length),
        ...(costCols ? [fmtUs(s.cost?.pgUs), apiText(s), fmtUs(s.cost?.clientUs), walText(s)] : []),
        ...(auditCol ? [auditText(s)] : []),
        ...(fillCol ? [fillText(s)] : []),
        ...(figCol ? [figuresText(s.figures)] : []),
        status(s),
      ]),
    ));
    out.push(
      "",
      ...(allMs
        ? [
          "p95/p99 are medians of the per-run values; shown from ≥ 200 samples per run, below that" +
          (full ? " not reported (n = samples per run)." : " with their n."),
          "",
        ]
        : []),
    );
  }
  out.push(
    "## How it was measured",
    "",
    "- **One run, alternating.** Every workload runs each case once per repetition, the order rotated",
    "  from one repetition to the next, so drift on the shared machine spreads over all systems.",
    "- **Fresh state per run.** Conveyor: ledger tables and pgmq queues truncated. pg-boss: `DROP SCHEMA",
    "  pgboss CASCADE`, `start()`, `createQueue` (defaults). graphile-worker: `DROP SCHEMA graphile_worker",
    "  CASCADE`, `runMigrations`. Before each drain: pre-fill through the batch API (untimed), then",
    "  `VACUUM ANALYZE` and `CHECKPOINT`.",
    "- **Timing.** Enqueue: first call to last answer. Drain: first handler call until the database shows",
    "  every job done (Conveyor: every worker loop has found the queue empty, and each settles before it",
    "  claims again; pg-boss: no job left outside `completed`; graphile: `_private_jobs` empty; pgmq: the",
    "  clients read nothing more). Latency: from just before the enqueue call (commit included) to the",
    "  handler's start, one job in flight.",
    "- **Correctness.** Every run counts handler calls per job id (enqueue runs: rows per payload) and",
    "  compares with the jobs that had to be processed. A lost job makes the run FAILED; extra deliveries",
    "  are the duplicate rate.",
    "- **CPU and WAL per job** (tools/bench/meter.ts), over each case's timed part only (a snapshot",
    "  before it, one after; a drain's pre-fill, VACUUM and CHECKPOINT are outside), divided by the jobs",
    "  (calls, samples) of the run; medians over the runs. *Postgres*: the cluster's processes from",
    "  /proc (the postmaster and all its children, live or exited). *API*: the processes started for",
    "  the API (the gateway with the edge functions it hosts, PostgREST where it runs as its own",
    "  process), summed; split by process where more than one did work. *Client*: the benchmark's",
    "  own process (`process.cpuUsage()`), where every system's client runs (postgres.js, supabase-js,",
    "  pg-boss, graphile-worker). The pg_net worker of the push workloads is in none of the three",
    "  (its figure is in the JSON results). *WAL*: `pg_current_wal_lsn()` before and after,",
    "  cluster-wide. Latency and pipeline rows include the benchmark's own polling of the database",
    "  for the push path's start and finish times.",
    "- **Audit.** Conveyor drains report the `conveyor.settings` `audit` value the run had (`unset`",
    "  where the row does not exist) and the `job_events` rows the drain wrote per job; the",
    "  `audit = 'full'` row sets the value for its run only and puts it back after.",
    "- **Backlog.** The pre-fill uses `queue_jobs` calls of 5,000 bodies built by the server, from two",
    "  connections; its time (enqueue only) is in the pre-fill column and not in any figure.",
    "- **Conveyor paths.** *RPC*: the pgmq QueueAdapter (`_shared/queue/pgmq_adapter.ts`) as an edge worker",
    "  runs it: supabase-js → the gateway → PostgREST (their own processes, as the stack runs them) → `claim_jobs` /",
    "  `settle_jobs`, one round trip each per batch. *Direct SQL*: the same worker loop",
    "  (`_shared/worker_loop.ts`) calling the same two functions over postgres.js. Batch enqueue uses",
    "  `public.queue_jobs(jsonb)` (`0051_queue_job_expose.sql`).",
    "- **Runtimes.** Everything runs in Deno; pg-boss and graphile-worker are `npm:` imports pinned in",
    "  tools/bench/systems. The anchors ran them on Node 20; both declare Node ≥ 22. Deno's Node",
    "  compatibility layer (node-pg over Deno's sockets) may cost them something Node would not.",
    "",
    "## Environment",
    "",
    mdTable(["", ""], [
      ["Machine", `${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB RAM, ${m.os}`],
      ["Load (1/5/15 min)", `before: ${m.loadBefore}; after: ${meta.loadAfter}`],
      ["Deno", m.deno],
      ["PostgreSQL", meta.settings["server_version"] ?? "?"],
      [
        "Cluster",
        "throwaway, made by tools/stack (initdb -E UTF8 --locale=C.UTF-8, scram over TCP on 127.0.0.1), " +
        "pg_cron and pg_stat_statements preloaded as the stack does; Conveyor's cron jobs run in its database",
      ],
      [
        "Settings",
        Object.entries(meta.settings).filter(([k]) => k !== "server_version").map(([k, v]) =>
          `${k}=${v}`
        )
          .join(", "),
      ],
      [
        "Databases",
        "one per system in the same cluster: postgres (Conveyor, pgmq), bench_pgboss, bench_graphile, bench_raw",
      ],
    ]),
    "",
    "## Changes made for performance",
    "",
    meta.notes.trim(),
    "",
  );
  return out.join("\n");
}

function xmlEscape(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** docs/benchmarks.svg: a horizontal bar per ratio, a marker at its target, a line at 1. */
export function svgChart(ratios: Ratio[], subtitle: string): string {
  const rows = ratios.filter((r) => r.value !== undefined);
  const left = 440;
  const width = 960;
  const barW = width - left - 90;
  const rowH = 26;
  const top = 56;
  const height = top + rows.length * rowH + 40;
  const maxV = Math.max(2.5, ...rows.map((r) => Math.max(r.value!, r.target ?? 0))) * 1.05;
  const x = (v: number) => left + (Math.min(v, maxV) / maxV) * barW;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="22" font-size="15" font-weight="bold">Conveyor vs pg-boss / graphile-worker / ceilings (ratio of medians, same run)</text>`,
    `<text x="16" y="40" fill="#555">${xmlEscape(subtitle)}</text>`,
  );
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const ok = met(r);
    const color = ok === null ? "#7a8ca3" : ok ? "#2e8b57" : "#d0473a";
    parts.push(
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${xmlEscape(r.label)}</text>`,
      `<rect x="${left}" y="${y + 4}" width="${
        Math.max(1, x(r.value!) - left).toFixed(1)
      }" height="${rowH - 9}" fill="${color}"/>`,
      `<text x="${(x(r.value!) + 4).toFixed(1)}" y="${y + 15}">${r.value!.toFixed(2)}×</text>`,
    );
    if (r.target !== undefined) {
      const tx = x(r.target).toFixed(1);
      parts.push(
        `<line x1="${tx}" x2="${tx}" y1="${y + 1}" y2="${
          y + rowH - 2
        }" stroke="#111" stroke-width="2" stroke-dasharray="3,2"/>`,
      );
    }
  });
  const one = x(1).toFixed(1);
  parts.push(
    `<line x1="${one}" x2="${one}" y1="${top - 4}" y2="${
      top + rows.length * rowH
    }" stroke="#999" stroke-width="1"/>`,
    `<text x="${one}" y="${
      top + rows.length * rowH + 14
    }" text-anchor="middle" fill="#555">1×</text>`,
    `<text x="16" y="${
      height - 8
    }" fill="#555">green: target met · red: target missed · grey: no target · dashed mark: target (cost ratios: a ceiling)</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
