/**
 * The stack's own PostgreSQL 15 cluster: created with initdb in a git-ignored folder, run
 * as the `postgres` OS user when we are root, listening on 127.0.0.1 only, with pg_cron
 * preloaded the way hosted Supabase has it. Its bootstrap superuser is `supabase_admin`, as
 * on hosted projects; the `postgres` role is not a superuser (tools/stack/sql/roles.sql).
 *
 * @module
 */
import { StackError } from "./errors.ts";
import { isRoot, run, runOk } from "./proc.ts";

/** The role users and migrations connect as, and its local password (the Supabase CLI's). */
export const PG_USER = "postgres";
export const PG_PASSWORD = "postgres";
/** The platform's superuser (initdb's bootstrap user), same local password. */
export const PG_SUPERUSER = "supabase_admin";

/**
 * Written into the data folder by {@link Cluster.init}: a cluster without it was made before
 * the hosted role layout, with `postgres` as its bootstrap superuser, which cannot be undone.
 */
const LAYOUT_MARKER = "conveyor_hosted_roles";

/** URL of database `db` on the local server at `port`, as `postgres` or the superuser. */
export function dbUrl(port: number, db = "postgres", user = PG_USER): string {
  return `postgresql://${user}:${PG_PASSWORD}@127.0.0.1:${port}/${db}`;
}

/** Settings written to postgresql.auto.conf (ALTER SYSTEM's file) at init. */
export function serverSettings(port: number): Record<string, string> {
  return {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    // TCP only: no socket path length limits, no socket dir permissions.
    unix_socket_directories: "''",
    shared_preload_libraries: "'pg_cron,pg_stat_statements'",
    "cron.database_name": "'postgres'",
    "cron.use_background_workers": "on",
    // cron's background workers, autovacuum and parallel workers share this pool.
    max_worker_processes: "32",
    // gateway pool + functions + net worker + tests + cron.
    max_connections: "300",
    "pg_stat_statements.track": "all",
    log_line_prefix: "'%m [%p] %q%u@%d '",
    log_min_duration_statement: "-1",
  };
}

/** A cluster in `dataDir` served on `port`. */
export class Cluster {
  constructor(
    readonly pgBin: string,
    readonly dataDir: string,
    readonly port: number,
    readonly logFile: string,
  ) {}

  /** URL of database `db` as `postgres` (not a superuser, as on hosted projects). */
  url(db = "postgres"): string {
    return dbUrl(this.port, db);
  }

  /** Superuser (`supabase_admin`) URL of database `db`: platform setup only. */
  adminUrl(db = "postgres"): string {
    return dbUrl(this.port, db, PG_SUPERUSER);
  }

  /** True if the cluster was made with the hosted role layout (see {@link LAYOUT_MARKER}). */
  async hasHostedRoles(): Promise<boolean> {
    return await Deno.stat(`${this.dataDir}/${LAYOUT_MARKER}`).then(() => true, () => false);
  }

  /**
   * A cluster made before the hosted role layout cannot be converted (its bootstrap
   * superuser is `postgres`): stop it and move it aside, so init() makes a new one. Returns
   * where it went, or null when there was nothing to do. Nothing is deleted.
   */
  async retireOldLayout(): Promise<string | null> {
    if (!(await this.exists()) || await this.hasHostedRoles()) return null;
    await this.stop("fast");
    const aside = `${this.dataDir}.before-hosted-roles-${Date.now()}`;
    await Deno.rename(this.dataDir, aside);
    return aside;
  }

  /** True if initdb has run in dataDir. */
  async exists(): Promise<boolean> {
    try {
      await Deno.stat(`${this.dataDir}/PG_VERSION`);
      return true;
    } catch {
      return false;
    }
  }

