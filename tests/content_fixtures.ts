/**
 * Fixtures for the content pipeline's tests: a fresh database with the Vault secrets
 * triggers need, jobs, the dispatcher's store over a direct connection (so the real
 * dispatcher code can run against a fresh database, whose pg_net requests stay queued for
 * inspection), and helpers that change shared settings for the length of a test.
 *
 * @module
 */
import type { Sql } from "postgres";
import { assertEquals } from "../tools/test/assert.ts";
import { connect, type FreshDb, freshDb } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import type { BacklogRow } from "../supabase/functions/_shared/dispatch/plan.ts";
import type { DispatchStore } from "../supabase/functions/_shared/dispatch/store.ts";

/** The project URL a fresh database's Vault holds (nothing listens there). */
export const FAKE_PROJECT_URL = "http://127.0.0.1:9";

/** A fresh database (template clone) with Vault secrets `project_url` and `service_role_key`. */
export async function contentDb(): Promise<FreshDb> {
  const db = await freshDb();
  await db.sql`select vault.create_secret(${FAKE_PROJECT_URL}, 'project_url')`;
  await db.sql`select vault.create_secret('test-service-key', 'service_role_key')`;
  return db;
}

/** The database's clock (what defaults such as available_at = now() use). */
export async function dbNow(sql: Sql): Promise<Date> {
  const [r] = await sql`select clock_timestamp() as t`;
  return r!.t as Date;
}

/** `sec` seconds after `base` (an injected clock's next reading). */
export const at = (base: Date, sec: number): Date => new Date(base.getTime() + sec * 1000);

/** Creates a content job through queue_content_job; returns its id. */
export async function createJob(
  sql: Sql,
  brief: Record<string, unknown> = { topic: "testing" },
  extra: Record<string, unknown> = {},
  key = `k:${crypto.randomUUID()}`,
): Promise<string> {
  const body = { idempotency_key: key, brief, ...extra };
  const [r] = await sql`select public.queue_content_job(${sql.json(body as never)}::jsonb) as id`;
  return r!.id as string;
}

/** pg_net requests still queued (a fresh database's are never sent), oldest first. */
export async function queuedRequests(sql: Sql) {
  return await sql<
    { id: string; url: string; body: Record<string, unknown>; headers: Record<string, string> }[]
  >`
    select id, url, convert_from(body, 'utf8')::jsonb as body, headers
    from net.http_request_queue order by id`;
}

/** The dispatcher's store over a direct connection (same SQL functions as over RPC). */
export function sqlDispatchStore(sql: Sql): DispatchStore {
  return {
    async backlog() {
      const rows = await sql`select * from public.get_dispatch_backlog()`;
      return rows.map((r) => ({
        ...r,
        ready_count: Number(r.ready_count),
        in_flight_count: Number(r.in_flight_count),
      })) as unknown as BacklogRow[];
    },
    async trigger(req) {
      const fn = req.source === "content" ? "trigger_content_worker" : "trigger_queue_worker";
      const [r] = await sql.unsafe(`select public.${fn}($1, $2, $3, $4) as n`, [
        req.target,
        req.count,
        req.maxConcurrency,
        req.reason,
      ]);
      return Number(r!.n);
    },
    async closeKickWindow(target, window) {
      const [r] = await sql<{ waited: boolean }[]>`
        select public.close_kick_window(${target}, ${window ?? null}) as waited`;
      return r!.waited;
    },
  };
}

/** Per-stage live leases and triggered invocations, read in one snapshot. */
export async function stageLoad(sql: Sql, p_now?: Date) {
  const rows = await sql`
    select stage, leased_count::int as leased, triggered_count::int as triggered,
           ready_count::int as ready, max_concurrency
    from public.get_content_stage_backlog(${p_now ?? null})`;
  return Object.fromEntries(rows.map((r) => [r.stage as string, r]));
}

/** Sets a conveyor.settings value for the duration of `fn` (restored after). */
export async function withSetting<T>(
  sql: Sql,
  key: string,
  value: unknown,
  fn: () => Promise<T>,
): Promise<T> {
  const [old] = await sql`select value from conveyor.settings where key = ${key}`;
  await sql`update conveyor.settings set value = ${sql.json(value as never)} where key = ${key}`;
  try {
    return await fn();
  } finally {
    await sql`update conveyor.settings set value = ${sql.json(old!.value)} where key = ${key}`;
  }
}

/** Changes content_stage_config rows for the duration of `fn` (restored after). */
export async function withStageConfig<T>(
  sql: Sql,
  patch: Record<
    string,
    Partial<
      {
        max_concurrency: number;
        trigger_batch_size: number;
        enabled: boolean;
        worker_endpoint: string;
      }
    >
  >,
  fn: () => Promise<T>,
): Promise<T> {
  const old = await sql`select * from public.content_stage_config`;
  for (const [stage, p] of Object.entries(patch)) {
    await sql`update public.content_stage_config set ${
      sql(p as Record<string, unknown>)
    } where stage = ${stage}`;
  }
  try {
    return await fn();
  } finally {
    for (const r of old) {
      await sql`update public.content_stage_config
                set max_concurrency = ${r.max_concurrency}, trigger_batch_size = ${r.trigger_batch_size},
                    enabled = ${r.enabled}, worker_endpoint = ${r.worker_endpoint}
                where stage = ${r.stage}`;
    }
  }
}

/**
 * Sets a cron job (default: the dispatcher's) active or not for the duration of `fn` (the
 * stack's database only).
 */
export async function withCronActive<T>(
  sql: Sql,
  active: boolean,
  fn: () => Promise<T>,
  jobname = "planperfect-content-queue-dispatcher",
): Promise<T> {
  const [job] = await sql`select jobid, active from cron.job where jobname = ${jobname}`;
  assertEquals(job !== undefined, true, `the cron job ${jobname} exists`);
  await sql`select cron.alter_job(${job!.jobid}, active := ${active})`;
  try {
    return await fn();
  } finally {
    await sql`select cron.alter_job(${job!.jobid}, active := ${job!.active})`;
  }
}

/** A connection to the stack's `postgres` database as `postgres` (cron, pg_net, gateway). */
export function stackSql(max = 4): Sql {
  return connect(testEnv().dbUrl, max);
}

/** Calls an RPC through the gateway with the service role; returns status and JSON body. */
export async function rest(fn: string, body: unknown, key = testEnv().serviceRoleKey) {
  const res = await fetch(`${testEnv().apiUrl}/rest/v1/rpc/${fn}`, {
    method: "POST",
    headers: { apikey: key, Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
