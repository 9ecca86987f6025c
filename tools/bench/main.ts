/**
 * `deno task bench [--quick] [--only <workload|case id prefix>]`: Conveyor next to pg-boss
 * and graphile-worker on one throwaway PostgreSQL cluster, in one run (issue 9).
 *
 * Starts its own cluster, PostgREST and gateway (tools/bench/env.ts), runs every case of every workload
 * (tools/bench/plan.ts) once per repetition with the order rotated between repetitions,
 * checks that every job was processed exactly once, prints progress and a summary, and
 * writes the report: `docs/benchmarks.md` + `docs/benchmarks.svg` for a full run of every
 * workload, `.artifacts/bench/` otherwise (or `--out <dir>`). Raw results go to
 * `.artifacts/bench/results-<time>.json`.
 *
 *   --quick        small sizes, one repetition (a smoke check in under 3 minutes)
 *   --smoke        tiny sizes (a faster local check; the test runs --quick)
 *   --only X       only workloads / cases whose id starts with X (repeatable, comma list)
 *   --reps N       repetitions (default 3, quick 1)
 *   --out DIR      where benchmarks.md/.svg go
 *   --dir DIR      the cluster's folder (default .stack/bench)
 *   --project P    Conveyor as installed into Supabase project P (its migrations and functions)
 *
 * @module
 */
import { cliArgs, usageExit } from "../args.ts";
import { checkProject, REPO_ROOT } from "../stack/state.ts";
import { DBS, loadAvg, startEnv } from "./env.ts";
import { buildPlan, FULL, QUICK, RUN_ORDER, type Sizes, SMOKE, WORKLOADS } from "./plan.ts";
import { computeRatios, figuresText, markdown, svgChart, terminalSummary } from "./report.ts";
import { medianCost } from "./meter.ts";
import { fmtMs, fmtRate, median } from "./stats.ts";
import type { Case, CaseSummary, RunResult } from "./types.ts";

/** Bad command-line input: printed without a stack trace, exit status 2. */
export class UsageError extends Error {}

/** Options of {@link runBench}. */
export interface BenchOptions {
  mode: "full" | "quick" | "smoke";
  only?: string[];
  reps?: number;
  out?: string;
  dir?: string;
  /** A Supabase project Conveyor was installed into (default: this checkout's supabase/). */
  project?: string;
  log?: (line: string) => void;
}

/** What a run produced. */
export interface BenchOutcome {
  summaries: CaseSummary[];
  markdownPath: string;
  svgPath: string;
  failed: number;
}

function selected(c: Case, only: string[] | undefined): boolean {
  if (!only || only.length === 0) return true;
  return only.some((o) => c.workload === o || c.id.startsWith(o));
}

/** The median of each of the runs' own figures (undefined when none has any). */
function medianFigures(runs: RunResult[]): Record<string, number> | undefined {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.figures ?? {})))];
  if (names.length === 0) return undefined;
  return Object.fromEntries(names.map((k) => [
    k,
    median(runs.flatMap((r) => r.figures?.[k] !== undefined ? [r.figures[k]!] : [])),
  ]));
}

function summarise(c: Case, runs: RunResult[], failures: string[]): CaseSummary {
  const vals = runs.map((r) => r.value);
  return {
    case: c,
    runs,
    failures,
    median: median(vals),
    min: Math.min(...vals),
    max: Math.max(...vals),
    p95: runs[0]?.p95 !== undefined ? median(runs.map((r) => r.p95!)) : undefined,
    p99: runs[0]?.p99 !== undefined ? median(runs.map((r) => r.p99!)) : undefined,
    walPerJob: runs.some((r) => r.walPerJob !== undefined)
      ? median(runs.filter((r) => r.walPerJob !== undefined).map((r) => r.walPerJob!))
      : undefined,
    cost: medianCost(runs.flatMap((r) => r.cost ? [r.cost] : [])),
    figures: medianFigures(runs),
    duplicates: runs.reduce((a, r) => a + r.delivery.duplicates, 0),
    delivered: runs.reduce((a, r) => a + r.delivery.distinct, 0),
  };
}

