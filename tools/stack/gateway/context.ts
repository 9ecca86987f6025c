/**
 * What the RPC and table planners share: the per-request context, the plan they return
 * (SQL + how to turn its result into a Response) and response helpers (Content-Range,
 * `response.headers` / `response.status` GUCs, the singular-object check).
 *
 * @module
 */
import type { AuthResult } from "./auth.ts";
import type { GatewayConfig } from "./config.ts";
import { type ApiError, pgrstError, validStatus } from "./errors.ts";
import type { ParsedQuery } from "./query.ts";
import type { MediaType, Prefer } from "./request.ts";
import type { SchemaCache } from "./schema_cache.ts";
import type { TxPlan, TxResult } from "./tx.ts";

/** Everything a planner needs about one request. */
export interface RestContext {
  method: string;
  url: URL;
  headers: Headers;
  body: Uint8Array | null;
  auth: AuthResult;
  schema: string;
  prefer: Prefer;
  accept: MediaType;
  query: ParsedQuery;
  cache: SchemaCache;
  config: GatewayConfig;
}

/** A planned request: a transaction to run (or none) and how to answer. */
export interface Plan {
  /** null: nothing to run (e.g. an empty insert). */
  tx: TxPlan | null;
  respond(res: TxResult | null): Response;
}

export const JSON_TYPE = "application/json; charset=utf-8";
export const OBJECT_TYPE = "application/vnd.pgrst.object+json; charset=utf-8";

/** 406 PGRST116: `.single()` on a result that is not exactly one row. */
export function singularError(n: number): ApiError {
  return pgrstError(
    406,
    "PGRST116",
    "Cannot coerce the result to a single JSON object",
    `The result contains ${n} rows`,
  );
}

/** `first-last/total` (or `*` then `/total` when empty). */
export function contentRange(offset: number, n: number, total: number | null): string {
  const t = total === null ? "*" : String(total);
  return n > 0 ? `${offset}-${offset + n - 1}/${t}` : `*/${t}`;
}

/** Applies `response.headers` / `response.status` set by SQL; returns the status to use. */
export function applyGucs(
  row: Record<string, string | null> | undefined,
  headers: Headers,
  status: number,
): number {
  const rh = row?.rh;
  if (rh) {
    let ok = false;
    try {
      const v = JSON.parse(rh);
      if (Array.isArray(v)) {
        ok = true;
        for (const item of v) {
          const entries = typeof item === "object" && item !== null ? Object.entries(item) : [];
          if (entries.length !== 1 || typeof entries[0]![1] !== "string") {
            ok = false;
            break;
          }
          headers.append(entries[0]![0], entries[0]![1] as string);
        }
      }
    } catch {
      ok = false;
    }
    if (!ok) {
      throw pgrstError(
        500,
        "PGRST111",
        "response.headers guc must be a JSON array composed of objects with a single key and a string value",
      );
    }
  }
  const rs = row?.rs;
  if (rs) {
    const n = validStatus(Number(rs));
    if (n === undefined || !/^\s*\d+\s*$/.test(rs)) {
      throw pgrstError(500, "PGRST112", "response.status guc must be a valid status code");
    }
    return n;
  }
  return status;
}

/** Builds a response; statuses that cannot carry a body get none. */
export function makeResponse(
  status: number,
  body: string | null,
  headers: Headers,
  head: boolean,
): Response {
  if (body === null || status === 204 || status === 205 || status === 304) {
    headers.delete("Content-Type");
    return new Response(null, { status, headers });
  }
  return new Response(head ? null : body, { status, headers });
}

/** Preference-Applied value for the preferences honoured. */
export function preferenceApplied(prefs: (string | undefined | false)[]): string | null {
  const list = prefs.filter((p): p is string => typeof p === "string" && p !== "");
  return list.length > 0 ? list.join(", ") : null;
}
