/**
 * The benchmark's own throwaway environment: a fresh PostgreSQL 15 cluster made the way the
 * stack makes one (tools/stack: initdb as the postgres OS user, pg_cron and
 * pg_stat_statements preloaded, our compat pgmq/pg_net/Vault, bootstrap + migrations), one
 * database per system, and PostgREST and the HTTP gateway as their own processes, as
 * `deno task start` runs them. Every system runs against the same cluster, with the same settings, in the same run.
 *
 * @module
 */
import { resolve } from "node:path";
import postgres from "postgres";
import { freePort } from "../stack/proc.ts";
import { REPO_ROOT } from "../stack/state.ts";
import { clusterFor, Stack, waitForHealth } from "../stack/supervisor.ts";
import { serviceRoleKey } from "../stack/keys.ts";
import type { ServiceDef } from "../stack/service.ts";

/** The dispatcher's pg_cron job (seed 001): paused for the run, resumed by the cron-only case. */
export const DISPATCHER_CRON_JOB = "planperfect-content-queue-dispatcher";

/** Databases, one per system (Conveyor lives in `postgres`, where pg_cron runs). */
export const DBS = {
  conveyor: "postgres",
  pgboss: "bench_pgboss",
  graphile: "bench_graphile",
  raw: "bench_raw",
} as const;

/** Server settings reported with every run. */
export const REPORTED_SETTINGS = [
  "server_version",
  "fsync",
  "synchronous_commit",
  "full_page_writes",
  "wal_level",
  "wal_sync_method",
  "shared_buffers",
  "max_wal_size",
  "checkpoint_timeout",
  "autovacuum",
  "max_connections",
  "shared_preload_libraries",
  "pg_stat_statements.track",
  "jit",
];

/** Facts about the machine, read from the machine. */
export interface MachineFacts {
  cpu: string;
  cores: number;
  memGiB: number;
  os: string;
  deno: string;
  loadBefore: string;
}

/** A running benchmark environment. */
export interface BenchEnv {
  dir: string;
  /** The tree whose migrations, gateway and functions run: a HEAD export, or the checkout. */
  source: { root: string; label: string };
  dbPort: number;
  apiPort: number;
  /** URL of database `db` as `postgres` (not a superuser, as on hosted): what systems use. */
  url(db: string): string;
  /** Superuser URL of database `db`: the harness's own work (settle, profiling settings). */
  adminUrl(db: string): string;
  apiUrl: string;
  serviceKey: string;
  settings: Record<string, string>;
  machine: MachineFacts;
  log: (line: string) => void;
  /**
   * Starts the pg_net worker (once): push kicks and stage triggers reach the edge functions
   * only with it. Off until a push workload needs it, so no worker function drains a queue
   * behind a benchmark's back.
   */
  startNetWorker(): Promise<void>;
  /** Turns Conveyor's push kicks (conveyor.settings push_kicks) on or off. */
  setPush(on: boolean): Promise<void>;
  /** The cluster's current WAL position in bytes. */
  wal(): Promise<number>;
  /** pids of the HTTP path's processes (the gateway, and PostgREST where it runs). */
  pids: Record<string, number>;
  /** pids of the other processes the environment started (the pg_net worker, once started). */
  otherPids(): Record<string, number>;
  /**
   * Starts one more gateway, the one of the tree at `root` (e.g. an export of another commit),
   * in front of the same PostgREST, on a port of its own: a same-run A/B of gateway code
   * (`profile.ts http-cpu --variants`). Stopped with the environment.
   */
  spawnGateway(root: string): Promise<{ pid: number; apiUrl: string }>;
  /** VACUUM ANALYZE the database, then CHECKPOINT (the anchors' settle()). */
  settle(db: string): Promise<void>;
  stop(): Promise<void>;
}

async function readText(path: string): Promise<string> {
  return await Deno.readTextFile(path).catch(() => "");
}

