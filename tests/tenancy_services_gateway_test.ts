/**
 * The tenant services of issue 7 driven the way a deployed project drives them: over HTTP
 * through the gateway with supabase-js and real JWTs. Tenants enqueue with their own token
 * (`queue_job`); workers and pg_cron's jobs call the service_role RPCs (`claim_jobs`,
 * `settle_jobs`, `materialise_schedules`, `evaluate_alerts`); tenants read the outcome
 * through RLS. The same behaviours over direct SQL: rate_limiters_test.ts, schedules_test.ts,
 * critical_jobs_test.ts, alerts_test.ts.
 *
 * Rate limits run on the stack's own gateway and `postgres` database, on fresh tenants and a
 * job kind of the test's own. The others run a private gateway (the same code, in-process)
 * over a fresh clone of the migrated template: schedules and alerts are sweeps over EVERY
 * tenant (and pg_cron runs them every minute in `postgres`), so only there are the sweep's
 * counts the test's alone; and in `postgres` the stack's DLQ consumer would process the
 * critical test's dead letters (raising alerts on its tenant) while the test cleans up.
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";
import { testGateway } from "../tools/stack/gateway/test_support.ts";
import { createTenant, tenantToken } from "./tenant_fixtures.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MINUTE = 60_000;

/** A job as claim_jobs returns it over the API (the columns the tests use). */
interface ClaimedRow {
  job_id: string;
  lease_id: string;
  tenant_id: string;
  attempt: number;
  max_attempts: number | null;
}

/** A row of settle_jobs. */
interface SettleRow {
  job_id: string;
  accepted: boolean;
  outcome: string;
}

/** supabase-js as a deployed client builds it: the anon key as apikey, the user's JWT as bearer. */
function userClient(url: string, anonKey: string, token: string): SupabaseClient {
  return createClient(url, anonKey, {
    accessToken: () => Promise.resolve(token),
  });
}

