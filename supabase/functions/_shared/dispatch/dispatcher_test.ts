import { assert, assertEquals } from "../../../../tools/test/assert.ts";
import { createDispatcherHandler, runDispatchCycle } from "./dispatcher.ts";
import type { BacklogRow } from "./plan.ts";
import { createClient } from "../deps.ts";
import { type DispatchStore, rpcDispatchStore, type TriggerRequest } from "./store.ts";

// A service-role JWT (unsigned is fine here: verify_jwt runs in the gateway, the handler
// checks the role claim).
const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/=+$/, "");
const SERVICE = `${b64({ alg: "HS256" })}.${b64({ role: "service_role" })}.sig`;
const ANON = `${b64({ alg: "HS256" })}.${b64({ role: "anon" })}.sig`;

function memoryStore(rows: BacklogRow[], fail: string[] = []) {
  const calls: TriggerRequest[] = [];
  const store: DispatchStore = {
    backlog: () => Promise.resolve(rows),
    trigger(req) {
      calls.push(req);
      if (fail.includes(req.target)) return Promise.reject(new Error(`boom ${req.target}`));
      return Promise.resolve(req.count);
    },
    closeKickWindow: () => Promise.resolve(true),
  };
  return { store, calls };
}

const rows: BacklogRow[] = [
  {
    source: "content",
    target: "research",
    queue: "content",
    enabled: true,
    max_concurrency: 4,
    trigger_batch_size: 2,
    ready_count: 5,
    in_flight_count: 0,
  },
  {
    source: "content",
    target: "outline",
    queue: "content",
    enabled: true,
    max_concurrency: 3,
    trigger_batch_size: 1,
    ready_count: 1,
    in_flight_count: 0,
  },
  {
    source: "queue",
    target: "enrich",
    queue: "q_enrich",
    enabled: true,
    max_concurrency: 2,
    trigger_batch_size: 1,
    ready_count: 0,
    in_flight_count: 0,
  },
];

