/**
 * The gateway's HTTP edge, like Kong in front of PostgREST and the edge runtime:
 * routing (`/rest/v1/*`, `/functions/v1/<slug>[/…]`, `GET /health`), CORS on every
 * response (preflights answered here, as Kong's cors plugin does), the request body limit
 * for `/rest/v1`, one access-log line per request, and a last-resort catch so that a bug
 * becomes a JSON 500 and a log line, never a dropped connection.
 *
 * @module
 */
import { ApiError, errorResponse, internalError, pgrstError } from "./errors.ts";
import type { RestApi } from "./rest.ts";

/** What `/functions/v1` needs from the functions host. */
export interface FunctionsHandler {
  handle(req: Request, slug: string, subPath: string): Promise<Response>;
}

export interface HandlerOptions {
  rest: RestApi;
  functions: FunctionsHandler | null;
  /** Is the database reachable? */
  dbHealthy: () => Promise<boolean>;
  log: (line: string) => void;
  /** Largest `/rest/v1` request body in bytes. */
  bodyLimit: number;
}

export const CORS_ALLOW_HEADERS = [
  "authorization",
  "x-client-info",
  "apikey",
  "content-type",
  "prefer",
  "accept-profile",
  "content-profile",
  "range",
];
const CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const CORS_EXPOSE =
  "Content-Range, Content-Location, Content-Profile, Preference-Applied, Range-Unit, Location, Proxy-Status";

/** Adds the CORS headers to a response whose headers may be immutable. */
function withCors(res: Response): Response {
  let out = res;
  try {
    if (!res.headers.has("access-control-allow-origin")) {
      res.headers.set("Access-Control-Allow-Origin", "*");
    }
    if (!res.headers.has("access-control-expose-headers")) {
      res.headers.set("Access-Control-Expose-Headers", CORS_EXPOSE);
    }
  } catch {
    // Immutable headers (e.g. a fetch() response): copy.
    out = new Response(res.body, res);
    if (!out.headers.has("access-control-allow-origin")) {
      out.headers.set("Access-Control-Allow-Origin", "*");
    }
    if (!out.headers.has("access-control-expose-headers")) {
      out.headers.set("Access-Control-Expose-Headers", CORS_EXPOSE);
    }
  }
  return out;
}

function preflight(req: Request): Response {
  const requested = (req.headers.get("access-control-request-headers") ?? "")
    .split(",").map((s) => s.trim().toLowerCase()).filter((s) =>
      /^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(s)
    );
  const allow = [...new Set([...CORS_ALLOW_HEADERS, ...requested])].join(", ");
  return new Response(null, {
    status: 200,
    headers: {
      "Access-Control-Allow-Origin": "*",
      "Access-Control-Allow-Methods": CORS_METHODS,
      "Access-Control-Allow-Headers": allow,
      "Access-Control-Max-Age": "3600",
      "Content-Length": "0",
    },
  });
}

/** 413 for a body over the limit (Kong's request-size-limiting message). */
function tooLarge(limit: number): ApiError {
  return pgrstError(
    413,
    null,
    "Request size limit exceeded",
    `The request body is larger than ${limit} bytes`,
  );
}

/** Reads a request body, refusing more than `limit` bytes. */
export async function readBody(req: Request, limit: number): Promise<Uint8Array | null> {
  if (!req.body) return null;
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    await req.body.cancel().catch(() => {});
    throw tooLarge(limit);
  }
  // A declared length is enforced by the HTTP framing: read it in one go.
  if (Number.isFinite(declared)) return new Uint8Array(await req.arrayBuffer());
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function notFound(): Response {
  return errorResponse(pgrstError(404, null, "no Route matched with those values"));
}

/** The request handler for `Deno.serve`. */
export function createHandler(opts: HandlerOptions): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    const started = performance.now();
    let path = "?";
    let res: Response;
    try {
      const url = new URL(req.url);
      path = url.pathname;
      res = await route(req, url, opts);
    } catch (e) {
      if (e instanceof ApiError) res = errorResponse(e);
      else {
        opts.log(`gateway error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
        res = errorResponse(internalError(e));
      }
    }
    res = withCors(res);
    const ms = Math.round(performance.now() - started);
    opts.log(`${req.method} ${path} ${res.status} ${ms}ms`);
    return res;
  };
}

async function route(req: Request, url: URL, opts: HandlerOptions): Promise<Response> {
  const path = url.pathname;
  const isPreflight = req.method === "OPTIONS" &&
    req.headers.has("access-control-request-method");
  if (isPreflight) return preflight(req);

  if (path === "/health" || path === "/health/") {
    const db = await opts.dbHealthy().catch(() => false);
    return new Response(JSON.stringify({ status: "ok", db }), {
      headers: { "Content-Type": "application/json; charset=utf-8" },
    });
  }

  if (path === "/rest/v1" || path.startsWith("/rest/v1/")) {
    if (req.method === "OPTIONS") {
      return new Response(null, {
        status: 200,
        headers: { Allow: "OPTIONS,GET,HEAD,POST,PATCH,DELETE" },
      });
    }
    const body = req.method === "GET" || req.method === "HEAD"
      ? null
      : await readBody(req, opts.bodyLimit);
    return await opts.rest.handle(req, url, path.slice("/rest/v1".length), body);
  }

  const fm = /^\/functions\/v1\/([^/]+)(\/.*)?$/.exec(path);
  if (fm && opts.functions) {
    let slug: string;
    try {
      slug = decodeURIComponent(fm[1]!);
    } catch {
      return notFound();
    }
    return await opts.functions.handle(req, slug, fm[2] ?? "");
  }
  return notFound();
}
