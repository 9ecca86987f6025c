// outreach-worker: drains the outreach queue when called (see _shared/queue/worker_function.ts).
import { makeWorkerHandler } from "../_shared/queue/worker_function.ts";

Deno.serve(makeWorkerHandler("outreach"));
