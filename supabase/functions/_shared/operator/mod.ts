/**
 * Operator experience: the dashboard page, the Prometheus exposition, their auth rule and
 * the data they read (`operator_*` RPCs).
 *
 * @module
 */
export * from "./auth.ts";
export * from "./charts.ts";
export * from "./dashboard.ts";
export * from "./data.ts";
export * from "./format.ts";
export * from "./handlers.ts";
export * from "./html.ts";
export * from "./prometheus.ts";
