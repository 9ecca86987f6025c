/**
 * Request headers PostgREST interprets: `Prefer` (one comma-joined header, as supabase-js
 * sends it), `Accept` and the `Accept-Profile`/`Content-Profile` schema choice.
 *
 * @module
 */
import { pgrstError } from "./errors.ts";

/** The preferences the gateway understands. */
export interface Prefer {
  return?: "minimal" | "representation" | "headers-only";
  count?: "exact" | "planned" | "estimated";
  resolution?: "merge-duplicates" | "ignore-duplicates";
  missing?: "default" | "null";
  handling?: "strict" | "lenient";
  tx?: "commit" | "rollback";
  /** Preferences that were not understood. */
  invalid: string[];
}

const ALLOWED: Record<string, readonly string[]> = {
  return: ["minimal", "representation", "headers-only"],
  count: ["exact", "planned", "estimated"],
  resolution: ["merge-duplicates", "ignore-duplicates"],
  missing: ["default", "null"],
  handling: ["strict", "lenient"],
  tx: ["commit", "rollback"],
};

/** Parses all `Prefer` headers (Headers joins repeats with ", "). */
export function parsePrefer(headers: Headers): Prefer {
  const p: Prefer = { invalid: [] };
  const raw = headers.get("prefer");
  if (!raw) return p;
  for (const part of raw.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq).trim();
    const value = eq < 0 ? "" : item.slice(eq + 1).trim();
    const allowed = ALLOWED[key];
    if (allowed?.includes(value)) (p as unknown as Record<string, string>)[key] = value;
    else if (key === "params" || key === "timezone" || key === "max-affected") continue;
    else p.invalid.push(item);
  }
  if (p.handling === "strict" && p.invalid.length > 0) {
    throw pgrstError(
      400,
      "PGRST122",
      "Invalid preferences given with handling=strict",
      `Invalid preferences: ${p.invalid.join(", ")}`,
    );
  }
  return p;
}

/** The response media type: a JSON array/value, or a single object (`.single()`). */
export type MediaType = "json" | "object";

/** Chooses the response media type from `Accept`; 406 PGRST107 if nothing fits. */
export function parseAccept(headers: Headers): MediaType {
  const raw = headers.get("accept");
  if (!raw || raw.trim() === "") return "json";
  const offered: { type: string; q: number; i: number }[] = [];
  raw.split(",").forEach((part, i) => {
    const [type = "", ...params] = part.split(";").map((s) => s.trim());
    let q = 1;
    for (const p of params) {
      const m = /^q=([0-9.]+)$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    if (type !== "" && q > 0) offered.push({ type: type.toLowerCase(), q, i });
  });
  offered.sort((a, b) => b.q - a.q || a.i - b.i);
  for (const o of offered) {
    switch (o.type) {
      case "application/json":
      case "application/*":
      case "*/*":
      case "application/vnd.pgrst.array+json":
      case "application/vnd.pgrst.array":
        return "json";
      case "application/vnd.pgrst.object+json":
      case "application/vnd.pgrst.object":
        return "object";
    }
  }
  throw pgrstError(
    406,
    "PGRST107",
    `None of these media types are available: ${offered.map((o) => o.type).join(", ")}`,
  );
}

/** The request's schema: the profile header among `schemas`, else the first one. */
export function chooseSchema(method: string, headers: Headers, schemas: string[]): string {
  const header = method === "GET" || method === "HEAD"
    ? headers.get("accept-profile")
    : headers.get("content-profile");
  if (header === null) return schemas[0] ?? "public";
  const s = header.trim();
  if (!schemas.includes(s)) {
    throw pgrstError(
      406,
      "PGRST106",
      `Invalid schema: ${s}`,
      null,
      `Only the following schemas are exposed: ${schemas.join(", ")}`,
    );
  }
  return s;
}

/** `Content-Type` without parameters, lowercased; JSON when absent (as PostgREST). */
export function contentType(headers: Headers): string {
  const raw = headers.get("content-type");
  if (!raw) return "application/json";
  return raw.split(";")[0]!.trim().toLowerCase() || "application/json";
}

/** `Cookie` as an object, for `request.cookies`. */
export function parseCookies(header: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}
