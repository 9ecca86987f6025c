// conveyor-dashboard: the operator dashboard page. See handler.ts.
import { handler } from "./handler.ts";

Deno.serve(handler);
