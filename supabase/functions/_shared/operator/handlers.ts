/**
 * Request handlers of the two operator functions: `conveyor-dashboard` (HTML, or JSON with
 * `?format=json`) and `conveyor-metrics` (Prometheus text). Both authorize with
 * {@link authorize} (service-role key or DASHBOARD_SECRET; anon and user tokens get 401) and
 * read the database with one RPC per request. Data access is injected so the handlers are
 * tested without a database.
 *
 * @module
 */
import type { SupabaseClient } from "../deps.ts";
import { toError } from "../errors.ts";
import { serviceClient } from "../supabase.ts";
import {
  authorize,
  credentialsFromEnv,
  issueSession,
  SESSION_COOKIE,
  SESSION_TTL_SEC,
} from "./auth.ts";
import { renderMain, renderPage, renderUnauthorized } from "./dashboard.ts";
import {
  type DashboardData,
  fetchDashboard,
  fetchMetricSamples,
  type MetricSample,
  withWorkerUrls,
} from "./data.ts";
import { escapeHtml } from "./html.ts";
import { EXPOSITION_CONTENT_TYPE, formatExposition } from "./prometheus.ts";

/** The function's slug: the last path segment browsers see (`/functions/v1/<slug>`). */
export const DASHBOARD_SLUG = "conveyor-dashboard";

/** What the dashboard handler needs. */
export interface DashboardDeps {
  load(minutes: number, limit: number): Promise<DashboardData>;
  credentials(): string[];
  /** Shown in the page header. */
  site(): string;
  /** Auto-refresh period in seconds. */
  refreshSec: number;
  /** The project URL stage worker paths resolve against (default: SUPABASE_URL). */
  projectUrl(): string | undefined;
}

/** What the metrics handler needs. */
export interface MetricsDeps {
  load(): Promise<MetricSample[]>;
  credentials(): string[];
}

const lazyClient = (): () => SupabaseClient => () => serviceClient();

function siteFromEnv(): string {
  try {
    return new URL(Deno.env.get("SUPABASE_URL") ?? "").host || "Conveyor";
  } catch {
    return "Conveyor";
  }
}

function refreshFromEnv(): number {
  const n = Number(Deno.env.get("DASHBOARD_REFRESH_SEC") ?? "10");
  return Number.isInteger(n) && n >= 0 && n <= 3600 ? n : 10;
}

function nonce(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b));
}

function htmlHeaders(n: string, extra: HeadersInit = {}): Headers {
  const h = new Headers({
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": [
      "default-src 'none'",
      `style-src 'nonce-${n}'`,
      `script-src 'nonce-${n}'`,
      "connect-src 'self'",
      "img-src data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
  });
  for (const [k, v] of new Headers(extra)) h.set(k, v);
  return h;
}

