/**
 * Which deployment the ops CLI talks to, and with which key. Everything goes through the
 * REST API (supabase-js), so a hosted project needs no database URL:
 *
 * 1. `--url` / `SUPABASE_URL` → that project; the key from `--service-key` or
 *    `SUPABASE_SERVICE_ROLE_KEY` (required then: a hosted project has no default key);
 * 2. otherwise the local stack: the API port from `<stack dir>/state.json` (the stack
 *    dir is `CONVEYOR_STACK_DIR` or `.stack/local`), else `CONVEYOR_API_PORT`, else the
 *    standard 54321, and the local demo service-role key unless one is given.
 *
 * A program run without read access to state.json (seed 001's
 * `deno run --allow-net --allow-env scripts/trigger-content-dispatcher.ts`) does not read
 * it: asking would prompt in a terminal and fail elsewhere. It falls back as above and says
 * so in {@link Target.note}.
 *
 * @module
 */
import { resolve } from "node:path";
import { serviceRoleKey } from "../stack/keys.ts";
import { readState, REPO_ROOT, statePath } from "../stack/state.ts";

/** Where the CLI points. */
export interface Target {
  /** Project URL (`https://<ref>.supabase.co` or the local gateway). */
  url: string;
  /** Service-role key. */
  key: string;
  /** For messages: "local stack (.stack/local)" or the host. */
  label: string;
  local: boolean;
  /** Why the local stack's state was not read, when it could not be. */
  note?: string;
}

/** A configuration problem, with the fix in the message. */
export class TargetError extends Error {
  override readonly name = "TargetError";
}

/** Resolves the target from flags and the environment (see the module comment). */
export async function resolveTarget(
  flags: { url?: string; serviceKey?: string; stackDir?: string } = {},
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
  canRead: (path: string) => Promise<boolean> = mayRead,
): Promise<Target> {
  const url = flags.url ?? env("SUPABASE_URL");
  const givenKey = flags.serviceKey ?? env("SUPABASE_SERVICE_ROLE_KEY");
  if (url) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TargetError(`SUPABASE_URL is not a URL: "${url}"`);
    }
    if (!givenKey) {
      throw new TargetError(
        `SUPABASE_SERVICE_ROLE_KEY is not set: export the project's service-role key (Dashboard → Project Settings → API Keys) to use ${parsed.host}`,
      );
    }
    const local = parsed.hostname === "127.0.0.1" || parsed.hostname === "localhost";
    return { url: url.replace(/\/+$/, ""), key: givenKey, label: parsed.host, local };
  }
  const dirFlag = flags.stackDir ?? env("CONVEYOR_STACK_DIR") ?? `${REPO_ROOT}/.stack/local`;
  // resolve() of a relative folder reads the working directory: that needs read access too.
  const readable = await canRead(dirFlag.startsWith("/") ? statePath(dirFlag) : ".");
  const dir = readable ? resolve(dirFlag) : dirFlag;
  const state = readable ? await readState(dir) : null;
  const envPort = Number(env("CONVEYOR_API_PORT")) || undefined;
  const port = state?.apiPort ?? envPort ?? 54321;
  const where = state ? dir : envPort ? "CONVEYOR_API_PORT" : "default port";
  return {
    url: `http://127.0.0.1:${port}`,
    key: givenKey ?? await serviceRoleKey(),
    label: `local stack (${where})`,
    local: true,
    note: readable ? undefined : `no read access to ${statePath(dir)}, so the port of a stack ` +
      `started with --api-port is unknown here (add --allow-read, or set SUPABASE_URL)`,
  };
}

/** True when this process may read `path` (never prompts). */
async function mayRead(path: string): Promise<boolean> {
  return (await Deno.permissions.query({ name: "read", path })).state === "granted";
}
