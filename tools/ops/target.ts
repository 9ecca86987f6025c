/**
 * Which deployment the ops CLI talks to, and with which key. Everything goes through the
 * REST API (supabase-js), so a hosted project needs no database URL:
 *
 * 1. `--url` / `SUPABASE_URL` → that project; the key from `--service-key` or
 *    `SUPABASE_SERVICE_ROLE_KEY` (required then: a hosted project has no default key);
 * 2. otherwise the local stack: the API port from `<stack dir>/state.json` (the stack
 *    dir is `CONVEYOR_STACK_DIR` or `.stack/local`), else the standard 54321, and the
 *    local demo service-role key unless one is given.
 *
 * @module
 */
import { resolve } from "node:path";
import { serviceRoleKey } from "../stack/keys.ts";
import { readState, REPO_ROOT } from "../stack/state.ts";

/** Where the CLI points. */
export interface Target {
  /** Project URL (`https://<ref>.supabase.co` or the local gateway). */
  url: string;
  /** Service-role key. */
  key: string;
  /** For messages: "local stack (.stack/local)" or the host. */
  label: string;
  local: boolean;
}

/** A configuration problem, with the fix in the message. */
export class TargetError extends Error {
  override readonly name = "TargetError";
}

/** Resolves the target from flags and the environment (see the module comment). */
export async function resolveTarget(
  flags: { url?: string; serviceKey?: string; stackDir?: string } = {},
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
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
  const dir = resolve(flags.stackDir ?? env("CONVEYOR_STACK_DIR") ?? `${REPO_ROOT}/.stack/local`);
  const state = await readState(dir);
  const port = state?.apiPort ?? 54321;
  return {
    url: `http://127.0.0.1:${port}`,
    key: givenKey ?? await serviceRoleKey(),
    label: state ? `local stack (${dir})` : "local stack (default port)",
    local: true,
  };
}
