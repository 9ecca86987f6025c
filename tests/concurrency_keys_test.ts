/**
 * Concurrency keys (issue 21, docs/fairness.md) across sessions and through the API: racing
 * workers on their own connections, some of them killed mid-batch, never run more jobs of a
 * key at once than its limit, sampled from the ledger and the key leases while they run, and
 * every job completes; `queue_job` over the gateway takes `concurrency_key` and
 * `concurrency_limit` and answers bad ones with 400 and the exact text, writing nothing; the
 * typed API (QueueAdapter.publish) passes them on. The single-session semantics (parking,
 * waking, overrides, lease expiry) are in supabase/tests/concurrency_keys.test.sql.
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertMatch, assertRejects } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { tempKind, testQueueConfig, testServiceClient } from "../tools/test/queue.ts";
import { parseExposition, sampleValue } from "../tools/test/prometheus.ts";
import { PgmqQueueAdapter } from "../supabase/functions/_shared/queue/pgmq_adapter.ts";
import { cli, DEFAULT_TENANT, quietKind } from "./operator_fixtures.ts";
import { createTenant } from "./tenant_fixtures.ts";

const env = testEnv();

function post(fn: string, body: unknown): Promise<Response> {
  return fetch(`${env.apiUrl}/rest/v1/rpc/${fn}`, {
    method: "POST",
    headers: {
      apikey: env.serviceRoleKey,
      Authorization: `Bearer ${env.serviceRoleKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(body),
  });
}

interface Claimed {
  job_id: string;
  lease_id: string;
  msg_id: number;
  payload: { key: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("concurrency keys: 8 racing workers with kills never run more than the limit of a key, and every job completes", async () => {
  await using db = await freshDb();
  const admin = db.sql;
  const kind = "k_race";
  await admin`insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
              values (${kind}, ${"q_" + kind}, 'test', 'racing keys', false)`;
  await admin`select conveyor.ensure_kind_queues(${kind})`;
  await admin`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  const jobs = 300;
  const keys = 15;
  const limit = 2;
  await admin`select count(*) from public.queue_jobs((
    select jsonb_agg(jsonb_build_object('idempotency_key', 'race-' || g, 'kind', ${kind}::text,
             'payload', jsonb_build_object('key', 'k' || (g % ${keys})),
             'concurrency_key', 'k' || (g % ${keys}), 'concurrency_limit', ${limit}::int) order by g)
    from generate_series(1, ${jobs}) g))`;

  // What the handlers see: jobs of each key running right now (a killed worker's are not).
  const running = new Map<string, number>();
  let maxHandler = 0;
  let maxLedger = 0;
  let maxLeases = 0;
  let kills = 0;
  let done = false;

  const sampler = (async () => {
    const s = connect(db.url, 1);
    try {
      while (!done) {
        const [r] = await s<{ ledger: number; leases: number }[]>`
          select coalesce((select max(n) from (
                   select count(*) as n from public.jobs
                   where kind = ${kind} and status = 'processing' and locked_until > clock_timestamp()
                   group by concurrency_key) x), 0)::int as ledger,
                 coalesce((select max(n) from (
                   select count(*) as n from conveyor.key_leases
                   where kind = ${kind} and expires_at > clock_timestamp()
                   group by concurrency_key) y), 0)::int as leases`;
        maxLedger = Math.max(maxLedger, r!.ledger);
        maxLeases = Math.max(maxLeases, r!.leases);
        await sleep(5);
      }
    } finally {
      await s.end();
    }
  })();

  const worker = async (w: number) => {
    const sql: Sql = connect(db.url, 1);
    let batch: Claimed[] = [];
    let batches = 0;
    try {
      while (!done) {
        const results = batch.map((b) => ({
          job_id: b.job_id,
          lease_id: b.lease_id,
          status: "completed",
        }));
        const [r] = await sql<{ r: { claimed: Claimed[] } }[]>`
          select public.settle_and_claim_jobs(${"w" + w}, ${sql.json(results)}, ${kind}, 4, 2,
            '{"max_attempts": 10}') as r`;
        batch = r!.r.claimed;
        if (batch.length === 0) {
          await sleep(10);
          continue;
        }
        batches++;
        for (const b of batch) {
          const n = (running.get(b.payload.key) ?? 0) + 1;
          running.set(b.payload.key, n);
          maxHandler = Math.max(maxHandler, n);
        }
        await sleep(5 + Math.random() * 15);
        for (const b of batch) running.set(b.payload.key, running.get(b.payload.key)! - 1);
        // Workers 0 and 1 are killed mid-batch on their first batch and every 10th after it
        // (from the first, so a fast run kills too): their jobs are never settled and come
        // back when their 2 s leases expire.
        if (w < 2 && batches % 10 === 1) {
          kills++;
          batch = [];
        }
      }
    } finally {
      await sql.end();
    }
  };

  const workers = Array.from({ length: 8 }, (_, w) => worker(w));
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const [c] = await admin<{ n: number }[]>`
      select count(*)::int as n from public.jobs where kind = ${kind} and status = 'completed'`;
    if (c!.n === jobs) break;
    await sleep(100);
  }
  done = true;
  await Promise.all([...workers, sampler]);

  const [end] = await admin<
    { completed: number; other: number; leases: number; waiters: number }[]
  >`
    select count(*) filter (where status = 'completed')::int as completed,
           count(*) filter (where status <> 'completed')::int as other,
           (select count(*)::int from conveyor.key_leases) as leases,
           (select count(*)::int from conveyor.key_waiters) as waiters
    from public.jobs where kind = ${kind}`;
  assertEquals(
    end,
    { completed: jobs, other: 0, leases: 0, waiters: 0 },
    "all completed, nothing held",
  );
  assert(kills > 0, "some workers were killed");
  assert(maxHandler <= limit, `handlers of one key at once: ${maxHandler}`);
  assert(maxLedger <= limit, `processing jobs of one key in the ledger: ${maxLedger}`);
  assert(maxLeases <= limit, `live leases of one key: ${maxLeases}`);
  assertEquals(maxHandler, limit, "the limit was reached (the test raced)");
});

Deno.test("queue_job over the gateway: concurrency_key and concurrency_limit go into the ledger and the message", async () => {
  await using k = await tempKind();
  const key = `ck:${crypto.randomUUID()}`;
  const res = await post("queue_job", {
    idempotency_key: key,
    kind: k.kind,
    payload: {},
    concurrency_key: "user:42",
    concurrency_limit: 3,
  });
  const text = await res.text();
  assertEquals(res.status, 200, text);
  const [row] = await k.sql`
    select j.concurrency_key, j.concurrency_limit, q.message
    from public.jobs j join ${k.sql(`pgmq.q_q_${k.kind}`)} q on q.msg_id = j.msg_id
    where j.msg_id = ${Number(text)}`;
  assertEquals(row, {
    concurrency_key: "user:42",
    concurrency_limit: 3,
    message: {
      tenant_id: "00000000-0000-0000-0000-000000000000",
      concurrency_key: "user:42",
      concurrency_limit: 3,
    },
  });
});

Deno.test("queue_job over the gateway: bad concurrency keys and limits are HTTP 400 with the exact text, and nothing is written", async () => {
  await using k = await tempKind();
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ concurrency_key: 7 }, "queue_job: concurrency_key must be a non-empty string"],
    [{ concurrency_key: "" }, "queue_job: concurrency_key must be a non-empty string"],
    [
      { concurrency_key: "k".repeat(256) },
      "queue_job: concurrency_key is longer than 255 characters",
    ],
    [
      { concurrency_key: "u", concurrency_limit: 0 },
      "queue_job: concurrency_limit must be a whole number between 1 and 1000",
    ],
    [
      { concurrency_key: "u", concurrency_limit: 1001 },
      "queue_job: concurrency_limit must be a whole number between 1 and 1000",
    ],
    [{ concurrency_limit: 2 }, "queue_job: concurrency_limit needs a concurrency_key"],
    [
      { concurrency_key: "u", tenant_id: "dddddddd-dddd-4ddd-8ddd-dddddddddddd" },
      "queue_job: unknown tenant dddddddd-dddd-4ddd-8ddd-dddddddddddd",
    ],
  ];
  for (const [extra, message] of cases) {
    const body = { idempotency_key: `bad:${crypto.randomUUID()}`, kind: k.kind, ...extra };
    const res = await post("queue_job", body);
    const err = await res.json();
    assertEquals(
      [res.status, err.code, err.message],
      [400, "P0001", message],
      JSON.stringify(extra),
    );
  }
  const res = await post("queue_job", { idempotency_key: "x", kind: k.kind, colour: "red" });
  const err = await res.json();
  assertEquals(
    [res.status, err.hint],
    [
      400,
      "accepted fields: idempotency_key, kind, payload, priority, delay_seconds, execute_after, " +
      "headers, critical, concurrency_key, concurrency_limit, tenant_id",
    ],
  );
  const [n] = await k.sql`select count(*)::int as n from public.jobs where kind = ${k.kind}`;
  assertEquals(n!.n, 0, "no job was written");
});

Deno.test("QueueAdapter.publish passes concurrencyKey and concurrencyLimit on; queue_job refuses bad ones", async () => {
  await using k = await tempKind();
  const adapter = new PgmqQueueAdapter(testServiceClient(), testQueueConfig());
  try {
    const id = await adapter.publish({
      idempotencyKey: `typed:${crypto.randomUUID()}`,
      kind: k.kind,
      concurrencyKey: "acct:9",
      concurrencyLimit: 2,
    });
    const [row] = await k.sql`
      select concurrency_key, concurrency_limit from public.jobs where msg_id = ${Number(id)}`;
    assertEquals(row, { concurrency_key: "acct:9", concurrency_limit: 2 });
    await assertRejects(
      () => adapter.publish({ idempotencyKey: "typed:bad", kind: k.kind, concurrencyKey: "" }),
      "queue_job: concurrency_key must be a non-empty string",
    );
  } finally {
    await adapter.shutdown();
  }
});

Deno.test({
  name:
    "tenants and keys are visible: conveyor status, the dashboard data and Prometheus show the shared kind and the key at its limit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using k = await quietKind();
    const sql = k.sql;
    const other = await createTenant(sql, "keys-visible");
    for (let i = 0; i < 3; i++) {
      await post("queue_job", {
        idempotency_key: `vis:${k.kind}:${i}`,
        kind: k.kind,
        payload: { i },
        concurrency_key: "user:7",
      });
    }
    // One job of user:7 runs, the other two are parked; then another tenant's job is ready.
    const claimed = await sql`select job_id from public.claim_jobs(${k.kind}, 'w-vis', 10, 600)`;
    assertEquals(claimed.length, 1);
    await post("queue_job", {
      idempotency_key: `vis:${k.kind}:other`,
      kind: k.kind,
      payload: {},
      tenant_id: other,
    });

    const { code, out: text } = await cli(["status", "--tenants"]);
    assertEquals(code, 0, text);
    assertMatch(text, /^Concurrency keys with parked jobs or at their limit$/m);
    assertMatch(text, new RegExp(`^${k.kind}\\s+default\\s+user:7\\s+1/1\\s+2\\s`, "m"));
    assertMatch(text, new RegExp(`^${k.kind}\\s+keys-visible-`, "m"));

    const res = await fetch(`${env.apiUrl}/functions/v1/conveyor-metrics`, {
      headers: { authorization: `Bearer ${env.serviceRoleKey}` },
    });
    const fams = parseExposition(await res.text());
    assertEquals(
      sampleValue(fams, "conveyor_concurrency_keys_at_limit", {
        kind: k.kind,
        tenant_id: DEFAULT_TENANT,
      }),
      1,
    );
    assertEquals(
      sampleValue(fams, "conveyor_concurrency_key_waiting_jobs", {
        kind: k.kind,
        tenant_id: DEFAULT_TENANT,
      }),
      2,
    );
    assertEquals(
      sampleValue(fams, "conveyor_tenant_ready_jobs", {
        source: "queue",
        target: k.kind,
        tenant_id: other,
      }),
      1,
    );
    assertEquals(
      sampleValue(fams, "conveyor_tenant_running_jobs", {
        source: "queue",
        target: k.kind,
        tenant_id: DEFAULT_TENANT,
      }),
      1,
    );
    await sql`delete from public.jobs where tenant_id = ${other}`;
  },
});

Deno.test({
  name:
    "conveyor CLI: tenant weight, keys limit and enqueue --concurrency-key change what the RPCs say; bad arguments exit 2",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using k = await quietKind();
    const tenant = await createTenant(k.sql, "cli-weight");
    const [t] = await k.sql`select name from public.tenants where id = ${tenant}`;
    assertEquals(await cli(["tenant", "weight", tenant, "3"]), {
      code: 0,
      out: `tenant ${t!.name} (${tenant}): fair share weight 3`,
      err: "",
    });
    const [w] = await k
      .sql`select weight::int as w from conveyor.tenant_weights where tenant_id = ${tenant}`;
    assertEquals(w!.w, 3);
    const refused = await cli(["tenant", "weight", tenant, "0"]);
    assertEquals(
      [refused.code, refused.err],
      [1, "error: operator_set_tenant_weight: weight must be greater than 0 and at most 1000"],
    );

    assertEquals(await cli(["keys", "limit", k.kind, "4"]), {
      code: 0,
      out: `${k.kind}: concurrency keys run at most 4 job(s) at once by default`,
      err: "",
    });
    assertEquals(await cli(["keys", "limit", k.kind, "2", "--key", "acct:1", "--tenant", tenant]), {
      code: 0,
      out: `${k.kind} key acct:1: at most 2 job(s) at once`,
      err: "",
    });
    const [o] = await k.sql`
      select max_running from conveyor.concurrency_key_limits
      where tenant_id = ${tenant} and kind = ${k.kind} and concurrency_key = 'acct:1'`;
    assertEquals(o!.max_running, 2);
    assertEquals(
      (await cli(["keys", "limit", k.kind, "none", "--key", "acct:1", "--tenant", tenant])).out,
      `${k.kind} key acct:1: override removed`,
    );
    for (
      const args of [
        ["keys", "limit", k.kind, "none"],
        ["keys", "limit", k.kind, "0"],
        ["keys", "limit", k.kind, "2", "--tenant", tenant],
        ["tenant", "weight", "not-a-uuid", "2"],
        ["enqueue", k.kind, "--concurrency-key", "u", "--concurrency-limit", "0"],
      ]
    ) {
      assertEquals((await cli(args)).code, 2, args.join(" "));
    }

    const enq = await cli([
      "enqueue",
      k.kind,
      "--idempotency-key",
      `cli:${k.kind}`,
      "--concurrency-key",
      "user:5",
      "--concurrency-limit",
      "2",
    ]);
    assertEquals(enq.code, 0, enq.err);
    const [j] = await k.sql`
      select concurrency_key, concurrency_limit from public.jobs where idempotency_key = ${`cli:${k.kind}`}`;
    assertEquals(j, { concurrency_key: "user:5", concurrency_limit: 2 });
    await k.sql`delete from conveyor.tenant_weights where tenant_id = ${tenant}`;
  },
});

Deno.test({
  name:
    "a claim never waits for a parked job's waiter row a waker holds: it puts the job back instead of deadlocking on the tier's hint",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using k = await quietKind();
    const tier = `q_${k.kind}`;
    for (let i = 0; i < 2; i++) {
      const res = await post("queue_job", {
        idempotency_key: `waker:${k.kind}:${i}`,
        kind: k.kind,
        payload: { i },
        concurrency_key: "user:9",
        concurrency_limit: 1,
      });
      assertEquals(res.status, 200, await res.text());
    }
    // The first job runs; the second is parked behind it (a waiter row, its message hidden).
    const first = await k.sql`select job_id from public.claim_jobs(${k.kind}, 'w-first', 10, 600)`;
    assertEquals(first.length, 1);
    const [parked] = await k.sql<{ msg_id: string }[]>`
      select w.msg_id from conveyor.key_waiters w where w.kind = ${k.kind}`;
    assert(parked, "the second job is parked");
    // Its park time has passed: the next claim reads it again (the tier's hint, raised to the
    // park time by the claim that found the tier empty, lowered as time passing would).
    await k.sql.unsafe(
      `update pgmq."q_${tier}" set vt = now() - interval '1 second' where msg_id = $1`,
      [parked.msg_id],
    );
    await k
      .sql`update conveyor.queue_hints set visible_from = '-infinity' where queue_name = ${tier}`;

    const waker = connect(env.dbUrl, 1);
    const claimer = connect(env.dbUrl, 1);
    const w = await waker.reserve();
    const c = await claimer.reserve();
    try {
      // The waker (as conveyor.wake_waiters does) holds the waiter row and will want the hint.
      await w`begin`;
      await w`set local lock_timeout = '5s'`;
      await w`select 1 from conveyor.key_waiters where msg_id = ${parked.msg_id} for update`;
      // The claimer holds the hint's row (as after a lower_hint in its settle), then claims.
      await c`begin`;
      await c`set local lock_timeout = '5s'`;
      await c`update conveyor.queue_hints set visible_from = visible_from where queue_name = ${tier}`;
      const claim = c`select job_id from public.claim_jobs(${k.kind}, 'w-second', 10, 600)`
        .then((rows) => rows.length, (e) => String(e.message));
      await sleep(300);
      const hint = w`update conveyor.queue_hints set visible_from = visible_from
                     where queue_name = ${tier}`.then(() => "ok", (e) => String(e.message));
      // Before the fix the claim waited for the waiter row and one of the two failed with
      // "deadlock detected" after deadlock_timeout.
      assertEquals(await claim, 0);
      const [back] = await c.unsafe(
        `select vt > now() and vt <= clock_timestamp() + interval '1 second' as soon
         from pgmq."q_${tier}" where msg_id = $1`,
        [parked.msg_id],
      );
      assertEquals(back!.soon, true, "the parked job is put back for a moment");
      await c`commit`;
      assertEquals(await hint, "ok");
      await w`rollback`;
    } finally {
      w.release();
      c.release();
      await waker.end({ timeout: 1 });
      await claimer.end({ timeout: 1 });
    }
    // The waker gave up: the job is still parked, and its key is still at its limit.
    const [still] = await k.sql`
      select count(*)::int as n from conveyor.key_waiters where msg_id = ${parked.msg_id}`;
    assertEquals(still!.n, 1);
  },
});
