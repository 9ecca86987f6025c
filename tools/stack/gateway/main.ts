/**
 * The local API gateway: one URL for `/rest/v1` (PostgREST-compatible) and
 * `/functions/v1` (the functions host), like Kong in front of PostgREST and the edge
 * runtime on a hosted project. `startGateway()` runs it in-process (tests); the CLI runs it
 * until SIGINT/SIGTERM:
 *
 * ```
 * deno run -A tools/stack/gateway/main.ts --port 54321 \
 *   --db-url postgresql://authenticator:postgres@127.0.0.1:54322/postgres \
 *   --admin-db-url postgresql://postgres:postgres@127.0.0.1:54322/postgres \
 *   --jwt-secret <secret> --config supabase/config.toml --functions-dir supabase/functions
 * ```
 *
 * Flags fall back to GATEWAY_PORT, GATEWAY_DB_URL, SUPABASE_DB_URL, SUPABASE_JWT_SECRET,
 * GATEWAY_CONFIG, GATEWAY_FUNCTIONS_DIR, then to the Supabase CLI's local defaults.
 *
 * @module
 */
import postgres from "postgres";
import { anonKey, JWT_SECRET, serviceRoleKey } from "../keys.ts";
import { Authenticator } from "./auth.ts";
import { type GatewayConfig, readGatewayConfig } from "./config.ts";
import { FunctionsHost } from "./functions_host.ts";
import { RestApi } from "./rest.ts";
import { SchemaCacheHolder } from "./schema_cache.ts";
import { createHandler } from "./server.ts";
import { Executor } from "./tx.ts";

export interface GatewayOptions {
  port: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** Login URL of the `authenticator` role: every request runs on this pool. */
  dbUrl: string;
  /** Superuser URL: used only for LISTEN and schema introspection. */
  adminDbUrl: string;
  /** HS256 secret of the project's JWTs. */
  jwtSecret: string;
  /** supabase/config.toml (api.schemas, max_rows, [functions.*]). */
  configPath: string;
  functionsDir: string;
  /** Platform variables for function processes (SUPABASE_URL, keys, DB URL…). */
  functionsEnv: Record<string, string>;
  /**
   * Pre-request function, e.g. `public.conveyor_pre_request`. Default: the authenticator's
   * `pgrst.db_pre_request` setting (read at schema load), else `[api] db_pre_request`.
   */
  preRequest?: string;
  log?: (line: string) => void;
  /** Largest `/rest/v1` request body. Default 1 MiB. */
  bodyLimit?: number;
  /** Connections in the authenticator pool. Default 16. */
  poolSize?: number;
  /** Reload the schema cache when a request names an unknown function/table. Default true. */
  reloadOnMiss?: boolean;
}

/** A running gateway. */
export interface Gateway {
  port: number;
  /** Reloads the schema cache now. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** postgres.js sends every parameter as text and returns text: no JS-side conversions. */
const RAW_TYPES = {
  raw: {
    to: 25,
    from: [16, 17, 20, 21, 23, 26, 114, 700, 701, 1082, 1083, 1114, 1184, 1186, 1700, 3802],
    serialize: (x: unknown) => String(x),
    parse: (x: string) => x,
  },
};

/** Starts the gateway; resolves once it listens (the database may still be down). */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const log = opts.log ?? ((line: string) => console.log(line));
  let config: GatewayConfig = await readGatewayConfig(opts.configPath);
  const poolSize = opts.poolSize ?? 16;
  const pool = postgres(opts.dbUrl, {
    max: poolSize,
    prepare: true,
    // fetch_types stays on: with it off, postgres.js 3.4 never resolves a reserve() that
    // opens the pool's first connection.
    onnotice: () => {},
    types: RAW_TYPES,
    connect_timeout: 5,
    connection: { application_name: "conveyor-gateway" },
  });
  const admin = postgres(opts.adminDbUrl, {
    max: 2,
    onnotice: () => {},
    connect_timeout: 5,
    connection: { application_name: "conveyor-gateway-admin" },
  });
  const holder = new SchemaCacheHolder(admin, () => config.schemas, log, async () => {
    try {
      config = await readGatewayConfig(opts.configPath);
    } catch (e) {
      log(`gateway: config.toml not reloaded: ${(e as Error).message}`);
    }
  });

