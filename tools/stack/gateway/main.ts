/**
 * The local API gateway: one URL for `/rest/v1` (proxied to PostgREST) and `/functions/v1`
 * (the functions host), like Kong in front of PostgREST and the edge runtime on a hosted
 * project. `startGateway()` runs it in-process (tests); the CLI runs it until SIGINT/SIGTERM:
 *
 * ```
 * deno run -A tools/stack/gateway/main.ts --port 54321 \
 *   --rest-url http://127.0.0.1:54330 --rest-admin-url http://127.0.0.1:54331 \
 *   --jwt-secret <secret> --config supabase/config.toml --functions-dir supabase/functions
 * ```
 *
 * Flags fall back to GATEWAY_PORT, GATEWAY_REST_URL, GATEWAY_REST_ADMIN_URL,
 * SUPABASE_JWT_SECRET, GATEWAY_CONFIG, GATEWAY_FUNCTIONS_DIR, then to the Supabase CLI's local
 * defaults. `--access-log` (or CONVEYOR_LOG_LEVEL=debug) logs one line per request.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { flagError } from "../errors.ts";
import { anonKey, JWT_SECRET, serviceRoleKey } from "../keys.ts";
import { KongAuth } from "./auth.ts";
import { FunctionsHost, type InvocationsLost } from "./functions_host.ts";
import { RestProxy } from "./rest_proxy.ts";
import { createHandler } from "./server.ts";

export interface GatewayOptions {
  port: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** PostgREST's base URL. */
  restUrl: string;
  /** PostgREST's admin server (`/ready`), for `/health`; without it `/health` asks `restUrl`. */
  restAdminUrl?: string;
  /** HS256 secret of the project's JWTs (apikey check, functions' verify_jwt). */
  jwtSecret: string;
  /** supabase/config.toml (`[functions.*]`). */
  configPath: string;
  functionsDir: string;
  /** A Deno config for function processes (FunctionsHostOptions.denoConfig). */
  denoConfig?: string;
  /** Platform variables for function processes (SUPABASE_URL, keys, DB URL…). */
  functionsEnv: Record<string, string>;
  log?: (line: string) => void;
  /** One line per request (debug level). Default false. */
  accessLog?: boolean;
}

/** A running gateway. */
export interface Gateway {
  port: number;
  close(): Promise<void>;
}

/**
 * Frees the dispatcher slots of invocations whose function process died: one
 * `finish_invocation` call each, straight to PostgREST as service_role (the gateway may be
 * closing), retried while the database is away (a restart).
 */
