/**
 * Schedules (seed 004, issue 7): materialise_schedules fires each due time EXACTLY ONCE,
 * even with two materialiser runs racing on two connections. The clock is injected
 * (p_now), so the test walks an hour of due times in a moment.
 */
import type { Sql } from "postgres";
import { assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { createTenant } from "./tenant_fixtures.ts";

const MINUTE = 60_000;

async function addSchedule(sql: Sql, tenant: string, cron: string, createdAt: Date) {
  const [row] = await sql`
    insert into public.schedules (tenant_id, name, cron, kind, payload, created_at)
    values (${tenant}, ${`s-${cron}`}, ${cron}, 'enrich', ${sql.json({ cron })}, ${createdAt})
    returning id`;
  return row!.id as string;
}

/** How often each (schedule, due time) was enqueued, from the jobs' headers. */
async function firings(sql: Sql, tenant: string) {
  return await sql`
    select headers ->> 'schedule_id' as schedule_id, (headers ->> 'scheduled_for')::timestamptz as at,
           count(*)::int as n
    from public.jobs where tenant_id = ${tenant} and headers ? 'schedule_id'
    group by 1, 2`;
}

Deno.test("materialise_schedules: two racing runs fire every due time exactly once", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  const t0 = new Date("2031-03-01T00:00:30Z");
  const every = await addSchedule(db.sql, tenant, "* * * * *", t0);
  const even = await addSchedule(db.sql, tenant, "*/2 * * * *", t0);
  const fifth = await addSchedule(db.sql, tenant, "*/5 * * * *", t0);

  const one = connect(db.url, 1);
  const two = connect(db.url, 1);
  try {
    for (let k = 1; k <= 40; k++) {
      // Both at the same instant, and a third call a little later on a stale clock.
      const now = new Date(t0.getTime() + k * MINUTE + (k % 7) * 1000);
      const stale = new Date(now.getTime() - 45_000);
      await Promise.all([
        one`select * from public.materialise_schedules(${now})`,
        two`select * from public.materialise_schedules(${now})`,
        (k % 3 === 0 ? one : two)`select * from public.materialise_schedules(${stale})`,
      ]);
    }
  } finally {
    await one.end();
    await two.end();
  }

  const rows = await firings(db.sql, tenant);
  assertEquals(rows.filter((r) => r.n !== 1), [], "no due time fired twice");
  const count = (id: string) => rows.filter((r) => r.schedule_id === id).length;
  // Due times in (00:00:30, 00:40:xx]: 00:01 … 00:40.
  assertEquals([count(every), count(even), count(fifth)], [40, 20, 8]);
  const [runs] = await db.sql`
    select count(*)::int as n, count(job_id)::int as with_job from conveyor.schedule_runs`;
  assertEquals([runs!.n, runs!.with_job], [68, 68], "one run row per due time, each with its job");
});

Deno.test("materialise_schedules: a run that finds the schedule locked skips it; the holder fires it once", async () => {
  await using db = await freshDb();
  const tenant = await createTenant(db.sql);
  const t0 = new Date("2031-03-01T00:00:30Z");
  await addSchedule(db.sql, tenant, "* * * * *", t0);
  const now = new Date(t0.getTime() + 3 * MINUTE);

  const one = connect(db.url, 1);
  const two = connect(db.url, 1);
  try {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let firstFired = 0;
    const first = one.begin(async (tx) => {
      firstFired = (await tx`select * from public.materialise_schedules(${now})`).length;
      await held; // keep the transaction (and the schedule's row lock) open
    });
    // Wait until the first run holds the row, then race it.
    for (let i = 0; i < 200; i++) {
      const [r] = await db.sql`
        select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation
        where c.relname = 'schedules' and l.mode = 'RowShareLock' and l.granted`;
      if (r!.n > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const during = await two`select * from public.materialise_schedules(${now})`;
    release();
    await first;
    const after = await two`select * from public.materialise_schedules(${now})`;
    assertEquals([firstFired, during.length, after.length], [3, 0, 0]);
  } finally {
    await one.end();
    await two.end();
  }
  const rows = await firings(db.sql, tenant);
  assertEquals(rows.map((r) => r.n), [1, 1, 1]);
});
