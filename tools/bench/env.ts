/**
 * The benchmark's own throwaway environment: a fresh PostgreSQL 15 cluster made the way the
 * stack makes one (tools/stack: initdb as the postgres OS user, pg_cron and
 * pg_stat_statements preloaded, our compat pgmq/pg_net/Vault, bootstrap + migrations), one
 * database per system, and the HTTP gateway as its own process, as `deno task start` runs
 * it. Every system runs against the same cluster, with the same settings, in the same run.
 *
 * @module
 */
import postgres from "postgres";
import { freePort } from "../stack/proc.ts";
import { REPO_ROOT } from "../stack/state.ts";
import { clusterFor, Stack, waitForHealth } from "../stack/supervisor.ts";
import { serviceRoleKey } from "../stack/keys.ts";

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
  dbPort: number;
  apiPort: number;
  /** Superuser URL of database `db`. */
  url(db: string): string;
  apiUrl: string;
  serviceKey: string;
  settings: Record<string, string>;
  machine: MachineFacts;
  log: (line: string) => void;
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

/** Starts the environment in `<repo>/.stack/bench` (or `dir`). */
export async function startEnv(
  opts: { dir?: string; log: (line: string) => void },
): Promise<BenchEnv> {
  const log = opts.log;
  const dir = opts.dir ?? `${REPO_ROOT}/.stack/bench`;
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

  const stack = new Stack({ root: REPO_ROOT, dir, dbPort, apiPort }, (l) => log(`stack: ${l}`));
  await stack.prepare();
  const info = stack.info!;
  const url = (db: string) => info.dbUrl.replace(/\/postgres$/, `/${db}`);

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

  // The gateway, as the stack runs it: its own Deno process, its access log in a file.
  const gwLog = `${dir}/logs/gateway.log`;
  const deno = Deno.execPath();
  const args = [
    "run",
    "-A",
    `${REPO_ROOT}/tools/stack/gateway/main.ts`,
    "--port",
    String(apiPort),
    "--db-url",
    `postgresql://authenticator:postgres@127.0.0.1:${dbPort}/postgres`,
    "--admin-db-url",
    info.dbUrl,
    "--jwt-secret",
    info.jwtSecret,
    "--config",
    `${REPO_ROOT}/supabase/config.toml`,
    "--functions-dir",
    `${REPO_ROOT}/supabase/functions`,
  ];
  const profile = Deno.env.get("BENCH_GATEWAY_CPU_PROF");
  if (profile) args.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profile}`);
  const gwFile = await Deno.open(gwLog, { write: true, create: true, truncate: true });
  const gateway = new Deno.Command(deno, {
    args,
    env: {
      SUPABASE_URL: info.apiUrl,
      SUPABASE_ANON_KEY: info.anonKey,
      SUPABASE_SERVICE_ROLE_KEY: info.serviceRoleKey,
      SUPABASE_DB_URL: info.dbUrl,
      SUPABASE_JWT_SECRET: info.jwtSecret,
    },
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Copy its output to the log file off the hot path (a pipe read per burst of lines).
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await gwFile.write(chunk).catch(() => 0);
  };
  const pumps = Promise.all([pump(gateway.stdout), pump(gateway.stderr)]);
  await waitForHealth(`${info.apiUrl}/health`, 60_000);
  log(`gateway (pid ${gateway.pid}) on ${info.apiUrl}, access log ${gwLog}`);

  const settle = async (db: string) => {
    const sql = postgres(url(db), { max: 1, onnotice: () => {} });
    try {
      await sql.unsafe("vacuum analyze");
      await sql.unsafe("checkpoint");
    } finally {
      await sql.end();
    }
  };

  return {
    dir,
    dbPort,
    apiPort,
    url,
    apiUrl: info.apiUrl,
    serviceKey: await serviceRoleKey(info.jwtSecret),
    settings,
    machine: await machineFacts(),
    log,
    settle,
    stop: async () => {
      try {
        // Our own child, by its pid: SIGTERM lets it close its pools (CPU profile written).
        gateway.kill("SIGTERM");
      } catch { /* already gone */ }
      await gateway.status;
      await pumps.catch(() => {});
      gwFile.close();
      await stack.stop();
      await Deno.remove(`${dir}/pg`, { recursive: true }).catch(() => {});
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
