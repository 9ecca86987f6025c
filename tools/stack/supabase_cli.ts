/**
 * The real Supabase CLI, pinned: the npm package `supabase@2.117.0` (newer releases may not
 * install from every registry mirror). The stack applies migrations and the seed with it
 * exactly as a Supabase user deploys them (`supabase db push --db-url …`), so the local
 * migration history is the CLI's own `supabase_migrations.schema_migrations`.
 *
 * Installed from npm on first use into a versioned folder of the user's cache (like
 * `npx -y deno@2.9.6` caches Deno), then used offline; `CONVEYOR_SUPABASE_CLI` may name a
 * `supabase` 2.117.0 binary instead. `db push` and `migration list` need no Docker.
 *
 * @module
 */
import { StackError } from "./errors.ts";
import { type NpmTool, npmToolPath, toolDir } from "./npm_tool.ts";
import { run, type RunResult } from "./proc.ts";

/** The pinned CLI version (bump together with docs that name it). */
export const SUPABASE_CLI_VERSION = "2.117.0";

/** The pinned CLI as an npm tool: the binary of its platform package. */
const CLI_TOOL: NpmTool = {
  pkg: "supabase",
  version: SUPABASE_CLI_VERSION,
  folder: "supabase-cli",
  label: "the Supabase CLI",
  alternative: `or set CONVEYOR_SUPABASE_CLI to a supabase ${SUPABASE_CLI_VERSION} binary`,
  find: binaryIn,
};

/** Where the pinned CLI is installed: `<cache>/conveyor/supabase-cli-<version>`. */
export function cliInstallDir(): string {
  return toolDir(CLI_TOOL);
}

/** The platform binary inside an npm install of `supabase` (`@supabase/cli-<platform>`). */
async function binaryIn(dir: string): Promise<string | null> {
  const scope = `${dir}/node_modules/@supabase`;
  try {
    for await (const e of Deno.readDir(scope)) {
      if (!e.name.startsWith("cli-")) continue;
      const bin = `${scope}/${e.name}/bin/supabase`;
      if (await Deno.stat(bin).then((s) => s.isFile, () => false)) return bin;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return null;
}

let cached: string | null = null;

/**
 * Path of the pinned CLI binary, installing it with npm when missing (tools/stack/npm_tool.ts);
 * `CONVEYOR_SUPABASE_CLI` names a binary of one's own instead.
 */
export async function supabaseCliPath(log: (l: string) => void = () => {}): Promise<string> {
  if (cached) return cached;
  const override = Deno.env.get("CONVEYOR_SUPABASE_CLI");
  if (override) return (cached = override);
  return (cached = await npmToolPath(CLI_TOOL, log));
}

/** The CLI's `--db-url`: percent-encoded URL, no TLS on the local server. */
export function cliDbUrl(url: string): string {
  return url.includes("sslmode=") ? url : `${url}${url.includes("?") ? "&" : "?"}sslmode=disable`;
}

/**
 * Runs the CLI in project folder `root` (the one holding `supabase/`), answering its prompts
 * with yes, without telemetry or update checks (no network here but the database).
 */
export async function supabaseCli(
  root: string,
  args: string[],
  log?: (l: string) => void,
): Promise<RunResult> {
  const bin = await supabaseCliPath(log);
  return await run(bin, ["--workdir", root, ...args, "--yes"], {
    cwd: root,
    env: {
      SUPABASE_TELEMETRY_DISABLED: "1",
      DO_NOT_TRACK: "1",
      SUPABASE_NO_UPDATE_NOTIFIER: "1",
    },
  });
}

/** One row of `supabase migration list`: a version present locally, remotely or both. */
export interface MigrationRow {
  local: string | null;
  remote: string | null;
}

/** `supabase migration list --db-url <url>`: local files against the database's history. */
export async function migrationList(root: string, dbUrl: string): Promise<MigrationRow[]> {
  const res = await supabaseCli(root, ["migration", "list", "--db-url", cliDbUrl(dbUrl)]);
  if (res.code !== 0) {
    throw new StackError(`supabase migration list failed:\n${(res.stderr || res.stdout).trim()}`);
  }
  // Rows look like "   `0001`   | `0001`   | `0001`" (local | remote | time); blanks are absent.
  const cell = (c: string | undefined) => c?.trim().replaceAll("`", "") || null;
  return res.stdout.split("\n")
    .filter((l) => /^\s*`?\d*`?\s*\|\s*`?\d*`?\s*\|/.test(l) && /\d/.test(l))
    .map((l) => l.split("|"))
    .map(([local, remote]) => ({ local: cell(local), remote: cell(remote) }));
}

/**
 * `supabase db push --db-url <url> [--include-seed]`: applies the migrations of
 * `<root>/supabase/migrations` not yet in the database's history, then (with `seed`) the
 * seed files of config.toml's `[db.seed]`, each file in its own transaction. Logs what the
 * CLI applied; throws with the CLI's own error text when a statement fails.
 */
export async function dbPush(
  root: string,
  dbUrl: string,
  opts: { seed?: boolean; log?: (l: string) => void } = {},
): Promise<string[]> {
  const log = opts.log ?? (() => {});
  const args = ["db", "push", "--db-url", cliDbUrl(dbUrl)];
  if (opts.seed) args.push("--include-seed");
  const res = await supabaseCli(root, args, log);
  const text = `${res.stderr}\n${res.stdout}`;
  const applied = [...text.matchAll(/^Applying migration (\S+)\.sql\.\.\.$/gm)].map((m) => m[1]!);
  for (const line of text.split("\n")) {
    if (/^(Applying migration|Seeding data from) /.test(line)) log(line.replace(/\.\.\.$/, ""));
  }
  if (res.code !== 0) {
    const from = text.search(/^ERROR: /m);
    const detail = (from >= 0 ? text.slice(from) : text).trim().split("\n")
      .filter((l) => !l.startsWith("Try rerunning the command")).slice(0, 12).join("\n");
    throw new StackError(
      `supabase db push failed${applied.length ? ` in ${applied.at(-1)}.sql` : ""}:\n${detail}`,
      "fix the migration (or seed), then run: deno task db:reset",
    );
  }
  return applied;
}
