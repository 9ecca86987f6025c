/**
 * Prometheus text exposition (format 0.0.4) of Conveyor's samples: one `# HELP` and one
 * `# TYPE` line per family, then its samples, families in catalogue order. Names follow the
 * Prometheus conventions: a `conveyor_` prefix, the unit as a suffix (`_seconds`, `_jobs`,
 * `_tokens`, …) and `_total` for counters.
 *
 * Counters are built so they never go down although retention deletes history (see
 * migration 20251101000000_operator_views.sql): queue counters from every metrics snapshot
 * plus what finished since the last one, stage counters from the events present plus
 * those deleted.
 *
 * @module
 */
import type { MetricSample } from "./data.ts";

/** Metric family metadata. */
export interface Family {
  type: "counter" | "gauge" | "untyped";
  help: string;
}

/** Every family Conveyor exports, in output order. */
export const FAMILIES: Readonly<Record<string, Family>> = {
  conveyor_up: { type: "gauge", help: "1 when the database answered this scrape." },
  conveyor_scrape_duration_seconds: {
    type: "gauge",
    help: "Time taken to read the samples from the database.",
  },
  conveyor_queue_ready_jobs: {
    type: "gauge",
    help: "Pending jobs that may run now, per pgmq queue (kind and priority tier) and tenant.",
  },
  conveyor_queue_delayed_jobs: {
    type: "gauge",
    help: "Pending jobs scheduled for later (delay, execute_after, retry backoff).",
  },
  conveyor_queue_in_flight_jobs: {
    type: "gauge",
    help: "Jobs claimed by a worker and not yet settled.",
  },
  conveyor_queue_oldest_ready_age_seconds: {
    type: "gauge",
    help: "How long the oldest job that may run has waited; 0 when none waits.",
  },
  conveyor_queue_processed_jobs_total: {
    type: "counter",
    help: "Jobs completed.",
  },
  conveyor_queue_failed_jobs_total: {
    type: "counter",
    help: "Jobs that failed for good (dead-lettered after their last attempt, or cancelled).",
  },
  conveyor_dead_letter_jobs: {
    type: "gauge",
    help: "Dead letters not yet redriven, per kind and tenant.",
  },
  conveyor_stage_ready_jobs: {
    type: "gauge",
    help: "Content stage items a worker may claim now (incl. expired leases).",
  },
  conveyor_stage_waiting_retry_jobs: {
    type: "gauge",
    help: "Content stage items waiting for a retry after an error.",
  },
  conveyor_stage_leased_jobs: {
    type: "gauge",
    help: "Content stage items held by a worker (live leases).",
  },
  conveyor_stage_in_flight_workers: {
    type: "gauge",
    help: "Live leases plus triggered workers not yet claiming: what max_concurrency limits.",
  },
  conveyor_stage_max_concurrency_workers: {
    type: "gauge",
    help: "content_stage_config.max_concurrency.",
  },
  conveyor_stage_enabled: {
    type: "gauge",
    help: "1 when the stage is enabled, 0 when paused.",
  },
  conveyor_stage_completed_total: {
    type: "counter",
    help: "Content stage items completed.",
  },
  conveyor_stage_errors_total: {
    type: "counter",
    help: "Content stage attempts that ended in an error event.",
  },
  conveyor_rate_limiter_tokens: {
    type: "gauge",
    help: "Tokens in the bucket now (refill applied), per tenant and external service.",
  },
  conveyor_rate_limiter_capacity_tokens: {
    type: "gauge",
    help: "Bucket capacity.",
  },
  conveyor_rate_limiter_in_use_slots: {
    type: "gauge",
    help: "Running jobs holding one of the service's concurrency slots.",
  },
  conveyor_rate_limiter_max_concurrent_slots: {
    type: "gauge",
    help: "Concurrency slots of the service per tenant.",
  },
  conveyor_alerts_open: {
    type: "gauge",
    help: "Open alerts per rule, severity and tenant.",
  },
  conveyor_worker_invocations: {
    type: "gauge",
    help: "Worker invocations triggered or running, per dispatch source and target.",
  },
  conveyor_tenant_ready_jobs: {
    type: "gauge",
    help: "Jobs that may run now, per job kind or content stage (source, target) and tenant.",
  },
  conveyor_tenant_waiting_jobs: {
    type: "gauge",
    help: "Jobs waiting for later: delayed, backing off, or parked behind a concurrency key.",
  },
  conveyor_tenant_running_jobs: {
    type: "gauge",
    help: "Jobs claimed by a worker and not yet settled, per kind or stage and tenant.",
  },
  conveyor_tenant_oldest_ready_age_seconds: {
    type: "gauge",
    help: "How long the tenant's oldest job that may run has waited; 0 when none waits.",
  },
  conveyor_tenant_weight: {
    type: "gauge",
    help: "The tenant's fair share weight (conveyor.tenant_weights; 1 by default).",
  },
  conveyor_tenant_starving: {
    type: "gauge",
    help:
      "1 when the tenant's oldest ready job has waited far longer than the other tenants' and none of its jobs was claimed in the last minute.",
  },
  conveyor_concurrency_keys_at_limit: {
    type: "gauge",
    help: "Concurrency keys running as many jobs as their limit, per kind and tenant.",
  },
  conveyor_concurrency_key_waiting_jobs: {
    type: "gauge",
    help: "Jobs parked until their concurrency key has a free slot, per kind and tenant.",
  },
  conveyor_metrics_snapshot_age_seconds: {
    type: "gauge",
    help:
      "Age of the newest queue_metrics snapshot (pg_cron conveyor-queue-metrics); grows when cron stops.",
  },
};

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as Prometheus writes it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(labels: Record<string, string>): string {
  const keys = Object.keys(labels).filter((k) => LABEL_RE.test(k) && !k.startsWith("__")).sort();
  if (keys.length === 0) return "";
  return "{" + keys.map((k) => `${k}="${escapeLabelValue(String(labels[k]))}"`).join(",") + "}";
}

/**
 * Renders samples as exposition text. Families come in catalogue order (unknown ones after,
 * `untyped`); a family with no samples is left out; invalid metric names are dropped.
 */
export function formatExposition(
  samples: readonly MetricSample[],
  families: Readonly<Record<string, Family>> = FAMILIES,
): string {
  const byName = new Map<string, MetricSample[]>();
  for (const s of samples) {
    if (!NAME_RE.test(s.metric)) continue;
    const list = byName.get(s.metric) ?? [];
    list.push(s);
    byName.set(s.metric, list);
  }
  const order = [
    ...Object.keys(families).filter((n) => byName.has(n)),
    ...[...byName.keys()].filter((n) => !(n in families)).sort(),
  ];
  const lines: string[] = [];
  for (const name of order) {
    const fam = families[name] ?? { type: "untyped", help: name };
    lines.push(`# HELP ${name} ${escapeHelp(fam.help)}`);
    lines.push(`# TYPE ${name} ${fam.type}`);
    for (const s of byName.get(name)!) {
      lines.push(`${name}${formatLabels(s.labels ?? {})} ${formatValue(Number(s.value))}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** The Content-Type of the text format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
