/**
 * Where a stack lives and what is running: options resolved from flags and env, and the
 * `state.json` file that `up`, `down`, `status` and the test harness read.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { basename, dirname, resolve } from "node:path";
import { StackError } from "./errors.ts";
import { pidAlive } from "./proc.ts";

/** The checkout this code belongs to (repo root). */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Where and on which ports a stack runs. */
export interface StackOptions {
  /** The checkout whose stack code runs (tools/stack: the gateway, the pg_net worker, …). */
  root: string;
  /**
   * The Supabase project the stack serves: its `supabase/migrations`, `functions` and
   * `config.toml` (default: `root`, this repository). `--project <dir>` runs any folder made by
   * `supabase init`, such as one Conveyor was installed into.
   */
  project?: string;
  /** Data folder: cluster, logs, state.json. */
  dir: string;
  apiPort: number;
  dbPort: number;
}

/** What a running stack records in `<dir>/state.json`. */
export interface StackState {
  pid: number;
  root: string;
  /** The project served (absent in states written before `--project`: then `root`). */
  project?: string;
  dir: string;
  apiPort: number;
  dbPort: number;
  startedAt: string;
  ready: boolean;
  services: Record<string, number | undefined>;
  /** Each service's health probe URL (PostgREST's `/ready`, the gateway's `/health`). */
  health?: Record<string, string>;
}

/** The project folder a stack serves: `project`, else the checkout itself. */
export function projectRoot(opts: { root: string; project?: string }): string {
  return opts.project ?? opts.root;
}

/**
 * The default data folder of a stack serving another project: `.stack/<folder name>-<hash of
 * its path>` in this checkout, so two projects never share a cluster (each has its own
 * migration history) and none shares this repository's `.stack/local`.
 */
export function projectStackDir(project: string): string {
  let h = 0x811c9dc5; // FNV-1a: short, stable, no async crypto needed here
  for (const c of new TextEncoder().encode(project)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return `${REPO_ROOT}/.stack/${basename(project)}-${h.toString(16).padStart(8, "0").slice(0, 6)}`;
}

/**
 * Checks that `dir` is a Supabase project folder (it has `supabase/`, as `supabase init`
 * makes it) and returns its absolute path; throws StackError saying what is wrong.
 */
export function checkProject(dir: string): string {
  // Relative to where the user typed the command (`deno task` runs in the checkout).
  const abs = resolve(Deno.env.get("INIT_CWD") || Deno.cwd(), dir);
  const isDir = (p: string) => {
    try {
      return Deno.statSync(p).isDirectory;
    } catch {
      return false;
    }
  };
  if (!isDir(abs)) throw new StackError(`project folder ${abs} does not exist`);
  if (!isDir(`${abs}/supabase`)) {
    throw new StackError(
      `${abs} has no supabase/ folder: it is not a Supabase project`,
      `run \`supabase init\` in ${abs} first`,
    );
  }
  return abs;
}

/**
 * The Deno config a project's functions and tests run with when the project has none of its
 * own (no deno.json, deno.jsonc or package.json at its root): `.stack/deno/deno.json` of this
 * checkout, which only gives them a node_modules folder there (and no lock file). Without any
 * config Deno 2.9 uses its global npm cache, where it cannot load supabase-js next to pg-boss:
 * the copy of a package a peer dependency needs is never made there (denoland/deno#28160,
 * "Cannot find module …/supabase-js/2.119.1_1/index.js"). Null when the project has its own.
 */
export async function projectDenoConfig(project: string): Promise<string | null> {
  for (const f of ["deno.json", "deno.jsonc", "package.json"]) {
    if (await Deno.stat(`${project}/${f}`).then(() => true, () => false)) return null;
  }
  const path = `${REPO_ROOT}/.stack/deno/deno.json`;
  const text = JSON.stringify({ nodeModulesDir: "auto", lock: false }, null, 2) + "\n";
  if ((await Deno.readTextFile(path).catch(() => "")) !== text) {
    await Deno.mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${Deno.pid}.tmp`; // several stacks may start at once
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  }
  return path;
}

/**
 * Resolves options from flags, then env (CONVEYOR_PROJECT, CONVEYOR_STACK_DIR,
 * CONVEYOR_API_PORT, CONVEYOR_DB_PORT), then defaults. A project other than this checkout is
 * checked ({@link checkProject}) and gets its own default folder ({@link projectStackDir}).
 */
export function resolveOptions(
  flags: { dir?: string; apiPort?: number; dbPort?: number; project?: string } = {},
): StackOptions {
  const env = (k: string) => Deno.env.get(k) || undefined;
  const num = (v: string | undefined) => (v ? Number(v) : undefined);
  const wanted = flags.project ?? env("CONVEYOR_PROJECT");
  const project = wanted === undefined ? REPO_ROOT : checkProject(wanted);
  const defaultDir = project === REPO_ROOT ? `${REPO_ROOT}/.stack/local` : projectStackDir(project);
  return {
    root: REPO_ROOT,
    project,
    dir: resolve(flags.dir ?? env("CONVEYOR_STACK_DIR") ?? defaultDir),
    apiPort: flags.apiPort ?? num(env("CONVEYOR_API_PORT")) ?? 54321,
    dbPort: flags.dbPort ?? num(env("CONVEYOR_DB_PORT")) ?? 54322,
  };
}

/** Path of the state file of a stack folder. */
export function statePath(dir: string): string {
  return `${dir}/state.json`;
}

/** Reads state.json; null when absent or unreadable. */
export async function readState(dir: string): Promise<StackState | null> {
  try {
    return JSON.parse(await Deno.readTextFile(statePath(dir))) as StackState;
  } catch {
    return null;
  }
}

/** Writes state.json atomically. */
export async function writeState(state: StackState): Promise<void> {
  const tmp = `${statePath(state.dir)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state, null, 2) + "\n");
  await Deno.rename(tmp, statePath(state.dir));
}

/** Removes state.json (missing is fine). */
export async function clearState(dir: string): Promise<void> {
  await Deno.remove(statePath(dir)).catch(() => {});
}

/** The state of a stack whose supervisor is alive, or null (stale state is reported as null). */
export async function liveState(dir: string): Promise<StackState | null> {
  const s = await readState(dir);
  return s && pidAlive(s.pid) ? s : null;
}
