/**
 * What Kong does with the credentials of a `/rest/v1` request before PostgREST sees it
 * (reference/postgrest.md §6; the CLI's `kong.yml` and its `BearerToken` rewrite): the
 * `apikey` check, then the `Authorization` header PostgREST gets. PostgREST itself verifies
 * the token and picks the role.
 *
 * Decisions (documented in the gateway's README):
 * - **No credentials at all** (no `apikey` header, no `?apikey=`, no `Authorization`):
 *   401 with hosted Kong's body ``{"message":"No API key found in request","hint":"No `apikey`
 *   request header or url param was found."}``. Stricter than the CLI's local Kong, which
 *   runs such a request as anon: we behave like a hosted project.
 * - **An `apikey` that is not one of the project's keys** (the opaque publishable/secret keys
 *   or a JWT signed with the project secret): 401 "Invalid API key", as hosted Kong.
 * - **`Authorization` without `apikey`** is passed on: the token alone decides the role
 *   (hosted Kong would ask for the apikey; PostgREST verifies the token either way).
 * - Kong's rewrite: `Authorization` is kept unless it is absent or `Bearer sb_…`; then the
 *   secret key becomes the service_role token, the publishable key the anon token, and an
 *   apikey JWT the bearer token itself.
 *
 * @module
 */
import { anonKey, PUBLISHABLE_KEY, SECRET_KEY, serviceRoleKey, verifyJwt } from "../keys.ts";

/** Kong's 401 bodies have no `code`. */
function unauthorized(message: string, hint: string): Response {
  return new Response(JSON.stringify({ message, hint }), {
    status: 401,
    headers: { "Content-Type": "application/json; charset=utf-8" },
  });
}

const MAX_CACHE = 1000;

/** Checks `apikey` and computes the Authorization header to forward, caching verified keys. */
export class KongAuth {
  readonly #secret: string;
  readonly #verified = new Map<string, number>();
  #tokens: Promise<{ anon: string; service: string }> | undefined;

  constructor(jwtSecret: string) {
    this.#secret = jwtSecret;
  }

  /**
   * The `Authorization` value to send to PostgREST (null: none, the request runs as anon),
   * or the 401 response Kong would give.
   */
  async authorization(headers: Headers, url: URL): Promise<string | null | Response> {
    const apikey = headers.get("apikey") ?? url.searchParams.get("apikey");
    const authorization = headers.get("authorization");
    if (!apikey && !authorization) {
      return unauthorized(
        "No API key found in request",
        "No `apikey` request header or url param was found.",
      );
    }
    if (apikey && !(await this.#projectKey(apikey))) return this.#invalid();
    if (authorization && !/^bearer\s+sb_/i.test(authorization)) return authorization;
    const key = apikey ?? authorization!.trim().replace(/^bearer\s+/i, "");
    this.#tokens ??= Promise.all([anonKey(this.#secret), serviceRoleKey(this.#secret)])
      .then(([anon, service]) => ({ anon, service }));
    if (key === SECRET_KEY) return `Bearer ${(await this.#tokens).service}`;
    if (key === PUBLISHABLE_KEY) return `Bearer ${(await this.#tokens).anon}`;
    if (key.startsWith("sb_")) return this.#invalid();
    return `Bearer ${key}`;
  }

  #invalid(): Response {
    return unauthorized(
      "Invalid API key",
      "Double check your Supabase `anon` or `service_role` API key.",
    );
  }

  /** Is `key` one of the project's keys? Verified JWTs are remembered until they expire. */
  async #projectKey(key: string): Promise<boolean> {
    if (key === PUBLISHABLE_KEY || key === SECRET_KEY) return true;
    const exp = this.#verified.get(key);
    if (exp !== undefined && exp > Date.now() / 1000) return true;
    try {
      const claims = await verifyJwt(key, this.#secret);
      if (this.#verified.size >= MAX_CACHE) this.#verified.clear();
      this.#verified.set(key, claims.exp ?? Infinity);
      return true;
    } catch {
      return false;
    }
  }
}
