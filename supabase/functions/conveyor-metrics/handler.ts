/**
 * The conveyor-metrics function: Prometheus text exposition (format 0.0.4) of queues,
 * dead letters, content stages, rate limiters, open alerts and worker invocations, read
 * with one RPC (`operator_metrics`). Same auth rule as the dashboard: the service-role key
 * as a bearer token (Prometheus `authorization.credentials`) or `?key=`, or
 * DASHBOARD_SECRET. See _shared/operator/prometheus.ts for the metric names.
 *
 * @module
 */
import { createMetricsHandler } from "../_shared/operator/handlers.ts";

/** The handler, configured from the environment. */
export const handler: (req: Request) => Promise<Response> = createMetricsHandler();
