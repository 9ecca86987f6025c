/**
 * Who may read the operator endpoints (conveyor-dashboard, conveyor-metrics): whoever holds
 * the project's service-role key (or, for a shared screen, a separate `DASHBOARD_SECRET`).
 * Both functions run with `verify_jwt = false` (a browser cannot send a header, and the new
 * `sb_secret_…` keys are not JWTs), so the check lives here:
 *
 * - `Authorization: Bearer <credential>` (curl, Prometheus `authorization.credentials`);
 * - `?key=<credential>` (a browser); the dashboard then answers with a redirect to itself
 *   without the key and a session cookie, so the key leaves the address bar and history;
 * - the session cookie: `v1.<expiry>.<HMAC-SHA256(expiry)>`, keyed with the credential the
 *   session was opened with, so rotating the key ends every session.
 *
 * A credential is any of SUPABASE_SERVICE_ROLE_KEY, the values of SUPABASE_SECRET_KEYS
 * (hosted projects' new secret keys, a JSON object) and DASHBOARD_SECRET. Comparisons are
 * constant-time: both sides are HMACed with a per-process random key and the digests
 * compared without early exit, so neither the length nor a common prefix leaks.
 *
 * @module
 */

const encoder = new TextEncoder();

/** The name of the dashboard's session cookie. */
export const SESSION_COOKIE = "conveyor_dashboard";

/** How long a dashboard session lasts (12 hours). */
export const SESSION_TTL_SEC = 12 * 3600;

/** The credentials the environment accepts, strongest first; empty values are ignored. */
export function credentialsFromEnv(
  get: (name: string) => string | undefined = (n) => Deno.env.get(n),
): string[] {
  const out: string[] = [];
  const add = (v: string | undefined) => {
    const t = v?.trim();
    if (t && !out.includes(t)) out.push(t);
  };
  add(get("SUPABASE_SERVICE_ROLE_KEY"));
  const secretKeys = get("SUPABASE_SECRET_KEYS");
  if (secretKeys) {
    try {
      const parsed = JSON.parse(secretKeys);
      if (parsed && typeof parsed === "object") {
        for (const v of Object.values(parsed)) if (typeof v === "string") add(v);
      }
    } catch {
      // Not JSON: not a list of keys we can use.
    }
  }
  add(get("DASHBOARD_SECRET"));
  return out;
}

let compareKey: Promise<CryptoKey> | undefined;

async function hmac(key: CryptoKey, text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(text)));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.min(a.length, b.length); i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Constant-time string equality (see the module comment). */
export async function safeEqual(a: string, b: string): Promise<boolean> {
  compareKey ??= crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]) as Promise<CryptoKey>;
  const key = await compareKey;
  const [x, y] = await Promise.all([hmac(key, a), hmac(key, b)]);
  return sameBytes(x, y);
}

/** The credential `presented` matches, or null. Every credential is compared. */
export async function matchCredential(
  presented: string,
  credentials: readonly string[],
): Promise<string | null> {
  let found: string | null = null;
  for (const c of credentials) {
    if (await safeEqual(presented, c)) found ??= c;
  }
  return found;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sessionMac(credential: string, expiry: number): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(credential),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return hex(await hmac(key, `conveyor-dashboard-session:${expiry}`));
}

/** A session token for `credential`, valid until `nowSec + ttlSec`. */
export async function issueSession(
  credential: string,
  nowSec = Math.floor(Date.now() / 1000),
  ttlSec = SESSION_TTL_SEC,
): Promise<string> {
  const expiry = nowSec + ttlSec;
  return `v1.${expiry}.${await sessionMac(credential, expiry)}`;
}

/** True if `token` is an unexpired session opened with one of `credentials`. */
export async function verifySession(
  token: string,
  credentials: readonly string[],
  nowSec = Math.floor(Date.now() / 1000),
): Promise<boolean> {
  const m = /^v1\.(\d{1,12})\.([0-9a-f]{64})$/.exec(token);
  if (!m) return false;
  const expiry = Number(m[1]);
  if (!(expiry > nowSec)) return false;
  let ok = false;
  for (const c of credentials) {
    if (await safeEqual(m[2]!, await sessionMac(c, expiry))) ok = true;
  }
  return ok;
}

/** Reads one cookie from a Cookie header. */
export function readCookie(header: string | null, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

/** How a request proved it may read: or why not. */
export type AuthResult =
  | { ok: true; via: "bearer" | "cookie" }
  | { ok: true; via: "query"; credential: string }
  | { ok: false; reason: string };

/** Checks a request against the credentials (see the module comment for the three ways). */
export async function authorize(
  req: Request,
  credentials: readonly string[],
  opts: { cookie?: boolean } = {},
): Promise<AuthResult> {
  if (credentials.length === 0) {
    return {
      ok: false,
      reason: "the function has no credential to compare with (SUPABASE_SERVICE_ROLE_KEY unset)",
    };
  }
  const auth = req.headers.get("authorization");
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m && await matchCredential(m[1]!, credentials)) return { ok: true, via: "bearer" };
    // An anon key or a user's JWT in the header is not a reason to look further.
    if (m) return { ok: false, reason: "the bearer token is not the service-role key" };
  }
  const key = new URL(req.url).searchParams.get("key");
  if (key !== null) {
    const credential = await matchCredential(key, credentials);
    if (credential) return { ok: true, via: "query", credential };
    return { ok: false, reason: "?key= is not the service-role key" };
  }
  if (opts.cookie) {
    const token = readCookie(req.headers.get("cookie"), SESSION_COOKIE);
    if (token && await verifySession(token, credentials)) return { ok: true, via: "cookie" };
    if (token) return { ok: false, reason: "the dashboard session expired" };
  }
  return { ok: false, reason: "no credential: send Authorization: Bearer <service role key>" };
}
