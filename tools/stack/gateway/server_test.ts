/**
 * The gateway's HTTP edge in front of the real PostgREST: routing, CORS, /health, the
 * access log, the functions route, and a property test that no client input produces a 5xx
 * or a dropped connection.
 */
import fc from "fast-check";
import { assert, assertEquals, assertMatch } from "../../test/assert.ts";
import { PUBLISHABLE_KEY, SECRET_KEY } from "../keys.ts";
import { admin, DB_URL, raw, testGateway, uniquePrefix } from "./test_support.ts";

const P = uniquePrefix("s");

Deno.test({
  name: "gateway HTTP edge",
  ignore: !DB_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const db = admin(DB_URL!);
    await db.unsafe(`
      create table public.${P}_t (id int primary key, name text);
      create function public.${P}_echo(v text) returns text language sql immutable as $$ select v $$;
      create function public.${P}_j(jsonb) returns jsonb language sql immutable as $$ select $1 $$;
      create function public.${P}_hdr() returns json language plpgsql as $$
      begin
        perform set_config('response.headers',
          '[{"Set-Cookie":"a=1"},{"Set-Cookie":"b=2"},{"X-Thing":"v"}]', true);
        return current_setting('request.headers', true)::json;
      end $$;
    `);
    await using g = await testGateway(DB_URL!, { accessLog: true });
    try {
      await t.step("CORS preflight is answered at the gateway", async () => {
        const r = await raw(`${g.rest}/rpc/${P}_echo`, {
          method: "OPTIONS",
          headers: {
            Origin: "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "apikey, content-type, x-custom-thing",
          },
        });
        assertEquals(r.status, 200);
        assertEquals(r.headers.get("access-control-allow-origin"), "*");
        assertEquals(
          r.headers.get("access-control-allow-headers"),
          "authorization, x-client-info, apikey, content-type, prefer, accept-profile, content-profile, range, x-custom-thing",
        );
        assertMatch(r.headers.get("access-control-allow-methods")!, /POST/);
        const f = await raw(`${g.url}/functions/v1/anything`, {
          method: "OPTIONS",
          headers: { "Access-Control-Request-Method": "POST" },
        });
        assertEquals([f.status, f.headers.get("access-control-allow-origin")], [200, "*"]);
      });

      await t.step("CORS headers on successes and errors, Content-Range exposed", async () => {
        const ok = await raw(`${g.rest}/rpc/${P}_echo?v=hi`, { headers: { apikey: SECRET_KEY } });
        assertEquals([ok.status, ok.text], [200, '"hi"']);
        assertEquals(ok.headers.get("access-control-allow-origin"), "*");
        assertMatch(ok.headers.get("access-control-expose-headers")!, /Content-Range/);
        const err = await raw(`${g.rest}/rpc/${P}_echo?v=hi`);
        assertEquals([err.status, err.headers.get("access-control-allow-origin")], [401, "*"]);
      });

      await t.step(
        "headers both ways: forwarded as Kong does, Set-Cookie values kept apart",
        async () => {
          const r = await raw(`${g.rest}/rpc/${P}_hdr?apikey=${SECRET_KEY}`, {
            headers: { "x-client-info": "t/1", "accept-encoding": "gzip" },
          });
          assertEquals(r.status, 200);
          assertEquals(r.headers.getSetCookie(), ["a=1", "b=2"]);
          assertEquals(r.headers.get("x-thing"), "v");
          const seen = r.json as Record<string, string>;
          assertEquals(seen["x-client-info"], "t/1");
          assertEquals(seen["accept-encoding"], "identity");
          assertEquals(seen["x-forwarded-proto"], "http");
          assertEquals(seen["x-forwarded-host"], new URL(g.url).host);
          assertMatch(seen["authorization"]!, /^Bearer ey/);
          assert(!("apikey" in seen));
        },
      );

      await t.step("/health reports the database", async () => {
        const r = await raw(`${g.url}/health`);
        assertEquals([r.status, r.json], [200, { status: "ok", db: true }]);
        assertEquals(r.headers.get("content-type"), "application/json; charset=utf-8");
      });

      await t.step(
        "unknown routes: Kong's 404; /rest/v1/* is PostgREST's whatever it is",
        async () => {
          const r = await raw(`${g.url}/nope`, { method: "POST", body: "x" });
          assertEquals([r.status, r.json], [404, {
            message: "no Route matched with those values",
          }]);
          const p = await raw(`${g.rest}/rpc/a/b`, { headers: { apikey: SECRET_KEY } });
          assertEquals([p.status, p.headers.get("server")], [404, "postgrest/12.0.2"]);
        },
      );

      await t.step("/functions/v1/<slug> goes to the functions host", async () => {
        const r = await raw(`${g.url}/functions/v1/does-not-exist/sub?x=1`, { method: "POST" });
        assertEquals([r.status, r.json], [404, {
          code: "NOT_FOUND",
          message: "Function not found",
        }]);
        assertEquals(r.headers.get("access-control-allow-origin"), "*");
      });

      await t.step("/rest/v1/ lists what is exposed", async () => {
        const r = await raw(`${g.rest}/`, { headers: { apikey: SECRET_KEY } });
        assertEquals(r.status, 200);
        const paths = (r.json as { paths: Record<string, unknown> }).paths;
        assert(`/${P}_t` in paths);
        assert(`/rpc/${P}_echo` in paths);
      });

      await t.step(
        "one access-log line per request when asked: METHOD path status ms",
        async () => {
          g.logs.length = 0;
          await raw(`${g.rest}/${P}_t?select=id&apikey=${SECRET_KEY}`);
          const lines = g.logs.filter((l) => l.startsWith("GET /rest/v1/"));
          assertEquals(lines.length, 1);
          assertMatch(lines[0]!, new RegExp(`^GET /rest/v1/${P}_t 200 \\d+ms$`));
        },
      );

      await t.step("no client input causes a 5xx (property test)", async () => {
        const methods = ["GET", "POST", "PATCH", "DELETE", "HEAD", "PUT"];
        const paths = [`/rest/v1/${P}_t`, `/rest/v1/rpc/${P}_echo`, `/rest/v1/rpc/${P}_j`];
        const piece = fc.oneof(
          fc.string({ maxLength: 20 }),
          fc.constantFrom(
            "eq.1",
            "in.(1,2",
            "not.",
            "or",
            "(a.eq.1",
            "id",
            "*",
            "name->>x",
            "::text",
            '"',
            "\\",
            "%00",
            "like(any).{",
            "is.maybe",
            "select",
            "order",
            "limit",
            "-1",
            "99999999999999999999",
          ),
        );
        const query = fc.array(fc.tuple(piece, piece), { maxLength: 4 });
        const body = fc.oneof(
          fc.string({ maxLength: 40 }),
          fc.json(),
          fc.constantFrom("", "{", "[]", "[1,2]", '{"v":', "null", '{"v":"\\u0000"}'),
        );
        const ctype = fc.constantFrom(
          "application/json",
          "text/plain",
          "application/octet-stream",
          "application/x-www-form-urlencoded",
          "text/xml",
          "weird/type",
        );
        const accept = fc.constantFrom(
          "*/*",
          "application/vnd.pgrst.object+json",
          "text/csv",
          "application/json;q=0",
        );
        const prefer = fc.constantFrom(
          "",
          "return=representation",
          "count=exact",
          "handling=strict, bogus",
          "resolution=merge-duplicates",
          "missing=default, return=representation",
        );
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...methods),
            fc.constantFrom(...paths),
            query,
            body,
            ctype,
            accept,
            prefer,
            async (method, path, q, b, ct, acc, pref) => {
              const qs = new URLSearchParams(q).toString();
              const headers: Record<string, string> = {
                apikey: SECRET_KEY,
                "Content-Type": ct,
                Accept: acc,
              };
              if (pref) headers.Prefer = pref;
              const hasBody = method !== "GET" && method !== "HEAD";
              const r = await raw(`${g.url}${path}?${qs}`, {
                method,
                headers,
                body: hasBody ? b : undefined,
              });
              if (r.status >= 500) {
                throw new Error(`${method} ${path}?${qs} body=${b} → ${r.status} ${r.text}`);
              }
              if (r.status >= 400 && method !== "HEAD") {
                const e = r.json as Record<string, unknown>;
                assert(typeof e === "object" && e !== null && "message" in e, r.text);
              }
            },
          ),
          { numRuns: 300 },
        );
      });

      await t.step("hostile requests: huge query string, many parameters, no 5xx", async () => {
        const list = Array.from({ length: 8000 }, (_, i) => i).join(",");
        const r = await raw(`${g.rest}/${P}_t?id=in.(${list})`, {
          headers: { apikey: SECRET_KEY },
        });
        assertEquals([r.status, r.text], [200, "[]"]);
        const filters = Array.from({ length: 3000 }, (_, i) => `id=neq.${i}`).join("&");
        const f = await raw(`${g.rest}/${P}_t?${filters}`, { headers: { apikey: SECRET_KEY } });
        assertEquals([f.status, f.text], [200, "[]"]);
        const nested = await raw(`${g.rest}/${P}_t?or=${"(or".repeat(60)}`, {
          headers: { apikey: SECRET_KEY },
        });
        assertEquals(nested.status, 400);
        const anon = await raw(`${g.rest}/${P}_t?select=id`, {
          headers: { apikey: PUBLISHABLE_KEY },
        });
        assertEquals(anon.status, 200);
      });
    } finally {
      await db.unsafe(`
        drop table if exists public.${P}_t;
        drop function if exists public.${P}_echo(text);
        drop function if exists public.${P}_j(jsonb);
        drop function if exists public.${P}_hdr();
      `).catch(() => {});
      await db.end();
    }
  },
});

