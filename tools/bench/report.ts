/**
 * The benchmark's outputs: the terminal summary, `docs/benchmarks.md` (tables with versions,
 * settings and machine facts) and `docs/benchmarks.svg` (a bar chart of the ratios, written
 * here as plain SVG text).
 *
 * @module
 */
import type { BenchEnv, MachineFacts } from "./env.ts";
import { WORKLOADS } from "./plan.ts";
import { fmtMs, fmtRate } from "./stats.ts";
import type { CaseSummary } from "./types.ts";

/** A ratio between two medians of the same run, with its target. */
export interface Ratio {
  label: string;
  /** numerator / denominator case ids. */
  num: string;
  den: string;
  target?: number;
  /** Filled in from the run. */
  value?: number;
}

/** The ratios issue 9 (and issue 4) ask for. */
export function ratioDefs(): Ratio[] {
  return [
    {
      label: "drain b10/c10, SQL path ÷ pg-boss",
      num: "drain.conveyor-sql.A",
      den: "drain.pgboss.A",
      target: 2,
    },
    {
      label: "drain b10/c10, RPC path ÷ pg-boss",
      num: "drain.conveyor-rpc.A",
      den: "drain.pgboss.A",
      target: 2,
    },
    {
      label: "drain b10/c10, SQL path ÷ graphile defaults",
      num: "drain.conveyor-sql.A",
      den: "drain.graphile.D",
      target: 1,
    },
    {
      label: "drain b10/c10, RPC path ÷ graphile defaults",
      num: "drain.conveyor-rpc.A",
      den: "drain.graphile.D",
      target: 1,
    },
    {
      label: "drain b10, SQL path ÷ raw pgmq read+archive b10",
      num: "drain.conveyor-sql.A",
      den: "drain.pgmq.b10",
      target: 0.5,
    },
    {
      label: "drain b10, RPC path ÷ raw pgmq read+archive b10",
      num: "drain.conveyor-rpc.A",
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
      label: "queue_job c10, HTTP ÷ SQL",
      num: "enqueue.conveyor-http.c10",
      den: "enqueue.conveyor-sql.c10",
      target: 0.8,
    },
    {
      label: "one-INSERT RPC c10, gateway ÷ SQL (issue 4)",
      num: "rpc.http",
      den: "rpc.sql",
      target: 0.8,
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
  ];
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
    const ok = a && b && a.runs.length > 0 && b.runs.length > 0 && b.median > 0;
    return { ...r, value: ok ? a.median / b.median : undefined };
  });
}

function verdict(r: Ratio): string {
  if (r.value === undefined) return "not measured";
  if (r.target === undefined) return "";
  return r.value >= r.target ? "met" : "MISSED";
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

/** The terminal summary. */
export function terminalSummary(sums: CaseSummary[], ratios: Ratio[]): string {
  const lines: string[] = [];
  for (const w of WORKLOADS) {
    const rows = sums.filter((s) => s.case.workload === w.id);
    if (rows.length === 0) continue;
    lines.push("", w.title);
    for (const s of rows) {
      const unit = s.case.unit ?? "jobs/s";
      const extra = unit === "ms" ? ` p95 ${fmtMs(s.p95 ?? NaN)} p99 ${fmtMs(s.p99 ?? NaN)}` : "";
      const wal = s.walPerJob === undefined ? "" : ` WAL ${(s.walPerJob / 1024).toFixed(1)} kB/job`;
      lines.push(
        `  ${s.case.id.padEnd(28)} ${figure(s).padStart(9)} ${unit.padEnd(6)} [${
          range(s)
        }]${extra}${wal}  ${status(s)}`,
      );
    }
  }
  lines.push("", "Ratios (medians of this run)");
  for (const r of ratios) {
    const v = r.value === undefined ? "–" : r.value.toFixed(2);
    const t = r.target === undefined ? "" : ` (target ≥ ${r.target})`;
    lines.push(`  ${r.label.padEnd(52)} ${v.padStart(6)}${t} ${verdict(r)}`);
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
    "The machine has 2 cores shared by the clients, the gateway and PostgreSQL, so absolute numbers are",
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
        r.target === undefined ? "" : `≥ ${r.target}`,
        verdict(r),
      ]),
    ),
    "",
  );
  for (const w of WORKLOADS) {
    out.push(`## ${w.title}`, "");
    const rows = sums.filter((s) => s.case.workload === w.id);
    if (rows.length === 0) {
      out.push("Not run in this run (`--only`).", "");
      continue;
    }
    if (w.id === "latency") {
      out.push(mdTable(
        [
          "system",
          "version",
          "settings",
          "samples/run",
          "p50 ms",
          "p95 ms",
          "p99 ms",
          "p50 min–max",
          "runs",
          "check",
        ],
        rows.map((s) => [
          s.case.system,
          s.case.version === "main" ? meta.source.replace(/^commit /, "") : s.case.version,
          s.case.settings,
          String(s.case.size),
          `**${fmtMs(s.median)}**`,
          fmtMs(s.p95 ?? NaN),
          fmtMs(s.p99 ?? NaN),
          range(s),
          String(s.runs.length),
          status(s),
        ]),
      ));
      out.push("", "p95/p99 are medians of the per-run values.", "");
      continue;
    }
    const wal = rows.some((s) => s.walPerJob !== undefined);
    out.push(mdTable(
      [
        "system",
        "version",
        "settings",
        "jobs/run",
        `median ${rows[0]!.case.unit ?? "jobs/s"}`,
        "min–max",
        "runs",
        ...(wal ? ["WAL/job"] : []),
        "check",
      ],
      rows.map((s) => [
        s.case.system,
        s.case.version === "main" ? meta.source.replace(/^commit /, "") : s.case.version,
        s.case.settings,
        s.case.size.toLocaleString("en-US"),
        `**${figure(s)}**`,
        range(s),
        String(s.runs.length),
        ...(wal ? [s.walPerJob === undefined ? "–" : `${(s.walPerJob / 1024).toFixed(1)} kB`] : []),
        status(s),
      ]),
    ));
    out.push("");
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
    "- **Conveyor paths.** *RPC*: the pgmq QueueAdapter (`_shared/queue/pgmq_adapter.ts`) as an edge worker",
    "  runs it: supabase-js → the gateway (its own process, as the stack runs it) → `claim_jobs` /",
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
  const left = 360;
  const width = 880;
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
    const met = r.target === undefined ? null : r.value! >= r.target;
    const color = met === null ? "#7a8ca3" : met ? "#2e8b57" : "#d0473a";
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
    }" fill="#555">green: target met · red: target missed · grey: no target · dashed mark: target</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