function jsonResponse(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function wantsHtml(req: Request): boolean {
  const accept = req.headers.get("accept") ?? "";
  return accept.includes("text/html") || (!req.headers.get("authorization") && accept === "");
}

function isHttps(req: Request): boolean {
  const proto = req.headers.get("x-forwarded-proto");
  return proto ? proto.split(",")[0]!.trim() === "https" : new URL(req.url).protocol === "https:";
}

/** `?minutes=` within 5..1440, else 60. */
export function parseMinutes(value: string | null): number {
  const n = Number(value);
  return value !== null && Number.isInteger(n) && n >= 5 && n <= 1440 ? n : 60;
}

/** The dashboard's request handler. */
export function createDashboardHandler(
  deps: Partial<DashboardDeps> = {},
): (req: Request) => Promise<Response> {
  const client = lazyClient();
  const d: DashboardDeps = {
    load: deps.load ?? ((m, l) => fetchDashboard(client(), m, l)),
    credentials: deps.credentials ?? (() => credentialsFromEnv()),
    site: deps.site ?? siteFromEnv,
    refreshSec: deps.refreshSec ?? refreshFromEnv(),
    projectUrl: deps.projectUrl ?? (() => Deno.env.get("SUPABASE_URL")),
  };
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return jsonResponse({ error: "method_not_allowed", message: "use GET" }, 405, {
        allow: "GET, HEAD",
      });
    }
    const url = new URL(req.url);
    const auth = await authorize(req, d.credentials(), { cookie: true });
    if (!auth.ok) {
      const headers = { "www-authenticate": 'Bearer realm="conveyor"' };
      if (wantsHtml(req)) {
        const n = nonce();
        return new Response(renderUnauthorized(auth.reason, n), {
          status: 401,
          headers: htmlHeaders(n, headers),
        });
      }
      return jsonResponse({ error: "unauthorized", message: auth.reason }, 401, headers);
    }
    const format = url.searchParams.get("format");
    const fragment = url.searchParams.has("fragment");
    if (auth.via === "query" && format !== "json" && !fragment) {
      // Trade the key in the URL for a session cookie and a clean address bar.
      const params = new URLSearchParams(url.searchParams);
      params.delete("key");
      const qs = params.toString();
      const cookie = [
        `${SESSION_COOKIE}=${await issueSession(auth.credential)}`,
        `Path=/functions/v1/${DASHBOARD_SLUG}`,
        `Max-Age=${SESSION_TTL_SEC}`,
        "HttpOnly",
        "SameSite=Lax",
        ...(isHttps(req) ? ["Secure"] : []),
      ].join("; ");
      return new Response(null, {
        status: 303,
        headers: {
          location: `${DASHBOARD_SLUG}${qs ? `?${qs}` : ""}`,
          "set-cookie": cookie,
          "cache-control": "no-store",
          "referrer-policy": "no-referrer",
        },
      });
    }
    const minutes = parseMinutes(url.searchParams.get("minutes"));
    let data: DashboardData;
    try {
      data = withWorkerUrls(await d.load(minutes, 10), d.projectUrl());
    } catch (e) {
      const err = toError(e);
      console.error(`conveyor-dashboard: ${err.message}`);
      if (format === "json" || !wantsHtml(req) && !fragment) {
        return jsonResponse({ error: "unavailable", message: err.message }, 503);
      }
      const n = nonce();
      const body = fragment
        ? `<section class="card"><h2>Database unavailable</h2><p class="error-text">${
          escapeHtml(err.message)
        }</p></section>`
        : `<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Conveyor · unavailable</title></head><body><h1>Conveyor dashboard</h1><p>The database did not answer: ${
          escapeHtml(err.message)
        }</p></body></html>`;
      return new Response(body, { status: 503, headers: htmlHeaders(n) });
    }
    if (format === "json") return jsonResponse(data);
    const n = nonce();
    const body = fragment
      ? renderMain(data).value
      : renderPage(data, { nonce: n, refreshSec: d.refreshSec, site: d.site() });
    return new Response(req.method === "HEAD" ? null : body, { headers: htmlHeaders(n) });
  };
}

/** The metrics endpoint's request handler. */
export function createMetricsHandler(
  deps: Partial<MetricsDeps> = {},
): (req: Request) => Promise<Response> {
  const client = lazyClient();
  const d: MetricsDeps = {
    load: deps.load ?? (() => fetchMetricSamples(client())),
    credentials: deps.credentials ?? (() => credentialsFromEnv()),
  };
  const text = (body: string, status: number, headers: HeadersInit = {}) =>
    new Response(body, {
      status,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        "cache-control": "no-store",
        ...headers,
      },
    });
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text("use GET\n", 405, { allow: "GET, HEAD" });
    }
    const auth = await authorize(req, d.credentials());
    if (!auth.ok) {
      return text(`unauthorized: ${auth.reason}\n`, 401, {
        "www-authenticate": 'Bearer realm="conveyor"',
      });
    }
    const started = performance.now();
    let samples: MetricSample[];
    try {
      samples = await d.load();
    } catch (e) {
      const err = toError(e);
      console.error(`conveyor-metrics: ${err.message}`);
      // Prometheus records a failed scrape as up == 0 for this target.
      return text(`database unavailable: ${err.message}\n`, 503);
    }
    const seconds = (performance.now() - started) / 1000;
    const body = formatExposition([
      { metric: "conveyor_up", labels: {}, value: 1 },
      {
        metric: "conveyor_scrape_duration_seconds",
        labels: {},
        value: Math.round(seconds * 1e4) / 1e4,
      },
      ...samples,
    ]);
    return new Response(req.method === "HEAD" ? null : body, {
      headers: { "content-type": EXPOSITION_CONTENT_TYPE, "cache-control": "no-store" },
    });
  };
}
