/**
 * What a case costs per job, over its timed window only (a snapshot before it, one after):
 * CPU of the PostgreSQL cluster, of the API processes and of the bench process itself (the
 * client), and WAL. Read from /proc, so it works for every system alike.
 *
 * - **Postgres**: the postmaster and every descendant, live or exited (an exited backend's
 *   time is in its parent's cutime/cstime once reaped).
 * - **API**: each process tree the environment started for the API (`BenchEnv.pids`: the
 *   gateway with the functions it hosts, PostgREST where it runs as its own process), and any
 *   `postgrest` process found inside those trees, reported by name and summed.
 * - **Client**: this process (`process.cpuUsage()`: getrusage, µs, all threads), which runs
 *   the clients of every system (postgres.js, supabase-js, pg-boss, graphile-worker).
 *
 * /proc/<pid>/stat counts in clock ticks (10 ms). Where a process lives through the window
 * and keeps its threads, its time is read in ns from the threads' schedstat instead, so many
 * short windows over many backends do not add up rounding errors.
 *
 * @module
 */
import process from "node:process";
import type { BenchEnv } from "./env.ts";
import { median } from "./stats.ts";

/** What one timed window cost, per job (or call, sample). */
export interface Cost {
  /** Jobs the window is divided by. */
  jobs: number;
  /** CPU of the cluster, µs per job. */
  pgUs: number;
  /** CPU of the API processes, µs per job (the sum of `apiParts`). */
  apiUs: number;
  /** The API's CPU by process tree (`gateway`, `postgrest`, …), µs per job. */
  apiParts: Record<string, number>;
  /** CPU of the bench process (the clients), µs per job. */
  clientUs: number;
  /** Processes started for neither (the pg_net worker), by name, µs per job. */
  otherParts: Record<string, number>;
  /** WAL written by the cluster, bytes per job. */
  walB: number;
}

/** One process as /proc shows it. */
interface Proc {
  pid: number;
  ppid: number;
  /** Start time (ticks since boot): with the pid, identifies the process. */
  start: number;
  comm: string;
  /** utime + stime + cutime + cstime, seconds. */
  coarse: number;
  /** Own utime + stime only, seconds (what `ns` is compared with). */
  own: number;
  /** Σ of the live threads' run time (schedstat), seconds; null when unreadable. */
  ns: number | null;
  tids: string[];
}

type Groups = Map<string, Proc[]>;

const TICK = 100; // USER_HZ on Linux

async function readProc(pid: string): Promise<Proc | null> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
  const close = stat.lastIndexOf(") ");
  if (close < 0) return null;
  const f = stat.slice(close + 2).split(" ").map(Number); // f[0] is field 3 (state)
  const comm = stat.slice(stat.indexOf("(") + 1, close);
  const own = (f[11]! + f[12]!) / TICK;
  return {
    pid: Number(pid),
    ppid: f[1]!,
    start: f[19]!,
    comm,
    own,
    coarse: own + (f[13]! + f[14]!) / TICK,
    ns: null,
    tids: [],
  };
}

/** Fills in `ns` and `tids` from /proc/<pid>/task/<tid>/schedstat (field 1: ns on the CPU). */
async function readThreads(p: Proc): Promise<void> {
  try {
    let ns = 0;
    for await (const t of Deno.readDir(`/proc/${p.pid}/task`)) {
      const s = await Deno.readTextFile(`/proc/${p.pid}/task/${t.name}/schedstat`);
      ns += Number(s.split(" ")[0]);
      p.tids.push(t.name);
    }
    p.ns = ns / 1e9;
  } catch {
    p.ns = null;
  }
}

/**
 * Every process of the named trees. A process belongs to the nearest root above it (itself
 * included); a `postgrest` process found under another root is its own group.
 */
async function snapshot(roots: Map<number, string>): Promise<Groups> {
  const all = new Map<number, Proc>();
  const reads: Promise<void>[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    reads.push(readProc(e.name).then((p) => void (p && all.set(p.pid, p))));
  }
  await Promise.all(reads);
  const groups: Groups = new Map();
  // Other people's stacks run on this machine too: only the roots' trees count.
  const owner = (p: Proc): string | null => {
    let postgrest = false;
    for (let q: Proc | undefined = p, hops = 0; q && hops < 64; hops++) {
      const named = roots.get(q.pid);
      if (named) return postgrest && named !== "postgres" ? "postgrest" : named;
      if (q.comm === "postgrest") postgrest = true;
      q = all.get(q.ppid);
    }
    return null;
  };
  for (const p of all.values()) {
    const g = owner(p);
    if (!g) continue;
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(p);
  }
  await Promise.all([...groups.values()].flat().map(readThreads));
  return groups;
}

