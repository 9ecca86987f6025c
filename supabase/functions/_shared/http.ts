/**
 * HTTP helpers for function handlers: JSON responses, the bearer check functions do
 * themselves (a service-role JWT, for functions that act with service rights), and mapping
 * errors to statuses.
 *
 * @module
 */
import { httpStatusOfError, QueueError, toError } from "./errors.ts";

/** A JSON response. */
export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/**
 * Maps an error to a JSON error response (QueueError codes → statuses, others → 500). An
 * upstream that was away (QueueError.unavailable) is a 503 with Retry-After: the request can
 * be sent again as it is.
 */
export function errorResponse(e: unknown): Response {
  const err = toError(e);
  if (err instanceof QueueError) {
    const status = httpStatusOfError(err);
    return json(
      { error: err.code, message: err.message },
      status,
      status === 503 ? { "retry-after": "1" } : {},
    );
  }
  console.error(err.stack ?? err.message);
  return json({ error: "internal", message: err.message }, 500);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a JSON object body; an empty body is `{}`; anything else → QueueError("bad_request").
 * The bytes must be valid UTF-8 (as JSON must be): `req.text()` would turn invalid ones into
 * U+FFFD and accept a body that is not JSON (found by the reliability suite's fuzzer).
 */
export async function readJsonObject(req: Request): Promise<Record<string, unknown>> {
  const bytes = await req.arrayBuffer();
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new QueueError("bad_request", "the body is not valid UTF-8");
  }
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new QueueError("bad_request", "the body is not valid JSON");
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new QueueError("bad_request", "the body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

function decodeClaims(token: string): Record<string, unknown> | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
  } catch {
    return null;
  }
}

/**
 * Requires `Authorization: Bearer <jwt>` with role service_role. The platform (verify_jwt)
 * has already checked the signature; this checks the role, which verify_jwt does not.
 */
export function requireServiceRole(req: Request): void {
  const auth = req.headers.get("authorization") ?? "";
  const m = auth.match(/^Bearer\s+(\S+)$/i);
  const claims = m ? decodeClaims(m[1]!) : null;
  if (!claims || claims.role !== "service_role") {
    throw new QueueError("unauthorized", "this function needs the service_role key");
  }
}
