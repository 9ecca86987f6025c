/**
 * What the operator endpoints read: the shapes of `operator_dashboard()` and
 * `operator_metrics()` (migration 20251101000000_operator_views.sql), and the calls that
 * fetch them (one RPC each).
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { rpc } from "../supabase.ts";

/** One pgmq queue (kind × priority tier). */
export interface QueueRow {
  position: number;
  kind: string;
  tier: string;
  queue: string;
  kind_enabled: boolean;
  max_concurrency: number;
  workers: number;
  ready: number;
  delayed: number;
  in_flight: number;
  oldest_ready_age_sec: number;
  processed: number;
  failed: number;
  series_start: string;
  processed_series: number[];
  failed_series: number[];
}

/** One content stage. */
export interface StageRow {
  position: number;
  stage: string;
  queue: string;
  enabled: boolean;
  max_concurrency: number;
  trigger_batch_size: number;
  ready: number;
  waiting_retry: number;
  leased: number;
  triggered: number;
  in_flight: number;
  completed: number;
  errors: number;
  completed_total: number;
  errors_total: number;
  last_error_at: string | null;
  /** As stored: a path (resolved against Vault `project_url`) or a full http(s) URL. */
  worker_endpoint: string;
  /**
   * Where the stage's workers are called: {@link workerUrl} of `worker_endpoint`, added by
   * the dashboard and the CLI (null when the project URL is unknown).
   */
  worker_url?: string | null;
}

/**
 * Resolves a stage's `worker_endpoint` as `conveyor.endpoint_url()` does in SQL: a full
 * http(s) URL as is, a path against the project URL (there Vault `project_url`; here the
 * caller's SUPABASE_URL, the same project). Null for a path when `projectUrl` is unknown.
 */
export function workerUrl(endpoint: string, projectUrl: string | undefined | null): string | null {
  if (/^https?:\/\//i.test(endpoint)) return endpoint;
  const base = (projectUrl ?? "").trim().replace(/\/+$/, "");
  if (!base) return null;
  return `${base}${endpoint.startsWith("/") ? "" : "/"}${endpoint}`;
}

/** `d` with `worker_url` set on every stage (see {@link workerUrl}). */
export function withWorkerUrls(
  d: DashboardData,
  projectUrl: string | undefined | null,
): DashboardData {
  return {
    ...d,
    stages: d.stages.map((s) => ({ ...s, worker_url: workerUrl(s.worker_endpoint, projectUrl) })),
  };
}

/** One `error` event of the content pipeline. */
export interface StageErrorRow {
  id: number;
  job_id: string;
  stage: string;
  message: string | null;
  attempt: number | null;
  max_attempts: number | null;
  created_at: string;
  topic: string | null;
}

/** One dead letter not yet redriven. */
export interface DeadLetterRow {
  id: string;
  job_id: string;
  /** The job's number (jobs.msg_id): how the dashboard and the CLI show the job. */
  job_number: number;
  tenant_id: string;
  tenant: string;
  kind: string;
  queue: string;
  reason: string;
  attempts: number;
  errors: number;
  created_at: string;
  acknowledged_at: string | null;
}

/** The dead-letter panel. */
export interface DeadLetters {
  size: number;
  by_kind: Array<{ kind: string; size: number; newest: string }>;
  latest: DeadLetterRow[];
}

/**
 * One failed content job: the stage it failed at (null only when its stage rows were
 * edited by hand, and then it cannot be redriven) and why.
 */
export interface FailedContentJobRow {
  job_id: string;
  topic: string | null;
  stage: string | null;
  attempts: number | null;
  max_attempts: number | null;
  last_error: string | null;
  failed_at: string;
}

/** The failed content jobs: the content pipeline's dead jobs. */
export interface FailedContentJobs {
  size: number;
  by_stage: Array<{ stage: string; size: number }>;
  latest: FailedContentJobRow[];
}

/**
 * The command that retries a failed content job from its failed stage (the RPC behind it:
 * `redrive_content_job(p_job_id)`, service_role only).
 */
export function contentRedriveCommand(jobId: string): string {
  return `deno task conveyor dlq redrive ${jobId}`;
}

/** One token bucket. */
export interface RateLimiterRow {
  tenant_id: string;
  tenant: string;
  service_name: string;
  tokens: number;
  capacity: number;
  refill_per_sec: number;
  max_concurrent: number;
  in_use: number;
}

/** One alert. */
export interface AlertRow {
  id: string;
  tenant_id: string;
  tenant: string;
  rule: string;
  subject: string;
  severity: "info" | "warning" | "critical";
  status: "open" | "resolved";
  message: string;
  value: number | null;
  threshold: number | null;
  raised_at: string;
  resolved_at: string | null;
}

/**
 * One job kind or content stage and tenant with live work or recent claims
 * (`operator_tenants`, migration 20261207120100_fair_share_operators.sql).
 */
export interface TenantRow {
  source: "queue" | "content";
  /** The job kind or content stage. */
  target: string;
  tenant_id: string;
  tenant: string;
  weight: number;
  ready: number;
  /** Delayed, backing off, or parked behind a concurrency key. */
  waiting: number;
  running: number;
  oldest_ready_age_sec: number | null;
  /** Median of the other tenants' oldest ready ages of the same kind or stage. */
  others_median_age_sec: number | null;
  /** Claimed over the window, and its share of the kind's or stage's claims. */
  claimed: number;
  claimed_share: number | null;
  /** Claimed in the current and the previous minute. */
  recently_claimed: number;
  /** Ready work far older than the other tenants' and nothing claimed for a minute. */
  starving: boolean;
}

/** One concurrency key with parked jobs or at its limit (`operator_concurrency_keys`). */
export interface ConcurrencyKeyRow {
  kind: string;
  tenant_id: string;
  tenant: string;
  concurrency_key: string;
  running: number;
  max_running: number;
  /** Parked jobs, waiting for a slot. */
  waiting: number;
  oldest_waiting_age_sec: number | null;
  at_limit: boolean;
}

/** The command that shows tenants and keys (status prints both sections). */
export const TENANTS_COMMAND = "deno task conveyor status --tenants";

/** `operator_dashboard()`: every panel. */
export interface DashboardData {
  generated_at: string;
  window_minutes: number;
  last_snapshot_at: string | null;
  queues: QueueRow[];
  stages: StageRow[];
  stage_errors: StageErrorRow[];
  dead_letters: DeadLetters;
  failed_content_jobs: FailedContentJobs;
  rate_limiters: RateLimiterRow[];
  alerts: AlertRow[];
  /** Per kind or stage and tenant (absent before migration 20261207120100). */
  tenants?: TenantRow[];
  /** Keys with parked jobs or at their limit (absent before migration 20261207120100). */
  concurrency_keys?: ConcurrencyKeyRow[];
}

/** One Prometheus sample from `operator_metrics()`. */
export interface MetricSample {
  metric: string;
  labels: Record<string, string>;
  value: number;
}

/** Reads every dashboard panel in one round trip. */
export function fetchDashboard(
  client: SupabaseClient,
  minutes = 60,
  limit = 10,
): Promise<DashboardData> {
  return rpc<DashboardData>(client, "operator_dashboard", { p_minutes: minutes, p_limit: limit });
}

/** Reads every Prometheus sample in one round trip. */
export async function fetchMetricSamples(client: SupabaseClient): Promise<MetricSample[]> {
  return (await rpc<MetricSample[] | null>(client, "operator_metrics")) ?? [];
}
