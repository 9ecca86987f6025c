/**
 * Profiles one Conveyor case on the bench environment: pg_stat_statements (top statements
 * by total time, nested ones included) and auto_explain plans of slow nested statements,
 * written to the cluster log. Used to find what to improve when a target is missed.
 *
 *   deno run -A tools/bench/profile.ts [drain-sql|drain-rpc|enqueue-sql|enqueue-http|batch] [--n 20000] [--backlog 0]
 *
 * Same-run A/B of schema variants (e.g. a migration against its revert): each variant is a
 * SQL file applied to the bench database before its turn; the variants take turns (order
 * rotated each repetition), each turn one workload over SQL: `--workload drain` (default: a
 * fresh pre-fill, then a drain, batch 10 × 10 workers, or `--shape b100`: 4 × batch 100), `--workload batch` (`queue_jobs`
 * into emptied queues, `--chunk` jobs per call) or `--workload noisy` (the noisy neighbour
 * with fair share on, `--backlog`, `--seconds`: B's and C's p50, A's jobs/s, Postgres CPU) or
 * `--workload enqueue` (`--n` single `queue_job` calls over SQL, c10, into emptied queues,
 * with the bench's `bench_insert` reference each repetition: Postgres CPU/call, the ratio).
 * Reports jobs/s, WAL bytes/job and cluster CPU µs/job (medians), with pg_walinspect's
 * breakdown by relation of the last turn of each variant:
 *
 *   deno run -A tools/bench/profile.ts ab-sql --variants before=a.sql,after=b.sql [--workload drain|batch|noisy|enqueue] [--chunk 1000] [--reps 4] [--dir .stack/bench-x]
 *
 * The noisy-neighbour case of `--only fair.noisy` (docs/fairness.md), fair share on or off, with
 * the statements' profile and, from the ledger, where B's and C's jobs waited: enqueue (the
 * ledger row's `created_at`) → the start of the claim that took them (`started_at`):
 *
 *   deno run -A tools/bench/profile.ts noisy [--fair on|off] [--backlog 100000] [--seconds 15] [--settings k=v,…]
 *
 * (`--settings`: `conveyor.settings` values for the run, e.g. `fair_share_recheck_ms=10`.)
 *
 * CPU per HTTP call by process (client, gateway, PostgREST, cluster), rpc-http and enqueue-http:
 *
 *   deno run -A tools/bench/profile.ts http-cpu [--n 20000] [--reps 4] [--variants name=[file.sql][@tree],…]
 *
 * (`--variants`: a same-run A/B, turns alternating as in ab-sql: each variant's SQL applied
 * before its turn and, with `@tree`, the gateway of that tree, e.g. `git archive <commit>`
 * unpacked somewhere, serving it in front of the same PostgREST; `name=` is the environment
 * as it is.)
 *
 * The gateway's CPU profile: set BENCH_GATEWAY_CPU_PROF=<dir> (any bench command); the
 * gateway writes a .cpuprofile there when the run ends.
 *
 * @module
 */
import { cliArgs, usageExit } from "../args.ts";
import postgres from "postgres";
import { DBS, startEnv } from "./env.ts";
import { median as med } from "./stats.ts";
import * as conveyor from "./systems/conveyor.ts";
import * as fairness from "./systems/fairness.ts";

const USAGE =
  `usage: deno run -A tools/bench/profile.ts [drain-sql|drain-rpc|enqueue-sql|enqueue-http|rpc-sql|rpc-http|batch|ab] [--n 20000] [--backlog 0] [--shape b10|b100] [--explain MS] [--dir D]
       deno run -A tools/bench/profile.ts noisy [--fair on|off] [--backlog 100000] [--seconds 15] [--settings k=v,…] [--explain MS] [--dir D]
       deno run -A tools/bench/profile.ts ab-sql --variants before=a.sql,after=b.sql [--workload drain|batch|noisy|enqueue] [--shape b10|b100] [--chunk 1000] [--reps 4] [--dir D]
       deno run -A tools/bench/profile.ts http-cpu [--n 20000] [--reps 4] [--variants name=[file.sql][@tree],…] [--dir D]

Profiles one Conveyor case on the bench environment (pg_stat_statements, auto_explain), or
A/B-tests schema variants in one run. See the comment at the top of this file.`;

