/**
 * Brings the whole local stack up in order and down again: PostgreSQL (with pg_cron and our
 * compatible extensions), the platform bootstrap and migrations, Vault secrets for cron,
 * then PostgREST, the gateway (/rest/v1 → PostgREST, /functions/v1) and the pg_net worker
 * as supervised children, each started once the one before answers its health probe.
 *
 * @module
 */
import postgres from "postgres";
import { Cluster } from "./cluster.ts";
import { StackError } from "./errors.ts";
import { installCompatExtensions } from "./extensions.ts";
import { anonKey, JWT_SECRET, PUBLISHABLE_KEY, SECRET_KEY, serviceRoleKey } from "./keys.ts";
import { applyMigrations, runSqlFile, upsertVaultSecret } from "./migrate.ts";
import { ensurePackages } from "./packages.ts";
import { findPgBin, shareDir } from "./pg_binaries.ts";
import { ensurePostgrest, postgrestEnv, readApiConfig } from "./postgrest.ts";
import { freePort, portFree } from "./proc.ts";
import { Service, type ServiceDef } from "./service.ts";
import type { StackOptions, StackState } from "./state.ts";

/** URLs and keys of a running stack, as `supabase status` prints them. */
export interface StackInfo {
  apiUrl: string;
  dbUrl: string;
  jwtSecret: string;
  anonKey: string;
  serviceRoleKey: string;
  publishableKey: string;
  secretKey: string;
}

/** Computes the URLs and keys for a stack on these ports. */
export async function stackInfo(apiPort: number, dbPort: number): Promise<StackInfo> {
  return {
    apiUrl: `http://127.0.0.1:${apiPort}`,
    dbUrl: `postgresql://postgres:postgres@127.0.0.1:${dbPort}/postgres`,
    jwtSecret: JWT_SECRET,
    anonKey: await anonKey(),
    serviceRoleKey: await serviceRoleKey(),
    publishableKey: PUBLISHABLE_KEY,
    secretKey: SECRET_KEY,
  };
}

/** The stack's PostgreSQL cluster for given options (binaries located on demand). */
export async function clusterFor(opts: StackOptions): Promise<Cluster> {
  return new Cluster(
    await findPgBin(),
    `${opts.dir}/pg`,
    opts.dbPort,
    `${opts.dir}/logs/postgres.log`,
  );
}

/** postgres.js client for setup work (quiet about NOTICEs such as "already exists, skipping"). */
export function adminSql(url: string) {
  return postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10 });
}

/**
 * Brings a database to the state a hosted project would have: platform bootstrap, migrations,
 * the pgmq_public wrappers (the dashboard's "Expose Queues via PostgREST"), and optionally
 * supabase/seed.sql.
 */
export async function setupDatabase(
  url: string,
  root: string,
  log: (l: string) => void,
  opts: { seed?: boolean; secrets?: StackInfo } = {},
): Promise<void> {
  const sql = adminSql(url);
  try {
    await runSqlFile(sql, `${root}/tools/stack/sql/bootstrap.sql`);
    const applied = await applyMigrations(sql, `${root}/supabase/migrations`, log);
    log(applied.length ? `applied ${applied.length} migration(s)` : "migrations up to date");
    const [pgmq] = await sql`select 1 from pg_extension where extname = 'pgmq'`;
    if (pgmq) await runSqlFile(sql, `${root}/tools/stack/sql/pgmq_public.sql`);
    // Before the seed: what it enqueues kicks the dispatcher, whose URL and key are here.
    if (opts.secrets) {
      await upsertVaultSecret(sql, "project_url", opts.secrets.apiUrl);
      await upsertVaultSecret(sql, "service_role_key", opts.secrets.serviceRoleKey);
      log("Vault secrets project_url and service_role_key stored");
    }
    await sql`notify pgrst, 'reload schema'`;
    if (opts.seed) {
      const seed = `${root}/supabase/seed.sql`;
      if (await Deno.stat(seed).then(() => true, () => false)) {
        log("loading supabase/seed.sql");
        await withKicksHeld(sql, () => runSqlFile(sql, seed));
      }
    }
  } finally {
    await sql.end();
  }
}

/**
 * Runs `fn` (the seed) with Conveyor's push kicks off (`conveyor.settings` push_kicks), so
 * what it enqueues sends no pg_net request while the stack around it may still be starting
 * or resetting: such a kick would fail, or reach a PostgREST whose schema cache is not yet
 * the new one. The caller runs one dispatch cycle afterwards ({@link kickDispatcher}).
 * Without Conveyor's settings table (a checkout without its migrations) `fn` just runs.
 */
async function withKicksHeld(sql: postgres.Sql, fn: () => Promise<unknown>): Promise<void> {
  const [row] = await sql<{ value: unknown }[]>`
    select s.value from conveyor.settings s where s.key = 'push_kicks'`.catch(() => []);
  if (row) {
    await sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  }
  try {
    await fn();
  } finally {
    if (row) {
      await sql`update conveyor.settings set value = ${sql.json(row.value as postgres.JSONValue)}
                where key = 'push_kicks'`;
    }
  }
}