function invocationFinisher(
  restUrl: string,
  jwtSecret: string,
  log: (l: string) => void,
): (lost: InvocationsLost) => Promise<void> {
  return async ({ slug, ids, summary }) => {
    const key = await serviceRoleKey(jwtSecret);
    let freed = 0;
    for (const id of ids) {
      for (let attempt = 0, delay = 250; attempt < 8; attempt++, delay *= 2) {
        const res = await fetch(`${restUrl}/rpc/finish_invocation`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ p_invocation_id: id, p_summary: summary }),
          signal: AbortSignal.timeout(5_000),
        }).catch((e: Error) => e);
        const text = res instanceof Error ? "" : await res.text();
        if (!(res instanceof Error) && res.ok) {
          freed++;
          break;
        }
        // Retry while the database is away: PostgREST's 503, or its 400 with an empty code
        // for a request whose connection broke mid-query.
        if (!(res instanceof Error) && res.status !== 503 && !/^\{"code":"",/.test(text)) {
          log(`[${slug}] finish_invocation ${id}: HTTP ${res.status} ${text}`);
          break;
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    log(
      `[${slug}] freed ${freed} of ${ids.length} dispatcher slot(s) of its dead process ` +
        `(${JSON.stringify(summary)})`,
    );
  };
}

/** Starts the gateway; resolves once it listens (PostgREST may still be starting). */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const restUrl = opts.restUrl.replace(/\/+$/, "");
  const functions = new FunctionsHost({
    functionsDir: opts.functionsDir,
    configPath: opts.configPath,
    denoConfig: opts.denoConfig,
    env: opts.functionsEnv,
    jwtSecret: opts.jwtSecret,
    log,
    onInvocationsLost: invocationFinisher(restUrl, opts.jwtSecret, log),
  });
  const rest = new RestProxy({
    restUrl,
    auth: new KongAuth(opts.jwtSecret),
    onInvocationFinished: (id) => functions.invocationFinished(id),
    log,
  });
  const readyUrl = opts.restAdminUrl ? `${opts.restAdminUrl.replace(/\/+$/, "")}/ready` : restUrl;
  const handler = createHandler({
    rest,
    functions,
    restReady: async () => {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2_000) });
      await res.body?.cancel();
      return res.ok;
    },
    log,
    accessLog: opts.accessLog,
  });

  const ready = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: opts.port,
    hostname: opts.hostname ?? "127.0.0.1",
    onListen: (addr) => ready.resolve(addr as Deno.NetAddr),
    onError: (e) => {
      log(`gateway error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      return new Response(JSON.stringify({ message: "An unexpected error occurred" }), {
        status: 500,
        headers: { "Content-Type": "application/json; charset=utf-8" },
      });
    },
  }, handler);
  const addr = await ready.promise;

  let closed = false;
  return {
    port: addr.port,
    close: async () => {
      if (closed) return;
      closed = true;
      await server.shutdown();
      await functions.close();
    },
  };
}

const USAGE = `usage: deno run -A tools/stack/gateway/main.ts [--port N] [--rest-url URL]
         [--rest-admin-url URL] [--jwt-secret S] [--config supabase/config.toml]
         [--functions-dir supabase/functions] [--deno-config deno.json] [--access-log]`;

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        port: { type: "string" },
        hostname: { type: "string" },
        "rest-url": { type: "string" },
        "rest-admin-url": { type: "string" },
        "jwt-secret": { type: "string" },
        config: { type: "string" },
        "functions-dir": { type: "string" },
        "deno-config": { type: "string" },
        "access-log": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`error: ${flagError(e)}\n${USAGE}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const env = (k: string) => Deno.env.get(k) || undefined;
  const port = Number(values.port ?? env("GATEWAY_PORT") ?? 54321);
  const jwtSecret = values["jwt-secret"] ?? env("SUPABASE_JWT_SECRET") ?? JWT_SECRET;
  const functionsEnv: Record<string, string> = {
    SUPABASE_URL: env("SUPABASE_URL") ?? `http://127.0.0.1:${port}`,
    SUPABASE_ANON_KEY: env("SUPABASE_ANON_KEY") ?? await anonKey(jwtSecret),
    SUPABASE_SERVICE_ROLE_KEY: env("SUPABASE_SERVICE_ROLE_KEY") ?? await serviceRoleKey(jwtSecret),
    SUPABASE_DB_URL: env("SUPABASE_DB_URL") ??
      "postgresql://postgres:postgres@127.0.0.1:54322/postgres",
    SUPABASE_JWT_SECRET: jwtSecret,
  };
  const gw = await startGateway({
    port,
    hostname: values.hostname ?? env("GATEWAY_HOSTNAME"),
    restUrl: values["rest-url"] ?? env("GATEWAY_REST_URL") ?? "http://127.0.0.1:54330",
    restAdminUrl: values["rest-admin-url"] ?? env("GATEWAY_REST_ADMIN_URL"),
    jwtSecret,
    configPath: values.config ?? env("GATEWAY_CONFIG") ?? "supabase/config.toml",
    functionsDir: values["functions-dir"] ?? env("GATEWAY_FUNCTIONS_DIR") ?? "supabase/functions",
    denoConfig: values["deno-config"],
    functionsEnv,
    accessLog: values["access-log"] || env("CONVEYOR_LOG_LEVEL") === "debug",
  });
  console.log(`gateway listening on http://127.0.0.1:${gw.port} (/rest/v1, /functions/v1)`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await gw.close().catch((e) => console.error(e));
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}

if (import.meta.main) {
  main().catch((e) => {
    console.error(`gateway: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  });
}
