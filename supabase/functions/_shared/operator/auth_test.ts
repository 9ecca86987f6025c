import { assert, assertEquals } from "../../../../tools/test/assert.ts";
import {
  authorize,
  credentialsFromEnv,
  issueSession,
  readCookie,
  safeEqual,
  SESSION_COOKIE,
  verifySession,
} from "./auth.ts";

const SERVICE = "service-role-jwt";
const creds = [SERVICE, "dash-secret"];
const req = (path: string, headers: Record<string, string> = {}) =>
  new Request(`http://fn.local/conveyor-dashboard${path}`, { headers });

Deno.test("safeEqual() compares whole strings, whatever their lengths", async () => {
  assert(await safeEqual("abc", "abc"));
  assert(!(await safeEqual("abc", "abd")));
  assert(!(await safeEqual("abc", "abcd")));
  assert(!(await safeEqual("", "a")));
});

Deno.test("credentialsFromEnv() reads the service key, the new secret keys and DASHBOARD_SECRET", () => {
  const env: Record<string, string> = {
    SUPABASE_SERVICE_ROLE_KEY: "jwt",
    SUPABASE_SECRET_KEYS: '{"default":"sb_secret_1","ops":"sb_secret_2"}',
    DASHBOARD_SECRET: " shared ",
  };
  assertEquals(credentialsFromEnv((n) => env[n]), ["jwt", "sb_secret_1", "sb_secret_2", "shared"]);
  assertEquals(credentialsFromEnv(() => undefined), []);
  assertEquals(
    credentialsFromEnv((n) => (n === "SUPABASE_SECRET_KEYS" ? "not json" : undefined)),
    [],
  );
});

Deno.test("authorize() accepts the service key or DASHBOARD_SECRET as a bearer token", async () => {
  assertEquals(await authorize(req("", { authorization: `Bearer ${SERVICE}` }), creds), {
    ok: true,
    via: "bearer",
  });
  assertEquals(await authorize(req("", { authorization: "bearer dash-secret" }), creds), {
    ok: true,
    via: "bearer",
  });
});

Deno.test("authorize() refuses an anon key, a wrong ?key= and nothing at all", async () => {
  for (
    const r of [
      req("", { authorization: "Bearer anon-jwt" }),
      req("?key=anon-jwt"),
      req(""),
      req("", { authorization: "Basic abc" }),
    ]
  ) {
    assertEquals((await authorize(r, creds)).ok, false);
  }
  assertEquals(
    (await authorize(req(`?key=${SERVICE}`), [])).ok,
    false,
    "no credentials configured",
  );
});

Deno.test("authorize() takes ?key= and reports the credential, so a session can be opened", async () => {
  assertEquals(await authorize(req(`?key=${SERVICE}`), creds), {
    ok: true,
    via: "query",
    credential: SERVICE,
  });
});

Deno.test("sessions: valid until expiry, bound to the credential, tamper-proof", async () => {
  const now = 1_000_000;
  const token = await issueSession(SERVICE, now, 60);
  assert(await verifySession(token, creds, now + 59));
  assert(!(await verifySession(token, creds, now + 60)), "expired");
  assert(!(await verifySession(token, ["rotated-key"], now)), "key rotated");
  const [v, exp, mac] = token.split(".");
  assert(!(await verifySession(`${v}.${Number(exp) + 1000}.${mac}`, creds, now)), "expiry changed");
  assert(!(await verifySession("garbage", creds, now)));
});

Deno.test("authorize() accepts the session cookie only where cookies are allowed", async () => {
  const token = await issueSession(SERVICE);
  const r = () => req("", { cookie: `other=1; ${SESSION_COOKIE}=${token}` });
  assertEquals(readCookie(`a=1; ${SESSION_COOKIE}=${token}`, SESSION_COOKIE), token);
  assertEquals(await authorize(r(), creds, { cookie: true }), { ok: true, via: "cookie" });
  assertEquals((await authorize(r(), creds)).ok, false, "metrics take no cookie");
});
