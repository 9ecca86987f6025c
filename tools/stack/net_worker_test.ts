/**
 * End-to-end behaviour of our pg_net (extension + tools/stack/net_worker.ts) against a local
 * HTTP server: what is sent, when (only after COMMIT), and what lands in net._http_response.
 * Needs `CONVEYOR_DB_URL` pointing at a database whose pg_net worker is running (the stack
 * started by `deno task test` provides one). Waits are bounded polls; nothing asserts timings.
 */
import { assert, assertEquals } from "../test/assert.ts";
import type { Sql } from "postgres";
import { connect, freshDb } from "../test/db.ts";
import { startNetWorker } from "./net_worker.ts";

function dbUrl(): string {
  const url = Deno.env.get("CONVEYOR_DB_URL");
  if (!url) {
    throw new Error(
      "CONVEYOR_DB_URL is not set: run the tests with `deno task test` (it starts a stack " +
        "with a pg_net worker)",
    );
  }
  return url;
}

/** One request as the test server saw it. */
interface Received {
  method: string;
  url: URL;
  headers: Headers;
  body: string;
}

/** A local HTTP server recording requests under /t/<token>/…; routes by the last segment. */
class TestServer implements AsyncDisposable {
  readonly received: Received[] = [];
  /** `hold` requests being held now, and the most ever held at once. */
  inFlight = 0;
  maxInFlight = 0;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  /** Ends the slow handlers still waiting. */
  readonly #release: (() => void)[] = [];
  /** Answers the `hold` requests held now. */
  #held: (() => void)[] = [];

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
  }

  get base(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Answers every `hold` request held now; later ones are held again. */
  releaseHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const release of held) release();
  }

  /** Requests received for a token. */
  for(token: string): Received[] {
    return this.received.filter((r) => r.url.pathname.startsWith(`/t/${token}/`));
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = await req.text();
    this.received.push({ method: req.method, url, headers: req.headers, body });
    const route = url.pathname.split("/").at(-1);
    if (route === "slow") {
      // Answers after 5 s, or at shutdown; the client should give up after 300 ms.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        this.#release.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      return new Response("too late");
    }
    if (route === "hold") {
      // Held until releaseHeld() (or shutdown): counts how many are open at once.
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      await new Promise<void>((resolve) => this.#held.push(resolve));
      this.inFlight--;
      return new Response("released");
    }
    if (route === "created") {
      return Response.json({ ok: true }, { status: 201, headers: { "x-reply": "yes" } });
    }
    return new Response("fine", { headers: { "content-type": "text/plain" } });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const release of this.#release) release();
    this.releaseHeld();
    await this.#server.shutdown();
  }
}

/** A row of net._http_response. */
interface ResponseRow {
  id: string;
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean | null;
  error_msg: string | null;
}

/** Polls net._http_response for the request's row (bounded; explains a missing worker). */
async function waitForResponse(sql: Sql, id: string, limitMs = 30_000): Promise<ResponseRow> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const rows = await sql<ResponseRow[]>`
      select id::text, status_code, content_type, headers, content, timed_out, error_msg
      from net._http_response where id = ${id}`;
    if (rows[0]) return rows[0];
    await new Promise((r) => setTimeout(r, 50));
  }
  const [state] = await sql<{ queued: boolean; worker: boolean }[]>`
    select exists (select 1 from net.http_request_queue where id = ${id}) as queued,
           exists (select 1 from pg_stat_activity where application_name = 'pg_net worker')
             as worker`;
  throw new Error(
    `no response for request ${id} after ${limitMs} ms (still queued: ${state?.queued}, ` +
      `pg_net worker connected: ${state?.worker})`,
  );
}

async function withDb(fn: (sql: Sql) => Promise<void>): Promise<void> {
  const sql = connect(dbUrl(), 2);
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}

const token = () => crypto.randomUUID();

/** Polls `cond` until it holds (bounded; `what` explains a miss). */
async function until(cond: () => boolean | Promise<boolean>, what: string, limitMs = 30_000) {
  const deadline = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`still not ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A fresh database (pg_net installed, no worker serves it: the stack's serves `postgres`)
 * with a worker of the test's own, so its options can be set. The poll is off: every pass
 * is a wake (the connect, or a NOTIFY at commit).
 */
async function ownWorker(opts: { batchSize?: number; ttl?: string } = {}) {
  const db = await freshDb();
  const logs: string[] = [];
  const worker = await startNetWorker({
    dbUrl: db.url,
    pollIntervalMs: 0,
    log: (l) => logs.push(l),
    ...opts,
  });
  return {
    sql: db.sql,
    logs,
    /** The "N expired response(s) deleted" count of each logged pass, in order. */
    expiredPerPass: () =>
      logs.flatMap((l) => {
        const m = /, (\d+) expired response\(s\) deleted/.exec(l);
        return m ? [Number(m[1])] : [];
      }),
    async [Symbol.asyncDispose]() {
      await worker.stop();
      await db[Symbol.asyncDispose]();
    },
  };
}

Deno.test("http_post() delivers method, headers and the JSON body after commit", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_post(
        url := ${`${server.base}/t/${t}/echo`},
        body := ${sql.json({ hello: "wörld", n: 1, nested: { ok: true } })},
        headers := ${sql.json({ "X-Conveyor-Test": t, Authorization: "Bearer abc" })}
      )::text as id`;
    await waitForResponse(sql, row!.id);

    const [got, ...more] = server.for(t);
    assertEquals(more.length, 0, "sent exactly once");
    assertEquals(got!.method, "POST");
    assertEquals(got!.headers.get("content-type"), "application/json");
    assertEquals(got!.headers.get("x-conveyor-test"), t);
    assertEquals(got!.headers.get("authorization"), "Bearer abc");
    assert(got!.headers.get("user-agent")?.includes("pg_net/"), "User-Agent names pg_net");
    assertEquals(JSON.parse(got!.body), { hello: "wörld", n: 1, nested: { ok: true } });
  });
});

