/**
 * Installing the pinned Supabase CLI: once installed it is used without npm (offline), and
 * when npm cannot get it the stack says so with the command to run, not a stack trace.
 * Each case runs in a child process, with its own cache folders and npm offline.
 */
import { assertEquals } from "../test/assert.ts";
import { cliInstallDir, SUPABASE_CLI_VERSION } from "./supabase_cli.ts";

const MODULE = new URL("./supabase_cli.ts", import.meta.url).href;

/** Resolves the CLI in a child process with `env`; what it printed and its exit code. */
async function resolveCli(env: Record<string, string>): Promise<{ code: number; out: string }> {
  const script = `
    import { supabaseCliPath } from ${JSON.stringify(MODULE)};
    import { StackError } from ${JSON.stringify(new URL("./errors.ts", import.meta.url).href)};
    try {
      console.log("path " + await supabaseCliPath());
    } catch (e) {
      if (!(e instanceof StackError)) throw e;
      console.log("error: " + e.message + "\\nfix: " + e.hint);
      Deno.exit(1);
    }`;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    env: { ...env, npm_config_offline: "true", npm_config_fetch_retries: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: res.code, out: (dec.decode(res.stdout) + dec.decode(res.stderr)).trim() };
}

Deno.test("supabase cli: an installed CLI is used offline, without npm", async () => {
  const dir = cliInstallDir(); // the harness's stack installed it here
  const npmCache = await Deno.makeTempDir({ prefix: "npm-cache-" });
  try {
    const r = await resolveCli({ npm_config_cache: npmCache, CONVEYOR_SUPABASE_CLI: "" });
    assertEquals(r.code, 0, r.out);
    assertEquals(r.out.startsWith(`path ${dir}/node_modules/@supabase/cli-`), true, r.out);
  } finally {
    await Deno.remove(npmCache, { recursive: true });
  }
});

Deno.test("supabase cli: no registry and nothing cached is one clear error with the fix", async () => {
  const home = await Deno.makeTempDir({ prefix: "cli-home-" });
  try {
    const r = await resolveCli({
      XDG_CACHE_HOME: `${home}/cache`,
      npm_config_cache: `${home}/npm`,
      CONVEYOR_SUPABASE_CLI: "",
    });
    assertEquals(r.code, 1, r.out);
    const lines = r.out.split("\n");
    assertEquals(
      lines[0],
      `error: npm could not install the Supabase CLI ${SUPABASE_CLI_VERSION} (it needs the npm registry once):`,
    );
    assertEquals(
      lines.at(-1),
      `fix: npm install --prefix ${home}/cache/conveyor/supabase-cli-${SUPABASE_CLI_VERSION} supabase@${SUPABASE_CLI_VERSION}   (or set CONVEYOR_SUPABASE_CLI to a supabase ${SUPABASE_CLI_VERSION} binary)`,
    );
    // Nothing half-installed is left to be mistaken for an install.
    assertEquals([...Deno.readDirSync(`${home}/cache/conveyor`)].map((e) => e.name), []);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