/** supabase-js as workers and edge functions build it: the service_role key. */
function serviceClient(url: string, serviceRoleKey: string): SupabaseClient {
  return createClient(url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** An API to drive: its URL and keys, and the `postgres` connection of the database behind it. */
interface Api {
  url: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  sql: Sql;
}

/** Two fresh tenants of `api`'s database with a supabase-js client each, and a service client. */
async function tenants(api: Api) {
  const a = await createTenant(api.sql, "svc-gw-a");
  const b = await createTenant(api.sql, "svc-gw-b");
  return {
    a,
    b,
    asA: userClient(api.url, api.anonKey, await tenantToken(a, api.jwtSecret)),
    asB: userClient(api.url, api.anonKey, await tenantToken(b, api.jwtSecret)),
    service: serviceClient(api.url, api.serviceRoleKey),
  };
}

/** The stack's gateway over its `postgres` database. */
function stackApi(): Api & AsyncDisposable {
  const env = testEnv();
  const sql = connect(env.dbUrl, 2);
  return {
    url: env.apiUrl,
    anonKey: env.anonKey,
    serviceRoleKey: env.serviceRoleKey,
    jwtSecret: env.jwtSecret,
    sql,
    async [Symbol.asyncDispose]() {
      await sql.end();
    },
  };
}

/**
 * A private gateway (the same code the stack runs, in-process, with the repository's
 * config.toml and no functions) over a fresh clone of the migrated template, which no
 * pg_cron job serves.
 */
async function privateApi(): Promise<Api & AsyncDisposable> {
  const env = testEnv();
  const db = await freshDb();
  const config = await Deno.readTextFile(`${REPO_ROOT}/supabase/config.toml`);
  const gw = await testGateway(db.url, {}, config);
  return {
    url: gw.url,
    anonKey: gw.anon,
    serviceRoleKey: gw.service,
    jwtSecret: env.jwtSecret,
    sql: db.sql,
    async [Symbol.asyncDispose]() {
      try {
        await gw[Symbol.asyncDispose]();
      } finally {
        await db[Symbol.asyncDispose]();
      }
    },
  };
}

/**
 * A job kind of the test's own whose handler calls `service` (a rate_limiters service), with
 * its three tier queues. Disabled for the stack's dispatcher (`enabled = false`: it starts
 * no worker for the kind; claims are not affected), so the test's workers are its only
 * consumers. Removed on dispose with its jobs and alerts, the kind before its queues so the
 * dispatcher stops looking at them first.
 */
async function ownKind(sql: Sql, service: string) {
  const kind = `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await sql`
    insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description,
                                    enabled)
    values (${kind}, ${"q_" + kind}, ${service}, 'test-worker', 'test kind', false)`;
  await sql`select conveyor.ensure_kind_queues(${kind})`;
  return {
    kind,
    async [Symbol.asyncDispose]() {
      await sql`delete from public.jobs where kind = ${kind}`;
      await sql`delete from public.alert_history where subject = ${kind}`;
      await sql`delete from conveyor.job_kinds where kind = ${kind}`;
      for (const t of ["", "_fast", "_bulk"]) await sql`select pgmq.drop_queue(${"q_" + kind + t})`;
    },
  };
}

/** One claim call as a worker saw it. */
interface ClaimCall {
  sent: number;
  answered: number;
  got: number;
  /** The service's jobs the workers held right after this claim was answered. */
  inHand: number;
}

Deno.test("rate limits (gateway): 8 concurrent service_role workers never exceed a tenant's bucket or its concurrency, and every job completes once", async () => {
  await using api = stackApi();
  const t = await tenants(api);
  await using k = await ownKind(api.sql, "solana_rpc");
  const N = 40;

  // Enqueued by the tenant's users, over two tiers so claims cross tiers.
  const msgIds: number[] = [];
  for (let i = 0; i < N; i++) {
    const res = await t.asA.rpc("queue_job", {
      kind: k.kind,
      idempotency_key: `rl-${i}`,
      payload: { i },
      priority: i % 3 === 0 ? "fast" : "normal",
    });
    assertEquals([res.status, res.error], [200, null]);
    msgIds.push(res.data as number);
  }

  // The bucket, as the tenant reads it through RLS.
  const lim = await t.asA.from("rate_limiters")
    .select("service_name, tenant_id, capacity, refill_per_sec, max_concurrent")
    .eq("service_name", "solana_rpc");
  assertEquals([lim.status, lim.error, lim.data?.length], [200, null, 1]);
  const row = lim.data![0]!;
  assertEquals([row.service_name, row.tenant_id], ["solana_rpc", t.a]);
  const capacity = Number(row.capacity);
  const refill = Number(row.refill_per_sec);
  const maxConcurrent = Number(row.max_concurrent);
  assertEquals([capacity, maxConcurrent], [25, 5], "seed 004's solana_rpc bucket");
  assert(N > capacity, "more jobs than tokens: the bucket must run dry and refill");

  const calls: ClaimCall[] = [];
  const completed: string[] = [];
  const refused: SettleRow[] = [];
  const errors: string[] = [];
  let inHand = 0;
  // A safety net against a hang, not an assertion: the counts below fail if it is hit.
  const deadline = Date.now() + 90_000;

  const worker = async (n: number) => {
    const name = `gw-rl-${n}`;
    while (completed.length + refused.length < N && errors.length === 0 && Date.now() < deadline) {
      const sent = performance.now();
      const claim = await t.service.rpc("claim_jobs", {
        p_kind: k.kind,
        p_worker: name,
        p_qty: 3,
        p_vt: 60,
      });
      const answered = performance.now();
      if (claim.error) {
        errors.push(`claim_jobs ${claim.status}: ${claim.error.message}`);
        break;
      }
      const got = claim.data as ClaimedRow[];
      inHand += got.length;
      calls.push({ sent, answered, got: got.length, inHand });
      if (got.length === 0) {
        await sleep(40);
        continue;
      }
      await sleep(20 + Math.random() * 60); // the "call" to the service
      // Counted out BEFORE the settle is sent: the database holds the slot until the settle
      // commits, so the overlap seen here can only be smaller than the real one.
      inHand -= got.length;
      const settle = await t.service.rpc("settle_jobs", {
        p_worker: name,
        p_results: got.map((j) => ({
          job_id: j.job_id,
          lease_id: j.lease_id,
          status: "completed",
          output: { by: name },
        })),
      });
      if (settle.error) {
        errors.push(`settle_jobs ${settle.status}: ${settle.error.message}`);
        break;
      }
      for (const r of settle.data as SettleRow[]) {
        if (r.accepted && r.outcome === "completed") completed.push(r.job_id);
        else refused.push(r);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, i) => worker(i)));

  assertEquals(errors, [], "no RPC failed");
  assertEquals(refused, [], "every settle was accepted");
  assertEquals([completed.length, new Set(completed).size], [N, N], "N completions, all distinct");

  const peak = Math.max(...calls.map((c) => c.inHand));
  assert(peak <= maxConcurrent, `${peak} jobs in hand at once (max_concurrent ${maxConcurrent})`);
  assertEquals(calls.reduce((s, c) => s + c.got, 0), N, "N jobs claimed in all: none twice");
  // Calls per window: the claims certainly granted inside [a.sent, b.answered] can never
  // exceed the bucket, capacity + refill × (b.answered − a.sent).
  const granted = calls.filter((c) => c.got > 0);
  for (const a of granted) {
    for (const b of granted) {
      if (b.answered < a.sent) continue;
      const n = granted
        .filter((c) => c.sent >= a.sent && c.answered <= b.answered)
        .reduce((s, c) => s + c.got, 0);
      const allowed = capacity + refill * (b.answered - a.sent) / 1000;
      assert(
        n <= allowed + 1e-9,
        `${n} claims in ${(b.answered - a.sent).toFixed(0)} ms (bucket allows ${
          allowed.toFixed(2)
        })`,
      );
    }
  }

  // The tenant sees each of its jobs completed after exactly one attempt; B sees none of them.
  const jobs = await t.asA.from("jobs").select("msg_id, status, attempts, output")
    .eq("kind", k.kind).order("msg_id");
  assertEquals([jobs.status, jobs.error], [200, null]);
  assertEquals(jobs.data!.map((j) => j.msg_id), [...msgIds].sort((x, y) => x - y));
  assertEquals(
    jobs.data!.filter((j) => j.status !== "completed" || j.attempts !== 1 || !j.output?.by),
    [],
  );
  const other = await t.asB.from("jobs").select("id").eq("kind", k.kind);
  assertEquals([other.status, other.data], [200, []]);
  const [left] = await api.sql`
    select count(*)::int as n from public.jobs where kind = ${k.kind} and lease_id is not null`;
  assertEquals(left!.n, 0, "no slot is still held");
});

Deno.test("schedules (gateway): two racing cron runs fire each schedule once per due time; tenants read only their own schedules", async () => {
  await using api = await privateApi();
  const t = await tenants(api);
  const t0 = new Date("2031-03-01T00:00:30Z");
  // Created through REST with the service role, as an operator's tool would.
  const ids: Record<string, string> = {};
  for (
    const [tenant, name, cron] of [
      [t.a, "every-minute", "* * * * *"],
      [t.a, "even-minutes", "*/2 * * * *"],
      [t.b, "every-fifth", "*/5 * * * *"],
    ] as const
  ) {
    const made = await t.service.from("schedules").insert({
      tenant_id: tenant,
      name,
      cron,
      kind: "enrich",
      payload: { name },
      created_at: t0.toISOString(),
    }).select("id").single();
    assertEquals([made.status, made.error], [201, null]);
    ids[name] = made.data!.id as string;
  }
  const listed = await t.service.from("schedules").select("name, next_run_at")
    .in("id", Object.values(ids)).order("next_run_at");
  assertEquals([listed.status, listed.error], [200, null]);
  assertEquals(
    listed.data!.map((s) => [s.name, new Date(s.next_run_at).toISOString()]),
    [
      ["every-minute", "2031-03-01T00:01:00.000Z"],
      ["even-minutes", "2031-03-01T00:02:00.000Z"],
      ["every-fifth", "2031-03-01T00:05:00.000Z"],
    ],
  );

  // Two cron runs as pg_cron would make them (service_role, one client each), racing for
  // the same due time each minute, 20 minutes of due times with the clock injected.
  const cronA = serviceClient(api.url, api.serviceRoleKey);
  const cronB = serviceClient(api.url, api.serviceRoleKey);
  const fired: { schedule_id: string; tenant_id: string; run_at: string; outcome: string }[] = [];
  for (let m = 1; m <= 20; m++) {
    const now = new Date(t0.getTime() + m * MINUTE + (m % 7) * 1000).toISOString();
    const runs = await Promise.all(
      [cronA, cronB].map((c) => c.rpc("materialise_schedules", { p_now: now })),
    );
    for (const r of runs) {
      assertEquals([r.status, r.error], [200, null]);
      fired.push(...(r.data as typeof fired));
    }
  }

  assertEquals(fired.filter((f) => f.outcome !== "enqueued"), [], "nothing failed or skipped");
  const perDue = new Map<string, number>();
  for (const f of fired) {
    const key = `${f.schedule_id} ${new Date(f.run_at).toISOString()}`;
    perDue.set(key, (perDue.get(key) ?? 0) + 1);
  }
  assertEquals([...perDue.values()].filter((n) => n !== 1), [], "no due time fired twice");
  const count = (id: string) => fired.filter((f) => f.schedule_id === id).length;
  // Due times in (00:00:30, 00:20:xx]: 00:01 … 00:20.
  assertEquals(
    [count(ids["every-minute"]!), count(ids["even-minutes"]!), count(ids["every-fifth"]!)],
    [20, 10, 4],
  );
  assertEquals(
    fired.filter((f) => f.tenant_id !== (f.schedule_id === ids["every-fifth"] ? t.b : t.a)),
    [],
    "each run enqueued for its schedule's tenant",
  );

  // What each tenant sees through REST: its own schedules, and one job per due time.
  const mine = await t.asA.from("schedules").select("id, tenant_id, name, cron, last_run_at")
    .order("name");
  assertEquals([mine.status, mine.error], [200, null]);
  assertEquals(
    mine.data!.map((
      s,
    ) => [s.id, s.tenant_id, s.name, s.cron, new Date(s.last_run_at).toISOString()]),
    [
      [ids["even-minutes"], t.a, "even-minutes", "*/2 * * * *", "2031-03-01T00:20:00.000Z"],
      [ids["every-minute"], t.a, "every-minute", "* * * * *", "2031-03-01T00:20:00.000Z"],
    ],
  );
  const peek = await t.asA.from("schedules").select("id").eq("id", ids["every-fifth"]!);
  assertEquals([peek.status, peek.data], [200, []], "A cannot see B's schedule by id");
  const theirs = await t.asB.from("schedules").select("id, tenant_id");
  assertEquals([theirs.status, theirs.data], [200, [{ id: ids["every-fifth"], tenant_id: t.b }]]);

  for (const [client, expected] of [[t.asA, 30], [t.asB, 4]] as const) {
    const jobs = await client.from("jobs").select("tenant_id, headers").eq("kind", "enrich");
    assertEquals([jobs.status, jobs.error, jobs.data?.length], [200, null, expected]);
    const due = new Set(
      jobs.data!.map((j) =>
        `${j.headers.schedule_id} ${new Date(j.headers.scheduled_for).toISOString()}`
      ),
    );
    assertEquals(due.size, expected, "one job per schedule and due time");
    assert(
      jobs.data!.every((j) =>
        perDue.has(`${j.headers.schedule_id} ${new Date(j.headers.scheduled_for).toISOString()}`)
      ),
    );
  }
});

/** The worker's policy: 3 attempts, retried at once (a zero backoff, see below). */
const POLICY = { max_attempts: 3, backoff_base_ms: 0, backoff_max_ms: 0 };

Deno.test("critical jobs (gateway): a failing critical job is attempted 5 times, then dead-lettered; only its tenant reads the letter", async () => {
  await using api = await privateApi();
  const t = await tenants(api);
  const kind = "enrich"; // nobody else consumes it in this database
  const critKey = `crit-${crypto.randomUUID()}`;
  const enq = async (body: Record<string, unknown>) => {
    const res = await t.asA.rpc("queue_job", { kind, ...body });
    assertEquals([res.status, res.error], [200, null]);
    return res.data as number;
  };
  await enq({ idempotency_key: critKey, payload: { n: 1 }, critical: true });
  // An ordinary job failing under the same policy alongside: it gets the worker's 3.
  await enq({ idempotency_key: `plain-${crypto.randomUUID()}`, payload: { n: 2 } });

  const crit = await t.asA.from("critical_jobs").select(
    "job_id, tenant_id, idempotency_key, max_attempts",
  );
  assertEquals([crit.status, crit.error, crit.data?.length], [200, null, 1]);
  const critJob = crit.data![0]!.job_id as string;
  assertEquals(crit.data, [{
    job_id: critJob,
    tenant_id: t.a,
    idempotency_key: critKey,
    max_attempts: 5,
  }]);
  const critB = await t.asB.from("critical_jobs").select("job_id").eq("job_id", critJob);
  assertEquals([critB.status, critB.data], [200, []]);

  // A worker over the gateway: claim, fail, repeat. pgmq's visibility runs on the real
  // clock (p_now cannot move it), so the policy's zero backoff makes each retry visible at
  // once instead of the test sleeping through a backoff.
  const history = new Map<string, { attempt: number; max: number | null; outcome: string }[]>();
  for (let round = 1; round <= 10; round++) {
    const claim = await t.service.rpc("claim_jobs", {
      p_kind: kind,
      p_worker: "gw-crit",
      p_qty: 10,
      p_policy: POLICY,
    });
    assertEquals([claim.status, claim.error], [200, null]);
    const got = claim.data as ClaimedRow[];
    if (got.length === 0) break;
    const settle = await t.service.rpc("settle_jobs", {
      p_worker: "gw-crit",
      p_results: got.map((j) => ({
        job_id: j.job_id,
        lease_id: j.lease_id,
        status: "failed",
        error: { message: `boom ${j.attempt}` },
      })),
      p_policy: POLICY,
    });
    assertEquals([settle.status, settle.error], [200, null]);
    const outcomes = new Map((settle.data as SettleRow[]).map((r) => [r.job_id, r]));
    for (const j of got) {
      assertEquals(j.tenant_id, t.a);
      assertEquals(outcomes.get(j.job_id)?.accepted, true);
      const h = history.get(j.job_id) ?? [];
      h.push({ attempt: j.attempt, max: j.max_attempts, outcome: outcomes.get(j.job_id)!.outcome });
      history.set(j.job_id, h);
    }
  }
  const plainJob = [...history.keys()].find((id) => id !== critJob)!;
  const retry = (attempt: number, max: number | null) => ({
    attempt,
    max,
    outcome: "retry_scheduled",
  });
  assertEquals(history.get(critJob), [
    retry(1, 5),
    retry(2, 5),
    retry(3, 5),
    retry(4, 5),
    { attempt: 5, max: 5, outcome: "dead_lettered" },
  ]);
  // An ordinary job has no max of its own (null): the worker's policy decides, 3.
  assertEquals(history.get(plainJob), [
    retry(1, null),
    retry(2, null),
    { attempt: 3, max: null, outcome: "dead_lettered" },
  ]);
  assertEquals(history.size, 2);

  // The tenant reads its dead letters and failed jobs through REST; B reads nothing.
  const cols = "job_id, tenant_id, kind, reason, attempts, errors, redriven_at";
  const dead = await t.asA.from("dead_letter_jobs").select(cols).eq("kind", kind)
    .order("attempts", { ascending: false });
  assertEquals([dead.status, dead.error], [200, null]);
  assertEquals(
    dead.data!.map((d) => [d.job_id, d.tenant_id, d.kind, d.reason, d.attempts, d.redriven_at]),
    [
      [critJob, t.a, kind, "boom 5", 5, null],
      [plainJob, t.a, kind, "boom 3", 3, null],
    ],
  );
  assertEquals(
    dead.data![0]!.errors.map((e: { message: string }) => e.message),
    ["boom 1", "boom 2", "boom 3", "boom 4", "boom 5"],
  );
  const jobs = await t.asA.from("jobs").select("id, status, attempts, max_attempts")
    .eq("id", critJob);
  assertEquals([jobs.status, jobs.data], [200, [
    { id: critJob, status: "failed", attempts: 5, max_attempts: 5 },
  ]]);
  for (const filter of [["kind", kind], ["job_id", critJob], ["tenant_id", t.a]] as const) {
    const b = await t.asB.from("dead_letter_jobs").select("job_id").eq(filter[0], filter[1]);
    assertEquals([b.status, b.data], [200, []], `B filtering on ${filter[0]}`);
  }
});

/** A per-tenant alert rule (conveyor.tenant_alert_rules is not exposed: operators set it in SQL). */
async function setRule(sql: Sql, tenant: string, rule: string, threshold: number) {
  await sql`
    insert into conveyor.tenant_alert_rules (tenant_id, rule, threshold)
    values (${tenant}, ${rule}, ${threshold})`;
}

Deno.test("alerts (gateway): evaluate_alerts raises a breached rule for tenant A only, A reads it, and it resolves when the condition clears", async () => {
  await using api = await privateApi();
  const t = await tenants(api);
  await setRule(api.sql, t.a, "queue_depth", 2);
  await setRule(api.sql, t.b, "queue_depth", 2);
  for (let i = 0; i < 3; i++) {
    const res = await t.asA.rpc("queue_job", { kind: "enrich", idempotency_key: `al-${i}` });
    assertEquals([res.status, res.error], [200, null]);
  }
  const b = await t.asB.rpc("queue_job", { kind: "enrich", idempotency_key: "al-b" });
  assertEquals([b.status, b.error], [200, null]);

  const evaluate = async (now: Date) => {
    const res = await t.service.rpc("evaluate_alerts", { p_now: now.toISOString() });
    assertEquals([res.status, res.error], [200, null]);
    return res.data;
  };
  const read = async (client: SupabaseClient) => {
    const res = await client.from("alert_history")
      .select("tenant_id, rule, subject, status, value, threshold, resolved_at")
      .order("raised_at");
    assertEquals([res.status, res.error], [200, null]);
    return res.data;
  };

  const now = new Date();
  assertEquals(await evaluate(now), [{ raised: 1, updated: 0, resolved: 0 }]);
  const open = {
    tenant_id: t.a,
    rule: "queue_depth",
    subject: "q_enrich",
    status: "open",
    value: 3,
    threshold: 2,
    resolved_at: null,
  };
  assertEquals(await read(t.asA), [open]);
  assertEquals(await read(t.asB), [], "B's queue (depth 1) breaches nothing, and A's is not B's");
  const filtered = await t.asB.from("alert_history").select("id").eq("tenant_id", t.a);
  assertEquals([filtered.status, filtered.data], [200, []]);
  assertEquals(
    await evaluate(new Date(now.getTime() + MINUTE)),
    [{ raised: 0, updated: 0, resolved: 0 }],
    "deduplicated: still the one open alert",
  );

  // A worker takes three jobs; fair share gives A two and B one (docs/fairness.md): A's depth
  // is 1, not above 2.
  const claim = await t.service.rpc("claim_jobs", {
    p_kind: "enrich",
    p_worker: "gw-alerts",
    p_qty: 3,
    // Leases that outlive the evaluation 2 minutes on (an expired lease makes its job ready).
    p_vt: 3600,
  });
  assertEquals([claim.status, claim.error], [200, null]);
  assertEquals(
    (claim.data as ClaimedRow[]).map((j) => j.tenant_id).sort(),
    [t.a, t.a, t.b].sort(),
  );
  const later = new Date(now.getTime() + 2 * MINUTE);
  assertEquals(await evaluate(later), [{ raised: 0, updated: 0, resolved: 1 }]);
  const resolved = await read(t.asA);
  assertEquals(
    resolved!.map((r) => ({
      ...r,
      resolved_at: r.resolved_at && new Date(r.resolved_at).getTime(),
    })),
    [{ ...open, status: "resolved", resolved_at: later.getTime() }],
  );
  assertEquals(await read(t.asB), []);
});