Deno.test("net._http_response records status, body and headers of the answer", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_post(${`${server.base}/t/${t}/created`}, ${sql.json({})})::text as id`;
    const res = await waitForResponse(sql, row!.id);

    assertEquals(res.status_code, 201);
    assertEquals(JSON.parse(res.content ?? "null"), { ok: true });
    assertEquals(res.content_type, "application/json");
    assertEquals(res.headers?.["x-reply"], "yes");
    assertEquals(res.timed_out, false);
    assertEquals(res.error_msg, null);

    const [collected] = await sql<{ status: string; message: string; status_code: number }[]>`
      select (r).status::text, (r).message, ((r).response).status_code
      from (select net._http_collect_response(${row!.id}::bigint, async := false) as r) x`;
    assertEquals(collected, { status: "SUCCESS", message: "ok", status_code: 201 });
  });
});

Deno.test("http_post() sends nothing when the transaction rolls back", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const rolledBack = token();
    let rolledBackId = "";
    class Rollback extends Error {}
    try {
      await sql.begin(async (tx) => {
        const [row] = await tx<{ id: string }[]>`
          select net.http_post(${`${server.base}/t/${rolledBack}/echo`}, ${
          tx.json({ never: true })
        })::text as id`;
        rolledBackId = row!.id;
        throw new Rollback();
      });
    } catch (e) {
      if (!(e instanceof Rollback)) throw e;
    }
    assert(rolledBackId !== "");

    // A committed request afterwards: once it is answered, the worker has run past the
    // point where the rolled-back one would have been sent. Then wait a little more.
    const fence = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_get(${`${server.base}/t/${fence}/echo`})::text as id`;
    await waitForResponse(sql, row!.id);
    await new Promise((r) => setTimeout(r, 500));

    assertEquals(server.for(fence).length, 1);
    assertEquals(server.for(rolledBack).length, 0, "the rolled-back request was sent");
    const [left] = await sql<{ count: number }[]>`
      select count(*)::int as count from net._http_response where id = ${rolledBackId}`;
    assertEquals(left?.count, 0, "a response row exists for the rolled-back request");
  });
});

Deno.test("http_post(headers := NULL) sends no Content-Type", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_post(${`${server.base}/t/${t}/echo`}, ${
      sql.json({ a: 1 })
    }, headers := null)::text as id`;
    await waitForResponse(sql, row!.id);
    const [got] = server.for(t);
    assertEquals(got!.headers.get("content-type"), null);
    assertEquals(JSON.parse(got!.body), { a: 1 });
  });
});

Deno.test("a request slower than timeout_milliseconds is recorded as timed out", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_get(${`${server.base}/t/${t}/slow`}, timeout_milliseconds := 300)::text
        as id`;
    const res = await waitForResponse(sql, row!.id);

    assertEquals(res.timed_out, true);
    assertEquals(res.status_code, null);
    assert(
      res.error_msg?.startsWith("Timeout of 300 ms reached"),
      `error_msg was ${res.error_msg}`,
    );
    const [collected] = await sql<{ status: string; message: string }[]>`
      select (r).status::text, (r).message
      from (select net._http_collect_response(${row!.id}::bigint) as r) x`;
    assertEquals(collected?.status, "ERROR");
    assertEquals(collected?.message, res.error_msg);
  });
});

Deno.test("connection refused is recorded as an error, not a timeout", async () => {
  // A port nobody listens on: bind one, then close it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await withDb(async (sql) => {
    const [row] = await sql<{ id: string }[]>`
      select net.http_get(${`http://127.0.0.1:${port}/nobody`})::text as id`;
    const res = await waitForResponse(sql, row!.id);

    assertEquals(res.timed_out, false);
    assertEquals(res.status_code, null);
    assertEquals(res.error_msg, "Couldn't connect to server");
  });
});

