/**
 * Request bodies of `/rest/v1`, decoded before anything reads them: text must be valid
 * UTF-8, and JSON may nest at most {@link MAX_JSON_DEPTH} levels. Both are refused with
 * 400 PGRST102, the error of any other unusable body.
 *
 * Why (found by the reliability suite's fuzzer, issue 10): a lossy decode turned invalid
 * bytes into U+FFFD, so a body that is not JSON at all (RFC 8259 JSON is UTF-8) was accepted
 * and enqueued a job; PostgREST hands the bytes to Postgres, which refuses them (22021,
 * HTTP 400). And JSON nested ~15,000 levels deep overflows Postgres' parser stack (54001,
 * HTTP 500), which no SQL function can catch: it fails before the function runs. PostgREST
 * would answer 500 there too; locally we answer 400 instead (a deliberate deviation: no
 * client input may cause a 5xx).
 *
 * @module
 */
import { pgrstError } from "./errors.ts";

/** Deepest JSON nesting accepted (arrays and objects). Postgres' parser fails beyond ~12k. */
export const MAX_JSON_DEPTH = 1000;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The body as text; 400 PGRST102 when it is not valid UTF-8. */
export function bodyText(body: Uint8Array | null): string {
  if (!body || body.byteLength === 0) return "";
  try {
    return utf8.decode(body);
  } catch {
    throw pgrstError(400, "PGRST102", "Empty or invalid json", "the body is not valid UTF-8");
  }
}

/** How deep `text` nests arrays and objects (outside strings). Stops counting past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Refuses JSON text nested deeper than {@link MAX_JSON_DEPTH} with 400 PGRST102. */
export function checkJsonDepth(text: string): void {
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw pgrstError(
      400,
      "PGRST102",
      "Empty or invalid json",
      `the JSON nests deeper than ${MAX_JSON_DEPTH} levels`,
    );
  }
}
