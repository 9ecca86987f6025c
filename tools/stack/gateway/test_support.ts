/**
 * For the gateway's integration tests: a gateway started in-process on a free port against
 * `CONVEYOR_DB_URL` (superuser; the authenticator login is derived from it), with its own
 * config.toml and an empty functions folder, plus helpers for raw HTTP.
 *
 * @module
 */
import postgres from "postgres";
import { anonKey, JWT_SECRET, serviceRoleKey, signJwt } from "../keys.ts";
import { type Gateway, type GatewayOptions, startGateway } from "./main.ts";

/** The superuser URL, or undefined when the tests run outside the harness. */
export const DB_URL: string | undefined = Deno.env.get("CONVEYOR_DB_URL") || undefined;

/** The JWT secret of the test stack (the CLI default when not set). */
export const SECRET: string = Deno.env.get("SUPABASE_JWT_SECRET") || JWT_SECRET;

/** `CONVEYOR_DB_URL` with the authenticator login (password `postgres`, as bootstrap sets). */
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

export interface TestGateway extends AsyncDisposable {
  gw: Gateway;
  url: string;
  rest: string;
  anon: string;
  service: string;
  logs: string[];
}

/** Starts a gateway for tests (port 0: a free port). */
export async function testGateway(
  dbUrl: string,
  extra: Partial<GatewayOptions> = {},
  configToml = `[api]\nschemas = ["public", "graphql_public", "pgmq_public"]\nmax_rows = 1000\n`,
): Promise<TestGateway> {
  const dir = await Deno.makeTempDir({ prefix: "gw_test_" });
  await Deno.mkdir(`${dir}/functions`);
  await Deno.writeTextFile(`${dir}/config.toml`, configToml);
  const logs: string[] = [];
  const gw = await startGateway({
    port: 0,
    dbUrl: authenticatorUrl(dbUrl),
    adminDbUrl: dbUrl,
    jwtSecret: SECRET,
    configPath: `${dir}/config.toml`,
    functionsDir: `${dir}/functions`,
    functionsEnv: {},
    log: (l) => logs.push(l),
    ...extra,
  });
  const url = `http://127.0.0.1:${gw.port}`;
  return {
    gw,
    url,
    rest: `${url}/rest/v1`,
    anon: await anonKey(SECRET),
    service: await serviceRoleKey(SECRET),
    logs,
    async [Symbol.asyncDispose]() {
      await gw.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A token for an `authenticated` user. */
export function userToken(sub: string, extra: Record<string, unknown> = {}): Promise<string> {
  return signJwt(
    { sub, role: "authenticated", aud: "authenticated", exp: 4102444800, ...extra },
    SECRET,
  );
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

/** postgres.js on the superuser URL. */
export function admin(dbUrl: string): postgres.Sql {
  return postgres(dbUrl, { max: 2, onnotice: () => {} });
}
