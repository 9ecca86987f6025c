/**
 * The local stack's JWT secret and API keys: the Supabase CLI's well-known local defaults,
 * so tools, docs and supabase-js work unchanged against `deno task start`.
 *
 * @module
 */
import { type JWTPayload, jwtVerify } from "jose";

/** The Supabase CLI's local HS256 secret. */
export const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";

/** Opaque local keys (new-style); the gateway maps them to the demo JWTs like local Kong. */
export const PUBLISHABLE_KEY = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH";
export const SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz";

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array | string): string {
  const raw = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let bin = "";
  for (const b of raw) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Signs `claims` with HS256. The header and claim order are kept as given, so the demo keys
 * come out byte-identical to the ones the Supabase CLI prints.
 */
export async function signJwt(
  claims: Record<string, unknown>,
  secret: string = JWT_SECRET,
): Promise<string> {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify(claims));
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = await crypto.subtle.sign("HMAC", key, encoder.encode(`${header}.${payload}`));
  return `${header}.${payload}.${base64url(new Uint8Array(sig))}`;
}

/** Expiry of the demo keys (2032-11-11), as in the Supabase CLI. */
export const DEMO_EXP = 1983812996;

/** The anon demo key for `secret`. */
export function anonKey(secret: string = JWT_SECRET): Promise<string> {
  return signJwt({ iss: "supabase-demo", role: "anon", exp: DEMO_EXP }, secret);
}

/** The service_role demo key for `secret`. */
export function serviceRoleKey(secret: string = JWT_SECRET): Promise<string> {
  return signJwt({ iss: "supabase-demo", role: "service_role", exp: DEMO_EXP }, secret);
}

/**
 * Verifies an HS256 token (signature, `exp`/`nbf` with 30 s of leeway as PostgREST allows)
 * and returns its claims; throws when it is not valid.
 */
export async function verifyJwt(
  token: string,
  secret: string = JWT_SECRET,
): Promise<JWTPayload> {
  const { payload } = await jwtVerify(token, encoder.encode(secret), {
    algorithms: ["HS256"],
    clockTolerance: 30,
  });
  return payload;
}
