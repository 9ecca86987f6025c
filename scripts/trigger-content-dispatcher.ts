/**
 * Runs one dispatch cycle by hand and prints the dispatcher's JSON (seed 001):
 *
 *   deno run --allow-net --allow-env scripts/trigger-content-dispatcher.ts
 *
 * Uses SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY; without them, the local stack
 * (http://127.0.0.1:54321 and the Supabase CLI's demo service-role key). Exits 1 with a
 * message when the dispatcher cannot be reached or does not answer 2xx.
 *
 * @module
 */

/** The local stack's API (the Supabase CLI's default). */
export const LOCAL_URL = "http://127.0.0.1:54321";
/** The Supabase CLI's public demo service-role key (local stacks only). */
export const LOCAL_SERVICE_ROLE_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU";

/** Calls the dispatcher; returns its parsed JSON or throws an Error with a readable message. */
export async function triggerDispatcher(
  url = Deno.env.get("SUPABASE_URL") || LOCAL_URL,
  key = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY") || LOCAL_SERVICE_ROLE_KEY,
): Promise<unknown> {
  const endpoint = `${url.replace(/\/+$/, "")}/functions/v1/content-queue-dispatcher`;
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: "POST",
      headers: { "Authorization": `Bearer ${key}`, "Content-Type": "application/json" },
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
  try {
    console.log(JSON.stringify(await triggerDispatcher(), null, 2));
  } catch (e) {
    console.error(`trigger-content-dispatcher: ${(e as Error).message}`);
    console.error(
      "set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (local stack: deno task start)",
    );
    Deno.exit(1);
  }
}
