/**
 * Tests of the local edge-functions host. No database: fixture functions live in
 * `testdata/functions/<slug>/index.ts`, their config in `testdata/config.toml`.
 */
import {
  FunctionsHost,
  type FunctionsHostOptions,
  type InvocationsLost,
  parseDotEnv,
} from "./functions_host.ts";
import { signJwt } from "../keys.ts";

const HERE = decodeURIComponent(new URL(".", import.meta.url).pathname).replace(/\/$/, "");
const FUNCTIONS_DIR = `${HERE}/testdata/functions`;
const CONFIG_PATH = `${HERE}/testdata/config.toml`;
const SECRET = "functions-host-test-secret-with-at-least-32-characters";
const PLATFORM_ENV = {
  SUPABASE_URL: "http://127.0.0.1:54321",
  SUPABASE_ANON_KEY: "anon-key-for-tests",
  SUPABASE_SERVICE_ROLE_KEY: "service-role-key-for-tests",
  SUPABASE_DB_URL: "postgresql://postgres:postgres@127.0.0.1:54322/postgres",
};

function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals(actual: unknown, expected: unknown, msg = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg ? msg + ": " : ""}expected ${e}, got ${a}`);
}

interface Harness {
  host: FunctionsHost;
  lines: string[];
}

async function withHost(
  fn: (h: Harness) => Promise<void>,
  extra: Partial<FunctionsHostOptions> = {},
): Promise<void> {
  const lines: string[] = [];
  const host = new FunctionsHost({
    functionsDir: FUNCTIONS_DIR,
    configPath: CONFIG_PATH,
    env: PLATFORM_ENV,
    jwtSecret: SECRET,
    log: (line) => lines.push(line),
    ...extra,
  });
  try {
    await fn({ host, lines });
  } finally {
    await host.close();
  }
}

/** Calls the host as the gateway does for `http://gw.test<path>`. */
function call(host: FunctionsHost, path: string, init?: RequestInit): Promise<Response> {
  const url = new URL(path, "http://gw.test");
  const m = /^\/functions\/v1\/([^/]*)(.*)$/.exec(url.pathname);
  assert(m, `not a functions path: ${path}`);
  return host.handle(new Request(url, init), m[1]!, m[2]!);
}

/** A minimal gateway (Deno.serve) in front of the host, for end-to-end streaming behaviour. */
async function withGateway(host: FunctionsHost, fn: (base: string) => Promise<void>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const m = /^\/functions\/v1\/([^/]*)(.*)$/.exec(new URL(req.url).pathname);
    if (!m) return new Response("no route", { status: 404 });
    return host.handle(req, m[1]!, m[2]!);
  });
  let ok = false;
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
    ok = true;
  } finally {
    const stopped = server.shutdown();
    // on failure a handler may still wait on a function: stopping the host unblocks it
    if (!ok) await host.close();
    await stopped;
  }
}

