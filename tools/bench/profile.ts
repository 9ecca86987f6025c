/**
 * Profiles one Conveyor case on the bench environment: pg_stat_statements (top statements
 * by total time, nested ones included) and auto_explain plans of slow nested statements,
 * written to the cluster log. Used to find what to improve when a target is missed.
 *
 *   deno run -A tools/bench/profile.ts [drain-sql|drain-rpc|enqueue-sql|enqueue-http|batch] [--n 20000] [--backlog 0]
 *
 * The gateway's CPU profile: set BENCH_GATEWAY_CPU_PROF=<dir> (any bench command); the
 * gateway writes a .cpuprofile there when the run ends.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { DBS, startEnv } from "./env.ts";
import * as conveyor from "./systems/conveyor.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    n: { type: "string", default: "20000" },
    backlog: { type: "string", default: "0" },
    explain: { type: "string", default: "5" },
    reps: { type: "string", default: "4" },
  },
});
const what = positionals[0] ?? "drain-sql";
const n = Number(values.n);
const log = (l: string) => console.log(l);
const env = await startEnv({ dir: undefined, log });
const admin = postgres(env.url(DBS.conveyor), { max: 1, onnotice: () => {} });
try {
  // auto_explain for every new session of the database: nested statements over N ms.
  await admin.unsafe(`alter database postgres set session_preload_libraries = 'auto_explain'`);
  await admin.unsafe(
    `alter database postgres set auto_explain.log_min_duration = '${values.explain}ms'`,
  );
  await admin.unsafe(`alter database postgres set auto_explain.log_nested_statements = on`);
  await admin.unsafe(`alter database postgres set auto_explain.log_analyze = on`);
  const shape = { workers: 10, batch: 10, concurrency: 10 };
  const backlog = Number(values.backlog);
  if (what === "ab") {
    // Same-run A/B of the combined settle+claim call: split vs combined, alternating, over
    // both paths, at batch 10 and batch 100.
    const rows: string[] = [];
    for (
      const [label, s] of [["b10", shape], ["b100", {
        workers: 4,
        batch: 100,
        concurrency: 100,
      }]] as const
    ) {
      for (const via of ["sql", "rpc-ab"] as const) {
        const res: Record<string, number[]> = { split: [], combined: [] };
        for (let rep = 0; rep < Number(values.reps); rep++) {
          for (const combined of rep % 2 ? [true, false] : [false, true]) {
            await conveyor.prefill(env, n);
            const r = await conveyor.drain(env, n, { ...s, combined }, via);
            res[combined ? "combined" : "split"]!.push(r.value);
            log(`ab ${label} ${via} ${combined ? "combined" : "split"}: ${Math.round(r.value)}/s`);
          }
        }
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
        rows.push(
          `${label} ${via}: split ${Math.round(med(res.split!))}/s, combined ${
            Math.round(med(res.combined!))
          }/s (${(med(res.combined!) / med(res.split!)).toFixed(2)}×)`,
        );
      }
    }
    log(rows.join("\n"));
    Deno.exit(0);
  }
  if (what.startsWith("drain")) await conveyor.prefill(env, Math.max(n, backlog));
  await admin`select pg_stat_statements_reset()`;
  const t0 = performance.now();
  let r;
  if (what === "drain-sql") {
    r = await conveyor.drain(env, n, shape, "sql", backlog ? { stopAfter: n } : {});
  } else if (what === "drain-rpc") {
    r = await conveyor.drain(env, n, shape, "rpc", backlog ? { stopAfter: n } : {});
  } else if (what === "enqueue-sql") r = await conveyor.enqueueSingle(env, n, 10, "sql");
  else if (what === "enqueue-http") r = await conveyor.enqueueSingle(env, n, 10, "http");
  else if (what === "rpc-http") r = await conveyor.rpcInsert(env, n, 10, "http");
  else if (what === "rpc-sql") r = await conveyor.rpcInsert(env, n, 10, "sql");
  else r = await conveyor.enqueueBatch(env, n, 1000, "sql");
  log(
    `${what}: ${Math.round(r.value)}/s over ${r.n} in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
  const top = await admin<
    { calls: number; total: number; mean: number; rows: number; query: string }[]
  >`
    select calls::int, round(total_exec_time)::float8 as total, round(mean_exec_time::numeric, 3)::float8 as mean,
           rows::int, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) as query
    from pg_stat_statements order by total_exec_time desc limit 25`;
  for (const t of top) {
    log(
      `${String(t.total).padStart(8)} ms ${String(t.calls).padStart(7)} calls ${
        String(t.mean).padStart(8)
      } ms/call ${String(t.rows).padStart(7)} rows  ${t.query}`,
    );
  }
  const [wal] = await admin`select wal_records::bigint, wal_bytes::bigint from pg_stat_wal`;
  log(`wal: ${JSON.stringify(wal)}; cluster log (auto_explain): ${env.dir}/logs/postgres.log`);
} finally {
  await admin.unsafe(`alter database postgres reset all`).catch(() => {});
  await admin.end();
  // Keep the log: copy it next to the artefacts before the cluster folder goes.
  await Deno.mkdir(".artifacts/bench", { recursive: true });
  await Deno.copyFile(`${env.dir}/logs/postgres.log`, `.artifacts/bench/profile-${what}.log`).catch(
    () => {},
  );
  await env.stop();
}
