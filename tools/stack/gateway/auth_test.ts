import { assertEquals } from "../../test/assert.ts";
import {
  anonKey,
  JWT_SECRET,
  PUBLISHABLE_KEY,
  SECRET_KEY,
  serviceRoleKey,
  signJwt,
} from "../keys.ts";
import { KongAuth } from "./auth.ts";

const url = new URL("http://127.0.0.1/rest/v1/t");
const auth = new KongAuth(JWT_SECRET);
const forward = (headers: Record<string, string>, u = url) =>
  auth.authorization(new Headers(headers), u);

async function refusal(headers: Record<string, string>): Promise<[number, unknown]> {
  const r = await forward(headers);
  if (!(r instanceof Response)) throw new Error(`expected a 401, got ${r}`);
  return [r.status, await r.json()];
}

Deno.test("KongAuth: no credentials at all is hosted Kong's 401", async () => {
  assertEquals(await refusal({}), [401, {
    message: "No API key found in request",
    hint: "No `apikey` request header or url param was found.",
  }]);
});

Deno.test("KongAuth: an apikey that is not a project key is 401 Invalid API key", async () => {
  const invalid = [401, {
    message: "Invalid API key",
    hint: "Double check your Supabase `anon` or `service_role` API key.",
  }];
  assertEquals(await refusal({ apikey: "not-a-key" }), invalid);
  assertEquals(await refusal({ apikey: "sb_secret_guessed" }), invalid);
  const forged = await signJwt(
    { role: "service_role" },
    "another-secret-another-secret-0123456789",
  );
  assertEquals(await refusal({ apikey: forged }), invalid);
});

Deno.test("KongAuth: opaque keys become the anon and service_role tokens", async () => {
  assertEquals(await forward({ apikey: PUBLISHABLE_KEY }), `Bearer ${await anonKey()}`);
  assertEquals(await forward({ apikey: SECRET_KEY }), `Bearer ${await serviceRoleKey()}`);
  // `Bearer sb_…` is replaced from the apikey: the apikey decides.
  assertEquals(
    await forward({ apikey: PUBLISHABLE_KEY, authorization: `Bearer ${SECRET_KEY}` }),
    `Bearer ${await anonKey()}`,
  );
  assertEquals(
    await forward({ authorization: `Bearer ${SECRET_KEY}` }),
    `Bearer ${await serviceRoleKey()}`,
  );
  assertEquals(
    await forward({}, new URL(`${url}?apikey=${SECRET_KEY}`)),
    `Bearer ${await serviceRoleKey()}`,
  );
});

Deno.test("KongAuth: Authorization is passed on as sent; an apikey JWT alone is the bearer", async () => {
  const user = await signJwt({ sub: "u1", role: "authenticated", exp: 4102444800 });
  assertEquals(
    await forward({ apikey: PUBLISHABLE_KEY, authorization: `bearer ${user}` }),
    `bearer ${user}`,
  );
  // Without apikey the token alone decides (PostgREST verifies it, bad or not).
  assertEquals(await forward({ authorization: "Bearer garbage" }), "Bearer garbage");
  const service = await serviceRoleKey();
  assertEquals(await forward({ apikey: service }), `Bearer ${service}`);
});
