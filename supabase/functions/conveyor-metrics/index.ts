// conveyor-metrics: Prometheus text exposition of queues, stages and limits. See handler.ts.
import { handler } from "./handler.ts";

Deno.serve(handler);
