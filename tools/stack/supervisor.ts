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
import { setupDatabase } from "./migrate.ts";
import { ensurePackages } from "./packages.ts";
import { findPgBin, shareDir } from "./pg_binaries.ts";
import { ensurePostgrest, postgrestEnv, readApiConfig } from "./postgrest.ts";
import { freePort, portFree } from "./proc.ts";
import { applyRoleLayout } from "./roles.ts";
import { Service, type ServiceDef } from "./service.ts";
import { projectDenoConfig, projectRoot, type StackOptions, type StackState } from "./state.ts";

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

// Database setup lives in migrate.ts (the Supabase CLI); re-exported for main.ts and tools.
export { resetDatabase, setupDatabase, withKicksHeld } from "./migrate.ts";

/** postgres.js client for setup work (quiet about NOTICEs such as "already exists, skipping"). */
export function adminSql(url: string) {
  return postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10 });
}

/**
 * One dispatch cycle through the gateway, for work enqueued while no kick could go out (the
 * seed, jobs left from the last run). Retried for up to `timeoutMs` while the answer is not a
 * clean 200 (PostgREST may still be loading its schema cache); cron runs one within a minute
 * anyway.
 */
export async function kickDispatcher(
  project: string,
  info: StackInfo,
  log: (l: string) => void,
  timeoutMs = 30_000,
): Promise<void> {
  const slug = "content-queue-dispatcher";
  if (
    !(await Deno.stat(`${project}/supabase/functions/${slug}/index.ts`).then(
      () => true,
      () => false,
    ))
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
    const aside = await cluster.retireOldLayout();
    if (aside) {
      log(`${cluster.dataDir} was made before the hosted role layout (postgres as superuser)`);
      log(`moved it to ${aside} (delete it when you no longer need its data)`);
    }
    if (!(await cluster.exists())) {
      log(`creating a PostgreSQL 15 cluster in ${cluster.dataDir} (initdb, a few seconds)`);
    }
    const created = await cluster.init();
    if (created) log(`created cluster in ${cluster.dataDir}`);
    // A cluster moved aside was stopped first: the new one always needs starting.
    if (!pgRunning || aside) {
      log(`starting PostgreSQL on 127.0.0.1:${opts.dbPort}`);
      await cluster.start();
    }
    this.info = await stackInfo(opts.apiPort, opts.dbPort);
    await applyRoleLayout(cluster.adminUrl());
    if (projectRoot(opts) !== opts.root) log(`project: ${projectRoot(opts)}`);
    await setupDatabase(
      { url: cluster.url(), adminUrl: cluster.adminUrl() },
      projectRoot(opts),
      log,
      { seed: created, secrets: this.info },
    );
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
      await kickDispatcher(projectRoot(opts), this.info!, log);
    }
  }

  /** What the stack runs, in start order. */
  async serviceDefs(): Promise<ServiceDef[]> {
    const { opts } = this;
    const project = projectRoot(opts);
    const info = this.info!;
    const deno = Deno.execPath();
    const debug = logLevel() === "debug";
    const restPort = freePort();
    const restAdminPort = freePort();
    const api = await readApiConfig(`${project}/supabase/config.toml`);
    const denoConfig = await projectDenoConfig(project);
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
        `${project}/supabase/config.toml`,
        "--functions-dir",
        `${project}/supabase/functions`,
        ...(denoConfig ? ["--deno-config", denoConfig] : []),
        ...(debug ? ["--access-log"] : []),
      ], `${info.apiUrl}/health`),
      // pg_net's worker is the superuser's background worker on hosted projects.
      denoService("pg_net worker", "tools/stack/net_worker.ts", [
        "--db-url",
        this.cluster!.adminUrl(),
        ...(debug ? ["--verbose"] : []),
      ]),
    ];
  }

  /** The state to record in state.json. */
  state(ready: boolean): StackState {
    return {
      pid: Deno.pid,
      root: this.opts.root,
      project: projectRoot(this.opts),
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
    // Only a running cluster: a start refused before PostgreSQL started (a port in use) has
    // nothing to stop, and saying "stopping PostgreSQL" there misleads.
    if (this.cluster && await this.cluster.running()) {
      this.log("stopping PostgreSQL");
      await this.cluster.stop("fast");
    }
  }
}

/** Polls an URL until it answers 200, or throws after `timeoutMs` or once `signal` aborts. */
export async function waitForHealth(
  url: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline && !signal?.aborted) {
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
        // `ss -tanp` and not `-ltnp`: the port can also be the local end of some program's
        // outgoing connection (54321/54322 lie in Linux's ephemeral range), which no listener shows.
        `stop that program (\`ss -tanp | grep :${port}\` shows it; another stack? run: deno task stack:down), or choose ports with --api-port/--db-port`,
      );
    }
  }
}
