/**
 * public.queue_jobs (set-based writes: conveyor.enqueue_items, 0050_enqueue_core.sql) under
 * concurrency: calls racing on the same idempotency keys make one job per key, every call gets
 * that job's id, and calls whose keys overlap in opposite orders do not deadlock. The single-call contract is pgTAP's
 * (supabase/tests/queue_jobs_set_based.test.sql).
 */
import type { Sql, TransactionSql } from "postgres";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { eventually } from "../tools/test/queue.ts";

const body = (key: string) => ({ idempotency_key: key, kind: "enrich", payload: { key } });

async function queueJobs(sql: Sql | TransactionSql, keys: string[]): Promise<number[]> {
  const rows = await sql<{ id: string }[]>`
    select t.id from public.queue_jobs(${sql.json(keys.map(body))}) with ordinality as t(id, o)
    order by t.o`;
  return rows.map((r) => Number(r.id));
}

/** key → msg_id of every job, with the number of jobs, messages and counted enqueues per key. */
async function ledger(sql: Sql): Promise<Map<string, { id: number; n: number }>> {
  const rows = await sql<{ key: string; id: string; n: number }[]>`
    select j.idempotency_key as key, min(j.msg_id) as id, count(*)::int as n
    from public.jobs j group by j.idempotency_key`;
  const [c] = await sql<{ jobs: number; msgs: number; events: number }[]>`
    select (select count(*)::int from public.jobs) as jobs,
           (select count(*)::int from pgmq.q_q_enrich) as msgs,
           (select coalesce(sum(enqueued), 0)::int from conveyor.job_counts) as events`;
  assertEquals(c!.msgs, c!.jobs, "one message per job");
  assertEquals(c!.events, c!.jobs, "one enqueue counted per job (conveyor.job_counts)");
  return new Map(rows.map((r) => [r.key, { id: Number(r.id), n: r.n }]));
}

Deno.test("queue_jobs: a call racing an uncommitted one on the same keys waits, then returns its jobs", async () => {
  await using db = await freshDb();
  let a: number[] = [];
  let b: Promise<number[]> | undefined;
  await db.sql.begin(async (tx) => {
    a = await queueJobs(tx, ["k1", "k2", "k3"]);
    // In the opposite order, with one new key: it must wait for our keys, not fail.
    b = queueJobs(db.sql, ["k3", "k2", "k4"]);
    await eventually("the second call waits on the first one's keys", async () => {
      const [w] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'
          and query like '%queue_jobs%'`;
      return w!.n === 1;
    });
  });
  const got = await b!;
  assertEquals(got.slice(0, 2), [a[2], a[1]], "k3 and k2: the first call's ids");
  assert(!a.includes(got[2]!), "k4 is a job of its own");
  const l = await ledger(db.sql);
  assertEquals([...l.keys()].sort(), ["k1", "k2", "k3", "k4"]);
  assert([...l.values()].every((v) => v.n === 1), "one job per key");
});

Deno.test("queue_jobs: a call racing one that rolls back enqueues the keys itself", async () => {
  await using db = await freshDb();
  let b: Promise<number[]> | undefined;
  await db.sql.begin(async (tx) => {
    await queueJobs(tx, ["r1", "r2"]);
    b = queueJobs(db.sql, ["r2", "r1", "r3"]);
    await eventually("the second call waits", async () => {
      const [w] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'
          and query like '%queue_jobs%'`;
      return w!.n === 1;
    });
    await tx`select 1/0`; // roll back
  }).catch(() => {});
  const got = await b!;
  const l = await ledger(db.sql);
  assertEquals(got, [l.get("r2")!.id, l.get("r1")!.id, l.get("r3")!.id]);
  assertEquals(l.size, 3);
});

Deno.test("queue_jobs: 8 concurrent calls over overlapping keys in random orders make one job per key", async () => {
  await using db = await freshDb();
  const pool = Array.from({ length: 300 }, (_, i) => `p${i}`);
  const shuffled = () => {
    const a = [...pool];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a.slice(0, 200);
  };
  const calls = Array.from({ length: 8 }, shuffled);
  const sql = connect(db.url, 8);
  let results: number[][];
  try {
    results = await Promise.all(calls.map((keys) => queueJobs(sql, keys)));
  } finally {
    await sql.end();
  }
  const l = await ledger(db.sql);
  assert([...l.values()].every((v) => v.n === 1), "one job per key");
  calls.forEach((keys, c) =>
    keys.forEach((k, i) => assertEquals(results[c]![i], l.get(k)!.id, `call ${c}, ${k}`))
  );
  assertEquals(l.size, new Set(calls.flat()).size);
});