/**
 * Drops and re-creates the `postgres` database, then restarts the server before setting the
 * database up again: pg_cron's scheduler exits for good when its database is dropped (a
 * background worker that exits cleanly is not restarted), and restarting now, while the new
 * database is still empty, means no client of a running stack (PostgREST, the pg_net worker)
 * loses its connection again once the migrations and the seed are in.
 */
export async function resetDatabase(
  cluster: Cluster,
  root: string,
  log: (l: string) => void,
  secrets?: StackInfo,
): Promise<void> {
  const sql = adminSql(cluster.url("template1"));
  try {
    log("dropping database postgres");
    await sql`drop database if exists postgres with (force)`;
    await sql`create database postgres`;
  } finally {
    await sql.end();
  }
  log("restarting PostgreSQL so pg_cron's scheduler serves the new database");
  await cluster.restart("fast");
  await setupDatabase(cluster.url(), root, log, { seed: true, secrets });
}

/**
 * One dispatch cycle through the gateway, for work enqueued while no kick could go out (the
 * seed, jobs left from the last run). Retried for up to `timeoutMs` while the answer is not a
 * clean 200 (PostgREST may still be loading its schema cache); cron runs one within a minute
 * anyway.
 */
export async function kickDispatcher(
  root: string,
  info: StackInfo,
  log: (l: string) => void,
  timeoutMs = 30_000,
): Promise<void> {
  const slug = "content-queue-dispatcher";
  if (
    !(await Deno.stat(`${root}/supabase/functions/${slug}/index.ts`).then(() => true, () => false))
  ) {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${info.apiUrl}/functions/v1/${slug}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${info.serviceRoleKey}`,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({ source: "kick" }),
        signal: AbortSignal.timeout(60_000),
      });
      const body = await res.text();
      last = `HTTP ${res.status} ${body.slice(0, 200)}`;
      if (res.status === 200 && !/"errors"/.test(body)) {
        log(`dispatch cycle: ${last}`);
        return;
      }
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  log(`dispatch cycle did not succeed (cron will retry within a minute): ${last}`);
}

/** A running stack. */
export class Stack {
  cluster: Cluster | null = null;
  /** The PostgREST binary, found or installed by {@link prepare}. */
  postgrestBin: string | null = null;
  readonly services: Service[] = [];
  info: StackInfo | null = null;
  readonly #startedAt = new Date().toISOString();
  /** Called when a service was restarted (its pid changed), once the stack is up. */
  onServicesChanged: () => void = () => {};

  constructor(readonly opts: StackOptions, readonly log: (line: string) => void) {}

  /** Everything up to a migrated, running database (and the PostgREST binary). */
  async prepare(): Promise<void> {
    const { opts, log } = this;
    const pgBin = await findPgBin();
    const cluster = new Cluster(
      pgBin,
      `${opts.dir}/pg`,
      opts.dbPort,
      `${opts.dir}/logs/postgres.log`,
    );
    this.cluster = cluster;
    // Ports first: say a port is taken before installing or creating anything.
    const pgRunning = await cluster.running();
    checkPorts(opts, pgRunning);
    await Deno.mkdir(`${opts.dir}/logs`, { recursive: true });
    log(`PostgreSQL 15 binaries: ${pgBin}`);
    const share = await shareDir(pgBin);
    await ensurePackages(share, log);
    log("Debian packages present: pg_cron, pgTAP, plpgsql_check");
    this.postgrestBin = await ensurePostgrest(log, opts.root);
    log(`PostgREST: ${this.postgrestBin}`);
    const ext = await installCompatExtensions(share);
    log(
      "extensions: " + Object.entries(ext).map(([k, v]) => `${k} ${v}`).join(", "),
    );
    if (!(await cluster.exists())) {
      log(`creating a PostgreSQL 15 cluster in ${cluster.dataDir} (initdb, a few seconds)`);
    }
    const created = await cluster.init();
    if (created) log(`created cluster in ${cluster.dataDir}`);
    if (!pgRunning) {
      log(`starting PostgreSQL on 127.0.0.1:${opts.dbPort}`);
      await cluster.start();
    }
    this.info = await stackInfo(opts.apiPort, opts.dbPort);
    await setupDatabase(cluster.url(), opts.root, log, { seed: created, secrets: this.info });
  }

  /**
   * Starts PostgREST, the gateway and the pg_net worker, each once the one before is healthy:
   * requests queued before the gateway answers (kicks of work left from the last run) then
   * wait in net.http_request_queue for the pg_net worker instead of failing.
   */
  async startServices(): Promise<void> {
    const { opts, log } = this;
    for (const def of await this.serviceDefs()) {
      const svc = new Service(def, log, () => this.onServicesChanged());
      svc.start();
      this.services.push(svc);
      log(`${def.name} started (pid ${svc.pid})`);
      if (def.health) {
        log(`waiting for ${def.name} to answer ${def.health}`);
        await waitForHealth(def.health, 60_000);
        log(`${def.name} healthy`);
      }
    }
    if (this.services.some((s) => s.def.name === "gateway")) {
      await kickDispatcher(opts.root, this.info!, log);
    }
  }

  /** What the stack runs, in start order. */
  async serviceDefs(): Promise<ServiceDef[]> {
    const { opts } = this;
    const info = this.info!;
    const deno = Deno.execPath();
    const debug = logLevel() === "debug";
    const restPort = freePort();
    const restAdminPort = freePort();
    const api = await readApiConfig(`${opts.root}/supabase/config.toml`);
    const env = {
      SUPABASE_URL: info.apiUrl,
      SUPABASE_ANON_KEY: info.anonKey,
      SUPABASE_SERVICE_ROLE_KEY: info.serviceRoleKey,
      SUPABASE_DB_URL: info.dbUrl,
      SUPABASE_JWT_SECRET: info.jwtSecret,
    };
    const denoService = (name: string, entry: string, args: string[], health?: string) => ({
      name,
      cmd: deno,
      args: ["run", "-A", `${opts.root}/${entry}`, ...args],
      env,
      cwd: opts.root,
      health,
    });
    return [
      {
        name: "postgrest",
        cmd: this.postgrestBin ?? await ensurePostgrest(this.log, opts.root),
        args: [],
        env: postgrestEnv({
          dbUri: `postgresql://authenticator:postgres@127.0.0.1:${opts.dbPort}/postgres`,
          jwtSecret: info.jwtSecret,
          api,
          port: restPort,
          adminPort: restAdminPort,
          logLevel: debug ? "info" : "error",
        }),
        cwd: opts.root,
        health: `http://127.0.0.1:${restAdminPort}/ready`,
      },
      denoService("gateway", "tools/stack/gateway/main.ts", [
        "--port",
        String(opts.apiPort),
        "--rest-url",
        `http://127.0.0.1:${restPort}`,
        "--rest-admin-url",
        `http://127.0.0.1:${restAdminPort}`,
        "--jwt-secret",
        info.jwtSecret,
        "--config",
        `${opts.root}/supabase/config.toml`,
        "--functions-dir",
        `${opts.root}/supabase/functions`,
        ...(debug ? ["--access-log"] : []),
      ], `${info.apiUrl}/health`),
      denoService("pg_net worker", "tools/stack/net_worker.ts", [
        "--db-url",
        info.dbUrl,
        ...(debug ? ["--verbose"] : []),
      ]),
    ];
  }

  /** The state to record in state.json. */
  state(ready: boolean): StackState {
    return {
      pid: Deno.pid,
      root: this.opts.root,
      dir: this.opts.dir,
      apiPort: this.opts.apiPort,
      dbPort: this.opts.dbPort,
      startedAt: this.#startedAt,
      ready,
      services: Object.fromEntries(this.services.map((s) => [s.def.name, s.pid])),
      health: Object.fromEntries(
        this.services.filter((s) => s.def.health).map((s) => [s.def.name, s.def.health!]),
      ),
    };
  }

  /** Stops services, then PostgreSQL. */
  async stop(): Promise<void> {
    for (const s of [...this.services].reverse()) {
      this.log(`stopping ${s.def.name}`);
      await s.stop();
    }
    if (this.cluster) {
      this.log("stopping PostgreSQL");
      await this.cluster.stop("fast");
    }
  }
}

/** Polls an URL until it answers 200, or throws after `timeoutMs`. */
export async function waitForHealth(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.body?.cancel();
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new StackError(`${url} did not become healthy within ${timeoutMs} ms (${last})`);
}

/** `CONVEYOR_LOG_LEVEL`: `debug` adds a line per request (gateway, PostgREST, pg_net worker). */
export function logLevel(): "debug" | "info" {
  return Deno.env.get("CONVEYOR_LOG_LEVEL") === "debug" ? "debug" : "info";
}

/**
 * Refuses to go on when the API port, or the database port of a cluster that is not ours and
 * running, is taken: before anything is installed, created or started.
 */
export function checkPorts(
  opts: Pick<StackOptions, "apiPort" | "dbPort">,
  clusterRunning: boolean,
): void {
  const ports = [["API", opts.apiPort], ["database", opts.dbPort]] as const;
  for (const [what, port] of ports) {
    if (what === "database" && clusterRunning) continue;
    if (!portFree(port)) {
      throw new StackError(
        `port ${port} (${what}) is already in use by another program`,
        `stop that program (another stack? run: deno task stack:down), or choose ports with --api-port/--db-port`,
      );
    }
  }
}
