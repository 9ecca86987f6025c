// fetch-worker: drains the fetch queue (jobs from fn_pgqueuer_enqueue) when called.
import { makeWorkerHandler } from "../_shared/queue/worker_function.ts";

Deno.serve(makeWorkerHandler("fetch"));