/** CPU model, cores, RAM, OS, Deno version and load, from /proc and /etc. */
export async function machineFacts(): Promise<MachineFacts> {
  const cpuinfo = await readText("/proc/cpuinfo");
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  const mem = /^MemTotal:\s+(\d+) kB/m.exec(await readText("/proc/meminfo"))?.[1];
  const osr = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(await readText("/etc/os-release"))?.[1];
  const load = (await readText("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memGiB: mem ? Math.round(Number(mem) / 1024 / 1024) : 0,
    os: osr ?? Deno.build.os,
    deno: Deno.version.deno,
    loadBefore: load,
  };
}

/** The 1-minute load average now. */
export async function loadAvg(): Promise<number> {
  return Number((await readText("/proc/loadavg")).split(" ")[0] ?? "NaN");
}

/** SQL that the bench adds to its throwaway Conveyor database (never a migration). */
const BENCH_SQL = `
-- Issue 4's gateway check: an RPC that does one INSERT, called over HTTP and over SQL.
create table if not exists public.bench_sink (id bigint generated always as identity primary key,
                                              body jsonb not null);
create or replace function public.bench_insert(jsonb) returns bigint
language sql
set search_path = ''
as $$ insert into public.bench_sink (body) values ($1) returning id $$;
revoke all on function public.bench_insert(jsonb) from public, anon, authenticated;
grant execute on function public.bench_insert(jsonb) to service_role;
grant insert, select on public.bench_sink to service_role;
-- The raw pgmq ceiling: a plain pgmq queue, read+archive in one statement.
select pgmq.create('bench_raw') where not exists
  (select 1 from pgmq.meta where queue_name = 'bench_raw');
notify pgrst, 'reload schema';
`;

/**
 * The code under benchmark. In a git checkout it is HEAD, exported with `git archive` into
 * `<dir>/src`: in a shared working tree, other people's uncommitted migrations must not end
 * up in the figures (or break the run). `BENCH_WORKTREE=1` benchmarks the working tree as it
 * is instead (e.g. to measure a change before committing it).
 */
async function sourceTree(
  dir: string,
  log: (l: string) => void,
): Promise<{ root: string; label: string }> {
  const git = (args: string[]) =>
    new Deno.Command("git", { args: ["-C", REPO_ROOT, ...args], stdout: "piped", stderr: "null" })
      .output().catch(() => null);
  const head = await git(["rev-parse", "--short", "HEAD"]);
  if (Deno.env.get("BENCH_WORKTREE") === "1" || !head?.success) {
    return { root: REPO_ROOT, label: "the working tree" };
  }
  const commit = new TextDecoder().decode(head.stdout).trim();
  const dirty = await git(["status", "--porcelain", "--", "supabase", "tools/stack"]);
  const root = `${dir}/src`;
  await Deno.remove(root, { recursive: true }).catch(() => {});
  await Deno.mkdir(root, { recursive: true });
  const res = await new Deno.Command("sh", {
    args: ["-c", `git -C "${REPO_ROOT}" archive HEAD | tar -x -C "${root}"`],
    stderr: "piped",
  }).output();
  if (!res.success) throw new Error(`git archive failed: ${new TextDecoder().decode(res.stderr)}`);
  const uncommitted = dirty?.success && dirty.stdout.length > 0;
  log(
    `benchmarking commit ${commit} (exported to ${root})` +
      (uncommitted ? "; uncommitted changes in supabase/ or tools/stack/ are not included" : ""),
  );
  return { root, label: `commit ${commit}` };
}

/** Starts the environment in `<repo>/.stack/bench` (or `dir`). */
export async function startEnv(
  opts: { dir?: string; project?: string; log: (line: string) => void },
): Promise<BenchEnv> {
  const log = opts.log;
  const dir = resolve(opts.dir ?? `${REPO_ROOT}/.stack/bench`);
  const dbPort = freePort();
  const apiPort = freePort();
  // A cluster left by an interrupted run: stop it and start from nothing.
  const old = await clusterFor({ root: REPO_ROOT, dir, dbPort, apiPort });
  if (await old.running()) {
    log("stopping a bench cluster left by an earlier run");
    await old.stop("immediate");
  }
  await Deno.remove(`${dir}/pg`, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${dir}/logs`, { recursive: true });
  const source = opts.project
    ? { root: REPO_ROOT, label: `project ${opts.project}` }
    : await sourceTree(dir, log);
  const root = source.root;

  const stack = new Stack(
    { root, project: opts.project, dir, dbPort, apiPort },
    (l) => log(`stack: ${l}`),
  );
  await stack.prepare();
  const info = stack.info!;
  const url = (db: string) => info.dbUrl.replace(/\/postgres$/, `/${db}`);
  const adminUrl = (db: string) => stack.cluster!.adminUrl(db);

  const admin = postgres(info.dbUrl, { max: 1, onnotice: () => {} });
  const settings: Record<string, string> = {};
  try {
    for (const db of [DBS.pgboss, DBS.graphile, DBS.raw]) {
      await admin.unsafe(`create database ${db}`);
    }
    await admin.unsafe(BENCH_SQL);
    const rows = await admin<{ name: string; setting: string; unit: string | null }[]>`
      select name, setting, unit from pg_settings where name = any(${REPORTED_SETTINGS})`;
    for (const r of rows) {
      settings[r.name] = r.unit && /^\d+$/.test(r.setting)
        ? humanUnit(Number(r.setting), r.unit)
        : r.setting;
    }
  } finally {
    await admin.end();
  }

  // PostgREST and the gateway, as the stack runs them (the same definitions): their own
  // processes, their output in files, copied off the hot path (a pipe read per burst).
  const defs = await stack.serviceDefs();
  const spawned: { child: Deno.ChildProcess; pumps: Promise<unknown>; file: Deno.FsFile }[] = [];
  // Starts a service's process with its output copied to `file`; stopped with the rest.
  const spawnLogged = (
    def: ServiceDef,
    args: string[],
    cwd: string | undefined,
    file: Deno.FsFile,
  ) => {
    const child = new Deno.Command(def.cmd, {
      args,
      env: def.env,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) await file.write(chunk).catch(() => 0);
    };
    spawned.push({ child, pumps: Promise.all([pump(child.stdout), pump(child.stderr)]), file });
    return child;
  };
  const pids: Record<string, number> = {};
  for (const name of ["postgrest", "gateway"]) {
    const def = defs.find((d) => d.name === name)!;
    const args = [...def.args];
    const profile = Deno.env.get("BENCH_GATEWAY_CPU_PROF");
    if (profile && name === "gateway") args.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profile}`);
    const file = await Deno.open(`${dir}/logs/${name}.log`, {
      write: true,
      create: true,
      truncate: true,
    });
    const child = spawnLogged(def, args, def.cwd, file);
    pids[name] = child.pid;
    await waitForHealth(def.health!, 60_000);
    log(`${name} (pid ${child.pid}) healthy, log ${dir}/logs/${name}.log`);
  }
  const spawnGateway = async (other: string) => {
    const def = defs.find((d) => d.name === "gateway")!;
    const port = freePort();
    const apiUrl = `http://127.0.0.1:${port}`;
    const args = def.args.map((a) =>
      a.startsWith(`${root}/tools/stack/`) ? other + a.slice(root.length) : a
    );
    args[args.indexOf("--port") + 1] = String(port);
    const file = await Deno.open(`${dir}/logs/gateway-${port}.log`, { write: true, create: true });
    const child = spawnLogged(def, args, other, file);
    await waitForHealth(`${apiUrl}/health`, 60_000);
    log(`gateway of ${other} (pid ${child.pid}) healthy on ${apiUrl}`);
    return { pid: child.pid, apiUrl };
  };

  // The dispatcher's cron safety net stays paused for the whole run (it would start worker
  // functions on a pre-filled queue); push kicks are off until a push workload asks.
  const boot = postgres(info.dbUrl, { max: 1, onnotice: () => {} });
  try {
    // The job is postgres's own (the migrations scheduled it): pg_cron's API, as on hosted.
    await boot`select cron.alter_job(jobid, active := false) from cron.job
               where jobname = ${DISPATCHER_CRON_JOB}`;
    await boot`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  } finally {
    await boot.end();
  }
  let net: Deno.ChildProcess | null = null;
  let netPumps: Promise<unknown> | null = null;
  const startNetWorker = async () => {
    if (net) return;
    const file = await Deno.open(`${dir}/logs/net_worker.log`, {
      write: true,
      create: true,
      truncate: true,
    });
    net = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}/tools/stack/net_worker.ts`, "--db-url", adminUrl("postgres")],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const p = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) await file.write(chunk).catch(() => 0);
    };
    netPumps = Promise.all([p(net.stdout), p(net.stderr)]).finally(() => file.close());
    log(`pg_net worker started (pid ${net.pid})`);
  };
  const setPush = async (on: boolean) => {
    const sql = postgres(info.dbUrl, { max: 1, onnotice: () => {} });
    try {
      await sql`update conveyor.settings set value = ${
        on ? "true" : "false"
      }::jsonb where key = 'push_kicks'`;
    } finally {
      await sql.end();
    }
  };

  const walSql = postgres(info.dbUrl, { max: 1, onnotice: () => {} });
  const wal = async () => {
    const [r] = await walSql<
      { b: string }[]
    >`select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint::text as b`;
    return Number(r!.b);
  };

  const settle = async (db: string) => {
    // As the superuser: VACUUM reaches every table and CHECKPOINT needs it.
    const sql = postgres(adminUrl(db), { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe("vacuum analyze");
      await sql.unsafe("checkpoint");
    } finally {
      await sql.end();
    }
  };

  return {
    dir,
    source,
    dbPort,
    apiPort,
    url,
    adminUrl,
    apiUrl: info.apiUrl,
    serviceKey: await serviceRoleKey(info.jwtSecret),
    settings,
    machine: await machineFacts(),
    log,
    settle,
    pids,
    otherPids: (): Record<string, number> =>
      net ? { "pg_net worker": (net as Deno.ChildProcess).pid } : {},
    startNetWorker,
    spawnGateway,
    setPush,
    wal,
    stop: async () => {
      await walSql.end();
      if (net) {
        try {
          (net as Deno.ChildProcess).kill("SIGTERM");
        } catch { /* already gone */ }
        await (net as Deno.ChildProcess).status;
        await netPumps?.catch(() => {});
      }
      // Our own children, gateway first: SIGTERM lets them close (CPU profile written).
      for (const { child, pumps, file } of spawned.reverse()) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        await child.status;
        await pumps.catch(() => {});
        file.close();
      }
      await stack.stop();
      await Deno.remove(`${dir}/pg`, { recursive: true }).catch(() => {});
      if (root !== REPO_ROOT) await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

function humanUnit(n: number, unit: string): string {
  const m = /^(\d+)(kB|MB|s|ms)$/.exec(unit);
  if (!m) return `${n}${unit}`;
  const mult = Number(m[1]);
  if (m[2] === "kB") {
    const kb = n * mult;
    return kb % (1024 * 1024) === 0
      ? `${kb / 1024 / 1024}GB`
      : kb % 1024 === 0
      ? `${kb / 1024}MB`
      : `${kb}kB`;
  }
  if (m[2] === "MB") return n * mult % 1024 === 0 ? `${n * mult / 1024}GB` : `${n * mult}MB`;
  if (m[2] === "s") return n * mult % 60 === 0 ? `${n * mult / 60}min` : `${n * mult}s`;
  return `${n * mult}ms`;
}
