/**
 * Fixtures of the reliability suite: job kinds of the test's own that the dispatcher leaves
 * alone (the test runs their workers), the gateway as an {@link Api}, and helpers to wait
 * for the stack after a fault.
 *
 * @module
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { connect } from "../../tools/test/db.ts";
import { testEnv } from "../../tools/test/env.ts";
import { type TempKind, tempKind } from "../../tools/test/queue.ts";
import type { Sql } from "postgres";
import type { Api } from "./driver.ts";
import { withCronActive, withSetting, withStageConfig } from "../content_fixtures.ts";

/** The test stack's gateway. */
export function testApi(): Api {
  const env = testEnv();
  return { url: env.apiUrl, serviceKey: env.serviceRoleKey };
}

/** `n` temporary job kinds (own pgmq queues), not dispatched: the test runs their workers. */
export async function loadKinds(n: number): Promise<{ kinds: string[] } & AsyncDisposable> {
  const made: TempKind[] = [];
  for (let i = 0; i < n; i++) {
    const k = await tempKind();
    made.push(k);
    await k.sql`update conveyor.job_kinds set enabled = false where kind = ${k.kind}`;
  }
  return {
    kinds: made.map((k) => k.kind),
    async [Symbol.asyncDispose]() {
      for (const k of made) await k[Symbol.asyncDispose]();
    },
  };
}

/**
 * A service-role supabase-js client whose requests give up after `timeoutMs`: a worker in
 * the edge runtime is bounded by its wall clock, and a test must not hang on one request
 * that never got an answer while the gateway or Postgres restarted. A timeout is logged
 * (it would deserve a look) and surfaces as an RPC error, which the worker loops survive.
 * `away.count` counts the requests that met the API away (no answer, or a 5xx): the workers
 * call again through a short outage, so their loops may never see it.
 */
export function loadClient(timeoutMs = 30_000, away = { count: 0 }): SupabaseClient {
  const env = testEnv();
  const timed: typeof fetch = (input, init) => {
    const signal = init?.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs)])
      : AbortSignal.timeout(timeoutMs);
    return fetch(input, { ...init, signal }).then((res) => {
      if (res.status >= 500) away.count++;
      return res;
    }, (e) => {
      away.count++;
      if ((e as Error).name === "TimeoutError") {
        const url = input instanceof Request ? input.url : String(input);
        console.warn(`no answer within ${timeoutMs} ms: ${url}`);
      }
      throw e;
    });
  };
  return createClient(env.apiUrl, env.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { fetch: timed },
  });
}

/** A `postgres` connection to the stack's database that survives a Postgres restart. */
export function resilientSql(max = 4): Sql {
  return connect(testEnv().dbUrl, max);
}

/** Waits until the gateway answers /health with the database reachable. */
export async function waitForGateway(ms = 60_000): Promise<void> {
  const url = `${testEnv().apiUrl}/health`;
  const deadline = Date.now() + ms;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      const body = await res.json();
      if (res.ok && body.db === true) return;
      last = JSON.stringify(body);
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the gateway did not come back within ${ms} ms (${last})`);
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Dispatch settings a fault test runs under; each is restored afterwards. */
export interface DispatchSettings {
  /** The dispatcher's cron job on or off. */
  cron: boolean;
  /** conveyor.settings push_kicks. */
  pushKicks: boolean;
  /** conveyor.settings invocation_ttl_sec: how soon a lost worker trigger frees its slot. */
  invocationTtlSec: number;
  /** content_stage_config rows to change (e.g. worker endpoints). */
  stages?: Parameters<typeof withStageConfig>[1];
}

/** Runs `fn` with the dispatch settings, restoring every one of them afterwards. */
export function withDispatch<T>(sql: Sql, s: DispatchSettings, fn: () => Promise<T>): Promise<T> {
  return withCronActive(
    sql,
    s.cron,
    () =>
      withSetting(
        sql,
        "push_kicks",
        s.pushKicks,
        () =>
          withSetting(sql, "invocation_ttl_sec", s.invocationTtlSec, () =>
            withStageConfig(sql, s.stages ?? {}, fn)),
      ),
  );
}
