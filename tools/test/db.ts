/**
 * Database fixtures for integration tests: {@link freshDb} clones the migrated template
 * (`conveyor_template`, built by the harness) into a database of the test's own, so tests
 * that need an untouched schema do not share state. Use it with `await using`.
 *
 * @module
 */
import postgres, { type Sql } from "postgres";
import { testEnv } from "./env.ts";

/** Name of the migrated template database the harness builds. */
export const TEMPLATE_DB = "conveyor_template";

/** A database of the test's own; dropped on dispose. */
export interface FreshDb extends AsyncDisposable {
  name: string;
  /** As `postgres` (not a superuser, as on hosted). */
  url: string;
  /** As the superuser, for fixtures only the platform could make (see testEnv().adminDbUrl). */
  adminUrl: string;
  sql: Sql;
}

/** postgres.js for `url`, quiet about NOTICEs. */
export function connect(url: string, max = 4): Sql {
  return postgres(url, { max, onnotice: () => {}, connect_timeout: 10 });
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/**
 * Clones the template into a new database. pg_cron and the pg_net worker do not serve it
 * (they serve `postgres`): test cron and HTTP side effects on `testEnv().dbUrl` instead.
 */
export async function freshDb(): Promise<FreshDb> {
  const env = testEnv();
  const name = `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = connect(env.dbUrl, 1);
  try {
    await admin.unsafe(`create database ${name} template ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  const url = withDb(env.dbUrl, name);
  const sql = connect(url);
  return {
    name,
    url,
    adminUrl: withDb(env.adminDbUrl, name),
    sql,
    async [Symbol.asyncDispose]() {
      await sql.end();
      const a = connect(env.dbUrl, 1);
      try {
        await a.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}
