// dlq-worker: drains the dead-letter queue (q_dlq), raising dead_letter alerts (see _shared/queue/worker_function.ts).
import { makeWorkerHandler } from "../_shared/queue/worker_function.ts";

Deno.serve(makeWorkerHandler("dlq"));
