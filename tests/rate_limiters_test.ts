/**
 * Token-bucket rate limiters (seed 004, issue 7): claim_jobs takes a token and a concurrency
 * slot of the job's tenant and service inside the claim, so a job that cannot get one is
 * not claimed. Real claimers on separate connections; assertions are about counts, never
 * about how fast anything ran.
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import {
  addServiceKind,
  claim,
  type Claimed,
  complete,
  createTenant,
  enqueue,
} from "./tenant_fixtures.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("rate_limiters: every tenant gets seed 004's four buckets", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  const rows = await db.sql`
    select service_name, tokens_available::int as tokens, max_concurrent, capacity::int as capacity
    from public.rate_limiters where tenant_id = ${tenant} order by service_name`;
  assertEquals(rows.map((r) => [r.service_name, r.tokens, r.max_concurrent, r.capacity]), [
    ["sendgrid", 50, 10, 50],
    ["solana_rpc", 25, 5, 25],
    ["stripe", 100, 10, 100],
    ["twilio", 10, 5, 10],
  ]);
});

/** One claim call as a worker saw it: when it was sent and answered, what it got. */
interface ClaimCall {
  sent: number;
  answered: number;
  perTenant: Map<string, number>;
}

Deno.test(
  "claim_jobs: 8 concurrent claimers never exceed twilio's tokens per window or its 5 concurrent jobs",
  async () => {
    await using db = await freshDb();
    const kind = await addServiceKind(db.sql, "twilio");
    const tenants = [await createTenant(db.sql, "a"), await createTenant(db.sql, "b")];
    // Interleaved tenants over two tiers, so claimers meet the tenants in different orders.
    for (let i = 0; i < 60; i++) {
      for (const t of tenants) {
        await enqueue(db.sql, t, kind, { priority: i % 3 === 0 ? "fast" : "normal" });
      }
    }
    const [lim] = await db.sql`
      select capacity::float8 as capacity, refill_per_sec::float8 as refill, max_concurrent
      from public.rate_limiters where tenant_id = ${tenants[0]!} and service_name = 'twilio'`;
    const capacity = lim!.capacity as number;
    const refill = lim!.refill as number;
    const maxConcurrent = lim!.max_concurrent as number;

    const calls: ClaimCall[] = [];
    const inFlight = new Map<string, number>(tenants.map((t) => [t, 0]));
    const peak = new Map<string, number>(tenants.map((t) => [t, 0]));
    const errors: unknown[] = [];
    const deadline = Date.now() + 3500;

    const worker = async (n: number) => {
      const sql = connect(db.url, 1);
      const name = `w${n}`;
      try {
        while (Date.now() < deadline) {
          const sent = performance.now();
          let got: Claimed[];
          try {
            got = await claim(sql, kind, name, 3);
          } catch (e) {
            errors.push(e);
            continue;
          }
          const answered = performance.now();
          const perTenant = new Map<string, number>();
          for (const j of got) {
            perTenant.set(j.tenant_id, (perTenant.get(j.tenant_id) ?? 0) + 1);
            const now = (inFlight.get(j.tenant_id) ?? 0) + 1;
            inFlight.set(j.tenant_id, now);
            peak.set(j.tenant_id, Math.max(peak.get(j.tenant_id) ?? 0, now));
          }
          calls.push({ sent, answered, perTenant });
          await sleep(got.length ? 20 + Math.random() * 60 : 15);
          // Counted out BEFORE the completion is sent: the slot is held in the database
          // until the completion commits, so the observed overlap can only be smaller.
          for (const j of got) inFlight.set(j.tenant_id, inFlight.get(j.tenant_id)! - 1);
          await complete(sql, name, got);
        }
      } finally {
        await sql.end();
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, i) => worker(i)));

    assertEquals(errors.map(String), [], "no claim failed (no deadlock, no serialization error)");
    for (const t of tenants) {
      assert(peak.get(t)! <= maxConcurrent, `tenant ran ${peak.get(t)} jobs at once`);
      const total = calls.reduce((s, c) => s + (c.perTenant.get(t) ?? 0), 0);
      assert(total >= capacity, `the full bucket was used (${total} claims)`);
      // Calls per window: the claims certainly granted inside [s, e] (sent at or after s,
      // answered by e) can never exceed the bucket: capacity + refill × (e − s).
      const mine = calls.filter((c) => c.perTenant.has(t));
      for (const a of mine) {
        for (const b of mine) {
          if (b.answered < a.sent) continue;
          const granted = mine
            .filter((c) => c.sent >= a.sent && c.answered <= b.answered)
            .reduce((s, c) => s + c.perTenant.get(t)!, 0);
          const allowed = capacity + refill * (b.answered - a.sent) / 1000;
          assert(
            granted <= allowed + 1e-9,
            `${granted} claims in ${(b.answered - a.sent).toFixed(0)} ms (bucket allows ${
              allowed.toFixed(2)
            })`,
          );
        }
      }
    }
    // Everything claimed was completed: the buckets' slots are free again.
    const [left] = await db.sql`
      select count(*)::int as n from public.jobs where kind = ${kind} and status = 'processing'`;
    assertEquals(left!.n, 0);
  },
);