/** `promise`, or an error after `ms` (so a regression fails instead of hanging). */
async function orFail<T>(promise: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns a value other than undefined (bounded; not a timing test). */
async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  limitMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const anon = () => signJwt({ iss: "supabase-demo", role: "anon", exp: 1983812996 }, SECRET);

// ---------------------------------------------------------------------------------------------

Deno.test("parseDotEnv: KEY=VALUE, export, comments, quotes", () => {
  assertEquals(
    parseDotEnv(
      '# c\n\nA=1\nexport B = two # note\nC="x # y"\nD=\'lit\\n\'\nE="a\\nb"\nnot a line\nF=\n',
    ),
    { A: "1", B: "two", C: "x # y", D: "lit\\n", E: "a\nb", F: "" },
  );
});

Deno.test("serves index.ts unchanged: method, slug-prefixed path, query, headers, body, env", async () => {
  Deno.env.set("FUNCTIONS_HOST_TEST_LEAK", "host-only");
  try {
    await withHost(async ({ host }) => {
      const res = await call(host, "/functions/v1/echo/a/b?x=1&y=two", {
        method: "POST",
        headers: { ...bearer(await anon()), "content-type": "text/plain", "x-custom": "yes" },
        body: "payload",
      });
      assertEquals(res.status, 200);
      const got = await res.json();
      assertEquals(got.method, "POST");
      assertEquals(got.path, "/echo/a/b");
      assertEquals(got.search, "?x=1&y=two");
      assertEquals(got.body, "payload");
      assertEquals(got.headers["x-custom"], "yes");
      assertEquals(got.headers["content-type"], "text/plain");
      assert(String(got.headers["authorization"]).startsWith("Bearer ey"), "authorization kept");
      assertEquals(got.headers["x-forwarded-host"], "gw.test");
      assertEquals(got.env.SUPABASE_URL, PLATFORM_ENV.SUPABASE_URL, ".env may not override");
      assertEquals(got.env.GREETING, "hello from .env");
      assertEquals(got.env.PLAIN, "plain-value");
      assert(typeof got.env.SB_EXECUTION_ID === "string", "SB_EXECUTION_ID set");
      assertEquals(got.env.FUNCTIONS_HOST_TEST_LEAK, null, "host env not leaked");
      assertEquals(got.edgeRuntime, "object");
      assertEquals(got.cwd, HERE, "cwd = parent of functionsDir's parent");

      // bare slug: path is "/echo"; process stays warm
      const again = await call(host, "/functions/v1/echo", { headers: bearer(await anon()) });
      const second = await again.json();
      assertEquals(second.path, "/echo");
      assertEquals(second.method, "GET");
      assertEquals(second.pid, got.pid, "same warm process");

      // redirects are passed through, not followed
      const redir = await call(host, "/functions/v1/echo/redirect", {
        headers: bearer(await anon()),
      });
      assertEquals(redir.status, 302);
      assertEquals(redir.headers.get("location"), "/elsewhere");
      await redir.body?.cancel();
    });
  } finally {
    Deno.env.delete("FUNCTIONS_HOST_TEST_LEAK");
  }
});

Deno.test("verify_jwt on (default when omitted): exact 401 bodies, any valid token passes", async () => {
  await withHost(async ({ host, lines }) => {
    const cases: [HeadersInit, string][] = [
      [{}, "Missing authorization header"],
      [{ authorization: "Basic dXNlcjpwYXNz" }, "Auth header is not 'Bearer {token}'"],
      [{ authorization: "Bearer" }, "Auth header is not 'Bearer {token}'"],
      [bearer("not-a-jwt"), "Invalid JWT"],
      [
        bearer(
          await signJwt({ role: "anon", exp: 1983812996 }, "some-other-secret-32-chars-long!!"),
        ),
        "Invalid JWT",
      ],
      [
        bearer(await signJwt({ role: "anon", exp: Math.floor(Date.now() / 1000) - 3600 }, SECRET)),
        "Invalid JWT",
      ],
    ];
    for (const [headers, msg] of cases) {
      const res = await call(host, "/functions/v1/echo", { headers });
      assertEquals(res.status, 401, msg);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(await res.text(), JSON.stringify({ msg }));
    }
    assert(!lines.some((l) => l.includes("started")), "refused calls do not boot the function");

    for (const role of ["anon", "service_role", "authenticated", "whatever"]) {
      const token = await signJwt({ role, exp: 1983812996 }, SECRET);
      const res = await call(host, "/functions/v1/echo", { headers: bearer(token) });
      assertEquals(res.status, 200, role);
      await res.body?.cancel();
    }
  });
});

Deno.test("verify_jwt = false: no Authorization needed", async () => {
  await withHost(async ({ host }) => {
    const res = await call(host, "/functions/v1/crash/ok");
    assertEquals(res.status, 200);
    assert(typeof (await res.json()).pid === "number");
  });
});

Deno.test("OPTIONS preflight reaches the function without a token (verify_jwt skipped)", async () => {
  await withHost(async ({ host }) => {
    const res = await call(host, "/functions/v1/echo", {
      method: "OPTIONS",
      headers: { origin: "http://app.test", "access-control-request-method": "POST" },
    });
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("access-control-allow-origin"), "*");
    assertEquals(await res.text(), "ok");
  });
});

