/**
 * Brings the whole local stack up in order and down again: PostgreSQL (with pg_cron and our
 * compatible extensions), the platform bootstrap and migrations, Vault secrets for cron,
 * then the pg_net worker and the gateway (/rest/v1 + /functions/v1) as supervised children.
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
import { portFree } from "./proc.ts";
import { applyRoleLayout } from "./roles.ts";
import { Service } from "./service.ts";
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

// Database setup lives in migrate.ts (the Supabase CLI); re-exported for main.ts and tools.
export { resetDatabase, setupDatabase } from "./migrate.ts";

/** postgres.js client for setup work (quiet about NOTICEs such as "already exists, skipping"). */
export function adminSql(url: string) {
  return postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10 });
}

/** A running stack. */
export class Stack {
  cluster: Cluster | null = null;
  readonly services: Service[] = [];
  info: StackInfo | null = null;
  readonly #startedAt = new Date().toISOString();
  /** Called when a service was restarted (its pid changed), once the stack is up. */
  onServicesChanged: () => void = () => {};

  constructor(readonly opts: StackOptions, readonly log: (line: string) => void) {}

  /** Everything up to a migrated, running database. */
  async prepare(): Promise<void> {
    const { opts, log } = this;
    await Deno.mkdir(`${opts.dir}/logs`, { recursive: true });
    const pgBin = await findPgBin();
    log(`PostgreSQL 15 binaries: ${pgBin}`);
    const share = await shareDir(pgBin);
    await ensurePackages(share, log);
    log("Debian packages present: pg_cron, pgTAP, plpgsql_check");
    const ext = await installCompatExtensions(share);
    log(
      "extensions: " + Object.entries(ext).map(([k, v]) => `${k} ${v}`).join(", "),
    );
    const cluster = new Cluster(
      pgBin,
      `${opts.dir}/pg`,
      opts.dbPort,
      `${opts.dir}/logs/postgres.log`,
    );
    this.cluster = cluster;
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
    if (!(await cluster.running())) {
      for (const [what, port] of [["database", opts.dbPort], ["API", opts.apiPort]] as const) {
        if (!portFree(port)) {
          throw new StackError(
            `port ${port} (${what}) is already in use by another program`,
            `stop that program (another stack? run: deno task stack:down), or choose ports with --api-port/--db-port`,
          );
        }
      }
      log(`starting PostgreSQL on 127.0.0.1:${opts.dbPort}`);
      await cluster.start();
    }
    this.info = await stackInfo(opts.apiPort, opts.dbPort);
    await applyRoleLayout(cluster.adminUrl(), opts.root);
    await setupDatabase(
      { url: cluster.url(), adminUrl: cluster.adminUrl() },
      opts.root,
      log,
      { seed: created, secrets: this.info },
    );
  }

  /** Starts the pg_net worker and the gateway and waits until the gateway answers. */
  async startServices(): Promise<void> {
    const { opts, log } = this;
    const info = this.info!;
    const deno = Deno.execPath();
    const defs = [
      {
        name: "gateway",
        entry: "tools/stack/gateway/main.ts",
        args: [
          "--port",
          String(opts.apiPort),
          "--db-url",
          `postgresql://authenticator:postgres@127.0.0.1:${opts.dbPort}/postgres`,
          "--admin-db-url",
          info.dbUrl,
          "--jwt-secret",
          info.jwtSecret,
          "--config",
          `${opts.root}/supabase/config.toml`,
          "--functions-dir",
          `${opts.root}/supabase/functions`,
        ],
      },
      {
        name: "pg_net worker",
        entry: "tools/stack/net_worker.ts",
        // pg_net's worker is the superuser's background worker on hosted projects.
        args: ["--db-url", this.cluster!.adminUrl()],
      },
    ];
    const env = {
      SUPABASE_URL: info.apiUrl,
      SUPABASE_ANON_KEY: info.anonKey,
      SUPABASE_SERVICE_ROLE_KEY: info.serviceRoleKey,
      SUPABASE_DB_URL: info.dbUrl,
      SUPABASE_JWT_SECRET: info.jwtSecret,
    };
    for (const d of defs) {
      const path = `${opts.root}/${d.entry}`;
      if (!(await Deno.stat(path).then(() => true, () => false))) {
        log(`${d.name}: ${d.entry} not present in this checkout, not started`);
        continue;
      }
      const svc = new Service(
        { name: d.name, cmd: deno, args: ["run", "-A", path, ...d.args], env, cwd: opts.root },
        log,
        () => this.onServicesChanged(),
      );
      svc.start();
      this.services.push(svc);
      log(`${d.name} started (pid ${svc.pid})`);
      if (d.name === "gateway") {
        // The gateway first: requests queued before it answers (the seed's dispatcher kicks)
        // then wait in net.http_request_queue for the pg_net worker instead of failing.
        log(
          `waiting for the gateway on ${info.apiUrl} (the first start compiles it: up to a minute)`,
        );
        await waitForHealth(`${info.apiUrl}/health`, 60_000);
        log(`gateway answering on ${info.apiUrl}`);
      }
    }
    if (this.services.some((s) => s.def.name === "gateway")) await this.#kickDispatcher();
  }

  /**
   * Work enqueued while the gateway was down (seed.sql at first start, jobs left from the
   * last run) had its kicks refused: run one dispatch cycle now instead of waiting for
   * the next cron minute.
   */
  async #kickDispatcher(): Promise<void> {
    const slug = "content-queue-dispatcher";
    if (
      !(await Deno.stat(`${this.opts.root}/supabase/functions/${slug}/index.ts`).then(
        () => true,
        () => false,
      ))
    ) {
      return;
    }
    const info = this.info!;
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
      this.log(`startup dispatch cycle: HTTP ${res.status} ${body.slice(0, 200)}`);
    } catch (e) {
      this.log(
        `startup dispatch cycle failed (cron will retry within a minute): ${(e as Error).message}`,
      );
    }
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
