/**
 * Fixtures for the operator tests (dashboard, metrics, CLI): numbers that stay put while a
 * test compares what an endpoint shows with what SQL counts, and {@link cli}, the ops CLI
 * run in-process against the test stack.
 *
 * - {@link quietKind}: a job kind of the test's own whose dispatch is off, so only the test
 *   claims and settles its jobs;
 * - {@link frozenStage}: a content stage paused and drained of live workers, plus
 *   {@link claimFrozen}, which claims an item of it as a real worker would (the stage is
 *   enabled only inside the claiming transaction, so no dispatcher ever sees it enabled).
 *
 * @module
 */
import type { Sql } from "postgres";
import { assertEquals } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually, type TempKind, tempKind } from "../tools/test/queue.ts";
import { main } from "../tools/ops/cli.ts";

const env = testEnv();

/** The default tenant. */
export const DEFAULT_TENANT = "00000000-0000-0000-0000-000000000000";

/** The worker name the tests claim with. */
export const TEST_WORKER = "operator-test";

/** What the ops CLI reads from its environment, pointed at the test stack as service_role. */
export const cliEnv = (n: string): string | undefined =>
  ({ SUPABASE_URL: env.apiUrl, SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey } as Record<
    string,
    string
  >)[n];

/** Runs the ops CLI in-process against the test stack; returns the exit code and what it printed. */
export async function cli(args: string[], signal?: AbortSignal) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) }, {
    env: cliEnv,
    signal,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** Calls an RPC through the gateway as service_role; returns the status and the JSON body. */
export async function rest(
  fn: string,
  body: unknown,
  key = env.serviceRoleKey,
): Promise<{ status: number; data: unknown }> {
  const res = await fetch(`${env.apiUrl}/rest/v1/rpc/${fn}`, {
    method: "POST",
    headers: { apikey: key, Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, data: text ? JSON.parse(text) : null };
}

/** Enqueues through the seed's RPC; asserts success. */
export async function enqueue(body: Record<string, unknown>): Promise<number> {
  const r = await rest("queue_job", body);
  assertEquals(r.status, 200, JSON.stringify(r.data));
  return r.data as number;
}

/** A temp kind that the dispatcher never starts workers for. */
export async function quietKind(): Promise<TempKind> {
  const k = await tempKind();
  await k.sql`update conveyor.job_kinds set enabled = false where kind = ${k.kind}`;
  return k;
}

/** Claims every visible job of a kind for the test worker (leases of `vt` seconds). */
export async function claimAll(sql: Sql, kind: string, qty = 100, vt = 600) {
  return await sql<{ job_id: string; lease_id: string; queue_name: string; payload: unknown }[]>`
    select job_id, lease_id, queue_name, payload
    from public.claim_jobs(${kind}, ${TEST_WORKER}, ${qty}, ${vt})`;
}

/** A content stage paused for the test, restored (and its test leases released) on dispose. */
export interface FrozenStage extends AsyncDisposable {
  stage: string;
}

/** Pauses `stage` and waits until no worker holds or is about to take an item of it. */
export async function frozenStage(sql: Sql, stage: string): Promise<FrozenStage> {
  const [cfg] = await sql`select enabled from public.content_stage_config where stage = ${stage}`;
  await sql`update public.content_stage_config set enabled = false where stage = ${stage}`;
  await eventually(`stage ${stage} to drain`, async () => {
    const [r] = await sql`
      select leased_count::int + triggered_count::int as busy
      from public.get_content_stage_backlog() where stage = ${stage}`;
    return r!.busy === 0;
  }, 60_000);
  return {
    stage,
    async [Symbol.asyncDispose]() {
      const held = await sql`
        select job_id, stage, lease_id from public.content_job_stages
        where stage = ${stage} and status = 'in_progress' and lease_owner = ${TEST_WORKER}`;
      if (held.length) {
        await sql`select * from public.release_content_stages(${TEST_WORKER}, ${
          sql.json(held.map((h) => ({ ...h })) as never)
        }::jsonb)`;
      }
      if (cfg!.enabled) {
        // Enabled again through the operator RPC, which also kicks the dispatcher, so what
        // waited meanwhile runs now rather than at the next cron minute.
        await sql`select public.operator_configure_target(${stage}, true)`;
      }
    },
  };
}

/**
 * Claims one item of a frozen stage as a worker would, then (optionally) fails it with
 * `error`, which records an `error` event and schedules a retry. Enabled only inside this
 * transaction: a dispatcher reading the config meanwhile sees the stage paused.
 */
export async function claimFrozen(
  sql: Sql,
  stage: string,
  opts: { error?: string; leaseSec?: number } = {},
): Promise<{ job_id: string; lease_id: string }> {
  return await sql.begin(async (tx) => {
    await tx`update public.content_stage_config set enabled = true where stage = ${stage}`;
    const [c] = await tx`
      select job_id, lease_id from public.claim_content_stage(
        ${stage}, ${TEST_WORKER}, null, ${opts.leaseSec ?? 600})`;
    if (!c) throw new Error(`nothing to claim in ${stage}`);
    if (opts.error !== undefined) {
      await tx`select * from public.settle_content_stages(${TEST_WORKER}, ${
        sql.json([{
          job_id: c.job_id,
          stage,
          lease_id: c.lease_id,
          status: "failed",
          error: { message: opts.error },
        }] as never)
      }::jsonb)`;
    }
    await tx`update public.content_stage_config set enabled = false where stage = ${stage}`;
    return { job_id: c.job_id as string, lease_id: c.lease_id as string };
  });
}

/** What SQL counts for a pgmq queue, the way the dashboard defines each number. */
export async function queueCounts(sql: Sql, queue: string) {
  const [r] = await sql`
    select count(*) filter (where status = 'pending' and run_at <= now())::int as ready,
           count(*) filter (where status = 'pending' and run_at > now())::int as delayed,
           count(*) filter (where status = 'processing')::int as in_flight,
           count(*) filter (where status = 'completed' and finished_at > now() - interval '1 hour')::int
             as processed,
           count(*) filter (where status = 'failed' and finished_at > now() - interval '1 hour')::int
             as failed
    from public.jobs where queue_name = ${queue}`;
  return r as unknown as {
    ready: number;
    delayed: number;
    in_flight: number;
    processed: number;
    failed: number;
  };
}

/** What SQL counts for a content stage, the way the dispatcher defines each number. */
export async function stageCounts(sql: Sql, stage: string) {
  const [r] = await sql`
    select
      (select count(*) from public.content_job_stages s where s.stage = ${stage}
        and ((s.status = 'ready' and s.available_at <= now())
          or (s.status = 'in_progress' and s.lease_expires_at <= now())))::int as ready,
      ((select count(*) from public.content_job_stages s where s.stage = ${stage}
         and s.status = 'in_progress' and s.lease_expires_at > now())
       + (select count(*) from conveyor.worker_invocations i where i.source = 'content'
          and i.target = ${stage} and i.status = 'triggered' and i.expires_at > now()))::int
        as in_flight,
      (select max_concurrency from public.content_stage_config where stage = ${stage}) as max_concurrency,
      (select enabled from public.content_stage_config where stage = ${stage}) as enabled`;
  return r as unknown as {
    ready: number;
    in_flight: number;
    max_concurrency: number;
    enabled: boolean;
  };
}