const { values, positionals } = cliArgs(USAGE, {
  allowPositionals: true,
  options: {
    n: { type: "string", default: "20000" },
    backlog: { type: "string", default: "0" },
    explain: { type: "string", default: "5" },
    reps: { type: "string", default: "4" },
    variants: { type: "string", default: "" },
    workload: { type: "string", default: "drain" },
    chunk: { type: "string", default: "1000" },
    fair: { type: "string", default: "on" },
    seconds: { type: "string", default: "15" },
    settings: { type: "string", default: "" },
    shape: { type: "string", default: "b10" },
    dir: { type: "string" },
  },
});
const what = positionals[0] ?? "drain-sql";
const CASES = [
  "drain-sql",
  "drain-rpc",
  "enqueue-sql",
  "enqueue-http",
  "rpc-sql",
  "rpc-http",
  "batch",
  "ab",
  "ab-sql",
  "noisy",
  "http-cpu",
];
if (!CASES.includes(what)) usageExit(`unknown case "${what}" (one of ${CASES.join(", ")})`);
const n = Number(values.n);
// The drain's shape (drain-sql, drain-rpc, ab-sql --workload drain): the bench's b10/c10 or
// its tuned b100 (4 loops × batch 100).
const SHAPES = {
  b10: { workers: 10, batch: 10, concurrency: 10 },
  b100: { workers: 4, batch: 100, concurrency: 100 },
} as const;
if (!Object.hasOwn(SHAPES, values.shape)) usageExit(`--shape: b10 or b100, got ${values.shape}`);
const shape = SHAPES[values.shape as keyof typeof SHAPES];
const log = (l: string) => console.log(l);

/** Fields of /proc/<pid>/stat from field 3 (state) on; null when the process is gone. */
async function procStat(pid: number | string): Promise<number[] | null> {
  const f = (await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "")).split(") ")[1];
  return f ? f.split(" ").map(Number) : null;
}

/** CPU seconds a process has used (utime + stime; with its waited-for children's too). */
async function processCpu(pid: number | string, children = false): Promise<number> {
  const f = await procStat(pid);
  if (!f) return 0;
  return (f[11]! + f[12]! + (children ? f[13]! + f[14]! : 0)) / 100;
}

/**
 * ab-sql's turns: each variant once per repetition (`--reps`), the order rotated from one
 * repetition to the next so that drift on the shared machine reaches every variant; `turn`
 * runs one and returns its figures, collected per variant in variant order.
 */
async function alternate<T extends Record<string, number>, V extends { name: string; sql: string }>(
  variants: readonly V[],
  turn: (v: V, rep: number) => Promise<T>,
): Promise<Map<string, Record<keyof T, number[]>>> {
  const out = new Map<string, Record<keyof T, number[]>>();
  for (let rep = 0; rep < Number(values.reps); rep++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + rep) % variants.length]!;
      const f = await turn(v, rep);
      if (!out.has(v.name)) out.set(v.name, {} as Record<keyof T, number[]>);
      const o = out.get(v.name)!;
      for (const k of Object.keys(f) as (keyof T)[]) (o[k] ??= []).push(f[k]!);
    }
  }
  return new Map(variants.map((v) => [v.name, out.get(v.name)!]));
}

/** A figure's median and its repetitions: `12 µs/job (11, 12, 14)`. */
function series(xs: number[], fmt: (x: number) => string, unit: string): string {
  return `${fmt(med(xs))} ${unit} (${xs.map(fmt).join(", ")})`;
}

/**
 * CPU seconds of the whole cluster: the postmaster, its exited children (cutime/cstime: a
 * pool's backends that ended) and its live ones. Less sensitive than jobs/s to what else
 * runs on a shared machine.
 */