Deno.test("missing, invalid, _shared-style and disabled slugs → 404 NOT_FOUND", async () => {
  await withHost(async ({ host }) => {
    for (const slug of ["nope", "_shared", "1abc", "disabled", "a.b"]) {
      const res = await host.handle(
        new Request(`http://gw.test/functions/v1/${slug}`, { headers: bearer(await anon()) }),
        slug,
        "",
      );
      assertEquals(res.status, 404, slug);
      assertEquals(
        await res.text(),
        JSON.stringify({ code: "NOT_FOUND", message: "Function not found" }),
      );
    }
  });
});

Deno.test("process exits while handling → 500 WORKER_ERROR, next call gets a fresh process", async () => {
  await withHost(async ({ host, lines }) => {
    const first = await (await call(host, "/functions/v1/crash/ok")).json();
    const res = await call(host, "/functions/v1/crash/exit");
    assertEquals(res.status, 500);
    const body = await res.json();
    assertEquals(body.code, "WORKER_ERROR");
    assertEquals(body.message, "Function exited due to an error (please check logs)");
    assert(lines.some((l) => l.startsWith("[crash]") && l.includes("code 3")), lines.join("\n"));

    const after = await call(host, "/functions/v1/crash/ok");
    assertEquals(after.status, 200);
    const next = await after.json();
    assert(next.pid !== first.pid, "restarted");
  });
});

Deno.test("uncaught error kills the process → 500, recovery; its output is logged with [slug]", async () => {
  await withHost(async ({ host, lines }) => {
    const res = await call(host, "/functions/v1/crash/throw");
    assertEquals(res.status, 500);
    assertEquals((await res.json()).code, "WORKER_ERROR");
    assert(
      lines.some((l) => l.startsWith("[crash] ") && l.includes("boom from the crash fixture")),
      lines.join("\n"),
    );
    const after = await call(host, "/functions/v1/crash/ok");
    assertEquals(after.status, 200);
    await after.body?.cancel();
  });
});

Deno.test("an error thrown by the handler is the function's own 500; the process stays", async () => {
  await withHost(async ({ host }) => {
    const before = await (await call(host, "/functions/v1/crash/ok")).json();
    const res = await call(host, "/functions/v1/crash/handler");
    assertEquals(res.status, 500);
    await res.body?.cancel();
    const after = await (await call(host, "/functions/v1/crash/ok")).json();
    assertEquals(after.pid, before.pid);
  });
});

Deno.test("boot failure → 503 BOOT_ERROR and the stderr tail is logged", async () => {
  await withHost(async ({ host, lines }) => {
    const res = await call(host, "/functions/v1/bootfail");
    assertEquals(res.status, 503);
    assertEquals(
      await res.text(),
      JSON.stringify({
        code: "BOOT_ERROR",
        message: "Function failed to start (please check logs)",
      }),
    );
    const report = lines.find((l) => l.startsWith("[bootfail] BOOT_ERROR"));
    assert(report?.includes("bootfail fixture cannot start"), lines.join("\n"));
  });
});

