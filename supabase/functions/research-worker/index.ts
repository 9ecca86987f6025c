// The research stage worker of the content pipeline (seed 001). All logic is shared:
// _shared/content/stage_worker.ts; the handler comes from _shared/content/registry.ts.
import { createStageWorker } from "../_shared/content/stage_worker.ts";

Deno.serve(createStageWorker("research"));
