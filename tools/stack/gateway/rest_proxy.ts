/**
 * `/rest/v1/*` → PostgREST `/*`, as Kong routes it on Supabase (`strip_path`): the apikey check
 * and Authorization rewrite of {@link KongAuth}, then method, path, query (less a `?apikey=`,
 * which key-auth consumes), headers and body passed through unchanged and PostgREST's answer passed back unchanged (CORS is added by
 * the caller). PostgREST out of reach (restarting, not started yet) gives 503 with Kong's
 * wording, so a client sees the same status as when PostgREST itself has lost the database.
 *
 * One observation on the way through: a successful `POST /rpc/finish_invocation` tells the
 * functions host that the invocation it names has finished (see functions_host.ts: the
 * invocations of a function process that dies are finished for it).
 *
 * @module
 */
import type { KongAuth } from "./auth.ts";

/** Headers never forwarded in either direction (hop-by-hop, RFC 9110 §7.6.1). */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** What the proxy needs. */
export interface RestProxyOptions {
  /** PostgREST's base URL, e.g. `http://127.0.0.1:54330`. */
  restUrl: string;
  auth: KongAuth;
  /** Called with the `p_invocation_id` of each successful `rpc/finish_invocation`. */
  onInvocationFinished?: (id: string) => void;
  log: (line: string) => void;
}

/** 503 with Kong's message: the upstream (PostgREST) cannot be reached. */
export function upstreamUnavailable(): Response {
  return new Response(
    JSON.stringify({ message: "The upstream server is currently unavailable" }),
    {
      status: 503,
      headers: { "Content-Type": "application/json; charset=utf-8", "Retry-After": "1" },
    },
  );
}

/** The `/rest/v1` proxy. */
export class RestProxy {
  readonly #base: string;
  #lastFailure = "";

  constructor(readonly opts: RestProxyOptions) {
    this.#base = opts.restUrl.replace(/\/+$/, "");
  }

  /** Proxies `req`; `restPath` is the path after `/rest/v1` (e.g. `/rpc/queue_job`). */
  async handle(req: Request, url: URL, restPath: string): Promise<Response> {
    const authorization = await this.opts.auth.authorization(req.headers, url);
    if (authorization instanceof Response) return authorization;

    // A plain record, not a Headers object: fetch converts its init once either way, and a
    // Headers would be built here and then iterated (sorted and combined) again by fetch.
    // Iterating req.headers gives each name once (lowercased, repeated values combined).
    const headers: Record<string, string> = Object.create(null);
    for (const [name, value] of req.headers) {
      if (HOP_BY_HOP.has(name) || name === "host" || name === "authorization") continue;
      headers[name] = value;
    }
    if (authorization !== null) headers.authorization = authorization;
    // fetch would decode a compressed answer but keep its Content-Encoding header.
    headers["accept-encoding"] = "identity";
    headers["x-forwarded-host"] ??= url.host;
    headers["x-forwarded-proto"] ??= "http";

    const method = req.method;
    let body: BodyInit | null = null;
    if (req.body && method !== "GET" && method !== "HEAD") {
      // A declared length: read it in one go (one write upstream); else stream it through.
      try {
        body = req.headers.has("content-length") ? await req.arrayBuffer() : req.body;
      } catch {
        // The client went away mid-body: nobody reads this answer.
        return new Response(JSON.stringify({ message: "Request body could not be read" }), {
          status: 400,
          headers: { "Content-Type": "application/json; charset=utf-8" },
        });
      }
    }
    let res: Response;
    try {
      res = await fetch(`${this.#base}${restPath || "/"}${upstreamSearch(url)}`, {
        method,
        headers,
        body,
        redirect: "manual",
      });
      this.#lastFailure = "";
    } catch (e) {
      // Log a failure once per cause, not once per request, while PostgREST is away.
      const msg = e instanceof Error ? e.message : String(e);
      if (msg !== this.#lastFailure) {
        this.opts.log(`gateway: PostgREST at ${this.#base} unreachable: ${msg}`);
        this.#lastFailure = msg;
      }
      return upstreamUnavailable();
    }

    if (
      this.opts.onInvocationFinished && res.ok && method === "POST" &&
      restPath === "/rpc/finish_invocation" && body instanceof ArrayBuffer
    ) {
      const id = invocationIdOf(body, "p_invocation_id");
      if (id) this.opts.onInvocationFinished(id);
    }

    // A record as above; Set-Cookie is the one header whose values are not combined.
    const out: Record<string, string> = Object.create(null);
    let cookies: string[] | undefined;
    for (const [name, value] of res.headers) {
      if (name === "set-cookie") (cookies ??= []).push(value);
      else if (!HOP_BY_HOP.has(name)) out[name] = value;
    }
    const nullBody = NULL_BODY_STATUS.has(res.status) || method === "HEAD";
    if (nullBody) await res.body?.cancel().catch(() => {});
    const answer = new Response(nullBody ? null : res.body, {
      status: res.status,
      statusText: res.statusText,
      headers: out,
    });
    for (const c of cookies ?? []) answer.headers.append("set-cookie", c);
    return answer;
  }
}

/**
 * The query string for PostgREST: without `apikey`, which key-auth consumed (PostgREST would
 * read it as a filter on a column `apikey` and answer 400).
 */
function upstreamSearch(url: URL): string {
  // A plain test first (no name can decode to `apikey` without "apikey" or a `%` in the raw
  // query): searchParams parses the whole query into a new object.
  const raw = url.search;
  if (!raw.includes("apikey") && !raw.includes("%")) return raw;
  if (!url.searchParams.has("apikey")) return raw;
  const params = url.search.slice(1).split("&").filter((p) => !/^apikey(=|$)/.test(p));
  return params.length ? `?${params.join("&")}` : "";
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The uuid in field `key` of a JSON object body, if there is one. */
export function invocationIdOf(body: ArrayBuffer | Uint8Array, key: string): string | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(body))?.[key];
    return typeof v === "string" && UUID_RE.test(v) ? v.toLowerCase() : null;
  } catch {
    return null;
  }
}
