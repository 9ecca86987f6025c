/**
 * critical_jobs (seed 004, issue 7): a critical job gets 5 attempts instead of 3, always has
 * an idempotency key, and is dead-lettered like any other job when they are used up.
 */
import type { Sql } from "postgres";
import { assertEquals, assertRejects } from "../tools/test/assert.ts";
import { freshDb } from "../tools/test/db.ts";
import { claim, createTenant } from "./tenant_fixtures.ts";

/** The worker's policy: 3 attempts (the default), retry at once so the test need not wait. */
const POLICY = { max_attempts: 3, backoff_base_ms: 0, backoff_max_ms: 0 };

async function queueJob(sql: Sql, body: Record<string, unknown>): Promise<number> {
  const [row] = await sql`select public.queue_job(${sql.json(body as never)}) as msg_id`;
  return Number(row!.msg_id);
}

/** Claims the job and fails it until it is dead-lettered; returns each failure's outcome. */
async function failUntilDead(sql: Sql, jobId: string): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < 10; i++) {
    const got = (await claim(sql, "enrich", "w", 10)).filter((j) => j.job_id === jobId);
    if (got.length === 0) break;
    const [r] = await sql`
      select outcome from public.settle_jobs('w', ${
      sql.json([{
        job_id: jobId,
        lease_id: got[0]!.lease_id,
        status: "failed",
        error: { message: `boom ${i + 1}` },
      }] as never)
    }, ${sql.json(POLICY)})`;
    outcomes.push(r!.outcome as string);
    if (r!.outcome === "dead_lettered") break;
  }
  return outcomes;
}

Deno.test("critical_jobs: a critical job gets 5 attempts, then is dead-lettered like the others", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  const msgId = await queueJob(db.sql, {
    kind: "enrich",
    idempotency_key: "critical-1",
    payload: { n: 1 },
    critical: true,
    tenant_id: tenant,
  });
  const [job] = await db.sql`
    select j.id, j.max_attempts, c.idempotency_key, c.max_attempts as critical_max
    from public.jobs j join public.critical_jobs c on c.job_id = j.id
    where j.msg_id = ${msgId} and j.tenant_id = ${tenant}`;
  assertEquals([job!.max_attempts, job!.critical_max, job!.idempotency_key], [5, 5, "critical-1"]);

  assertEquals(await failUntilDead(db.sql, job!.id), [
    "retry_scheduled",
    "retry_scheduled",
    "retry_scheduled",
    "retry_scheduled",
    "dead_lettered",
  ]);
  const [dead] = await db.sql`
    select d.attempts, d.reason, d.tenant_id::text, j.status, jsonb_array_length(d.errors) as errors,
           exists (select 1 from pgmq.q_q_dlq q where q.msg_id = d.dlq_msg_id) as in_dlq
    from public.dead_letter_jobs d join public.jobs j on j.id = d.job_id
    where d.job_id = ${job!.id}`;
  assertEquals(
    [dead!.attempts, dead!.reason, dead!.tenant_id, dead!.status, dead!.errors, dead!.in_dlq],
    [5, "boom 5", tenant, "failed", 5, true],
  );
});

Deno.test("critical_jobs: an ordinary job under the same policy dead-letters after 3", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  const msgId = await queueJob(db.sql, {
    kind: "enrich",
    idempotency_key: "plain-1",
    tenant_id: tenant,
  });
  const [job] = await db.sql`
    select id from public.jobs where msg_id = ${msgId} and tenant_id = ${tenant}`;
  assertEquals(await failUntilDead(db.sql, job!.id), [
    "retry_scheduled",
    "retry_scheduled",
    "dead_lettered",
  ]);
  const [n] = await db.sql`select count(*)::int as n from public.critical_jobs where job_id = ${
    job!.id
  }`;
  assertEquals(n!.n, 0, "not critical");
});

Deno.test("critical_jobs: idempotency is required and holds", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  await assertRejects(
    () => queueJob(db.sql, { kind: "enrich", critical: true, tenant_id: tenant }),
    "queue_job: missing idempotency_key",
  );
  await assertRejects(
    () =>
      db.sql`select * from conveyor.enqueue(${tenant}::uuid, 'enrich', '{}', null, p_critical => true)`,
    "null value",
  );
  const body = { kind: "enrich", idempotency_key: "crit-same", critical: true, tenant_id: tenant };
  const first = await queueJob(db.sql, body);
  assertEquals(await queueJob(db.sql, body), first, "the same key returns the same job");
  const [n] = await db.sql`
    select count(*)::int as n from public.critical_jobs where tenant_id = ${tenant}`;
  assertEquals(n!.n, 1);
});
