// enforce-worker: drains the enforce queue when called (see _shared/queue/worker_function.ts).
import { makeWorkerHandler } from "../_shared/queue/worker_function.ts";

Deno.serve(makeWorkerHandler("enforce"));