Deno.test("claim_jobs: a job that cannot get a token stays visible, unclaimed and unfailed", async () => {
  await using db = await freshDb();
  const kind = await addServiceKind(db.sql, "stripe");
  const tenant = await createTenant(db.sql);
  const now = new Date();
  // Two tokens and no refill: exactly two claims can ever be granted.
  await db.sql`
    update public.rate_limiters set tokens_available = 2, refill_per_sec = 0, refilled_at = ${now}
    where tenant_id = ${tenant} and service_name = 'stripe'`;
  const jobs = [];
  for (let i = 0; i < 5; i++) jobs.push(await enqueue(db.sql, tenant, kind));

  assertEquals((await claim(db.sql, kind, "w", 5, now)).length, 2);
  assertEquals((await claim(db.sql, kind, "w", 5, now)).length, 0);

  const rest = await db.sql`
    select j.id, j.status, j.attempts, j.msg_id, j.lease_id
    from public.jobs j where j.kind = ${kind} and j.status <> 'processing' order by j.id`;
  assertEquals(rest.length, 3);
  for (const r of rest) {
    assertEquals([r.status, r.attempts, r.lease_id], ["pending", 0, null]);
  }
  const msgs = await db.sql.unsafe(
    `select msg_id, read_ct, vt <= clock_timestamp() as visible from pgmq.q_q_${kind}
     where msg_id = any($1::bigint[])`,
    [rest.map((r) => String(r.msg_id))],
  );
  assertEquals(msgs.map((m) => [m.read_ct, m.visible]), [[0, true], [0, true], [0, true]]);
  const [ev] = await db.sql`
    select count(*) filter (where j.status = 'processing')::int as claimed,
           count(*) filter (where j.attempts > 0)::int as attempted,
           (select count(*)::int from public.job_events e join public.jobs x on x.id = e.job_id
            where x.kind = ${kind} and e.type in ('dead_lettered', 'retry_scheduled')) as failed
    from public.jobs j where j.kind = ${kind}`;
  assertEquals(
    [ev!.claimed, ev!.attempted, ev!.failed],
    [2, 2, 0],
    "only the two granted jobs were claimed; nothing failed",
  );
  const [dead] = await db.sql`
    select count(*)::int as n from public.dead_letter_jobs where kind = ${kind}`;
  assertEquals(dead!.n, 0);
});

Deno.test("claim_jobs: completing or failing a job gives its concurrency slot back", async () => {
  await using db = await freshDb();
  const kind = await addServiceKind(db.sql, "twilio"); // 5 concurrent
  const tenant = await createTenant(db.sql);
  await db.sql`
    update public.rate_limiters set capacity = 1000, tokens_available = 1000
    where tenant_id = ${tenant} and service_name = 'twilio'`;
  for (let i = 0; i < 8; i++) await enqueue(db.sql, tenant, kind);

  const first = await claim(db.sql, kind, "w", 8);
  assertEquals(first.length, 5, "five slots");
  assertEquals((await claim(db.sql, kind, "w", 8)).length, 0, "no slot left");

  assertEquals(await complete(db.sql, "w", first.slice(0, 1)), 1);
  assertEquals((await claim(db.sql, kind, "w", 8)).length, 1, "a completion frees one slot");

  const [failed] = await db.sql`
    select public.fail_job(${first[1]!.job_id}::uuid, ${first[1]!.lease_id}::uuid,
                                        'boom', '{"backoff_base_ms": 60000}'::jsonb) as outcome`;
  assertEquals(failed!.outcome, "retry_scheduled");
  assertEquals((await claim(db.sql, kind, "w", 8)).length, 1, "a failure frees one slot");
});
