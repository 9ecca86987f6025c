/**
 * The six content stage workers in this process, reached by pg_net at a full URL (set
 * `content_stage_config.worker_endpoint` to `<base>/<stage>-worker`): the real stage worker
 * code, with a test's environment (short leases, so a lost worker's stage comes back in
 * seconds, not the default minute) and handlers made a little slow, so work is in flight
 * when a fault strikes.
 *
 * @module
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import { createStageWorker } from "../../supabase/functions/_shared/content/stage_worker.ts";
import { defaultStageHandlers } from "../../supabase/functions/_shared/content/handlers.ts";
import {
  CONTENT_STAGES,
  type ContentStage,
  type StageHandler,
} from "../../supabase/functions/_shared/content/types.ts";

/** A running set of stage workers. */
export interface StageWorkers extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: the worker of a stage is at `<base>/<stage>-worker`. */
  base: string;
  /** The worker_endpoint patch for `withStageConfig`. */
  endpoints(): Record<string, { worker_endpoint: string }>;
}

/** Starts the stage workers; stop them with `await using`. */
export function startStageWorkers(o: {
  client: SupabaseClient;
  env: Record<string, string>;
  slowMs?: number;
}): StageWorkers {
  const background: Promise<unknown>[] = [];
  const shutdown = new AbortController();
  const slow = (stage: ContentStage): StageHandler => async (ctx) => {
    await new Promise((r) => setTimeout(r, o.slowMs ?? 0));
    return await defaultStageHandlers[stage](ctx);
  };
  const workers = new Map(CONTENT_STAGES.map((stage) => [
    `/${stage}-worker`,
    createStageWorker(stage, {
      client: o.client,
      handlers: { [stage]: slow(stage) },
      env: o.env,
      waitUntil: (p) => background.push(p),
      signal: shutdown.signal,
    }),
  ]));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const w = workers.get(new URL(req.url).pathname);
    return w ? w(req) : new Response("not found", { status: 404 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return {
    base,
    endpoints: () =>
      Object.fromEntries(
        CONTENT_STAGES.map((s) => [s, { worker_endpoint: `${base}/${s}-worker` }]),
      ),
    async [Symbol.asyncDispose]() {
      shutdown.abort();
      await Promise.allSettled(background);
      await server.shutdown();
    },
  };
}