/** Runs the benchmark; resolves with the summaries and where the report went. */
export async function runBench(opts: BenchOptions): Promise<BenchOutcome> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const sizes: Sizes = opts.mode === "full" ? FULL : opts.mode === "quick" ? QUICK : SMOKE;
  const reps = opts.reps ?? sizes.reps;
  const plan = buildPlan(sizes).filter((c) => selected(c, opts.only));
  if (plan.length === 0) {
    const ids = buildPlan(sizes).map((c) => c.id).join(", ");
    throw new UsageError(
      `--only ${opts.only?.join(",")} matches no case; workloads: ${
        WORKLOADS.map((w) => w.id).join(", ")
      }; cases: ${ids}`,
    );
  }
  const started = new Date();
  const t0 = performance.now();
  const load = await loadAvg();
  if (load > 1.0) {
    log(`note: the machine is busy (load ${load.toFixed(2)}); figures will be noisier`);
  }
  log(`bench: ${opts.mode}, ${plan.length} cases × up to ${reps} repetitions`);
  const env = await startEnv({ dir: opts.dir, project: opts.project, log });
  const results = new Map<string, { runs: RunResult[]; failures: string[] }>();
  const skipped = new Map<string, string>();
  // The highest 1-minute load seen between cases: other people's work on a shared machine.
  let maxLoad = load;
  try {
    log(
      `cluster: ${env.url(DBS.conveyor)}; ${
        Object.entries(env.settings).map(([k, v]) => `${k}=${v}`).join(" ")
      }`,
    );
    const workloads = RUN_ORDER.filter((w) => plan.some((c) => c.workload === w));
    for (const c of plan) {
      const why = c.skip ? await c.skip(env) : null;
      if (why) {
        skipped.set(c.id, why);
        log(`${c.id}: ${why}`);
      }
    }
    let done = 0;
    maxLoad = Math.max(maxLoad, await loadAvg());
    const total = plan.filter((c) => !skipped.has(c.id))
      .reduce((a, c) => a + Math.min(reps, c.reps ?? reps), 0);
    for (const w of workloads) {
      const cases = plan.filter((c) => c.workload === w);
      for (let rep = 0; rep < reps; rep++) {
        // Rotate the order each repetition: drift on a shared machine hits every system.
        const order = cases.map((_, k) => cases[(k + rep) % cases.length]!);
        for (const c of order) {
          if (rep >= (c.reps ?? reps) || skipped.has(c.id)) continue;
          const slot = results.get(c.id) ?? { runs: [], failures: [] };
          results.set(c.id, slot);
          done++;
          maxLoad = Math.max(maxLoad, await loadAvg());
          const head = `[${done}/${total}] ${c.id} rep ${rep + 1}`;
          try {
            const r = await c.run(env);
            const d = r.delivery;
            const unit = c.unit ?? "jobs/s";
            const fig = (unit === "ms"
              ? `p50 ${fmtMs(r.value)} ms p95 ${fmtMs(r.p95 ?? NaN)} p99 ${fmtMs(r.p99 ?? NaN)}`
              : `${fmtRate(r.value)} ${unit} (${r.n.toLocaleString("en-US")} in ${
                r.seconds.toFixed(2)
              } s)`) + (r.figures ? `; ${figuresText(r.figures)}` : "");
            if (d.lost > 0) {
              slot.failures.push(`rep ${rep + 1} lost ${d.lost} of ${d.expected}`);
              log(`${head}: FAILED, lost ${d.lost} of ${d.expected} jobs (${fig})`);
            } else {
              slot.runs.push(r);
              log(`${head}: ${fig}, ${d.distinct} jobs once each, ${d.duplicates} duplicates`);
            }
          } catch (e) {
            const msg = e instanceof Error ? e.message : String(e);
            slot.failures.push(`rep ${rep + 1}: ${msg.split("\n")[0]}`);
            log(`${head}: FAILED: ${msg}`);
          }
        }
      }
    }
  } finally {
    await env.stop();
  }

  const summaries = plan
    .filter((c) => results.has(c.id) || skipped.has(c.id))
    .map((c) => ({
      ...summarise(c, results.get(c.id)?.runs ?? [], results.get(c.id)?.failures ?? []),
      skipped: skipped.get(c.id),
    }));
  const ratios = computeRatios(summaries);
  log(terminalSummary(summaries, ratios));

  const full = opts.mode === "full" && !opts.only?.length;
  const outDir = opts.out ?? (full ? `${REPO_ROOT}/docs` : `${REPO_ROOT}/.artifacts/bench`);
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.mkdir(`${REPO_ROOT}/.artifacts/bench`, { recursive: true });
  const stamp = started.toISOString().replaceAll(":", "").slice(0, 15);
  await Deno.writeTextFile(
    `${REPO_ROOT}/.artifacts/bench/results-${stamp}.json`,
    JSON.stringify(
      {
        started,
        mode: opts.mode,
        settings: env.settings,
        machine: env.machine,
        ratios,
        cases: summaries.map((s) => ({
          id: s.case.id,
          settings: s.case.settings,
          median: s.median,
          figures: s.figures,
          runs: s.runs,
          failures: s.failures,
        })),
      },
      null,
      2,
    ),
  );
  const notes = await Deno.readTextFile(new URL("./notes.md", import.meta.url)).catch(() => "");
  const minutes = (performance.now() - t0) / 60_000;
  const loadAfter = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ").slice(
    0,
    3,
  ).join(" ");
  const command = `deno task bench${opts.mode === "full" ? "" : ` --${opts.mode}`}` +
    (opts.only?.length ? ` --only ${opts.only.join(",")}` : "");
  const md = markdown(summaries, ratios, {
    mode: opts.mode === "full" ? "full run" : `${opts.mode} run`,
    started,
    minutes,
    machine: env.machine,
    loadAfter,
    settings: env.settings,
    notes,
    command,
    source: env.source.label,
    maxLoad,
  });
  const markdownPath = `${outDir}/benchmarks.md`;
  const svgPath = `${outDir}/benchmarks.svg`;
  await Deno.writeTextFile(markdownPath, md);
  await Deno.writeTextFile(
    svgPath,
    svgChart(
      ratios,
      `${command} · ${
        started.toISOString().slice(0, 10)
      } · ${env.machine.cores} cores · ${env.machine.cpu}`,
    ),
  );
  const failed = summaries.filter((s) => s.failures.length > 0).length;
  log(
    `\nreport: ${markdownPath} and ${svgPath} (${minutes.toFixed(1)} min)${
      failed ? `; ${failed} case(s) FAILED` : ""
    }`,
  );
  return { summaries, markdownPath, svgPath, failed };
}

