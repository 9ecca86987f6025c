/**
 * queue_metrics snapshots and alert_history rules (seed 004, issue 7), with the clock
 * injected (p_now): a snapshot per queue and tenant; alerts on depth, oldest age, DLQ
 * growth and failure rate raise once per (tenant, rule, subject) and resolve when the
 * condition clears.
 */
import type { Sql } from "postgres";
import { assertEquals } from "../tools/test/assert.ts";
import { freshDb } from "../tools/test/db.ts";
import { claim, createTenant, enqueue } from "./tenant_fixtures.ts";

const SEC = 1000;
const at = (base: Date, sec: number) => new Date(base.getTime() + sec * SEC);

/** Settles jobs with one status at an injected time. */
async function settle(
  sql: Sql,
  jobs: { job_id: string; lease_id: string }[],
  status: "completed" | "cancelled",
  now: Date,
) {
  const results = jobs.map((j) => ({ ...j, status, error: { message: "no" } }));
  await sql`select * from public.settle_jobs('w', ${sql.json(results as never)}, '{}', ${now})`;
}

async function evaluate(sql: Sql, now: Date) {
  const [r] = await sql`select * from public.evaluate_alerts(${now})`;
  return [r!.raised, r!.updated, r!.resolved] as number[];
}

async function alerts(sql: Sql, tenant: string) {
  return await sql`
    select rule, subject, status, value::float8 as value
    from public.alert_history where tenant_id = ${tenant} order by raised_at, rule, subject`;
}

async function setRule(
  sql: Sql,
  tenant: string,
  rule: string,
  threshold: number,
  extra: { window_sec?: number; min_samples?: number } = {},
) {
  await sql`
    insert into conveyor.tenant_alert_rules (tenant_id, rule, threshold, window_sec, min_samples)
    values (${tenant}, ${rule}, ${threshold}, ${extra.window_sec ?? null},
            ${extra.min_samples ?? null})`;
}

Deno.test("capture_queue_metrics: one row per queue and tenant with depth, in-flight, age and the interval's outcomes", async () => {
  await using db = await freshDb();
  const a = await createTenant(db.sql, "a");
  const b = await createTenant(db.sql, "b");
  const t = new Date();
  for (let i = 0; i < 4; i++) await enqueue(db.sql, a, "enrich");
  await enqueue(db.sql, b, "enforce");
  const got = (await claim(db.sql, "enrich", "w", 3, t)).filter((j) => j.tenant_id === a);
  assertEquals(got.length, 3);
  await settle(db.sql, [got[0]!], "completed", at(t, 10));
  await settle(db.sql, [got[1]!], "cancelled", at(t, 10));

  // Outcomes are counted per whole minute (conveyor.job_counts): a snapshot 70 s after t covers
  // the minute of the settles at t + 10 s, which has closed by then.
  const first = await db.sql`select public.capture_queue_metrics(${at(t, 70)}) as n`;
  assertEquals(first[0]!.n, 2);
  const rows = await db.sql`
    select tenant_id::text, queue_name, depth::int, in_flight::int, processed::int, failed::int,
           interval_sec, oldest_age_sec >= 29 as old_enough
    from public.queue_metrics order by queue_name`;
  assertEquals(rows.map((r) => Object.values(r)), [
    [b, "q_enforce", 1, 0, 0, 0, 60, true],
    [a, "q_enrich", 1, 1, 1, 1, 60, true],
  ]);

  assertEquals(
    (await db.sql`select public.capture_queue_metrics(${at(t, 70)}) as n`)[0]!.n,
    0,
    "the same instant is captured once",
  );
  await db.sql`select public.capture_queue_metrics(${at(t, 130)})`;
  const [next] = await db.sql`
    select processed::int, failed::int, interval_sec from public.queue_metrics
    where tenant_id = ${a} and captured_at = ${at(t, 130)}`;
  assertEquals(
    [next!.processed, next!.failed, next!.interval_sec],
    [0, 0, 60],
    "outcomes are counted in their own interval only",
  );
});

