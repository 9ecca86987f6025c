/**
 * The Dragonfly queue API end to end (issue 5; seeds 000, 002, 003): queue_job through the
 * gateway exactly as the seed's curl calls it, and the ledger semantics of claim / settle /
 * retry / dead-letter / redelivery / retention in SQL, each on a database of its own.
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertRejects } from "../tools/test/assert.ts";
import { freshDb } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually, tempKind } from "../tools/test/queue.ts";

const env = testEnv();
const rpcUrl = (fn: string) => `${env.apiUrl}/rest/v1/rpc/${fn}`;

function post(fn: string, body: string, key = env.serviceRoleKey): Promise<Response> {
  return fetch(rpcUrl(fn), {
    method: "POST",
    headers: {
      apikey: key,
      Authorization: `Bearer ${key}`,
      "Content-Type": "application/json",
    },
    body,
  });
}

async function queueJob(sql: Sql, body: Record<string, unknown>): Promise<number> {
  const [r] = await sql`select public.queue_job(${sql.json(body as never)}) as id`;
  return Number(r!.id);
}

interface Claimed {
  job_id: string;
  lease_id: string;
  msg_id: number;
  attempt: number;
  priority: string;
  payload: Record<string, unknown>;
}

async function claim(sql: Sql, kind: string, qty = 10, vt = 30): Promise<Claimed[]> {
  return await sql<Claimed[]>`
    select * from public.claim_jobs(p_kind => ${kind}, p_worker => 'test', p_qty => ${qty},
                                    p_vt => ${vt})`;
}

async function events(
  sql: Sql,
  jobId: string,
): Promise<Array<{ type: string; payload: Record<string, unknown> }>> {
  return await sql`select type, payload from public.job_events where job_id = ${jobId} order by id`;
}

async function jobIdOf(sql: Sql, key: string): Promise<string> {
  const [r] = await sql`select id from public.jobs where idempotency_key = ${key}`;
  return r!.id;
}

// ---------------------------------------------------------------------------------------
// through the gateway

Deno.test("queue_job: the seed's curl body returns the message id as a bare number", async () => {
  const res = await post(
    "queue_job",
    `{
    "idempotency_key": "doctor:ping",
    "kind": "enrich",
    "payload": {}
  }`,
  );
  const text = await res.text();
  assertEquals(res.status, 200, text);
  assert(/^\d+$/.test(text), `a bare number, got ${text}`);
});

Deno.test("queue_job: the seed's three errors are HTTP 400 with the exact message and code P0001", async () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ idempotency_key: "e:1", payload: {} }, "queue_job: missing kind in payload"],
    [
      { idempotency_key: "e:2", kind: "telepathy", payload: {} },
      "queue_job: unsupported kind telepathy",
    ],
    [{ kind: "enrich", payload: {} }, "queue_job: missing idempotency_key"],
    [{ idempotency_key: "", kind: "enrich", payload: {} }, "queue_job: missing idempotency_key"],
  ];
  for (const [body, message] of cases) {
    const res = await post("queue_job", JSON.stringify(body));
    const err = await res.json();
    assertEquals(
      [res.status, err.code, err.message],
      [400, "P0001", message],
      JSON.stringify(body),
    );
    assert("details" in err && "hint" in err, "PostgREST's error body");
  }
});

Deno.test("queue_job: the anon key is refused with PostgREST's error body", async () => {
  const res = await post(
    "queue_job",
    JSON.stringify({ idempotency_key: `anon:${crypto.randomUUID()}`, kind: "enrich", payload: {} }),
    env.anonKey,
  );
  const err = await res.json();
  assert(res.status === 401 || res.status === 403, `status ${res.status}`);
  assertEquals(err.code, "42501");
  assert(typeof err.message === "string" && err.message.length > 0);
});

Deno.test("queue_job: 100 concurrent identical calls make one job, one message, one id", async () => {
  await using k = await tempKind();
  const key = `c:${crypto.randomUUID()}`;
  const body = JSON.stringify({ idempotency_key: key, kind: k.kind, payload: { n: 1 } });
  const ids = await Promise.all(Array.from({ length: 100 }, async () => {
    const res = await post("queue_job", body);
    return await res.text();
  }));
  assertEquals(new Set(ids).size, 1, `ids: ${[...new Set(ids)].join(",")}`);
  const again = await (await post("queue_job", body)).text();
  assertEquals(again, ids[0], "a later identical call returns the same id");
  const [jobs] = await k
    .sql`select count(*)::int as n from public.jobs where idempotency_key = ${key}`;
  assertEquals(jobs!.n, 1);
  const [msgs] = await k.sql.unsafe(`select count(*)::int as n from pgmq.q_q_${k.kind}`);
  assertEquals(msgs!.n, 1);
});

// ---------------------------------------------------------------------------------------
// ledger semantics (SQL, a database per test)

Deno.test("claim_jobs: fast before normal before bulk", async () => {
  await using db = await freshDb();
  for (const priority of ["bulk", "normal", "fast"]) {
    await queueJob(db.sql, {
      idempotency_key: priority,
      kind: "enforce",
      priority,
      payload: { priority },
    });
  }
  const order: string[] = [];
  for (let i = 0; i < 3; i++) order.push((await claim(db.sql, "enforce", 1))[0]!.priority);
  assertEquals(order, ["fast", "normal", "bulk"]);
});

Deno.test("queue_job: delay_seconds and execute_after are not claimable before, and are after", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "d1", kind: "enrich", delay_seconds: 1 });
  await queueJob(db.sql, {
    idempotency_key: "d2",
    kind: "enrich",
    execute_after: new Date(Date.now() + 1500).toISOString(),
  });
  assertEquals((await claim(db.sql, "enrich")).length, 0, "nothing claimable yet");
  const got: string[] = [];
  await eventually("both delayed jobs", async () => {
    got.push(...(await claim(db.sql, "enrich")).map((c) => c.job_id));
    return got.length === 2;
  });
});

Deno.test('queue_job: execute_after "10 seconds" delays the job and its message by that interval', async () => {
  await using db = await freshDb();
  // In one transaction now() is the clock queue_job delays from, so the delay is exact.
  const [delay] = await db.sql.begin(async (tx) => {
    await tx`select public.queue_job(${
      tx.json({ idempotency_key: "i1", kind: "enrich", execute_after: "10 seconds" })
    })`;
    return await tx`
      select extract(epoch from j.run_at - now())::float8 as job,
             extract(epoch from q.vt - now())::float8 as message
      from public.jobs j join pgmq.q_q_enrich q on q.msg_id = j.msg_id
      where j.idempotency_key = 'i1'`;
  });
  assertEquals(delay, { job: 10, message: 10 });
  assertEquals((await claim(db.sql, "enrich")).length, 0, "not claimable before its run-at");
});

Deno.test("queue_job: an execute_after that is neither a timestamp nor an interval is refused and writes nothing", async () => {
  await using db = await freshDb();
  const count = async () =>
    (await db.sql`select (select count(*) from public.jobs)::int as jobs,
      (select count(*) from public.job_events)::int as events,
      (select count(*) from public.idempotency_keys)::int as keys,
      (select count(*) from pgmq.q_q_enrich)::int as messages`)[0];
  const before = await count();
  for (const execute_after of ["ten seconds", "soon", " ", 10]) {
    const err = await assertRejects(() =>
      queueJob(db.sql, { idempotency_key: `bad:${execute_after}`, kind: "enrich", execute_after })
    ) as Error & { code?: string };
    assertEquals(
      [err.message, err.code],
      [
        'queue_job: execute_after must be an ISO timestamp or an interval such as "10 seconds"',
        "P0001",
      ],
      JSON.stringify(execute_after),
    );
  }
  assertEquals(await count(), before);
});

Deno.test("publish → claim → complete: the ledger row says it all, no events, the message deleted", async () => {
  await using db = await freshDb();
  const msg = await queueJob(db.sql, { idempotency_key: "p1", kind: "enrich", payload: { a: 1 } });
  const [c] = await claim(db.sql, "enrich");
  assertEquals(c!.payload, { a: 1 });
  assertEquals(Number(c!.msg_id), Number(msg), "the claim hands over the job's number");
  const [ok] = await db.sql`select public.complete_job(${c!.job_id}, ${c!.lease_id}, ${
    db.sql.json({ done: true })
  }) as ok`;
  assertEquals(ok!.ok, true);
  assertEquals((await events(db.sql, c!.job_id)).map((e) => e.type), [], "audit lean: no events");
  const [job] = await db.sql`select status, output, attempts, started_at is not null as started,
                                    finished_at is not null as finished
                             from public.jobs where id = ${c!.job_id}`;
  assertEquals([job!.status, job!.output, job!.attempts, job!.started, job!.finished], [
    "completed",
    { done: true },
    1,
    true,
    true,
  ]);
  const [q] = await db
    .sql`select (select count(*)::int from pgmq.q_q_enrich where msg_id = ${msg}) as q,
                                  (select count(*)::int from pgmq.a_q_enrich where msg_id = ${msg}) as a`;
  assertEquals([q!.q, q!.a], [0, 0], "the message is deleted, not archived");
});

Deno.test("a failing job is retried after 1000 then 2000 ms, then dead-lettered with a q_dlq message", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "f1", kind: "outreach" });
  const id = await jobIdOf(db.sql, "f1");
  const outcomes: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const c = await eventually(
      `attempt ${attempt}`,
      async () => (await claim(db.sql, "outreach"))[0],
    );
    assertEquals(c.attempt, attempt);
    const [r] = await db.sql`select public.fail_job(${c.job_id}, ${c.lease_id}, ${
      "boom " + attempt
    }) as o`;
    outcomes.push(r!.o);
    if (attempt < 3) {
      assertEquals((await claim(db.sql, "outreach")).length, 0, "not before the backoff");
    }
  }
  assertEquals(outcomes, ["retry_scheduled", "retry_scheduled", "dead_lettered"]);
  const ev = await events(db.sql, id);
  assertEquals(ev.filter((e) => e.type === "retry_scheduled").map((e) => e.payload.delay_ms), [
    1000,
    2000,
  ]);
  const [dead] = await db.sql`select reason, attempts, dlq_msg_id, jsonb_array_length(errors) as n
                              from public.dead_letter_jobs where job_id = ${id}`;
  assertEquals([dead!.reason, dead!.attempts, dead!.n], ["boom 3", 3, 3]);
  const [m] = await db.sql`select message from pgmq.q_q_dlq where msg_id = ${dead!.dlq_msg_id}`;
  assertEquals(m!.message.job_id, id);
  const [job] = await db.sql`select status, last_error from public.jobs where id = ${id}`;
  assertEquals([job!.status, job!.last_error], ["failed", "boom 3"]);
});

Deno.test("a critical job gets 5 attempts", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "crit", kind: "enrich", critical: true });
  const noWait = db.sql.json({ backoff_base_ms: 0, backoff_max_ms: 0 });
  const outcomes: string[] = [];
  for (let i = 0; i < 5; i++) {
    const [c] = await claim(db.sql, "enrich");
    const [r] = await db.sql`select public.fail_job(${c!.job_id}, ${
      c!.lease_id
    }, 'x', ${noWait}) as o`;
    outcomes.push(r!.o);
  }
  assertEquals(outcomes, [...Array(4).fill("retry_scheduled"), "dead_lettered"]);
});

Deno.test("a killed worker's job is redelivered after the visibility timeout, completed once, and the stale ack is refused", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "kill", kind: "enrich" });
  const [first] = await claim(db.sql, "enrich", 1, 1); // the worker dies holding it
  assertEquals((await claim(db.sql, "enrich")).length, 0, "invisible while the lease lives");
  const second = await eventually("redelivery", async () => (await claim(db.sql, "enrich"))[0]);
  assertEquals([second.job_id, second.attempt], [first!.job_id, 2]);
  const [stale] = await db.sql`
    select * from public.settle_jobs('ghost', ${
    db.sql.json(
      [{ job_id: first!.job_id, lease_id: first!.lease_id, status: "completed" }] as never,
    )
  })`;
  assertEquals([stale!.accepted, stale!.outcome], [false, "refused"]);
  const [ok] = await db.sql`select public.complete_job(${second.job_id}, ${second.lease_id}) as ok`;
  assertEquals(ok!.ok, true);
  const types = (await events(db.sql, first!.job_id)).map((e) => e.type);
  assertEquals(types, ["settle_refused"], "the refused settle is the only event of a healthy job");
  const refused = (await events(db.sql, first!.job_id)).find((e) => e.type === "settle_refused")!;
  assertEquals(refused.payload.reason, "lease is held by another claim");
});

Deno.test("settle_jobs refuses a completion or failure whose lease has expired, and the job stays claimed", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "late", kind: "enrich" });
  const [c] = await claim(db.sql, "enrich");
  // settle_jobs' injected clock a second past the lease: the worker reports too late.
  const settleLate = async (status: string) =>
    await db.sql`
      select s.job_id, s.accepted, s.outcome
      from public.jobs j,
           public.settle_jobs('w', ${
      db.sql.json([{ job_id: c!.job_id, lease_id: c!.lease_id, status }] as never)
    }, '{}', j.locked_until + interval '1 second') s
      where j.id = ${c!.job_id}`;
  for (const status of ["completed", "failed"]) {
    assertEquals(
      (await settleLate(status)).map((r) => ({ ...r })),
      [{ job_id: c!.job_id, accepted: false, outcome: "refused" }],
      status,
    );
  }
  const [job] = await db.sql`select status, attempts, lease_id, finished_at, errors
                             from public.jobs where id = ${c!.job_id}`;
  assertEquals({ ...job }, {
    status: "processing",
    attempts: 1,
    lease_id: c!.lease_id,
    finished_at: null,
    errors: [],
  });
  const [arch] = await db.sql`select count(*)::int as n from pgmq.a_q_enrich`;
  assertEquals(arch!.n, 0, "the message is not archived");
  const ev = await events(db.sql, c!.job_id);
  assertEquals(ev.map((e) => e.type), ["settle_refused", "settle_refused"]);
  assertEquals(ev.map((e) => e.payload), [
    { worker: "w", wanted: "completed", lease_id: c!.lease_id, reason: "lease expired" },
    { worker: "w", wanted: "failed", lease_id: c!.lease_id, reason: "lease expired" },
  ]);
});

Deno.test("claim_jobs dead-letters a job whose worker was lost on its last attempt", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "lost", kind: "enforce" });
  const policy = db.sql.json({ max_attempts: 1 });
  const [c] = await db.sql`select * from public.claim_jobs(p_kind => 'enforce', p_worker => 'w',
                             p_vt => 1, p_policy => ${policy})`;
  assert(c);
  await eventually("the lost job to be dead-lettered", async () => {
    await db
      .sql`select * from public.claim_jobs(p_kind => 'enforce', p_worker => 'w', p_policy => ${policy})`;
    const [j] = await db.sql`select status, last_error from public.jobs where id = ${c.job_id}`;
    return j!.status === "failed" && j!.last_error.startsWith("worker lost");
  });
  const [d] = await db
    .sql`select count(*)::int as n from public.dead_letter_jobs where job_id = ${c.job_id}`;
  assertEquals(d!.n, 1);
});

Deno.test("process_dead_letters acknowledges, archives and raises one deduplicated alert per kind", async () => {
  await using db = await freshDb();
  for (const k of ["a", "b"]) {
    await queueJob(db.sql, { idempotency_key: k, kind: "enrich" });
    const [c] = await claim(db.sql, "enrich");
    await db.sql`select * from public.settle_jobs('w', ${
      db.sql.json(
        [{
          job_id: c!.job_id,
          lease_id: c!.lease_id,
          status: "cancelled",
          error: { message: "bad " + k },
        }] as never,
      )
    })`;
  }
  const rows = await db.sql`select * from public.process_dead_letters('dlq', 10)`;
  assertEquals(rows.map((r) => [r.kind, r.reason, Number(r.alert_count)]), [
    ["enrich", "cancelled: bad a", 1],
    ["enrich", "cancelled: bad b", 2],
  ]);
  const alerts = await db.sql`select rule, subject, value, status from public.alert_history`;
  assertEquals(alerts.map((a) => [a.rule, a.subject, Number(a.value), a.status]), [[
    "dead_letter",
    "enrich",
    2,
    "open",
  ]]);
  const [ack] = await db
    .sql`select count(*)::int as n from public.dead_letter_jobs where acknowledged_at is null`;
  assertEquals(ack!.n, 0);
  assertEquals(
    (await db.sql`select * from public.process_dead_letters('dlq', 10)`).length,
    0,
    "archived",
  );
});

Deno.test("conveyor.prune removes only finished jobs and archives older than the retention", async () => {
  await using db = await freshDb();
  // Archive on success (archive_completed), and one retry: an event that must go too.
  await db.sql`update conveyor.settings set value = 'true' where key = 'archive_completed'`;
  await queueJob(db.sql, { idempotency_key: "old-done", kind: "enrich" });
  const [first] = await claim(db.sql, "enrich");
  await db.sql`select public.fail_job(${first!.job_id}, ${first!.lease_id}, 'once',
                                      '{"backoff_base_ms": 0, "backoff_max_ms": 0}')`;
  const [c] = await claim(db.sql, "enrich");
  await db.sql`select public.complete_job(${c!.job_id}, ${c!.lease_id})`;
  const [had] = await db.sql`select count(*)::int as n from public.job_events where job_id = ${
    c!.job_id
  }`;
  assertEquals(had!.n, 1, "the retry's event");
  await queueJob(db.sql, { idempotency_key: "live", kind: "enrich" });
  const now = await db.sql`select conveyor.prune(1, now()) as r`;
  assertEquals(now[0]!.r.jobs, 0, "nothing is older than an hour yet");
  const later = await db.sql`select conveyor.prune(1, now() + interval '2 hours') as r`;
  assertEquals([later[0]!.r.jobs, later[0]!.r.archived_messages], [1, 1]);
  const left = await db.sql`select idempotency_key, status from public.jobs`;
  assertEquals(left.map((j) => [j.idempotency_key, j.status]), [["live", "pending"]]);
  const [ev] = await db.sql`select count(*)::int as n from public.job_events where job_id = ${
    c!.job_id
  }`;
  assertEquals(ev!.n, 0, "its events went with it");
  const [key] = await db
    .sql`select count(*)::int as n from public.idempotency_keys where key = 'old-done'`;
  assertEquals(key!.n, 0);
});

Deno.test("queue_stats and conveyor_health report depth, counters and the queues present", async () => {
  await using db = await freshDb();
  await queueJob(db.sql, { idempotency_key: "s1", kind: "outreach" });
  await queueJob(db.sql, { idempotency_key: "s2", kind: "outreach", priority: "fast" });
  const [c] = await claim(db.sql, "outreach", 1);
  await db.sql`select public.complete_job(${c!.job_id}, ${c!.lease_id})`;
  // enforce: one job fails and is retried, one fails on its last allowed attempt.
  await queueJob(db.sql, { idempotency_key: "r1", kind: "enforce" });
  await queueJob(db.sql, { idempotency_key: "r2", kind: "enforce" });
  const [retry, last] = await claim(db.sql, "enforce", 2);
  const [o1] = await db.sql`select public.fail_job(${retry!.job_id}, ${retry!.lease_id}, 'x') as o`;
  const [o2] = await db.sql`select public.fail_job(${last!.job_id}, ${last!.lease_id}, 'x', ${
    db.sql.json({ max_attempts: 1 })
  }) as o`;
  assertEquals([o1!.o, o2!.o], ["retry_scheduled", "dead_lettered"]);
  const stats = await db
    .sql`select * from public.queue_stats() where kind in ('outreach', 'enforce')`;
  const counters = (s: (typeof stats)[number]) =>
    ["publishes", "claims", "completes", "retries", "failures"].map((k) => Number(s[k]));
  const by = Object.fromEntries(stats.map((s) => [`${s.kind}/${s.tier}`, s]));
  assertEquals(counters(by["outreach/fast"]!), [1, 1, 1, 0, 0]);
  assertEquals(counters(by["outreach/normal"]!), [1, 0, 0, 0, 0]);
  assertEquals(counters(by["enforce/normal"]!), [2, 2, 0, 1, 1]);
  for (const t of ["outreach/bulk", "enforce/fast", "enforce/bulk"]) {
    assertEquals(counters(by[t]!), [0, 0, 0, 0, 0], t);
  }
  assertEquals(
    [Number(by["outreach/normal"]!.depth), Number(by["outreach/normal"]!.visible)],
    [1, 1],
  );
  assertEquals(
    [Number(by["enforce/normal"]!.depth), Number(by["enforce/normal"]!.in_flight)],
    [1, 0],
    "the retried job's message waits out its backoff; the dead one's is archived",
  );
  const [h] = await db.sql`select public.conveyor_health() as h`;
  assertEquals([h!.h.ok, h!.h.db, h!.h.missing_queues], [true, "ok", []]);
  assertEquals(h!.h.queues, h!.h.queues_expected, "every kind's three tiers and q_dlq");
  assert(h!.h.queues >= 10);
  await db.sql`select pgmq.drop_queue('q_enrich_bulk')`;
  const [h2] = await db.sql`select public.conveyor_health() as h`;
  assertEquals([h2!.h.ok, h2!.h.missing_queues], [false, ["q_enrich_bulk"]]);
});

Deno.test("0052_queue_bootstrap.sql runs again on a migrated database and leaves each queue once", async () => {
  await using db = await freshDb();
  const queues = async () =>
    (await db.sql`select queue_name from pgmq.list_queues() order by queue_name`).map((q) =>
      q.queue_name as string
    );
  const before = await queues();
  for (const q of ["q_enrich", "q_outreach", "q_enforce", "q_enforce_fast", "q_dlq"]) {
    assert(before.includes(q), `${q} in ${before.join(", ")}`);
  }
  const text = await Deno.readTextFile(
    new URL("../supabase/migrations/0052_queue_bootstrap.sql", import.meta.url),
  );
  await db.sql.begin((tx) => tx.unsafe(text)); // throws if any statement fails
  assertEquals(await queues(), before);
});

Deno.test("the claim/settle API and the metrics are not callable with the anon key", async () => {
  for (
    const fn of ["claim_jobs", "settle_jobs", "queue_stats", "process_dead_letters", "outbox_write"]
  ) {
    const res = await post(fn, "{}", env.anonKey);
    await res.body?.cancel();
    assert([401, 403, 404].includes(res.status), `${fn}: status ${res.status}`);
  }
});
