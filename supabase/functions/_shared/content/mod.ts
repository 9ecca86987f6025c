/**
 * The content pipeline's runtime: the stage runner the six workers share, the stage
 * handlers and their registry, the brief helpers and the Markdown renderer.
 *
 * @module
 */
export * from "./brief.ts";
export * from "./config.ts";
export * from "./handlers.ts";
export * from "./markdown.ts";
export * from "./registry.ts";
export * from "./stage_source.ts";
export * from "./stage_worker.ts";
export * from "./types.ts";
