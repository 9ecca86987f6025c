/**
 * The stage handlers the six stage workers run. This is the place to plug in your own: e.g.
 *
 * ```ts
 * export const stageHandlers: StageRegistry = {
 *   ...defaultStageHandlers,
 *   draft: async (ctx) => ({ title, markdown: await myLlm.write(ctx.outputs.outline), word_count }),
 * };
 * ```
 *
 * Keep each stage's output shape (see `handlers.ts`): later stages read it, and the export
 * stage's `{title, markdown, html}` is written to `content_exports`.
 *
 * @module
 */
import { defaultStageHandlers } from "./handlers.ts";
import type { StageRegistry } from "./types.ts";

/** The handlers in use. */
export const stageHandlers: StageRegistry = { ...defaultStageHandlers };