/** `deno task bench --help`. */
export const USAGE =
  `usage: deno task bench [--quick | --smoke] [--only X] [--reps N] [--out DIR] [--dir DIR]

Conveyor next to pg-boss and graphile-worker on one throwaway PostgreSQL cluster.

  --quick      small sizes, one repetition (a smoke check in under 3 minutes)
  --smoke      tiny sizes (a faster local check)
  --only X     only workloads / cases whose id starts with X (repeatable, comma list)
  --reps N     repetitions (default 3, quick 1)
  --out DIR    where benchmarks.md/.svg go (default docs/ for a full run, else .artifacts/bench/)
  --dir DIR    the cluster's folder (default .stack/bench)
  --project P  benchmark Conveyor as installed into Supabase project P (a folder with supabase/:
               its migrations and functions) instead of this checkout's
  -h, --help   this text`;

if (import.meta.main) {
  const { values } = cliArgs(USAGE, {
    options: {
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      reps: { type: "string" },
      out: { type: "string" },
      dir: { type: "string" },
      project: { type: "string" },
    },
  });
  const reps = values.reps === undefined ? undefined : Number(values.reps);
  if (reps !== undefined && !(Number.isInteger(reps) && reps >= 1)) {
    usageExit(`--reps must be a whole number of at least 1, got "${values.reps}"`);
  }
  let project: string | undefined;
  try {
    if (values.project !== undefined) project = checkProject(values.project);
  } catch (e) {
    usageExit((e as Error).message);
  }
  try {
    const outcome = await runBench({
      mode: values.smoke ? "smoke" : values.quick ? "quick" : "full",
      only: values.only?.flatMap((o) => o.split(",")).filter(Boolean),
      reps,
      out: values.out,
      dir: values.dir,
      project,
    });
    Deno.exit(outcome.failed > 0 ? 1 : 0);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    usageExit(e.message);
  }
}
