/**
 * dead_letter_jobs operations (seed 004, issue 7): list (filtered, paged), inspect (with the
 * job and its events) and bulk redrive, for service_role. Tenant read access is covered
 * through the gateway in tenancy_gateway_test.ts.
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertRejects } from "../tools/test/assert.ts";
import { freshDb } from "../tools/test/db.ts";
import { claim, createTenant, enqueue } from "./tenant_fixtures.ts";

/** Enqueues one job for the tenant and cancels it: a dead letter. Returns the job id. */
async function deadJob(sql: Sql, tenant: string, reason: string): Promise<string> {
  const { jobId } = await enqueue(sql, tenant, "enrich");
  const got = (await claim(sql, "enrich", "w", 50)).filter((j) => j.job_id === jobId);
  await sql`
    select * from public.settle_jobs('w', ${
    sql.json([{
      job_id: jobId,
      lease_id: got[0]!.lease_id,
      status: "cancelled",
      error: { message: reason },
    }] as never)
  })`;
  return jobId;
}

Deno.test("dead letters: list filters by tenant and kind, pages newest first, inspects and redrives", async () => {
  await using db = await freshDb();
  const a = await createTenant(db.sql, "a");
  const b = await createTenant(db.sql, "b");
  const a1 = await deadJob(db.sql, a, "first");
  const a2 = await deadJob(db.sql, a, "second");
  await deadJob(db.sql, b, "other tenant");

  const listA = await db.sql`select * from public.list_dead_letter_jobs(p_tenant_id => ${a})`;
  assertEquals(listA.map((r) => r.job_id), [a2, a1], "tenant A's, newest first");
  const page2 = await db.sql`
    select * from public.list_dead_letter_jobs(p_tenant_id => ${a}, p_before => ${
    listA[0]!.created_at
  }, p_limit => 1)`;
  assertEquals(page2.map((r) => r.job_id), [a1], "keyset paging");
  assertEquals(
    (await db.sql`select * from public.list_dead_letter_jobs(p_kind => 'enforce')`).length,
    0,
  );

  const [{ detail }] = await db.sql`
    select public.inspect_dead_letter_job(${listA[0]!.id}) as detail` as unknown as [
    { detail: { job: { id: string; status: string }; events: { type: string }[] } },
  ];
  assertEquals([detail.job.id, detail.job.status], [a2, "failed"]);
  assertEquals(
    detail.events.map((e) => e.type),
    ["dead_lettered"],
    "a healthy enqueue and claim write no event",
  );
  await assertRejects(
    () => db.sql`select public.inspect_dead_letter_job(gen_random_uuid())`,
    "no dead letter",
  );

  const redriven = await db.sql`select * from public.redrive_dead_letter_jobs(p_tenant_id => ${a})`;
  assertEquals(redriven.map((r) => r.job_id).sort(), [a1, a2].sort());
  const jobs = await db.sql`
    select status, attempts from public.jobs where id = any(${[a1, a2]}::uuid[])`;
  assertEquals(jobs.map((j) => [j.status, j.attempts]), [["pending", 0], ["pending", 0]]);
  assertEquals(
    (await db.sql`select * from public.list_dead_letter_jobs(p_tenant_id => ${a})`).length,
    0,
    "redriven letters leave the default list",
  );
  const all = await db.sql`
    select * from public.list_dead_letter_jobs(p_tenant_id => ${a}, p_include_redriven => true)`;
  assert(all.every((r) => r.redriven_at !== null), "and stay in the history");
  const again = (await claim(db.sql, "enrich", "w", 10)).map((j) => j.job_id).sort();
  assertEquals(again, [a1, a2].sort(), "redriven jobs run again");
  assertEquals(
    (await db.sql`select * from public.list_dead_letter_jobs(p_tenant_id => ${b})`).length,
    1,
    "tenant B's letter was not touched",
  );
});

Deno.test("dead letters: the open dead_letter alert resolves when the last letter of its tenant and kind is redriven or deleted", async () => {
  await using db = await freshDb();
  const a = await createTenant(db.sql, "a");
  const b = await createTenant(db.sql, "b");
  const a1 = await deadJob(db.sql, a, "first");
  const a2 = await deadJob(db.sql, a, "second");
  const b1 = await deadJob(db.sql, b, "other tenant");
  const processed = await db.sql`select * from public.process_dead_letters('dlq-test', 50)`;
  assertEquals(processed.length, 3, "the consumer saw three letters");
  const alerts = () =>
    db.sql<{ tenant_id: string; status: string; value: string; resolved: boolean }[]>`
      select tenant_id, status, value::text, resolved_at is not null as resolved
      from public.alert_history where rule = 'dead_letter' and subject = 'enrich'
      order by raised_at, tenant_id`;
  const open = await alerts();
  assertEquals(open.length, 2, "one open alert per tenant");
  assert(open.every((r) => r.status === "open" && !r.resolved));

  await db.sql`select public.redrive_dead_job(${a1})`;
  assertEquals(
    (await alerts()).find((r) => r.tenant_id === a)!.status,
    "open",
    "one of tenant A's letters is still waiting",
  );
  await db.sql`select public.redrive_dead_job(${a2})`;
  const afterA = await alerts();
  assertEquals(
    afterA.map((r) => [r.tenant_id === a ? "a" : "b", r.status, r.resolved]).sort(),
    [["a", "resolved", true], ["b", "open", false]],
    "tenant A's alert resolved; tenant B's untouched",
  );

  await db.sql`delete from public.dead_letter_jobs where job_id = ${b1}`;
  assertEquals(
    (await alerts()).map((r) => r.status),
    ["resolved", "resolved"],
    "deleting the last letter resolves too",
  );

  // A new dead letter opens a new episode.
  await deadJob(db.sql, a, "third");
  await db.sql`select * from public.process_dead_letters('dlq-test', 50)`;
  const last = await alerts();
  assertEquals(last.length, 3);
  assertEquals(last.filter((r) => r.status === "open").map((r) => r.tenant_id), [a]);
});
