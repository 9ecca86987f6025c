// content-queue-dispatcher (seed 001): called by cron, kicks and people. See handler.ts.
import { handler } from "./handler.ts";

Deno.serve(handler);
