/**
 * Shapes shared by the benchmark's systems, workloads and report.
 *
 * @module
 */
import type { BenchEnv } from "./env.ts";
import type { Cost } from "./meter.ts";
import type { Delivery } from "./stats.ts";

/** The workloads of issue 9, in report order. */
export type WorkloadId =
  | "enqueue"
  | "rpc"
  | "batch"
  | "drain"
  | "latency"
  | "backlog"
  | "pipeline"
  | "fairness";

/** What one run (one repetition of one case) measured. */
export interface RunResult {
  /** The figure: jobs (or requests, rows) per second, or p50 latency in ms. */
  value: number;
  p95?: number;
  p99?: number;
  max?: number;
  /** Jobs (or samples) in the run. */
  n: number;
  /** Timed seconds. */
  seconds: number;
  /** WAL written per job during the timed part (cluster-wide, bytes). */
  walPerJob?: number;
  /** CPU and WAL per job of the timed part (tools/bench/meter.ts). */
  cost?: Cost;
  /** The untimed pre-fill before a drain: jobs and seconds (enqueue only, not the VACUUM). */
  fill?: { jobs: number; seconds: number };
  /** Conveyor drains: the `audit` setting the run had, and job_events rows written per job. */
  audit?: { mode: string; eventsPerJob: number };
  /** Every job processed exactly once? */
  delivery: Delivery;
  /** A case's own figures beside its value (fairness: per-tenant p50s, rates, maxima). */
  figures?: Record<string, number>;
}

/** One line of a workload's table: a system with one configuration. */
export interface Case {
  workload: WorkloadId;
  /** Stable id (for --only and the JSON results), e.g. `drain.conveyor-sql.b10c10`. */
  id: string;
  system: string;
  /** Version shown in the report. */
  version: string;
  /** The settings, as the report prints them. */
  settings: string;
  /** Jobs (or samples) per run, as printed. */
  size: number;
  /** Repetitions (default: the run's). */
  reps?: number;
  /** "jobs/s" unless told. */
  unit?: "jobs/s" | "req/s" | "ms";
  /** Why the case cannot run in this checkout (null: it can); reported instead of a figure. */
  skip?(env: BenchEnv): Promise<string | null>;
  run(env: BenchEnv): Promise<RunResult>;
}

/** The repetitions of a case, summarised. */
export interface CaseSummary {
  case: Case;
  runs: RunResult[];
  /** Runs that lost a job or failed outright. */
  failures: string[];
  /** Set when the case was not run (e.g. the pipeline is not in this checkout). */
  skipped?: string;
  median: number;
  min: number;
  max: number;
  p95?: number;
  p99?: number;
  duplicates: number;
  delivered: number;
  /** Median WAL bytes per job, where measured. */
  walPerJob?: number;
  /** Medians over the runs of each figure of their costs, where measured. */
  cost?: Cost;
  /** Medians over the runs of each of their own figures (RunResult.figures). */
  figures?: Record<string, number>;
}
