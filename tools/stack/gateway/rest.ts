/**
 * `/rest/v1`: authentication, routing to RPC or table planning, the per-request
 * transaction and error mapping. A schema cache miss (PGRST202/PGRST205) or a
 * "does not exist" error from the database reloads the cache once and retries, so
 * migrations applied without `NOTIFY pgrst` are picked up as on hosted projects (where an
 * event trigger sends the NOTIFY).
 *
 * @module
 */
import { ANON_ROLE, type Authenticator, type AuthResult } from "./auth.ts";
import type { GatewayConfig } from "./config.ts";
import type { Plan, RestContext } from "./context.ts";
import {
  ApiError,
  connectionError,
  errorResponse,
  fromPgError,
  internalError,
  isPgError,
  pgrstError,
} from "./errors.ts";
import { parseQuery } from "./query.ts";
import { chooseSchema, parseAccept, parseCookies, parsePrefer } from "./request.ts";
import { planRpc } from "./rpc.ts";
import type { SchemaCache, SchemaCacheHolder } from "./schema_cache.ts";
import { ident, qualified } from "./sql.ts";
import { planTable } from "./tables.ts";
import { type Executor, isConnectionError, type TxResult } from "./tx.ts";

export interface RestApiOptions {
  executor: Executor;
  holder: SchemaCacheHolder;
  config: () => GatewayConfig;
  auth: Authenticator;
  /** Explicit pre-request function (`schema.fn`); else the authenticator's setting, else config. */
  preRequest?: string;
  /** Reload the schema cache when a request finds a function/table missing. Default true. */
  reloadOnMiss?: boolean;
  log: (line: string) => void;
}

type Route = { kind: "rpc"; name: string } | { kind: "table"; name: string } | { kind: "root" };

function parseRoute(path: string): Route {
  const segs = path.split("/").filter((s, i) => i > 0 || s !== "");
  if (segs.length === 0 || (segs.length === 1 && segs[0] === "")) return { kind: "root" };
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw invalidPath();
    }
  };
  if (segs.length === 2 && segs[0] === "rpc" && segs[1] !== "") {
    return { kind: "rpc", name: decode(segs[1]!) };
  }
  if (segs.length === 1 && segs[0] !== "") return { kind: "table", name: decode(segs[0]!) };
  throw invalidPath();
}

function invalidPath(): ApiError {
  return pgrstError(404, "PGRST125", "Invalid path specified in request URL");
}

/** `schema.fn` → `select "schema"."fn"()`. */
function preRequestSql(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const i = name.indexOf(".");
  const fn = i > 0 ? qualified(name.slice(0, i), name.slice(i + 1)) : ident(name);
  return `select ${fn}()`;
}

/** Errors after which the schema cache may be stale (a migration ran since it loaded). */
function looksStale(e: unknown): boolean {
  if (!isPgError(e)) return false;
  if (e.code === "42P01") return true;
  if (e.code === "42883") return /^function /.test(e.message);
  return e.code === "0A000" && /cached plan must not change result type/.test(e.message);
}

/** The `/rest/v1` handler. */
export class RestApi {
  constructor(readonly opts: RestApiOptions) {}