function post(body: unknown, token = SERVICE): Request {
  return new Request("http://x/content-queue-dispatcher", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

Deno.test("dispatcher handler answers exactly the seed's JSON shape", async () => {
  const { store, calls } = memoryStore(rows);
  const handler = createDispatcherHandler({ store, env: {} });
  const res = await handler(post({ source: "manual" }));
  assertEquals(res.status, 200);
  const body = await res.json();
  assertEquals(Object.keys(body), ["message", "dispatches", "duration_ms"]);
  assertEquals(body.message, "Dispatch cycle completed");
  assertEquals(body.dispatches, [
    { stage: "research", queue: "content", workers_triggered: 2 },
    { stage: "outline", queue: "content", workers_triggered: 1 },
  ]);
  assert(Number.isInteger(body.duration_ms));
  assertEquals(calls.map((c) => c.reason), ["dispatch:manual", "dispatch:manual"]);
});

Deno.test("dispatcher handler adds errors only when a trigger failed, and keeps the others", async () => {
  const { store } = memoryStore(rows, ["outline"]);
  const res = await createDispatcherHandler({ store, env: {} })(post({ source: "cron" }));
  const body = await res.json();
  assertEquals(body.dispatches, [{ stage: "research", queue: "content", workers_triggered: 2 }]);
  assertEquals(body.errors, [{ stage: "outline", queue: "content", error: "boom outline" }]);
});

Deno.test("dispatcher handler passes CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY to SQL; 0 disables", async () => {
  const { store, calls } = memoryStore(rows);
  const handler = createDispatcherHandler({
    store,
    env: {
      CONTENT_STAGE_RESEARCH_MAX_CONCURRENCY: "0",
      CONTENT_STAGE_OUTLINE_MAX_CONCURRENCY: "7",
    },
  });
  const body = await (await handler(post({}))).json();
  assertEquals(body.dispatches, [{ stage: "outline", queue: "content", workers_triggered: 1 }]);
  assertEquals(calls.map((c) => [c.target, c.maxConcurrency]), [["outline", 7]]);
});

Deno.test("dispatcher handler refuses bad bodies (400), non-service callers (401), GET (405), bad env (500)", async () => {
  const { store, calls } = memoryStore(rows);
  const handler = createDispatcherHandler({ store, env: {} });
  for (
    const bad of ["{", "[]", { source: "nope" }, { source: "manual", extra: 1 }, { sweep_ms: -1 }]
  ) {
    const res = await handler(post(bad));
    assertEquals(res.status, 400, JSON.stringify(bad));
    assertEquals((await res.json()).error, "bad_request");
  }
  const badWindow = await handler(post({ source: "kick", target: "queue:k", window: 0 }));
  assertEquals(badWindow.status, 400);
  assertEquals((await badWindow.json()).message, "window must be a kick number (1 or more)");
  assertEquals((await handler(post({ source: "manual" }, ANON))).status, 401);
  assertEquals((await handler(new Request("http://x/", { method: "GET" }))).status, 405);
  const badEnv = createDispatcherHandler({
    store,
    env: { CONTENT_STAGE_QA_MAX_CONCURRENCY: "lots" },
  });
  const res = await badEnv(post({}));
  assertEquals(res.status, 500);
  assertEquals((await res.json()).error, "config_invalid");
  assertEquals(calls.length, 0);
});

Deno.test("runDispatchCycle() on an idle backlog triggers nothing and reports idle", async () => {
  const idle = rows.map((r) => ({ ...r, ready_count: 0 }));
  const { store, calls } = memoryStore(idle);
  const out = await runDispatchCycle(store, {}, "dispatch:test");
  assertEquals(out.result.dispatches, []);
  assertEquals(out.idle, true);
  assertEquals(calls.length, 0);
});

Deno.test("dispatcher handler with recheck_ms closes the kick window, then runs one more cycle", async () => {
  const log: string[] = [];
  let failClose = false;
  const store: DispatchStore = {
    backlog: () => {
      log.push("backlog");
      return Promise.resolve([]);
    },
    trigger: () => Promise.resolve(0),
    closeKickWindow: (target, window) => {
      log.push(`close ${target} ${window}`);
      return failClose ? Promise.reject(new Error("boom")) : Promise.resolve(true);
    },
  };
  const pending: Promise<unknown>[] = [];
  const handler = createDispatcherHandler({
    store,
    env: {},
    waitUntil: (p) => pending.push(p),
    signal: new AbortController().signal,
  });
  await handler(post({ source: "kick", target: "content:research", recheck_ms: 10, window: 7 }));
  assertEquals(log, ["backlog"]);
  await Promise.all(pending.splice(0));
  assertEquals(log, ["backlog", "close content:research 7", "backlog"]);

  // Without a target there is no window to close; a failed close still leaves the cycle.
  log.length = 0;
  await handler(post({ source: "kick", recheck_ms: 10 }));
  await Promise.all(pending.splice(0));
  assertEquals(log, ["backlog", "backlog"]);
  log.length = 0;
  failClose = true;
  await handler(post({ source: "kick", target: "queue:k", recheck_ms: 10 }));
  await Promise.all(pending.splice(0));
  assertEquals(log, ["backlog", "close queue:k undefined", "backlog"]);
});

/**
 * A service-role client whose API answers the first `away` requests as PostgREST does while
 * it reconnects after a Postgres restart or a `db:reset` (`answer`), then an empty backlog.
 */
function reconnectingApi(away: number, answer: () => Response) {
  let calls = 0;
  const fetch: typeof globalThis.fetch = () => {
    calls++;
    if (calls <= away) return Promise.resolve(answer());
    return Promise.resolve(
      new Response("[]", { status: 200, headers: { "content-type": "application/json" } }),
    );
  };
  const client = createClient("http://api.invalid", "service-key", {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch },
  });
  return { client, calls: () => calls };
}

const jsonAnswer = (status: number, body: unknown) => () =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
const unavailable = jsonAnswer(503, {
  code: "PGRST001",
  details: "no connection to the server\n",
  hint: null,
  message: "Database client error. Retrying the connection.",
});
const brokenMidQuery = jsonAnswer(400, { code: "", details: null, hint: null, message: "" });

Deno.test("dispatcher over RPC: a kick during PostgREST's reconnect (503, or 400 with an empty code) is answered 200 once the API is back", async () => {
  for (const answer of [unavailable, brokenMidQuery]) {
    const api = reconnectingApi(2, answer);
    const handler = createDispatcherHandler({ store: rpcDispatchStore(api.client), env: {} });
    const res = await handler(post({ source: "kick", target: "queue:enrich" }));
    assertEquals(res.status, 200);
    assertEquals((await res.json()).dispatches, []);
    assertEquals(api.calls(), 3, "two answers while away, then the backlog");
  }
});

Deno.test("dispatcher over RPC: an API still away after the retries is a 503 with Retry-After (retry later), a wrong call a 502", async () => {
  const away = reconnectingApi(1_000, unavailable);
  const handler = createDispatcherHandler({
    store: rpcDispatchStore(away.client, { retryMs: 300 }),
    env: {},
  });
  const res = await handler(post({ source: "kick" }));
  assertEquals(res.status, 503);
  assertEquals(res.headers.get("retry-after"), "1");
  assertEquals(await res.json(), {
    error: "rpc_failed",
    message: "get_dispatch_backlog: Database client error. Retrying the connection.",
  });
  assert(away.calls() > 1, `called again while away (${away.calls()} calls)`);

  // A function PostgREST does not know is not an outage: no retry, 502.
  const wrong = reconnectingApi(
    1_000,
    jsonAnswer(404, {
      code: "PGRST202",
      details: null,
      hint: null,
      message: "Could not find the function public.get_dispatch_backlog without parameters",
    }),
  );
  const res2 = await createDispatcherHandler({ store: rpcDispatchStore(wrong.client), env: {} })(
    post({ source: "kick" }),
  );
  assertEquals(res2.status, 502);
  assertEquals(res2.headers.get("retry-after"), null);
  assertEquals((await res2.json()).error, "rpc_failed");
  assertEquals(wrong.calls(), 1);
});
