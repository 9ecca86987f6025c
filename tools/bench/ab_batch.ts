/**
 * Same-run A/B of batch enqueue (`public.queue_jobs` over SQL, the bench's batch case) across
 * schema variants: each variant is a SQL file applied to the bench database before its turn;
 * the variants take turns (order rotated each repetition), each turn enqueuing `--n` jobs in
 * calls of `--chunk` into emptied queues. Reports jobs/s and WAL bytes/job (medians).
 *
 *   deno run -A tools/bench/ab_batch.ts --variants before=a.sql,after=b.sql [--n 20000] [--chunk 1000] [--reps 4] [--dir .stack/bench-x]
 *
 * As profile.ts ab-sql does for drains; used for the set-based queue_jobs (0081, notes.md item 5).
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { DBS, startEnv } from "./env.ts";
import * as conveyor from "./systems/conveyor.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string", default: "20000" },
    chunk: { type: "string", default: "1000" },
    reps: { type: "string", default: "4" },
    variants: { type: "string", default: "" },
    dir: { type: "string" },
  },
});
const variants = values.variants.split(",").filter(Boolean).map((v) => {
  const [name, file] = v.split("=");
  if (!name || !file) throw new Error(`--variants: want name=file.sql, got ${v}`);
  return { name, sql: Deno.readTextFileSync(file) };
});
if (variants.length < 2) throw new Error("ab_batch: give at least two --variants");
const n = Number(values.n);
const chunk = Number(values.chunk);
const log = (l: string) => console.log(l);
const env = await startEnv({ dir: values.dir, log });
const admin = postgres(env.url(DBS.conveyor), { max: 1, onnotice: () => {} });
try {
  const res = new Map(variants.map((v) => [v.name, { rate: [] as number[], wal: [] as number[] }]));
  for (let rep = 0; rep < Number(values.reps); rep++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + rep) % variants.length]!;
      await admin.unsafe(v.sql);
      const [a] = await admin<{ b: string }[]>`select pg_current_wal_insert_lsn()::text as b`;
      const r = await conveyor.enqueueBatch(env, n, chunk, "sql");
      const [w] = await admin<{ d: number }[]>`
        select (pg_current_wal_insert_lsn() - ${a!.b}::pg_lsn)::float8 as d`;
      const d = r.delivery as { lost?: number; duplicates?: number } | undefined;
      if (d?.lost || d?.duplicates) throw new Error(`${v.name}: ${JSON.stringify(d)}`);
      res.get(v.name)!.rate.push(r.value);
      res.get(v.name)!.wal.push(w!.d / n);
      log(
        `ab_batch ${v.name} rep ${rep}: ${Math.round(r.value)}/s, ${
          Math.round(w!.d / n)
        } B WAL/job`,
      );
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const base = res.get(variants[0]!.name)!;
  for (const v of variants) {
    const x = res.get(v.name)!;
    log(
      `${v.name}: ${Math.round(med(x.rate))} jobs/s (${
        (med(x.rate) / med(base.rate)).toFixed(2)
      }×; ${x.rate.map(Math.round).join(", ")}), ${Math.round(med(x.wal))} B WAL/job`,
    );
  }
} finally {
  await admin.end();
  await env.stop();
}
