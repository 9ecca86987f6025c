/**
 * Where a stack lives and what is running: options resolved from flags and env, and the
 * `state.json` file that `up`, `down`, `status` and the test harness read.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { pidAlive } from "./proc.ts";

/** The checkout this code belongs to (repo root). */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Where and on which ports a stack runs. */
export interface StackOptions {
  /** Repository root (migrations, functions, config.toml are read from here). */
  root: string;
  /** Data folder: cluster, logs, state.json. */
  dir: string;
  apiPort: number;
  dbPort: number;
}

/** What a running stack records in `<dir>/state.json`. */
export interface StackState {
  pid: number;
  root: string;
  dir: string;
  apiPort: number;
  dbPort: number;
  startedAt: string;
  ready: boolean;
  services: Record<string, number | undefined>;
  /** Each service's health probe URL (PostgREST's `/ready`, the gateway's `/health`). */
  health?: Record<string, string>;
}

/** Resolves options from flags, then env (CONVEYOR_STACK_DIR, CONVEYOR_API_PORT, CONVEYOR_DB_PORT), then defaults. */
export function resolveOptions(
  flags: { dir?: string; apiPort?: number; dbPort?: number } = {},
): StackOptions {
  const env = (k: string) => Deno.env.get(k) || undefined;
  const num = (v: string | undefined) => (v ? Number(v) : undefined);
  return {
    root: REPO_ROOT,
    dir: resolve(flags.dir ?? env("CONVEYOR_STACK_DIR") ?? `${REPO_ROOT}/.stack/local`),
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
