/**
 * Seed 001's manual trigger finds the running stack when SUPABASE_URL is unset: the test
 * stack runs on free ports (never 54321), so a script that ignored it would call another
 * stack or nothing. Run as the user runs it, with SUPABASE_URL and the key removed from its
 * environment.
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";

const env = testEnv();
const ENDPOINT = `${env.apiUrl}/functions/v1/content-queue-dispatcher`;

/** Runs the script with `flags`, without SUPABASE_URL / SUPABASE_SERVICE_ROLE_KEY. */
async function trigger(flags: string[], extra: Record<string, string> = {}) {
  const vars = Deno.env.toObject();
  delete vars.SUPABASE_URL;
  delete vars.SUPABASE_SERVICE_ROLE_KEY;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "scripts/trigger-content-dispatcher.ts"],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: { ...vars, NO_COLOR: "1", ...extra },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

Deno.test({
  name:
    "trigger-content-dispatcher: with --allow-read it calls the running stack of CONVEYOR_STACK_DIR",
  sanitizeResources: false,
  async fn() {
    assert(!env.apiUrl.endsWith(":54321"), "the test stack is not on the default port");
    const r = await trigger(["--allow-net", "--allow-env", "--allow-read"], {
      CONVEYOR_STACK_DIR: env.stackDir,
    });
    assertEquals(r.code, 0, r.err);
    assertEquals(
      r.err,
      `trigger-content-dispatcher: POST ${ENDPOINT}, target: local stack (${env.stackDir})\n`,
    );
    assertEquals(JSON.parse(r.out).message, "Dispatch cycle completed");
  },
});

Deno.test({
  name:
    "trigger-content-dispatcher: the seed's flags cannot read state.json: it says so and uses CONVEYOR_API_PORT",
  sanitizeResources: false,
  async fn() {
    const port = new URL(env.apiUrl).port;
    const r = await trigger(["--allow-net", "--allow-env"], {
      CONVEYOR_STACK_DIR: env.stackDir,
      CONVEYOR_API_PORT: port,
    });
    assertEquals(r.code, 0, r.err);
    assertEquals(r.err.split("\n"), [
      `trigger-content-dispatcher: note: no read access to ${env.stackDir}/state.json, so the port of a stack started with --api-port is unknown here (add --allow-read, or set SUPABASE_URL)`,
      `trigger-content-dispatcher: POST ${ENDPOINT}, target: local stack (CONVEYOR_API_PORT)`,
      "",
    ]);
    assertEquals(JSON.parse(r.out).message, "Dispatch cycle completed");
  },
});
