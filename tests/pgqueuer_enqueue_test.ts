/**
 * Seed 003's PGQueuer entry point (issue 11): fn_pgqueuer_enqueue through the gateway with
 * the seed's bodies verbatim, each optional field's effect, the hardening (allow-list, size
 * limit, grants) and the seed's uninstall statement.
 */
import type { Sql } from "postgres";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually, tempKind } from "../tools/test/queue.ts";

const env = testEnv();

function post(body: string, key = env.serviceRoleKey): Promise<Response> {
  return fetch(`${env.apiUrl}/rest/v1/rpc/fn_pgqueuer_enqueue`, {
    method: "POST",
    headers: { apikey: key, Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body,
  });
}

async function enqueue(body: Record<string, unknown>): Promise<number> {
  const res = await post(JSON.stringify(body));
  const text = await res.text();
  assertEquals(res.status, 200, text);
  return Number(text);
}

/** A temp kind reachable through its own entrypoint, so no real worker drains it. */
async function tempEntrypoint(): Promise<
  { entrypoint: string; kind: string; sql: Sql } & AsyncDisposable
> {
  const k = await tempKind();
  const entrypoint = `ep_${k.kind}`;
  await k
    .sql`insert into conveyor.pgqueuer_entrypoints (entrypoint, kind) values (${entrypoint}, ${k.kind})`;
  return {
    entrypoint,
    kind: k.kind,
    sql: k.sql,
    [Symbol.asyncDispose]: () => k[Symbol.asyncDispose](),
  };
}

Deno.test("fn_pgqueuer_enqueue: both seed bodies, verbatim, return a numeric id; the worker sees the headers", async () => {
  const first = await post(`{
        "entrypoint": "fetch",
        "payload": ""
      }`);
  const a = await first.text();
  assertEquals(first.status, 200, a);
  assert(/^\d+$/.test(a), `a bare number, got ${a}`);

  const second = await post(`{
        "entrypoint": "fetch",
        "payload": "aGVsbG8=",
        "priority": 5,
        "execute_after": "10 seconds",
        "dedupe_key": "fetch:hello:${crypto.randomUUID()}",
        "headers": {"source":"api","version":"1"}
      }`);
  const b = await second.text();
  assertEquals(second.status, 200, b);
  assert(/^\d+$/.test(b), `a bare number, got ${b}`);

  const sql = connect(env.dbUrl, 1);
  try {
    const [job] = await sql`
      select id, priority, queue_name, headers, run_at > created_at + interval '9 seconds' as delayed,
             payload
      from public.jobs
      where kind = 'fetch' and msg_id = ${Number(b)} and queue_name = 'q_fetch_fast'`;
    assert(job, "the second job is in the fast tier of q_fetch");
    assertEquals(job.priority, "fast");
    assertEquals(job.headers, { source: "api", version: "1" });
    assertEquals(job.delayed, true);
    // PostgREST hands a JSON string to a bytea parameter as its text: the bytes "aGVsbG8=".
    assertEquals(job.payload.payload_base64, btoa("aGVsbG8="));

    // The fetch worker runs it once the 10 s delay has passed, and sees the headers.
    const done = await eventually(
      "the fetch worker completed the delayed job",
      async () => {
        await fetch(`${env.apiUrl}/functions/v1/fetch-worker`, {
          method: "POST",
          headers: {
            Authorization: `Bearer ${env.serviceRoleKey}`,
            "Content-Type": "application/json",
          },
          body: "{}",
        }).then((r) => r.body?.cancel());
        const [row] = await sql`select status, output from public.jobs where id = ${job.id}`;
        return row?.status === "completed" ? row : null;
      },
      40_000,
      1_000,
    );
    assertEquals(done.output.headers, { source: "api", version: "1" });
    assertEquals(done.output.text, "aGVsbG8=");
    assertEquals(done.output.size, 8);
  } finally {
    await sql.end();
  }
});

Deno.test("fn_pgqueuer_enqueue: priority > 0 is fast, 0 normal, < 0 bulk, and claims run fast first", async () => {
  await using ep = await tempEntrypoint();
  await enqueue({ entrypoint: ep.entrypoint, priority: -3 });
  await enqueue({ entrypoint: ep.entrypoint });
  await enqueue({ entrypoint: ep.entrypoint, priority: 7 });
  const claimed = await ep.sql<Array<{ priority: string }>>`
    select priority from public.claim_jobs(p_kind => ${ep.kind}, p_worker => 't', p_qty => 3)`;
  assertEquals(claimed.map((c) => c.priority), ["fast", "normal", "bulk"]);
});

Deno.test("fn_pgqueuer_enqueue: execute_after delays delivery", async () => {
  await using ep = await tempEntrypoint();
  await enqueue({ entrypoint: ep.entrypoint, execute_after: "1 hour" });
  const now = await ep.sql`select * from public.claim_jobs(p_kind => ${ep.kind}, p_worker => 't')`;
  assertEquals(now.length, 0, "not claimable before its time");
  const [row] = await ep.sql`
    select run_at - created_at > interval '59 minutes' as later from public.jobs where kind = ${ep.kind}`;
  assertEquals(row!.later, true);
});

Deno.test("fn_pgqueuer_enqueue: a live dedupe_key is refused with 409, and reusable once the job finished", async () => {
  await using ep = await tempEntrypoint();
  const key = `dedupe:${crypto.randomUUID()}`;
  await enqueue({ entrypoint: ep.entrypoint, dedupe_key: key });
  const dup = await post(JSON.stringify({ entrypoint: ep.entrypoint, dedupe_key: key }));
  const body = await dup.json();
  assertEquals(dup.status, 409);
  assertEquals(body.code, "23505");
  assertEquals(body.message, `fn_pgqueuer_enqueue: dedupe_key ${key} is already queued or running`);
  assertEquals(
    Number((await ep.sql`select count(*) from public.jobs where kind = ${ep.kind}`)[0]!.count),
    1,
    "the refused call wrote nothing",
  );
  const [c] = await ep.sql<Array<{ job_id: string; lease_id: string }>>`
    select job_id, lease_id from public.claim_jobs(p_kind => ${ep.kind}, p_worker => 't')`;
  await ep.sql`select public.complete_job(${c!.job_id}, ${c!.lease_id})`;
  await enqueue({ entrypoint: ep.entrypoint, dedupe_key: key });
});

Deno.test("fn_pgqueuer_enqueue: 100 racing calls with one dedupe_key make one job; every other call gets the documented 409", async () => {
  await using ep = await tempEntrypoint();
  const key = `race:${crypto.randomUUID()}`;
  const answers = await Promise.all(
    Array.from(
      { length: 100 },
      () =>
        post(JSON.stringify({ entrypoint: ep.entrypoint, dedupe_key: key })).then(async (r) => ({
          status: r.status,
          text: await r.text(),
        })),
    ),
  );
  const ok = answers.filter((a) => a.status === 200);
  const refused = answers.filter((a) => a.status === 409);
  assertEquals(ok.length, 1, JSON.stringify(answers.filter((a) => a.status !== 409)));
  assertEquals(refused.length, 99);
  for (const r of refused) {
    const body = JSON.parse(r.text);
    assertEquals(body.code, "23505");
    // Never the unique constraint's own text (with the tenant in its details).
    assertEquals(
      body.message,
      `fn_pgqueuer_enqueue: dedupe_key ${key} is already queued or running`,
    );
  }
  assertEquals(
    Number((await ep.sql`select count(*) from public.jobs where kind = ${ep.kind}`)[0]!.count),
    1,
  );
});

Deno.test("fn_pgqueuer_enqueue: unknown entrypoint and oversize payload are 400 and write nothing; anon is refused", async () => {
  await using ep = await tempEntrypoint();
  const before = Number((await ep.sql`select count(*) from public.jobs`)[0]!.count);

  const unknown = await post(JSON.stringify({ entrypoint: "launch_missiles" }));
  const ub = await unknown.json();
  assertEquals(unknown.status, 400);
  assertEquals(ub.message, "fn_pgqueuer_enqueue: unknown entrypoint launch_missiles");

  const big = await post(
    JSON.stringify({ entrypoint: ep.entrypoint, payload: "x".repeat(300_000) }),
  );
  const bb = await big.json();
  assertEquals(big.status, 400);
  assertEquals(
    bb.message,
    "fn_pgqueuer_enqueue: payload too large (300000 bytes, the limit is 262144 bytes)",
  );

  const anon = await post(JSON.stringify({ entrypoint: ep.entrypoint }), env.anonKey);
  const ab = await anon.json();
  assertEquals(anon.status, 401);
  assertEquals(ab.code, "42501");

  const after = Number((await ep.sql`select count(*) from public.jobs`)[0]!.count);
  assertEquals(after, before);
});

Deno.test("fn_pgqueuer_enqueue: the seed's uninstall statement runs clean", async () => {
  await using db = await freshDb();
  await db.sql.unsafe(`DROP FUNCTION IF EXISTS fn_pgqueuer_enqueue(
    TEXT, BYTEA, INT, INTERVAL, TEXT, JSONB
);`);
  const left = await db.sql`select 1 from pg_proc where proname = 'fn_pgqueuer_enqueue'`;
  assertEquals(left.length, 0);
});
