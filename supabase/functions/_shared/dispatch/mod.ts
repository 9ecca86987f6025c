/**
 * Dispatch: one dispatcher for every source of backlog (content stages and pgmq job kinds),
 * the env overrides of max_concurrency, and background-work helpers shared by the workers.
 *
 * @module
 */
export * from "./background.ts";
export * from "./dispatcher.ts";
export * from "./kick_window.ts";
export * from "./overrides.ts";
export * from "./plan.ts";
export * from "./store.ts";
