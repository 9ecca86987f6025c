/**
 * PostgREST's error model for the gateway's `/rest/v1`: the `{code,message,details,hint}` body,
 * the SQLSTATE → HTTP status map, `PTxyz` custom statuses, `RAISE SQLSTATE 'PGRST'` and the
 * gateway's own `PGRSTxxx` errors (reference/postgrest.md §3).
 *
 * @module
 */

/** A JSON object sent as an error body. PostgREST errors always have all four keys. */
export type ErrorBody = Record<string, unknown>;

/** An error that becomes an HTTP response as it stands. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof body.message === "string" ? body.message : `HTTP ${status}`);
  }

  /** The `code` of the body, if any. */
  get code(): string | null {
    return typeof this.body.code === "string" ? this.body.code : null;
  }
}

/** A PostgREST-shaped error: `{code, message, details, hint}` with nulls for missing parts. */
export function pgrstError(
  status: number,
  code: string | null,
  message: string,
  details: string | null = null,
  hint: string | null = null,
  headers: Record<string, string> = {},
): ApiError {
  return new ApiError(status, { code, details, hint, message }, headers);
}

/** The shape of a server error as postgres.js reports it. */
export interface PgErrorLike {
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** Is `e` an error reported by PostgreSQL (as opposed to a network or client failure)? */
export function isPgError(e: unknown): e is PgErrorLike {
  return typeof e === "object" && e !== null && (e as { name?: string }).name === "PostgresError" &&
    typeof (e as PgErrorLike).code === "string";
}

const S500_PREFIXES = [
  "09",
  "25",
  "2D",
  "38",
  "39",
  "3B",
  "40",
  "54",
  "55",
  "57",
  "58",
  "F0",
  "HV",
  "P0",
  "XX",
];

/**
 * HTTP status for a SQLSTATE, first match wins as in PostgREST's `mapSQLtoHTTP`.
 * `isAnon`: the request runs as the anon role (42501 is then 401, else 403).
 */
export function statusForSqlState(code: string, message: string, isAnon: boolean): number {
  const c2 = code.slice(0, 2);
  if (c2 === "08" || (c2 === "53" && code !== "53400") || code === "57P01") return 503;
  if (code === "25006") return 405;
  if (code === "P0001") return 400;
  if (S500_PREFIXES.includes(c2) || code === "53400" || code === "42P17") return 500;
  if (c2 === "0L" || c2 === "0P" || c2 === "28") return 403;
  if (code === "23503" || code === "23505") return 409;
  if (code === "21000") return message.endsWith("requires a WHERE clause") ? 400 : 500;
  if (code === "22023") return /^role ".*" does not exist$/.test(message) ? 401 : 400;
  if (code === "42883" || code === "42P01") return 404;
  if (code === "42501") return isAnon ? 401 : 403;
  if (/^PT\d{3}$/.test(code)) return validStatus(Number(code.slice(2))) ?? 500;
  if (c2 === "PT") return 500;
  return 400;
}

/** `n` if a Response may carry it as status, else undefined. */
export function validStatus(n: number): number | undefined {
  return Number.isInteger(n) && n >= 200 && n <= 599 ? n : undefined;
}

function str(v: unknown): string | null {
  return typeof v === "string" ? v : v === undefined || v === null ? null : JSON.stringify(v);
}

/** Maps a PostgreSQL error to PostgREST's response. */
export function fromPgError(e: PgErrorLike, isAnon: boolean): ApiError {
  if (e.code === "PGRST") return fromRaisePgrst(e);
  const status = statusForSqlState(e.code, e.message, isAnon);
  const headers: Record<string, string> = { "Proxy-Status": `PostgREST; error=${e.code}` };
  if (status === 401) headers["WWW-Authenticate"] = "Bearer";
  return pgrstError(status, e.code, e.message, e.detail ?? null, e.hint ?? null, headers);
}

/**
 * `RAISE SQLSTATE 'PGRST' USING message = '{"code","message","details","hint"}',
 * detail = '{"status":419,"status_text":"…","headers":{…}}'`: full control of the response.
 */
function fromRaisePgrst(e: PgErrorLike): ApiError {
  let body: unknown;
  let meta: unknown;
  try {
    body = JSON.parse(e.message);
    meta = JSON.parse(e.detail ?? "");
  } catch {
    return pgrstError(
      500,
      "PGRST121",
      "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
      "Invalid JSON value for MESSAGE: '" + e.message + "'\nInvalid JSON value for DETAIL: '" +
        (e.detail ?? "") + "'",
      "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: " +
        "'details', 'hint'. DETAIL must be a JSON object with obligatory keys: 'status', " +
        "'headers' and optional key: 'status_text'.",
    );
  }
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const m = (typeof meta === "object" && meta !== null ? meta : {}) as Record<string, unknown>;
  const status = validStatus(Number(m.status)) ?? 500;
  const headers: Record<string, string> = {};
  if (typeof m.headers === "object" && m.headers !== null) {
    for (const [k, v] of Object.entries(m.headers as Record<string, unknown>)) {
      if (typeof v === "string") headers[k] = v;
    }
  }
  return new ApiError(status, {
    code: str(b.code),
    details: str(b.details),
    hint: str(b.hint),
    message: str(b.message) ?? "",
  }, headers);
}

const JSON_TYPE = "application/json; charset=utf-8";

/** The HTTP response for `e`. Headers that are not valid HTTP are dropped, never thrown. */
export function errorResponse(e: ApiError): Response {
  const headers = new Headers({ "Content-Type": JSON_TYPE });
  for (const [k, v] of Object.entries(e.headers)) {
    try {
      headers.set(k, v);
    } catch { /* an invalid header name or value from SQL: ignore it */ }
  }
  return new Response(JSON.stringify(e.body), { status: e.status, headers });
}

/** A 500 for a bug in the gateway: a JSON body, never a dropped connection. */
export function internalError(e: unknown): ApiError {
  return pgrstError(
    500,
    null,
    "Internal gateway error",
    e instanceof Error ? e.message : String(e),
  );
}

/** 503 when the database cannot be reached (PostgREST's PGRST001). */
export function connectionError(e: unknown): ApiError {
  return pgrstError(
    503,
    "PGRST001",
    "Database client error. Retrying the connection.",
    e instanceof Error ? e.message : String(e),
  );
}
