/**
 * End-to-end behaviour of our pg_net (extension + tools/stack/net_worker.ts) against a local
 * HTTP server: what is sent, when (only after COMMIT), and what lands in net._http_response.
 * Needs `CONVEYOR_DB_URL` pointing at a database whose pg_net worker is running (the stack
 * started by `deno task test` provides one). Waits are bounded polls; nothing asserts timings.
 */
import { assert, assertEquals } from "../test/assert.ts";
import type { Sql } from "postgres";
import { connect } from "../test/db.ts";

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
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  /** Ends the slow handlers still waiting. */
  readonly #release: (() => void)[] = [];

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
  }

  get base(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
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
    if (route === "created") {
      return Response.json({ ok: true }, { status: 201, headers: { "x-reply": "yes" } });
    }
    return new Response("fine", { headers: { "content-type": "text/plain" } });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const release of this.#release) release();
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