Deno.test({
  name: "gateway: no access-log line per request by default; PostgREST away is a 503",
  ignore: !DB_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using g = await testGateway(DB_URL!);
    const ok = await raw(`${g.rest}/`, { headers: { apikey: SECRET_KEY } });
    assertEquals(ok.status, 200);
    assertEquals(g.logs, []);
    // PostgREST stopped (its supervisor restarts it): the gateway answers 503, Kong's wording.
    await g.postgrest[Symbol.asyncDispose]();
    const down = await raw(`${g.rest}/`, { headers: { apikey: SECRET_KEY } });
    assertEquals([down.status, down.json], [503, {
      message: "The upstream server is currently unavailable",
    }]);
    assertEquals(down.headers.get("access-control-allow-origin"), "*");
    const health = await raw(`${g.url}/health`);
    assertEquals([health.status, health.json], [200, { status: "ok", db: false }]);
  },
});

Deno.test({
  name:
    "DDL reloads PostgREST's schema cache by itself (hosted's event triggers): no NOTIFY needed",
  ignore: !DB_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // As postgres, not a superuser: the superuser's event triggers fire for every role.
    const db = admin(DB_URL!);
    const fn = `${uniquePrefix("d")}_probe`;
    try {
      await db.unsafe(`create function public.${fn}() returns int language sql as $$ select 42 $$`);
      const url = `${Deno.env.get("SUPABASE_URL")}/rest/v1/rpc/${fn}`;
      const deadline = Date.now() + 15_000;
      let r = await raw(url, { method: "POST", headers: { apikey: SECRET_KEY } });
      while (r.status !== 200 && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        r = await raw(url, { method: "POST", headers: { apikey: SECRET_KEY } });
      }
      assertEquals([r.status, r.text], [200, "42"]);
    } finally {
      await db.unsafe(`drop function if exists public.${fn}()`);
      await db.end();
    }
  },
});