Deno.test("evaluate_alerts: queue depth raises one alert, refreshes it, resolves it, and raises anew", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  await setRule(db.sql, tenant, "queue_depth", 2);
  const t = new Date();
  for (let i = 0; i < 3; i++) await enqueue(db.sql, tenant, "enrich");

  assertEquals(await evaluate(db.sql, t), [1, 0, 0]);
  assertEquals(await evaluate(db.sql, at(t, 60)), [0, 0, 0], "deduplicated: still one open alert");
  await enqueue(db.sql, tenant, "enrich");
  assertEquals(await evaluate(db.sql, at(t, 120)), [0, 1, 0], "the open alert gets the new value");
  assertEquals((await alerts(db.sql, tenant)).map((r) => [r.rule, r.subject, r.status, r.value]), [
    ["queue_depth", "q_enrich", "open", 4],
  ]);

  // Leases that outlive the evaluation at t + 180 s (an expired lease makes its job ready).
  const got = await db.sql`select * from public.claim_jobs(p_kind => 'enrich', p_worker => 'w',
                                                          p_qty => 2, p_vt => 3600)`;
  assertEquals(got.length, 2);
  assertEquals(await evaluate(db.sql, at(t, 180)), [0, 0, 1], "depth 2 is not above 2: resolved");
  const [resolved] = await db.sql`
    select status, resolved_at from public.alert_history where tenant_id = ${tenant}`;
  assertEquals([resolved!.status, resolved!.resolved_at.getTime()], [
    "resolved",
    at(t, 180).getTime(),
  ]);

  await enqueue(db.sql, tenant, "enrich");
  assertEquals(await evaluate(db.sql, at(t, 240)), [1, 0, 0], "a new episode, a new alert");
  assertEquals((await alerts(db.sql, tenant)).map((r) => r.status), ["resolved", "open"]);
});

Deno.test("evaluate_alerts: oldest age, DLQ growth and failure rate raise and resolve", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  await setRule(db.sql, tenant, "oldest_age", 60);
  await setRule(db.sql, tenant, "dlq_growth", 1, { window_sec: 300 });
  await setRule(db.sql, tenant, "failure_rate", 0.5, { window_sec: 300, min_samples: 2 });
  const t = new Date();
  for (let i = 0; i < 3; i++) await enqueue(db.sql, tenant, "enrich");
  const got = await claim(db.sql, "enrich", "w", 2, t);
  await settle(db.sql, [got[0]!], "completed", t);
  await settle(db.sql, [got[1]!], "cancelled", t); // dead-lettered: a failure and DLQ growth

  assertEquals(await evaluate(db.sql, at(t, 1)), [2, 0, 0], "failure rate 1/2 and one dead letter");
  assertEquals(
    (await alerts(db.sql, tenant)).map((r) => [r.rule, r.subject, r.value]).sort(),
    [["dlq_growth", "enrich", 1], ["failure_rate", "q_enrich", 0.5]],
  );
  assertEquals(
    await evaluate(db.sql, at(t, 120)),
    [1, 0, 0],
    "the waiting job is now 2 minutes old",
  );
  // Past the window the failures and the dead letter are history; the old job has run.
  await settle(db.sql, await claim(db.sql, "enrich", "w", 5), "completed", new Date());
  assertEquals(await evaluate(db.sql, at(t, 400)), [0, 0, 3], "all three resolve");
  const statuses = await db.sql`
    select count(*) filter (where status = 'open')::int as open,
           count(*) filter (where status = 'resolved')::int as resolved
    from public.alert_history where tenant_id = ${tenant}`;
  assertEquals([statuses[0]!.open, statuses[0]!.resolved], [0, 3]);
});

Deno.test("evaluate_alerts: a disabled rule resolves its alert; other consumers' alerts are left alone", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  await setRule(db.sql, tenant, "queue_depth", 0);
  await enqueue(db.sql, tenant, "enrich");
  await db.sql`
    insert into public.alert_history (tenant_id, rule, subject, message)
    values (${tenant}, 'dead_letter', 'enrich', 'raised by the DLQ consumer')`;
  const t = new Date();
  assertEquals(await evaluate(db.sql, t), [1, 0, 0]);
  await db.sql`
    update conveyor.tenant_alert_rules set enabled = false
    where tenant_id = ${tenant} and rule = 'queue_depth'`;
  assertEquals(await evaluate(db.sql, at(t, 60)), [0, 0, 1]);
  const open = await db.sql`
    select rule from public.alert_history where tenant_id = ${tenant} and status = 'open'`;
  assertEquals(open.map((r) => r.rule), ["dead_letter"]);
});