  /** Handles `restPath` (the path after `/rest/v1`, e.g. `/rpc/fn`) with the read body. */
  async handle(
    req: Request,
    url: URL,
    restPath: string,
    body: Uint8Array | null,
  ): Promise<Response> {
    let auth: AuthResult | undefined;
    try {
      auth = await this.opts.auth.authenticate(req.headers, url);
      return await this.#serve(req, url, restPath, body, auth);
    } catch (e) {
      return errorResponse(this.#toApiError(e, auth));
    }
  }

  #toApiError(e: unknown, auth: AuthResult | undefined): ApiError {
    if (e instanceof ApiError) return e;
    if (isPgError(e)) return fromPgError(e, (auth?.role ?? ANON_ROLE) === ANON_ROLE);
    if (isConnectionError(e)) return connectionError(e);
    this.opts.log(`gateway error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return internalError(e);
  }

  async #serve(
    req: Request,
    url: URL,
    restPath: string,
    body: Uint8Array | null,
    auth: AuthResult,
  ): Promise<Response> {
    const method = req.method.toUpperCase();
    const route = parseRoute(restPath);
    const config = this.opts.config();
    if (route.kind === "root") return this.#root(method, req.headers, config);
    const schema = chooseSchema(method, req.headers, config.schemas);
    const accept = parseAccept(req.headers);
    const prefer = parsePrefer(req.headers);
    const isRead = method === "GET" || method === "HEAD";
    const query = parseQuery(url.searchParams, route.kind === "rpc" && isRead);
    const settings = this.#settings(method, restPath, req.headers, auth, schema, config);

    const plan = (cache: SchemaCache): Plan => {
      const ctx: RestContext = {
        method,
        url,
        headers: req.headers,
        body,
        auth,
        schema,
        prefer,
        accept,
        query,
        cache,
        config,
      };
      return route.kind === "rpc" ? planRpc(ctx, route.name) : planTable(ctx, route.name);
    };

    const holder = this.opts.holder;
    if (!holder.loaded) {
      throw pgrstError(
        503,
        "PGRST002",
        "Could not query the database for the schema cache. Retrying.",
      );
    }
    const reloadOnMiss = this.opts.reloadOnMiss ?? true;
    let cache = holder.current;
    let p: Plan;
    try {
      p = plan(cache);
    } catch (e) {
      const miss = e instanceof ApiError && (e.code === "PGRST202" || e.code === "PGRST205");
      if (!miss || !reloadOnMiss || !(await holder.reloadOnMiss(cache))) throw e;
      cache = holder.current;
      p = plan(cache);
    }
    const run = (pl: Plan, c: SchemaCache): Promise<TxResult | null> =>
      pl.tx
        ? this.opts.executor.run(settings(c), preRequestSql(this.#preRequest(c, config)), pl.tx)
        : Promise.resolve(null);
    let res: TxResult | null;
    try {
      res = await run(p, cache);
    } catch (e) {
      if (!reloadOnMiss || !looksStale(e) || !(await holder.reloadOnMiss(cache))) throw e;
      cache = holder.current;
      p = plan(cache);
      res = await run(p, cache);
    }
    return p.respond(res);
  }

  #preRequest(cache: SchemaCache, config: GatewayConfig): string | undefined {
    return this.opts.preRequest ?? cache.preRequest ?? config.dbPreRequest;
  }

  /** The ordered settings applied with set_config (built per cache). */
  #settings(
    method: string,
    restPath: string,
    headers: Headers,
    auth: AuthResult,
    schema: string,
    config: GatewayConfig,
  ): (cache: SchemaCache) => [string, string][] {
    const hdrs: Record<string, string> = {};
    for (const [k, v] of headers) if (k !== "cookie") hdrs[k] = v;
    const rest: [string, string][] = [
      ["role", auth.role],
      ["request.jwt.claims", JSON.stringify(auth.claims)],
      ["request.method", method],
      ["request.path", restPath],
      ["request.headers", JSON.stringify(hdrs)],
      ["request.cookies", JSON.stringify(parseCookies(headers.get("cookie")))],
    ];
    const searchPath = [...new Set([schema, ...config.extraSearchPath])].map(ident).join(", ");
    return (cache) => [
      ["search_path", searchPath],
      ...(cache.roleSettings.get(auth.role) ?? []),
      ...rest,
    ];
  }

  /** `/rest/v1/`: a minimal OpenAPI-like description of what is exposed. */
  #root(method: string, headers: Headers, config: GatewayConfig): Response {
    if (method !== "GET" && method !== "HEAD") {
      throw pgrstError(405, "PGRST117", `Unsupported HTTP method: ${method}`);
    }
    const schema = chooseSchema(method, headers, config.schemas);
    const cache = this.opts.holder.current;
    const paths: Record<string, unknown> = { "/": {} };
    for (const t of cache.tableNames(schema).sort()) paths[`/${t}`] = {};
    for (const f of [...new Set(cache.fnNames(schema))].sort()) paths[`/rpc/${f}`] = {};
    const doc = {
      swagger: "2.0",
      info: { title: "Conveyor local gateway", version: "local" },
      basePath: "/",
      schemes: ["http"],
      consumes: ["application/json"],
      produces: ["application/json"],
      paths,
    };
    return new Response(method === "HEAD" ? null : JSON.stringify(doc), {
      headers: { "Content-Type": "application/openapi+json; charset=utf-8" },
    });
  }
}