/**
 * Seconds of CPU a group used between two snapshots: the coarse totals (own + reaped
 * children, in ticks), corrected to the threads' ns for each process that lived through the
 * window with the same threads and whose two readings agree within the ticks' rounding.
 */
function used(a: Proc[] = [], b: Proc[] = []): number {
  const sum = (ps: Proc[]) => ps.reduce((s, p) => s + p.coarse, 0);
  let secs = sum(b) - sum(a);
  const before = new Map(a.map((p) => [p.pid, p]));
  for (const q of b) {
    const p = before.get(q.pid);
    if (!p || p.start !== q.start || p.ns === null || q.ns === null) continue;
    const tids = new Set(q.tids);
    if (!p.tids.every((t) => tids.has(t))) continue; // a thread ended: its ns are gone
    const fine = q.ns - p.ns;
    const rough = q.own - p.own;
    if (Math.abs(fine - rough) <= 3 / TICK) secs += fine - rough;
  }
  return Math.max(0, secs);
}

async function postmasterPid(env: BenchEnv): Promise<number> {
  const text = await Deno.readTextFile(`${env.dir}/pg/postmaster.pid`);
  return Number(text.split("\n")[0]);
}

/** Names of the API's roots; the pg_net worker and the like are "other". */
function rootsOf(env: BenchEnv, pg: number): Map<number, string> {
  const roots = new Map<number, string>([[pg, "postgres"]]);
  for (const [name, pid] of Object.entries(env.pids)) roots.set(pid, name);
  for (const [name, pid] of Object.entries(env.otherPids())) roots.set(pid, `other:${name}`);
  return roots;
}

/**
 * Starts measuring: returns the function that ends the window and divides what it cost by
 * `jobs`. Call it right before the timed part and end it right after, before any check.
 */
export async function meter(env: BenchEnv): Promise<(jobs: number) => Promise<Cost>> {
  const roots = rootsOf(env, await postmasterPid(env));
  const wal0 = await env.wal();
  const g0 = await snapshot(roots);
  const c0 = process.cpuUsage();
  return async (jobs: number) => {
    const client = process.cpuUsage(c0);
    const g1 = await snapshot(roots);
    const wal1 = await env.wal();
    const per = (secs: number) => (secs * 1e6) / Math.max(1, jobs);
    const apiParts: Record<string, number> = {};
    const otherParts: Record<string, number> = {};
    for (const name of new Set([...g0.keys(), ...g1.keys()])) {
      if (name === "postgres") continue;
      const us = per(used(g0.get(name), g1.get(name)));
      if (name.startsWith("other:")) otherParts[name.slice(6)] = us;
      else apiParts[name] = us;
    }
    return {
      jobs,
      pgUs: per(used(g0.get("postgres"), g1.get("postgres"))),
      apiUs: Object.values(apiParts).reduce((a, b) => a + b, 0),
      apiParts,
      clientUs: (client.user + client.system) / Math.max(1, jobs),
      otherParts,
      walB: (wal1 - wal0) / Math.max(1, jobs),
    };
  };
}

/** The median of each figure over several runs' costs (undefined for none). */
export function medianCost(costs: Cost[]): Cost | undefined {
  if (costs.length === 0) return undefined;
  const med = (f: (c: Cost) => number | undefined) =>
    median(costs.map(f).filter((x): x is number => x !== undefined));
  const parts = (pick: (c: Cost) => Record<string, number>) => {
    const names = new Set(costs.flatMap((c) => Object.keys(pick(c))));
    return Object.fromEntries([...names].map((n) => [n, med((c) => pick(c)[n])]));
  };
  return {
    jobs: med((c) => c.jobs),
    pgUs: med((c) => c.pgUs),
    apiUs: med((c) => c.apiUs),
    apiParts: parts((c) => c.apiParts),
    clientUs: med((c) => c.clientUs),
    otherParts: parts((c) => c.otherParts),
    walB: med((c) => c.walB),
  };
}
