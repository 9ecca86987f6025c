/**
 * For tests that need an API of their own: PostgREST (the stack's binary) started against a
 * database of the test's choosing, and the gateway in-process in front of it, on free ports,
 * with their own config.toml and an empty functions folder; plus helpers for raw HTTP.
 *
 * @module
 */
import postgres from "postgres";
import { freePort } from "../proc.ts";
import { anonKey, JWT_SECRET, serviceRoleKey } from "../keys.ts";
import { ensurePostgrest, parseApiConfig, postgrestEnv } from "../postgrest.ts";
import { waitForHealth } from "../supervisor.ts";
import { type Gateway, type GatewayOptions, startGateway } from "./main.ts";

/**
 * The stack database's URL as `postgres` (not a superuser, as on hosted), or undefined when
 * the tests run outside the harness.
 */
export const DB_URL: string | undefined = Deno.env.get("CONVEYOR_DB_URL") || undefined;

/** The JWT secret of the test stack (the CLI default when not set). */
export const SECRET: string = Deno.env.get("SUPABASE_JWT_SECRET") || JWT_SECRET;

/** `dbUrl` with the authenticator login (password `postgres`, as bootstrap sets). */
export function authenticatorUrl(dbUrl: string): string {
  const u = new URL(dbUrl);
  u.username = "authenticator";
  u.password = "postgres";
  return u.toString();
}

/** A short unique prefix for fixture names. */
export function uniquePrefix(tag: string): string {
  return `gw${tag}_${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
}

/** A PostgREST process of a test's own. */
export interface TestPostgrest extends AsyncDisposable {
  url: string;
  adminUrl: string;
  pid: number;
  /** Its output lines. */
  logs: string[];
}

/**
 * Starts PostgREST for `dbUrl` (logged in as authenticator), configured from config.toml
 * text the way the stack configures its own; `env` adds PGRST_* variables (e.g.
 * `PGRST_DB_TX_END`). Resolves once its admin server says it is ready.
 *
 * `freePort()` closes its probe before PostgREST binds, so another process can take the port
 * in between (a CI run saw `Network.Socket.bind: resource busy (Address in use)`); PostgREST
 * then exits at once, and it is started again on other ports.
 */
export async function startPostgrest(
  dbUrl: string,
  configToml: string,
  env: Record<string, string> = {},
): Promise<TestPostgrest> {
  const bin = await ensurePostgrest(() => {});
  for (let attempt = 1;; attempt++) {
    try {
      return await spawnPostgrest(bin, dbUrl, configToml, env);
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt === 3) throw e;
    }
  }
}

/** PostgREST exited because one of its ports was taken after we picked it. */
class PortTaken extends Error {}

async function spawnPostgrest(
  bin: string,
  dbUrl: string,
  configToml: string,
  env: Record<string, string>,
): Promise<TestPostgrest> {
  const port = freePort();
  const adminPort = freePort();
  const child = new Deno.Command(bin, {
    env: postgrestEnv({
      dbUri: authenticatorUrl(dbUrl),
      jwtSecret: SECRET,
      api: parseApiConfig(configToml),
      port,
      adminPort,
      extra: env,
    }),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const l of s.pipeThrough(new TextDecoderStream())) logs.push(...l.split("\n"));
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {});
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await pumps;
  };
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const ready = new AbortController();
  const exited = child.status.then(async (s) => {
    if (ready.signal.aborted) return;
    await pumps;
    const out = logs.join("\n");
    const Err = out.includes("Address in use") ? PortTaken : Error;
    throw new Err(`PostgREST exited (code ${s.code}) before it was ready:\n${out}`);
  });
  try {
    await Promise.race([waitForHealth(`${adminUrl}/ready`, 30_000, ready.signal), exited]);
  } catch (e) {
    ready.abort();
    await stop();
    if (e instanceof PortTaken) throw e;
    throw new Error(`PostgREST did not become ready: ${(e as Error).message}\n${logs.join("\n")}`);
  } finally {
    ready.abort();
  }
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    pid: child.pid,
    logs,
    [Symbol.asyncDispose]: stop,
  };
}

export interface TestGateway extends AsyncDisposable {
  gw: Gateway;
  postgrest: TestPostgrest;
  url: string;
  rest: string;
  anon: string;
  service: string;
  logs: string[];
}

/** The config.toml of test gateways unless a test gives its own. */
export const TEST_CONFIG = `[api]\nschemas = ["public", "graphql_public"]\nmax_rows = 1000\n`;

/**
 * Starts PostgREST for `dbUrl` and a gateway in front of it (port 0: a free port). `extra`
 * overrides gateway options (functions folder, env, port…); `pgrstEnv` adds PGRST_* settings.
 */
export async function testGateway(
  dbUrl: string,
  extra: Partial<GatewayOptions> = {},
  configToml = TEST_CONFIG,
  pgrstEnv: Record<string, string> = {},
): Promise<TestGateway> {
  const dir = await Deno.makeTempDir({ prefix: "gw_test_" });
  await Deno.mkdir(`${dir}/functions`);
  await Deno.writeTextFile(`${dir}/config.toml`, configToml);
  const postgrest = await startPostgrest(dbUrl, configToml, pgrstEnv);
  const logs: string[] = [];
  let gw: Gateway;
  try {
    gw = await startGateway({
      port: 0,
      restUrl: postgrest.url,
      restAdminUrl: postgrest.adminUrl,
      jwtSecret: SECRET,
      configPath: `${dir}/config.toml`,
      functionsDir: `${dir}/functions`,
      functionsEnv: {},
      log: (l) => logs.push(l),
      ...extra,
    });
  } catch (e) {
    await postgrest[Symbol.asyncDispose]();
    throw e;
  }
  const url = `http://127.0.0.1:${gw.port}`;
  return {
    gw,
    postgrest,
    url,
    rest: `${url}/rest/v1`,
    anon: await anonKey(SECRET),
    service: await serviceRoleKey(SECRET),
    logs,
    async [Symbol.asyncDispose]() {
      try {
        await gw.close();
      } finally {
        await postgrest[Symbol.asyncDispose]();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}

/** A raw response: status, headers and body text (parsed when JSON). */
export interface Raw {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** fetch() that always reads the body. */
export async function raw(url: string, init: RequestInit = {}): Promise<Raw> {
  const res = await fetch(url, init);
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

/** postgres.js on `dbUrl` (the tests pass `postgres`'s URL: fixtures as a project owner). */
export function admin(dbUrl: string): postgres.Sql {
  return postgres(dbUrl, { max: 2, onnotice: () => {} });
}
