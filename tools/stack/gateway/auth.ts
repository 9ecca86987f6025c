/**
 * Who a `/rest/v1` request runs as: hosted Kong's apikey check and Authorization rewrite,
 * then PostgREST's JWT rules (reference/postgrest.md §2, §6).
 *
 * Decisions (documented in docs and the gateway's report):
 * - **No credentials at all** (no `apikey` header, no `?apikey=`, no `Authorization`):
 *   401 with hosted Kong's body ``{"message":"No API key found in request","hint":"No `apikey`
 *   request header or url param was found."}``. This is stricter than the CLI's local Kong,
 *   which runs such a request as anon; we behave like a hosted project.
 * - **An `apikey` that is not one of the project's keys** (the opaque publishable/secret keys
 *   or a JWT signed with the project secret): 401 "Invalid API key", as hosted Kong.
 * - **`Authorization` without `apikey`** is accepted: the bearer token alone decides the
 *   role (hosted Kong would ask for the apikey; the token is verified either way).
 * - **`apikey` JWT without `Authorization`**: the apikey is used as the bearer token.
 * - `Authorization: Bearer sb_…` is replaced, as Kong does: the secret key becomes the
 *   service_role demo token, the publishable key the anon one.
 *
 * @module
 */
import { type JWTPayload } from "jose";
import { DEMO_EXP, JwtError, PUBLISHABLE_KEY, SECRET_KEY, verifyJwt } from "../keys.ts";
import { ApiError, pgrstError } from "./errors.ts";

/** The role a request runs as and the claims that go to `request.jwt.claims`. */
export interface AuthResult {
  role: string;
  /** The verified JWT claims with `role` set. */
  claims: Record<string, unknown>;
}

/** PostgREST's `db-anon-role` on Supabase. */
export const ANON_ROLE = "anon";

const NO_KEY = new ApiError(401, {
  message: "No API key found in request",
  hint: "No `apikey` request header or url param was found.",
});
const BAD_KEY = new ApiError(401, {
  message: "Invalid API key",
  hint: "Double check your Supabase `anon` or `service_role` API key.",
});

function jwtFailure(code: string, message: string): ApiError {
  return pgrstError(401, code, message, null, null, {
    "WWW-Authenticate": `Bearer error="invalid_token", error_description="${
      message.replace(/["\\\r\n]/g, " ")
    }"`,
  });
}

const MAX_CACHE = 2000;

/** Resolves credentials to a role; verified tokens are cached until they expire. */
export class Authenticator {
  readonly #secret: string;
  readonly #cache = new Map<string, JWTPayload>();
  readonly #anonClaims: Record<string, unknown>;
  readonly #serviceClaims: Record<string, unknown>;

  constructor(jwtSecret: string) {
    this.#secret = jwtSecret;
    this.#anonClaims = { iss: "supabase-demo", role: "anon", exp: DEMO_EXP };
    this.#serviceClaims = { iss: "supabase-demo", role: "service_role", exp: DEMO_EXP };
  }

  /** The role and claims for a request. Throws {@link ApiError} (401). */
  async authenticate(headers: Headers, url: URL): Promise<AuthResult> {
    const apikey = headers.get("apikey") ?? url.searchParams.get("apikey");
    const authorization = headers.get("authorization");
    if (!apikey && !authorization) throw NO_KEY;

    if (apikey) await this.#checkApiKey(apikey);

    // Kong's rewrite: keep Authorization unless it is `Bearer sb_…`.
    let bearer: string | null | undefined;
    if (authorization && !/^bearer\s+sb_/i.test(authorization)) {
      const m = /^bearer(?:\s+(.*))?$/is.exec(authorization.trim());
      bearer = m ? (m[1] ?? "").trim() : null; // another scheme: no token, as PostgREST
    } else {
      const key = apikey ??
        (authorization ? authorization.trim().replace(/^bearer\s+/i, "") : "");
      if (key === SECRET_KEY) return this.#result(this.#serviceClaims);
      if (key === PUBLISHABLE_KEY) return this.#result(this.#anonClaims);
      if (key.startsWith("sb_")) throw BAD_KEY;
      bearer = key;
    }
    if (bearer === null) return this.#result({});
    if (bearer === "") {
      throw jwtFailure("PGRST301", "Empty JWT is sent in Authorization header");
    }
    return this.#result(await this.#verify(bearer));
  }

  async #checkApiKey(apikey: string): Promise<void> {
    if (apikey === PUBLISHABLE_KEY || apikey === SECRET_KEY) return;
    try {
      await this.#verify(apikey);
    } catch {
      throw BAD_KEY;
    }
  }

  #result(claims: Record<string, unknown>): AuthResult {
    const role = typeof claims.role === "string" && claims.role !== "" ? claims.role : ANON_ROLE;
    return { role, claims: { ...claims, role } };
  }

  /** Verifies `token` (cached). Throws {@link ApiError} 401 PGRST301/PGRST303. */
  async #verify(token: string): Promise<Record<string, unknown>> {
    const cached = this.#cache.get(token);
    const now = Date.now() / 1000;
    if (cached && (cached.exp === undefined || cached.exp + 30 > now)) return cached;
    if (cached) this.#cache.delete(token);
    let payload: JWTPayload;
    try {
      payload = await verifyJwt(token, this.#secret);
    } catch (e) {
      if (e instanceof JwtError) {
        throw jwtFailure(e.kind === "expired" ? "PGRST303" : "PGRST301", e.message);
      }
      throw jwtFailure("PGRST301", e instanceof Error ? e.message : String(e));
    }
    if (this.#cache.size >= MAX_CACHE) this.#cache.clear();
    this.#cache.set(token, payload);
    return payload;
  }
}
