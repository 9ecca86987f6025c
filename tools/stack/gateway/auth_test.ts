import { assertEquals } from "../../test/assert.ts";
import { JWT_SECRET, PUBLISHABLE_KEY, SECRET_KEY, serviceRoleKey, signJwt } from "../keys.ts";
import { Authenticator } from "./auth.ts";
import { ApiError } from "./errors.ts";

const url = new URL("http://127.0.0.1/rest/v1/t");
const auth = new Authenticator(JWT_SECRET);

async function failure(headers: Record<string, string>, u = url): Promise<ApiError> {
  try {
    await auth.authenticate(new Headers(headers), u);
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error("expected a 401");
}

Deno.test("no credentials at all: hosted Kong's 401 body", async () => {
  const e = await failure({});
  assertEquals(e.status, 401);
  assertEquals(e.body, {
    message: "No API key found in request",
    hint: "No `apikey` request header or url param was found.",
  });
});

Deno.test("unknown apikey: 401 Invalid API key", async () => {
  const e = await failure({ apikey: "not-a-key" });
  assertEquals(e.body, {
    message: "Invalid API key",
    hint: "Double check your Supabase `anon` or `service_role` API key.",
  });
});

Deno.test("opaque keys map to anon and service_role (header, Bearer or ?apikey=)", async () => {
  const h = (o: Record<string, string>) => auth.authenticate(new Headers(o), url);
  assertEquals((await h({ apikey: PUBLISHABLE_KEY })).role, "anon");
  assertEquals((await h({ apikey: SECRET_KEY })).role, "service_role");
  // Kong replaces `Bearer sb_…` from the apikey: the apikey decides.
  assertEquals(
    (await h({ apikey: PUBLISHABLE_KEY, authorization: `Bearer ${SECRET_KEY}` })).role,
    "anon",
  );
  assertEquals((await h({ authorization: `Bearer ${SECRET_KEY}` })).role, "service_role");
  const q = new URL(`${url}?apikey=${SECRET_KEY}`);
  assertEquals((await auth.authenticate(new Headers(), q)).role, "service_role");
});

Deno.test("Authorization wins over apikey; claims carry role; no role claim means anon", async () => {
  const user = await signJwt({ sub: "u1", role: "authenticated", exp: 4102444800 });
  const r = await auth.authenticate(
    new Headers({ apikey: PUBLISHABLE_KEY, authorization: `bearer ${user}` }),
    url,
  );
  assertEquals(r.role, "authenticated");
  assertEquals(r.claims.sub, "u1");
  const noRole = await signJwt({ sub: "u2", exp: 4102444800 });
  const r2 = await auth.authenticate(new Headers({ authorization: `Bearer ${noRole}` }), url);
  assertEquals([r2.role, r2.claims.role], ["anon", "anon"]);
  const r3 = await auth.authenticate(new Headers({ apikey: await serviceRoleKey() }), url);
  assertEquals(r3.role, "service_role");
});

Deno.test("bad signature, expiry and empty bearer are 401 PGRST301/PGRST303", async () => {
  const expired = await signJwt({ role: "anon", exp: Math.floor(Date.now() / 1000) - 100 });
  const e1 = await failure({ apikey: PUBLISHABLE_KEY, authorization: `Bearer ${expired}` });
  assertEquals(e1.body, { code: "PGRST303", details: null, hint: null, message: "JWT expired" });
  assertEquals(
    e1.headers["WWW-Authenticate"],
    'Bearer error="invalid_token", error_description="JWT expired"',
  );
  const forged = await signJwt(
    { role: "service_role" },
    "another-secret-another-secret-0123456789",
  );
  const e2 = await failure({ apikey: PUBLISHABLE_KEY, authorization: `Bearer ${forged}` });
  assertEquals([e2.status, e2.code, e2.message], [401, "PGRST301", "JWSError JWSInvalidSignature"]);
  const e3 = await failure({ apikey: PUBLISHABLE_KEY, authorization: "Bearer " });
  assertEquals([e3.code, e3.message], ["PGRST301", "Empty JWT is sent in Authorization header"]);
});