Deno.test("EdgeRuntime.waitUntil work completes after the response; rejections are logged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fnhost-bg-" });
  try {
    await withHost(async ({ host, lines }) => {
      const marker = `${dir}/marker`;
      const res = await call(
        host,
        `/functions/v1/background/after?marker=${encodeURIComponent(marker)}`,
      );
      assertEquals(res.status, 202);
      assertEquals(await res.text(), "accepted");
      assert(!(await exists(marker)), "not written before the go signal");
      await Deno.writeTextFile(`${marker}.go`, "");
      const content = await eventually(
        "background marker",
        async () => (await exists(marker)) ? await Deno.readTextFile(marker) : undefined,
      );
      assertEquals(content, "done");

      const r1 = await (await call(host, "/functions/v1/background/reject")).json();
      await eventually(
        "rejection logged",
        () => lines.some((l) => l.includes("background task boom")) || undefined,
      );
      const r2 = await (await call(host, "/functions/v1/background")).json();
      assertEquals(r2.pid, r1.pid, "a rejected background task does not kill the process");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("close() dispatches beforeunload (reason termination) and drains waitUntil work", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fnhost-unload-" });
  try {
    const marker = `${dir}/reason`;
    await withHost(async ({ host }) => {
      const res = await call(
        host,
        `/functions/v1/background/arm?marker=${encodeURIComponent(marker)}`,
      );
      assertEquals(await res.text(), "armed");
    });
    // withHost closed the host: the listener's waitUntil work must have finished first
    assertEquals(await Deno.readTextFile(marker), "termination");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("streaming: SSE chunks arrive one by one through a Deno.serve gateway", async () => {
  await withHost(async ({ host }) => {
    await withGateway(host, async (base) => {
      const res = await orFail(fetch(`${base}/functions/v1/stream?n=3`), "response headers");
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/event-stream");
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      const seen: string[] = [];
      let buf = "";
      for (let i = 1; i <= 3; i++) {
        // chunk i+1 is only produced after this ack, so it can only pass if chunk i was
        // delivered on its own (a buffering proxy would hang here until the deadline)
        while (!buf.includes(`chunk ${i}\n\n`)) {
          const { done, value } = await orFail(reader.read(), `chunk ${i}`);
          assert(!done, `stream ended before chunk ${i}`);
          buf += value;
        }
        seen.push(`chunk ${i}`);
        if (i < 3) {
          const ack = await fetch(`${base}/functions/v1/stream/ack`);
          assertEquals(await ack.text(), "acked");
        }
      }
      assert((await reader.read()).done, "stream closed");
      assertEquals(seen, ["chunk 1", "chunk 2", "chunk 3"]);
    });
  });
});

Deno.test("a client that disconnects does not abort the function's call", async () => {
  await withHost(async ({ host }) => {
    await withGateway(host, async (base) => {
      const fn = `${base}/functions/v1/background`;
      const ctrl = new AbortController();
      const pending = fetch(`${fn}/slow?id=a`, { signal: ctrl.signal }).then(
        (r) => r.body?.cancel(),
        (e: unknown) => e,
      );
      await eventually("slow call started", async () => {
        const s = await (await fetch(`${fn}/status?id=a`)).json();
        return s.started ? true : undefined;
      });
      ctrl.abort();
      assert((await pending) instanceof Error, "client aborted");
      assertEquals(await (await fetch(`${fn}/release?id=a`)).text(), "released");
      const state = await eventually("slow call finished", async () => {
        const s = await (await fetch(`${fn}/status?id=a`)).json();
        return s.finished ? s : undefined;
      });
      assertEquals(state, { finished: true, aborted: false });
    });
  });
});

Deno.test("no response headers within requestTimeoutMs → 504 (function keeps running)", async () => {
  await withHost(async ({ host }) => {
    const res = await call(host, "/functions/v1/echo/sleep?ms=3000", {
      headers: bearer(await anon()),
    });
    assertEquals(res.status, 504);
    assertEquals(
      await res.text(),
      JSON.stringify({ message: "The upstream server is timing out" }),
    );
  }, { requestTimeoutMs: 200 });
});

Deno.test("file changes restart the function; config.toml is reloaded", async () => {
  const root = await Deno.makeTempDir({ prefix: "fnhost-watch-" });
  try {
    const functionsDir = `${root}/supabase/functions`;
    const configPath = `${root}/supabase/config.toml`;
    await Deno.mkdir(`${functionsDir}/hot`, { recursive: true });
    await Deno.mkdir(`${functionsDir}/_shared`, { recursive: true });
    const writeIndex = (version: string) =>
      Deno.writeTextFile(
        `${functionsDir}/hot/index.ts`,
        `import { suffix } from "../_shared/suffix.ts";\n` +
          `Deno.serve(() => new Response("${version}" + suffix));\n`,
      );
    const writeShared = (suffix: string) =>
      Deno.writeTextFile(
        `${functionsDir}/_shared/suffix.ts`,
        `export const suffix = "${suffix}";\n`,
      );
    const writeConfig = (block: string) =>
      Deno.writeTextFile(configPath, `[functions.hot]\n${block}\n`);
    await writeShared("-a");
    await writeIndex("v1");
    await writeConfig("verify_jwt = false");

    const lines: string[] = [];
    const host = new FunctionsHost({
      functionsDir,
      configPath,
      env: PLATFORM_ENV,
      jwtSecret: SECRET,
      log: (line) => lines.push(line),
    });
    try {
      const text = async () => {
        const res = await call(host, "/functions/v1/hot");
        return res.status === 200 ? await res.text() : `${res.status} ${await res.text()}`;
      };
      assertEquals(await text(), "v1-a");

      await writeIndex("v2");
      await eventually(
        "index.ts change served",
        async () => (await text()) === "v2-a" || undefined,
      );

      await writeShared("-b");
      await eventually("_shared change served", async () => (await text()) === "v2-b" || undefined);

      await writeConfig("verify_jwt = true");
      await eventually(
        "verify_jwt turned on",
        async () => (await text()).startsWith("401 ") || undefined,
      );
      await writeConfig("enabled = false");
      await eventually(
        "function disabled",
        async () => (await text()).startsWith("404 ") || undefined,
      );
      assert(lines.some((l) => l.startsWith("[hot] restarting")), lines.join("\n"));
    } finally {
      await host.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("close() stops every process and later calls are refused", async () => {
  const lines: string[] = [];
  const host = new FunctionsHost({
    functionsDir: FUNCTIONS_DIR,
    configPath: CONFIG_PATH,
    env: PLATFORM_ENV,
    jwtSecret: SECRET,
    log: (line) => lines.push(line),
  });
  const a = await (await call(host, "/functions/v1/crash/ok")).json();
  const b = await (await call(host, "/functions/v1/background")).json();
  await host.close();
  for (const pid of [a.pid, b.pid]) {
    // SIGCONT is harmless to a live process; a stopped and reaped one is gone (ESRCH)
    let alive = true;
    try {
      Deno.kill(pid, "SIGCONT");
    } catch {
      alive = false;
    }
    assert(!alive, `process ${pid} still running`);
  }
  const res = await call(host, "/functions/v1/crash/ok");
  assertEquals(res.status, 503);
  await res.body?.cancel();
  await host.close(); // idempotent
});

Deno.test("a process killed with -9 hands its open invocations to onInvocationsLost", async () => {
  const lost: InvocationsLost[] = [];
  const open = crypto.randomUUID();
  const finished = crypto.randomUUID();
  await withHost(async ({ host }) => {
    const post = (body: unknown) =>
      call(host, "/functions/v1/background", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const { pid } = await (await post({ invocation_id: open, async: true })).json();
    await (await post({ invocation_id: finished })).body?.cancel();
    await (await post({ note: "no invocation" })).body?.cancel();
    // The gateway saw this one's finish_invocation succeed.
    host.invocationFinished(finished.toUpperCase());
    Deno.kill(pid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (lost.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }, { onInvocationsLost: (l) => Promise.resolve(void lost.push(l)) });
  assertEquals(lost, [{
    slug: "background",
    ids: [open],
    summary: { stopped_by: "crashed", exit_code: 137, signal: "SIGKILL" },
  }]);
});

Deno.test("a process stopped cleanly with nothing open reports nothing", async () => {
  const lost: InvocationsLost[] = [];
  const id = crypto.randomUUID();
  await withHost(async ({ host }) => {
    const res = await call(host, "/functions/v1/background", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ invocation_id: id }),
    });
    await res.body?.cancel();
    host.invocationFinished(id);
  }, { onInvocationsLost: (l) => Promise.resolve(void lost.push(l)) });
  assertEquals(lost, []);
});