  /** Creates the cluster (initdb) unless it exists; returns true when it created one. */
  async init(): Promise<boolean> {
    if (await this.exists()) return false;
    await Deno.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const pwfile = `${this.dataDir}.pw`;
    await Deno.writeTextFile(pwfile, PG_PASSWORD + "\n");
    if (isRoot()) {
      await runOk("chown", ["postgres:postgres", this.dataDir, pwfile]);
      await this.#checkPostgresCanReach();
    }
    try {
      await runOk(`${this.pgBin}/initdb`, [
        "-D",
        this.dataDir,
        "-U",
        PG_SUPERUSER,
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
      ], { asPostgres: true });
    } finally {
      await Deno.remove(pwfile).catch(() => {});
    }
    const conf = Object.entries(serverSettings(this.port)).map(([k, v]) => `${k} = ${v}`);
    await Deno.writeTextFile(
      `${this.dataDir}/postgresql.auto.conf`,
      "# Written by tools/stack (conveyor local stack)\n" + conf.join("\n") + "\n",
    );
    await Deno.writeTextFile(
      `${this.dataDir}/${LAYOUT_MARKER}`,
      `bootstrap superuser ${PG_SUPERUSER}; ${PG_USER} is not a superuser\n`,
    );
    return true;
  }

  /** initdb runs as `postgres`: every folder above the data dir must be traversable by it. */
  async #checkPostgresCanReach(): Promise<void> {
    const res = await run("test", ["-w", this.dataDir], { asPostgres: true });
    if (res.code !== 0) {
      throw new StackError(
        `the postgres OS user cannot reach ${this.dataDir} (a parent folder is not traversable)`,
        `set CONVEYOR_STACK_DIR to a folder the postgres user can reach, e.g. /var/tmp/conveyor`,
      );
    }
  }

  /** True if the postmaster of this data dir is running. */
  async running(): Promise<boolean> {
    if (!(await this.exists())) return false;
    const res = await run(`${this.pgBin}/pg_ctl`, ["status", "-D", this.dataDir], {
      asPostgres: true,
    });
    return res.code === 0;
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    if (await this.running()) return;
    // The port may have changed since initdb (flags/env): always re-assert it.
    await this.#setPort();
    if (isRoot()) {
      await Deno.writeTextFile(this.logFile, "", { append: true });
      await runOk("chown", ["postgres:postgres", this.logFile]);
    }
    const res = await run(`${this.pgBin}/pg_ctl`, [
      "start",
      "-w",
      "-t",
      "60",
      "-D",
      this.dataDir,
      "-l",
      this.logFile,
    ], { asPostgres: true });
    if (res.code !== 0) {
      const log = await Deno.readTextFile(this.logFile).catch(() => "");
      const tail = log.trim().split("\n").slice(-8).join("\n");
      const portHint = /could not bind|Address already in use/.test(log)
        ? `port ${this.port} is in use by another program: stop it, or pick another port with --db-port / CONVEYOR_DB_PORT`
        : undefined;
      throw new StackError(`PostgreSQL did not start:\n${tail}`, portHint);
    }
  }

  async #setPort(): Promise<void> {
    const file = `${this.dataDir}/postgresql.auto.conf`;
    const text = await Deno.readTextFile(file);
    const next = text.replace(/^port = \d+$/m, `port = ${this.port}`);
    if (next !== text) await Deno.writeTextFile(file, next);
  }

  /** Stops the server (`fast` = roll back open transactions, `immediate` = crash-stop). */
  async stop(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    if (!(await this.running())) return;
    await runOk(`${this.pgBin}/pg_ctl`, ["stop", "-w", "-m", mode, "-D", this.dataDir], {
      asPostgres: true,
    });
  }

  /** Restarts the server; `immediate` simulates a crash (unlogged tables are emptied). */
  async restart(mode: "fast" | "immediate" = "fast"): Promise<void> {
    await runOk(`${this.pgBin}/pg_ctl`, [
      "restart",
      "-w",
      "-t",
      "60",
      "-m",
      mode,
      "-D",
      this.dataDir,
      "-l",
      this.logFile,
    ], { asPostgres: true });
  }
}
