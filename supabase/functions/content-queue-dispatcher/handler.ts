/**
 * The content-queue-dispatcher's request handler (seed 001): reads the backlog of every
 * content stage and job kind, starts workers within max_concurrency
 * (CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY overrides, 0 disables) and answers
 * `{"message":"Dispatch cycle completed","dispatches":[…],"duration_ms":…}`.
 * See _shared/dispatch/dispatcher.ts.
 *
 * @module
 */
import { createDispatcherHandler } from "../_shared/dispatch/dispatcher.ts";

/** The handler, configured from the environment. */
export const handler: (req: Request) => Promise<Response> = createDispatcherHandler();