async function clusterCpu(dir: string): Promise<number> {
  const pid = Number((await Deno.readTextFile(`${dir}/pg/postmaster.pid`)).split("\n")[0]);
  let secs = await processCpu(pid, true);
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const f = await procStat(e.name);
    if (f && f[1] === pid) secs += (f[11]! + f[12]!) / 100;
  }
  return secs;
}
const env = await startEnv({ dir: values.dir, log });
// Profiling settings (auto_explain, pg_walinspect, statement stats) are the superuser's.
const admin = postgres(env.adminUrl(DBS.conveyor), { max: 1, onnotice: () => {} });
try {
  // auto_explain for every new session of the database: nested statements over N ms.
  await admin.unsafe(`alter database postgres set session_preload_libraries = 'auto_explain'`);
  await admin.unsafe(
    `alter database postgres set auto_explain.log_min_duration = '${values.explain}ms'`,
  );
  await admin.unsafe(`alter database postgres set auto_explain.log_nested_statements = on`);
  await admin.unsafe(`alter database postgres set auto_explain.log_analyze = on`);
  if (what === "noisy") {
    // Which statements wait on which locks: every lock wait over 5 ms, in the cluster log.
    await admin.unsafe(`alter database postgres set log_lock_waits = on`);
    await admin.unsafe(`alter database postgres set deadlock_timeout = '5ms'`);
    await admin.unsafe(`alter database postgres set auto_explain.log_buffers = on`);
  }
  const backlog = Number(values.backlog);
  // The noisy-neighbour case, as `noisy` and `ab-sql --workload noisy` run it.
  const noisy = {
    backlog: backlog || 100_000,
    seconds: Number(values.seconds),
    workers: 10,
    batch: 10,
  };
  if (what === "ab") {
    // Same-run A/B of the combined settle+claim call: split vs combined, alternating, over
    // both paths, at batch 10 and batch 100.
    const rows: string[] = [];
    for (
      const [label, s] of [["b10", SHAPES.b10], ["b100", SHAPES.b100]] as const
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
        rows.push(
          `${label} ${via}: split ${Math.round(med(res.split!))}/s, combined ${
            Math.round(med(res.combined!))
          }/s (${(med(res.combined!) / med(res.split!)).toFixed(2)}×)`,
        );
      }
    }
    log(rows.join("\n"));
    await env.stop();
    Deno.exit(0);
  }
  if (what === "http-cpu") {
    // CPU per HTTP call of each process on the path (issue 20's "per-request cost"): the
    // client (this process), the gateway, PostgREST where it runs, and the cluster. No
    // auto_explain: its instrumentation would be part of the figures. With `--variants`
    // (`name=file.sql`, `name=file.sql@tree`, `name=@tree`) a same-run A/B: each variant's SQL
    // applied before its turn and, with `@tree`, the gateway of that tree (e.g. an export of
    // another commit) serving it; turns alternate as in ab-sql.
    await admin.unsafe(`alter database postgres reset all`);
    const gateways = new Map<string, { pid: number; apiUrl: string }>();
    const variants = values.variants
      ? values.variants.split(",").map((v) => {
        const [name, spec] = v.split("=");
        if (!name || spec === undefined) {
          throw new Error(`--variants: want name=file.sql[@tree], got ${v}`);
        }
        const [file, tree] = spec.split("@");
        return { name, sql: file ? Deno.readTextFileSync(file) : "", tree };
      })
      : [{ name: "current", sql: "", tree: undefined as string | undefined }];
    for (const v of variants) {
      if (v.tree && !gateways.has(v.tree)) gateways.set(v.tree, await env.spawnGateway(v.tree));
    }
    const own = { pid: env.pids.gateway!, apiUrl: env.apiUrl };
    const round = (x: number) => String(Math.round(x));
    const out = await alternate(variants, async (v, rep) => {
      await admin.unsafe(v.sql);
      const gw = v.tree ? gateways.get(v.tree)! : own;
      env.apiUrl = gw.apiUrl;
      env.pids.gateway = gw.pid;
      const procs = { ...env.pids, client: Deno.pid };
      const f: Record<string, number> = {};
      for (const c of ["rpc-http", "enqueue-http"] as const) {
        const before: Record<string, number> = { cluster: await clusterCpu(env.dir) };
        for (const [k, pid] of Object.entries(procs)) before[k] = await processCpu(pid);
        const r = c === "rpc-http"
          ? await conveyor.rpcInsert(env, n, 10, "http")
          : await conveyor.enqueueSingle(env, n, 10, "http");
        f[`${c} cluster`] = (await clusterCpu(env.dir) - before.cluster!) / n * 1e6;
        for (const [k, pid] of Object.entries(procs)) {
          f[`${c} ${k}`] = (await processCpu(pid) - before[k]!) / n * 1e6;
        }
        f[`${c} calls/s`] = r.value;
        log(
          `${v.name} rep ${rep} ${c}: ${
            Object.entries(f).filter(([k]) => k.startsWith(c)).map(([k, x]) =>
              `${k.slice(c.length + 1)} ${round(x)}`
            ).join(", ")
          }`,
        );
      }
      return f;
    });
    env.apiUrl = own.apiUrl;
    env.pids.gateway = own.pid;
    for (const [name, o] of out) {
      log(`${name} (n=${n} × ${values.reps}; µs of CPU per call, medians [runs]):`);
      for (const c of ["rpc-http", "enqueue-http"]) {
        log(
          `  ${c}: ${
            Object.entries(o).filter(([k]) => k.startsWith(c)).map(([k, x]) =>
              `${k.slice(c.length + 1)} ${series(x, round, "")}`
            ).join(", ")
          }`,
        );
      }
    }
    await admin.end();
    await env.stop();
    Deno.exit(0);
  }
  if (what === "ab-sql") {
    const variants = values.variants.split(",").filter(Boolean).map((v) => {
      const [name, file] = v.split("=");
      if (!name || !file) throw new Error(`--variants: want name=file.sql, got ${v}`);
      return { name, sql: Deno.readTextFileSync(file) };
    });
    if (variants.length < 2) throw new Error("ab-sql: give at least two --variants");
    const workload = values.workload;
    if (!["drain", "batch", "noisy", "enqueue"].includes(workload)) {
      throw new Error(`--workload: drain, batch, noisy or enqueue, got ${workload}`);
    }
    // No auto_explain here: its per-statement instrumentation would be part of the figures.
    await admin.unsafe(`alter database postgres reset all`);
    const round = (x: number) => String(Math.round(x));
    if (workload === "noisy") {
      // The noisy neighbour (fair share on) per variant: B's and C's p50, A's jobs/s and
      // Postgres CPU per job over the timed window (the bench's meter).
      const out = await alternate(variants, async (v, rep) => {
        await admin.unsafe(v.sql);
        const r = await fairness.noisyNeighbour(env, noisy, true);
        const f = {
          p50: r.value,
          a: Number(r.figures?.a_jobs_per_s ?? 0),
          pg: r.cost?.pgUs ?? NaN,
        };
        log(
          `ab-sql noisy ${v.name} rep ${rep}: B/C p50 ${f.p50.toFixed(1)} ms, A ${
            round(f.a)
          } jobs/s, Postgres ${round(f.pg)} µs/job`,
        );
        return f;
      });
      for (const [name, o] of out) {
        log(
          `${name}: B/C p50 ${series(o.p50, (x) => x.toFixed(1), "ms")}, A ${
            series(o.a, round, "jobs/s")
          }, Postgres ${series(o.pg, round, "µs/job")}`,
        );
      }
    } else if (workload === "enqueue") {
      // Single `queue_job` calls over SQL from 10 connections into emptied queues (the
      // bench's enqueue.conveyor-sql.c10) per variant, with the bench's one-INSERT reference
      // (rpc.sql: `bench_insert` over SQL, c10) taking its turn among them: Postgres CPU/call
      // from the bench's meter, and the ratio the bench reports ("queue_job c10 (SQL) ÷
      // bench_insert() (SQL)", target ≤ 2).
      const out = await alternate(
        [...variants, { name: "bench_insert", sql: "" }],
        async (v, rep) => {
          let r;
          if (v.name === "bench_insert") r = await conveyor.rpcInsert(env, n, 10, "sql");
          else {
            await admin.unsafe(v.sql);
            r = await conveyor.enqueueSingle(env, n, 10, "sql");
          }
          if (r.delivery.lost || r.delivery.duplicates) {
            throw new Error(`${v.name}: ${JSON.stringify(r.delivery)}`);
          }
          const f = { rate: r.value, pg: r.cost?.pgUs ?? NaN, wal: r.cost?.walB ?? NaN };
          log(
            `ab-sql enqueue ${v.name} rep ${rep}: ${round(f.rate)} calls/s, Postgres ${
              round(f.pg)
            } µs/call, ${round(f.wal)} B WAL/call`,
          );
          return f;
        },
      );
      const ref = med(out.get("bench_insert")!.pg);
      for (const [name, o] of out) {
        log(
          `${name}: ${series(o.rate, round, "calls/s")}, Postgres ${
            series(o.pg, round, "µs/call")
          } = ${(med(o.pg) / ref).toFixed(2)}× bench_insert, ${series(o.wal, round, "B WAL/call")}`,
        );
      }
    } else {
      await admin.unsafe(`create extension if not exists pg_walinspect`);
      const detail = new Map<string, string>();
      const out = await alternate(variants, async (v, rep) => {
        await admin.unsafe(v.sql);
        if (workload === "drain") await conveyor.prefill(env, n);
        const [at] = await admin<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
        const cpu0 = await clusterCpu(env.dir);
        const r = workload === "drain"
          ? await conveyor.drain(env, n, shape, "sql")
          : await conveyor.enqueueBatch(env, n, Number(values.chunk), "sql");
        const cpuUs = (await clusterCpu(env.dir) - cpu0) / n * 1e6;
        if (r.delivery.lost || r.delivery.duplicates) {
          throw new Error(`${v.name}: ${JSON.stringify(r.delivery)}`);
        }
        const [w] = await admin<{ d: number }[]>`
          select (pg_current_wal_insert_lsn() - ${at!.lsn}::pg_lsn)::float8 as d`;
        const f = { rate: r.value, wal: r.walPerJob ?? w!.d / n, cpu: cpuUs };
        log(
          `ab-sql ${v.name} rep ${rep}: ${round(f.rate)}/s, ${round(f.wal)} B WAL/job, ${
            round(f.cpu)
          } µs cluster CPU/job`,
        );
        // Per relation (the first block a record touches): which table or index writes what.
        // pg_walinspect reads only flushed WAL: wait for the WAL writer to get there.
        const [end] = await admin<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
        while (
          (await admin`select pg_current_wal_flush_lsn() < ${end!.lsn}::pg_lsn as behind`)[0]!
            .behind
        ) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const per = await admin<{ rel: string; n: number; rec_b: number; fpi_b: number }[]>`
          select coalesce(pg_filenode_relation(0, f.node)::text, f.rm) as rel, count(*)::int as n,
                 round(sum(w.record_length - w.fpi_length) / ${n}::numeric)::int as rec_b,
                 round(sum(w.fpi_length) / ${n}::numeric)::int as fpi_b
          from pg_get_wal_records_info(${at!.lsn}::pg_lsn, ${end!.lsn}::pg_lsn) w
          cross join lateral (select w.resource_manager as rm,
            (substring(w.block_ref from 'rel \\d+/\\d+/(\\d+)'))::oid as node) f
          group by 1 order by sum(w.record_length) desc limit 25`;
        detail.set(
          v.name,
          per.map((p) =>
            `  ${p.rel.padEnd(40)} ${String(p.n).padStart(8)} records ${
              String(p.rec_b).padStart(5)
            } B/job +${String(p.fpi_b).padStart(5)} B/job FPI`
          ).join("\n"),
        );
        return f;
      });
      const base = med(out.get(variants[0]!.name)!.rate);
      for (const [name, x] of out) {
        log(
          `${name}: ${series(x.rate, round, "jobs/s")} = ${(med(x.rate) / base).toFixed(2)}×, ${
            series(x.wal, round, "B WAL/job")
          }, ${series(x.cpu, round, "µs cluster CPU/job")}`,
        );
        log(`${name}, WAL of its last ${workload} by relation:\n${detail.get(name)}`);
      }
    }
    await admin.end();
    await env.stop();
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
  else if (what === "noisy") {
    for (const kv of values.settings.split(",").filter(Boolean)) {
      const [k, v] = kv.split("=");
      await admin`update conveyor.settings set value = ${v!}::jsonb where key = ${k!}`;
    }
    const cpu0 = await clusterCpu(env.dir);
    r = await fairness.noisyNeighbour(env, noisy, values.fair !== "off");
    log(
      `noisy: ${JSON.stringify(r.figures)}; cluster CPU ${
        Math.round(await clusterCpu(env.dir) - cpu0)
      } s`,
    );
    const waits = await admin<{ tenant: string; p50: number; p90: number; n: number }[]>`
      select j.tenant_id::text as tenant, count(*)::int as n,
             percentile_cont(0.5) within group (order by extract(epoch from j.started_at - j.created_at) * 1000)::float8 as p50,
             percentile_cont(0.9) within group (order by extract(epoch from j.started_at - j.created_at) * 1000)::float8 as p90
      from public.jobs j where j.payload ? 't0' group by 1 order by 1`;
    for (const w of waits) {
      log(
        `  ${w.tenant}: ${w.n} jobs, enqueue → claim start p50 ${w.p50.toFixed(1)} ms, p90 ${
          w.p90.toFixed(1)
        } ms`,
      );
    }
  } else r = await conveyor.enqueueBatch(env, n, 1000, "sql");
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
