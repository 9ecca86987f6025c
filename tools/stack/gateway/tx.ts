/**
 * One transaction per request on a pooled `authenticator` connection, pipelined:
 * `BEGIN` → one `set_config` statement (role, request.*, search_path, role settings) →
 * the pre-request function → the main statement → `COMMIT`, all written at once so the
 * common case costs one round trip. When the result must be checked before committing
 * (`.single()` semantics), the COMMIT or ROLLBACK is sent after the check.
 *
 * @module
 */
import type postgres from "postgres";
import { type ApiError, pgrstError } from "./errors.ts";

/** One result row of a main statement. */
export type Row = Record<string, string | null>;
/** What the main statement returned: its rows and command row count. */
export interface TxResult {
  rows: Row[];
  count: number;
}

/** The main statement of a request. */
export interface TxPlan {
  readOnly: boolean;
  sql: string;
  params: (string | null)[];
  /** Use a named prepared statement (stable SQL text, e.g. RPC calls). */
  prepare: boolean;
  /** Decides after the statement whether to commit; an error rolls back and is thrown. */
  check?: (res: TxResult) => ApiError | null;
}

/** `select set_config($1, $2, true), …` for `n` settings (names are parameters too). */
const setConfigSql: string[] = [];
function setConfigStatement(n: number): string {
  return setConfigSql[n] ??= "select " +
    Array.from({ length: n }, (_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`)
      .join(", ");
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EPIPE",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
]);

/** Is `e` a failure to reach the database (not an error PostgreSQL reported)? */
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && CONNECTION_CODES.has(code) ||
    e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.ConnectionReset;
}

class PoolTimeout extends Error {}

/** Runs request transactions on a postgres.js pool. */
export class Executor {
  constructor(
    readonly pool: postgres.Sql,
    /** The pool's `max`. */
    readonly poolSize: number,
    readonly acquireTimeoutMs = 10_000,
  ) {}

  #inUse = 0;

  /** A reserved connection; waits at most `acquireTimeoutMs` when the pool is exhausted. */
  async #acquire(): Promise<postgres.ReservedSql> {
    const p = this.pool.reserve();
    // With a free slot the reserve resolves at once (or fails to connect): no timer needed.
    if (this.#inUse < this.poolSize) {
      const c = await p;
      this.#inUse++;
      return c;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PoolTimeout()), this.acquireTimeoutMs);
    });
    try {
      const c = await Promise.race([p, timeout]);
      this.#inUse++;
      return c;
    } catch (e) {
      if (e instanceof PoolTimeout) {
        p.then((c) => c.release(), () => {});
        throw pgrstError(
          504,
          "PGRST003",
          "Timed out acquiring connection from connection pool.",
        );
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #release(c: postgres.ReservedSql): void {
    this.#inUse--;
    c.release();
  }

  /**
   * Runs `plan` in a transaction after applying `settings` (in order) and the
   * pre-request statement. Throws the first error (PostgreSQL's or the plan's check).
   */
  async run(
    settings: [string, string][],
    preRequestSql: string | undefined,
    plan: TxPlan,
  ): Promise<TxResult> {
    const c = await this.#acquire();
    try {
      const begin = c.unsafe(plan.readOnly ? "begin read only" : "begin read write");
      const set = c.unsafe(setConfigStatement(settings.length), settings.flat(), {
        prepare: true,
      });
      const pre = preRequestSql ? c.unsafe(preRequestSql, [], { prepare: true }) : null;
      const main = c.unsafe<Row[]>(plan.sql, plan.params, { prepare: plan.prepare });
      const commit = plan.check ? null : c.unsafe("commit");
      const all = [begin, set, pre, main, commit].filter((q) => q !== null);
      for (const q of all) q.execute();
      const settled = await Promise.allSettled(all);
      const failed = settled.find((s) => s.status === "rejected");
      if (failed) {
        // A pipelined COMMIT after a failed statement ends the transaction (as ROLLBACK).
        if (!commit) await c.unsafe("rollback").catch(() => {});
        throw (failed as PromiseRejectedResult).reason;
      }
      const rows = await main;
      const res: TxResult = { rows: [...rows], count: rows.count ?? rows.length };
      if (plan.check) {
        let err: ApiError | null;
        try {
          err = plan.check(res);
        } catch (e) {
          await c.unsafe("rollback").catch(() => {});
          throw e;
        }
        if (err) {
          await c.unsafe("rollback");
          throw err;
        }
        await c.unsafe("commit");
      }
      return res;
    } finally {
      this.#release(c);
    }
  }
}