  let closed = false;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  const connectCache = async (): Promise<void> => {
    try {
      await holder.reload();
      await holder.listen();
    } catch (e) {
      if (closed) return;
      log(`gateway: schema cache not loaded (${(e as Error).message}); retrying`);
      retryTimer = setTimeout(connectCache, 2_000);
    }
  };
  await connectCache();

  const functions = new FunctionsHost({
    functionsDir: opts.functionsDir,
    configPath: opts.configPath,
    env: opts.functionsEnv,
    jwtSecret: opts.jwtSecret,
    log,
  });
  const rest = new RestApi({
    executor: new Executor(pool, poolSize),
    holder,
    config: () => config,
    auth: new Authenticator(opts.jwtSecret),
    preRequest: opts.preRequest,
    reloadOnMiss: opts.reloadOnMiss,
    log,
  });
  const handler = createHandler({
    rest,
    functions,
    dbHealthy: async () => {
      const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), 2_000));
      const check = pool`select 1`.then(() => true, () => false);
      return await Promise.race([check, timeout]);
    },
    log,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
  });

  const ready = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: opts.port,
    hostname: opts.hostname ?? "127.0.0.1",
    onListen: (addr) => ready.resolve(addr as Deno.NetAddr),
    onError: (e) => {
      log(`gateway error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      return new Response(
        JSON.stringify({
          code: null,
          details: null,
          hint: null,
          message: "Internal gateway error",
        }),
        { status: 500, headers: { "Content-Type": "application/json; charset=utf-8" } },
      );
    },
  }, handler);
  const addr = await ready.promise;

  return {
    port: addr.port,
    reload: async () => {
      await holder.reload();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      clearTimeout(retryTimer);
      await server.shutdown();
      await functions.close();
      await holder.close();
      await Promise.all([pool.end({ timeout: 5 }), admin.end({ timeout: 5 })]);
    },
  };
}

function parseFlags(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unexpected argument: ${a}`);
    if (m[2] !== undefined) out[m[1]!] = m[2];
    else {
      const v = args[++i];
      if (v === undefined) throw new Error(`--${m[1]} needs a value`);
      out[m[1]!] = v;
    }
  }
  return out;
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args);
  const env = (k: string) => Deno.env.get(k) || undefined;
  const port = Number(flags.port ?? env("GATEWAY_PORT") ?? 54321);
  const jwtSecret = flags["jwt-secret"] ?? env("SUPABASE_JWT_SECRET") ?? JWT_SECRET;
  const adminDbUrl = flags["admin-db-url"] ?? env("SUPABASE_DB_URL") ??
    "postgresql://postgres:postgres@127.0.0.1:54322/postgres";
  const dbUrl = flags["db-url"] ?? env("GATEWAY_DB_URL") ??
    "postgresql://authenticator:postgres@127.0.0.1:54322/postgres";
  const functionsEnv: Record<string, string> = {
    SUPABASE_URL: env("SUPABASE_URL") ?? `http://127.0.0.1:${port}`,
    SUPABASE_ANON_KEY: env("SUPABASE_ANON_KEY") ?? await anonKey(jwtSecret),
    SUPABASE_SERVICE_ROLE_KEY: env("SUPABASE_SERVICE_ROLE_KEY") ?? await serviceRoleKey(jwtSecret),
    SUPABASE_DB_URL: adminDbUrl,
    SUPABASE_JWT_SECRET: jwtSecret,
  };
  const gw = await startGateway({
    port,
    hostname: flags.hostname ?? env("GATEWAY_HOSTNAME"),
    dbUrl,
    adminDbUrl,
    jwtSecret,
    configPath: flags.config ?? env("GATEWAY_CONFIG") ?? "supabase/config.toml",
    functionsDir: flags["functions-dir"] ?? env("GATEWAY_FUNCTIONS_DIR") ?? "supabase/functions",
    functionsEnv,
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
