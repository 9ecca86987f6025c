/**
 * Runs one dispatch cycle by hand and prints the dispatcher's JSON (seed 001):
 *
 *   deno run --allow-net --allow-env scripts/trigger-content-dispatcher.ts
 *
 * Targets what the ops CLI targets (tools/ops/target.ts): SUPABASE_URL with
 * SUPABASE_SERVICE_ROLE_KEY; without SUPABASE_URL, the running local stack. See {@link USAGE}.
 * Says on stderr which URL it called; exits 1 with a message when the dispatcher cannot be
 * reached or does not answer 2xx, 2 for a bad command line.
 *
 * @module
 */
import { cliArgs } from "../tools/args.ts";
import { resolveTarget, type Target, TargetError } from "../tools/ops/target.ts";

/** `--help`. */
export const USAGE =
  `usage: deno run --allow-net --allow-env [--allow-read] scripts/trigger-content-dispatcher.ts

Runs one dispatch cycle of content-queue-dispatcher (as pg_cron does every minute) and prints
its JSON answer; says on stderr which URL it called.

Target:
  SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY   that project
  otherwise                                  the local stack with its demo service-role key:
    with --allow-read, the port of the stack that is running (CONVEYOR_STACK_DIR, default
    .stack/local: its state.json), so a stack started with --api-port is found;
    without it (the seed's command), CONVEYOR_API_PORT, else http://127.0.0.1:54321, and a
    note on stderr says the state file was not read.`;

/** Calls the dispatcher; returns its parsed JSON or throws an Error with a readable message. */
export async function triggerDispatcher(target: Target): Promise<unknown> {
  const endpoint = `${target.url}/functions/v1/content-queue-dispatcher`;
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: "POST",
      headers: { "Authorization": `Bearer ${target.key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ source: "manual" }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    throw new Error(`cannot reach ${endpoint}: ${(e as Error).message}`);
  }
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`${endpoint} answered HTTP ${res.status}: ${text.slice(0, 500)}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${endpoint} answered something that is not JSON: ${text.slice(0, 500)}`);
  }
}

if (import.meta.main) {
  cliArgs(USAGE, {});
  const say = (line: string) => console.error(`trigger-content-dispatcher: ${line}`);
  let target: Target;
  try {
    target = await resolveTarget();
  } catch (e) {
    if (!(e instanceof TargetError)) throw e;
    say(e.message);
    Deno.exit(1);
  }
  if (target.note) say(`note: ${target.note}`);
  say(`POST ${target.url}/functions/v1/content-queue-dispatcher, target: ${target.label}`);
  try {
    console.log(JSON.stringify(await triggerDispatcher(target), null, 2));
  } catch (e) {
    say((e as Error).message);
    say(
      target.local
        ? "is the local stack running? deno task start (or set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY)"
        : "check SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY",
    );
    Deno.exit(1);
  }
}