Deno.test("http_get() URL-encodes params into the query string", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_get(
        ${`${server.base}/t/${t}/echo?fixed=1`},
        params := ${sql.json({ q: "a b&c=d", "ü": "✓/?" })}
      )::text as id`;
    await waitForResponse(sql, row!.id);

    const [got] = server.for(t);
    assertEquals(got!.method, "GET");
    assertEquals(got!.url.searchParams.get("fixed"), "1");
    assertEquals(got!.url.searchParams.get("q"), "a b&c=d");
    assertEquals(got!.url.searchParams.get("ü"), "✓/?");
    assert(got!.url.search.includes("q=a%20b%26c%3Dd"), got!.url.search);
  });
});

Deno.test("http_delete() sends a DELETE with its optional body", async () => {
  await using server = new TestServer();
  await withDb(async (sql) => {
    const t = token();
    const [row] = await sql<{ id: string }[]>`
      select net.http_delete(
        ${`${server.base}/t/${t}/echo`},
        headers := ${sql.json({ "X-Why": "cleanup" })},
        body := ${sql.json({ ids: [1, 2] })}
      )::text as id`;
    const res = await waitForResponse(sql, row!.id);

    assertEquals(res.status_code, 200);
    assertEquals(res.content, "fine");
    const [got] = server.for(t);
    assertEquals(got!.method, "DELETE");
    assertEquals(got!.headers.get("x-why"), "cleanup");
    assertEquals(JSON.parse(got!.body), { ids: [1, 2] });
  });
});

Deno.test("the worker deletes responses older than its ttl, in batches, and keeps newer ones", async () => {
  await using w = await ownWorker({ ttl: "1 hour", batchSize: 2 });
  const { sql } = w;
  // Five responses older than the ttl (ids 1-5), five newer (6-10), then one wake.
  const ages = ["3 hours", "2 hours", "90 minutes", "61 minutes", "5 hours"]
    .concat(["30 minutes", "59 minutes", "0 seconds", "0 seconds", "0 seconds"]);
  await sql.begin(async (tx) => {
    for (const [i, age] of ages.entries()) {
      await tx`insert into net._http_response (id, status_code, content, created)
               values (${i + 1}, 200, 'x', now() - ${age}::interval)`;
    }
    await tx`select net.wake()`;
  });
  const ids = async () => {
    const rows = await sql<{ id: number }[]>`
      select id::int as id from net._http_response order by id`;
    return rows.map((r) => r.id);
  };
  await until(async () => (await ids()).length <= 5, "down to 5 rows");
  assertEquals(await ids(), [6, 7, 8, 9, 10]);
  // batch_size bounds each pass; the drain repeats while a pass found something.
  await until(() => w.expiredPerPass().length >= 3, "three passes logged");
  assertEquals(w.expiredPerPass(), [2, 2, 1]);

  // A row that ages past the ttl goes at the next wake; the others stay.
  await sql`update net._http_response set created = now() - interval '2 hours' where id = 7`;
  await sql`select net.wake()`;
  await until(async () => (await ids()).length <= 4, "down to 4 rows");
  assertEquals(await ids(), [6, 8, 9, 10]);
  assertEquals(w.expiredPerPass(), [2, 2, 1, 1]);
});

Deno.test("the worker never has more than batch_size requests in flight, and sends them all", async () => {
  const N = 3;
  const M = 7;
  await using server = new TestServer();
  await using w = await ownWorker({ batchSize: N });
  const { sql } = w;
  const t = token();
  // One transaction, so one wake: the worker must split the M requests itself.
  const ids = (await sql<{ id: string }[]>`
    select net.http_get(${`${server.base}/t/${t}/`} || i || '/hold',
                        timeout_milliseconds := 60000)::text as id
    from generate_series(1, ${M}) as i`).map((r) => r.id);
  assertEquals(ids.length, M);
  // Each round: the batch's requests all arrive (held), the rest stay queued and untaken
  // (not locked by the worker's batch transaction); then release them.
  let sent = 0;
  for (const expected of [3, 3, 1]) {
    sent += expected;
    await until(
      () => server.for(t).length >= sent && server.inFlight >= expected,
      `${expected} more requests held`,
    );
    assertEquals([server.for(t).length, server.inFlight], [sent, expected]);
    const [queued] = await sql<{ n: number }[]>`
      select count(*)::int as n from (
        select 1 from net.http_request_queue for update skip locked) q`;
    assertEquals(queued?.n, M - sent);
    server.releaseHeld();
  }
  for (const id of ids) {
    const res = await waitForResponse(sql, id);
    assertEquals([res.status_code, res.content, res.error_msg], [200, "released", null]);
  }
  assertEquals(server.maxInFlight, N);
  assertEquals(server.for(t).length, M, "each request sent once");
  assertEquals(
    server.for(t).map((r) => r.url.pathname).sort(),
    Array.from({ length: M }, (_, i) => `/t/${t}/${i + 1}/hold`).sort(),
  );
});
