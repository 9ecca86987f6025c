/**
 * The ceilings: a raw single-row INSERT (and a multi-row one) from postgres.js, and pgmq
 * itself draining with read+archive in ONE statement (the limit of any design built on
 * pgmq: a real worker needs a claim and a settle transaction per batch).
 *
 * @module
 */
import postgres from "postgres";
import { type BenchEnv, DBS } from "../env.ts";
import { type Cost, meter } from "../meter.ts";
import { DeliveryCounter, drainRun, enqueueRun } from "../stats.ts";
import type { RunResult } from "../types.ts";
import { loops } from "./conveyor.ts";

const RAW_TABLE = `
drop table if exists rq;
create table rq (id bigserial primary key, payload jsonb, vt timestamptz not null default now());`;

async function rawCounts(
  sql: postgres.Sql,
  n: number,
  seconds: number,
  cost: Cost,
): Promise<RunResult> {
  const [r] = await sql<{ rows: number; distinct: number }[]>`
    select count(*)::int as rows, count(distinct payload ->> 'i')::int as distinct from rq`;
  return enqueueRun(n, r!, seconds, cost);
}

/** One INSERT per call (autocommit) from `conc` loops on a pool of `conc`. */
export async function insertSingle(env: BenchEnv, n: number, conc: number): Promise<RunResult> {
  const sql = postgres(env.url(DBS.raw), { max: conc, onnotice: () => {}, prepare: true });
  try {
    await sql.unsafe(RAW_TABLE);
    await Promise.all(Array.from({ length: conc }, () => sql`select 1`));
    const done = await meter(env);
    const seconds = await loops(
      n,
      conc,
      (i) => sql`insert into rq (payload) values (${sql.json({ i })})`,
    );
    return await rawCounts(sql, n, seconds, await done(n));
  } finally {
    await sql.end();
  }
}

/** Multi-row INSERT with `chunk` rows per statement, sequential. */
export async function insertBatch(env: BenchEnv, n: number, chunk: number): Promise<RunResult> {
  const sql = postgres(env.url(DBS.raw), { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(RAW_TABLE);
    const done = await meter(env);
    const t0 = performance.now();
    for (let s = 0; s < n; s += chunk) {
      const rows = Array.from(
        { length: Math.min(chunk, n - s) },
        (_, k) => ({ payload: { i: s + k } }),
      );
      await sql`insert into rq ${
        sql(rows as unknown as Record<string, postgres.SerializableParameter>[], "payload")
      }`;
    }
    const seconds = (performance.now() - t0) / 1000;
    return await rawCounts(sql, n, seconds, await done(n));
  } finally {
    await sql.end();
  }
}

/**
 * pgmq read+archive in one statement, `clients` connections each looping
 * `select pgmq.archive(q, array_agg(msg_id)) from pgmq.read(q, 30, batch)` until the queue is
 * empty. The queue (`bench_raw`, in Conveyor's database) is pre-filled with send_batch.
 */
export async function pgmqReadArchive(
  env: BenchEnv,
  n: number,
  batch: number,
  clients: number,
): Promise<RunResult> {
  const sql = postgres(env.url(DBS.conveyor), { max: clients, onnotice: () => {}, prepare: true });
  try {
    await sql`select pgmq.purge_queue('bench_raw')`;
    await sql`truncate pgmq.a_bench_raw`;
    for (let s = 0; s < n; s += 5000) {
      const m = Math.min(5000, n - s);
      await sql`select pgmq.send_batch('bench_raw',
        array(select jsonb_build_object('i', g) from generate_series(${s}::int, ${
        s + m - 1
      }::int) g))`;
    }
    await env.settle(DBS.conveyor);
    await Promise.all(Array.from({ length: clients }, () => sql`select 1`));
    const counter = new DeliveryCounter();
    const done = await meter(env);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      while (true) {
        const rows = await sql<{ id: string }[]>`
          select pgmq.archive('bench_raw', array_agg(msg_id)) as id
          from pgmq.read('bench_raw', 30, ${batch})`;
        const got = rows.filter((r) => r.id !== null);
        if (got.length === 0) break;
        for (const r of got) counter.hit(r.id);
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    const cost = await done(n);
    const [left] = await sql<{ n: number }[]>`select count(*)::int as n from pgmq.q_bench_raw`;
    const delivery = counter.check(n);
    delivery.lost = Math.max(delivery.lost, left!.n);
    return drainRun(n, seconds, delivery, cost);
  } finally {
    await sql.end();
  }
}
