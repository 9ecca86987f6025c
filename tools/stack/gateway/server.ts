/**
 * The gateway's HTTP edge, like Kong in front of PostgREST and the edge runtime: routing
 * (`/rest/v1/*` to PostgREST, `/functions/v1/<slug>[/…]` to the functions host, `GET /health`),
 * CORS on every response (preflights answered here, as Kong's cors plugin does), an optional
 * access-log line per request (debug level), and a last-resort catch so that a bug becomes a
 * JSON 500 and a log line, never a dropped connection.
 *
 * @module
 */
import type { RestProxy } from "./rest_proxy.ts";

/** What `/functions/v1` needs from the functions host. */
export interface FunctionsHandler {
  handle(req: Request, slug: string, subPath: string): Promise<Response>;
}

export interface HandlerOptions {
  rest: RestProxy;
  functions: FunctionsHandler | null;
  /** Can PostgREST serve requests (it is up, has a database connection and its schema cache)? */
  restReady: () => Promise<boolean>;
  log: (line: string) => void;
  /** One `METHOD path status ms` line per request (the stack's debug level). */
  accessLog?: boolean;
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

const JSON_TYPE = "application/json; charset=utf-8";

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

/** Kong's answer when no route matches. */
function notFound(): Response {
  return new Response(JSON.stringify({ message: "no Route matched with those values" }), {
    status: 404,
    headers: { "Content-Type": JSON_TYPE },
  });
}

/** The request handler for `Deno.serve`. */
export function createHandler(opts: HandlerOptions): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    const started = opts.accessLog ? performance.now() : 0;
    let path = "?";
    let res: Response;
    try {
      const url = new URL(req.url);
      path = url.pathname;
      res = await route(req, url, opts);
    } catch (e) {
      opts.log(`gateway error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      res = new Response(JSON.stringify({ message: "An unexpected error occurred" }), {
        status: 500,
        headers: { "Content-Type": JSON_TYPE },
      });
    }
    res = withCors(res);
    if (opts.accessLog) {
      const ms = Math.round(performance.now() - started);
      opts.log(`${req.method} ${path} ${res.status} ${ms}ms`);
    }
    return res;
  };
}

async function route(req: Request, url: URL, opts: HandlerOptions): Promise<Response> {
  const path = url.pathname;
  if (req.method === "OPTIONS" && req.headers.has("access-control-request-method")) {
    return preflight(req);
  }

  if (path === "/health" || path === "/health/") {
    const db = await opts.restReady().catch(() => false);
    return new Response(JSON.stringify({ status: "ok", db }), {
      headers: { "Content-Type": JSON_TYPE },
    });
  }

  if (path === "/rest/v1" || path.startsWith("/rest/v1/")) {
    return await opts.rest.handle(req, url, path.slice("/rest/v1".length));
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
