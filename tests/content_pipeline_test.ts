/**
 * The content pipeline end to end on the test stack (seed 001, issue 6): PostgREST RPC →
 * kick → content-queue-dispatcher → pg_net → the six stage workers → push → … → completed.
 * Driven by push alone (cron paused), by cron alone (push kicks off), by hand (the seed's
 * curl and script); a failing qa; a killed worker's lease; and the concurrency limit
 * measured with slow handlers while four dispatchers race.
 *
 * These tests share the stack's `postgres` database (cron and pg_net serve only it), so
 * each one waits for its own jobs to finish and restores what it changed. The cron-only
 * test is last: pg_cron 1.4.2 fires once a minute.
 */
import type { Sql } from "postgres";
import { createClient } from "@supabase/supabase-js";
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { createStageWorker } from "../supabase/functions/_shared/content/stage_worker.ts";
import { defaultStageHandlers } from "../supabase/functions/_shared/content/handlers.ts";
import type { ContentStage, StageHandler } from "../supabase/functions/_shared/content/types.ts";
import {
  rest,
  stackSql,
  withCronActive,
  withSetting,
  withStageConfig,
} from "./content_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const DISPATCHER = `${env.apiUrl}/functions/v1/content-queue-dispatcher`;

/** The seed's manual trigger, as curl sends it. */
function manualDispatch(key = env.serviceRoleKey, body = '{"source":"manual"}'): Promise<Response> {
  return fetch(DISPATCHER, {
    method: "POST",
    headers: { "Authorization": `Bearer ${key}`, "Content-Type": "application/json" },
    body,
  });
}

/** Asserts the seed's response shape exactly. */
function assertSeedShape(body: Record<string, unknown>): void {
  const keys = Object.keys(body);
  assertEquals(
    keys.filter((k) => k !== "errors"),
    ["message", "dispatches", "duration_ms"],
    JSON.stringify(body),
  );
  assertEquals(body.message, "Dispatch cycle completed");
  assert(Array.isArray(body.dispatches));
  for (const d of body.dispatches as Record<string, unknown>[]) {
    assertEquals(Object.keys(d), ["stage", "queue", "workers_triggered"]);
    assert(typeof d.stage === "string" && typeof d.queue === "string");
    assert(Number.isInteger(d.workers_triggered) && (d.workers_triggered as number) > 0);
  }
  assert(Number.isInteger(body.duration_ms) && (body.duration_ms as number) >= 0);
  if ("errors" in body) assert(Array.isArray(body.errors) && body.errors.length > 0);
}

async function queueJob(brief: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const r = await rest("queue_content_job", {
    idempotency_key: `e2e:${crypto.randomUUID()}`,
    brief,
    ...extra,
  });
  assertEquals(r.status, 200, JSON.stringify(r.body));
  return r.body as string;
}

async function jobStatus(sql: Sql, id: string): Promise<string> {
  const [j] = await sql`select status from public.content_jobs where id = ${id}`;
  return j!.status as string;
}

function waitForJob(sql: Sql, id: string, status: string, ms: number) {
  return eventually(
    `job ${id} ${status}`,
    async () => {
      const s = await jobStatus(sql, id);
      if (s !== status && (s === "completed" || s === "failed")) {
        throw new Error(`job ${id} ended ${s}, expected ${status}`);
      }
      return s === status;
    },
    ms,
    100,
  );
}

/** Which invocation (by its reason) ran each stage of a job. */
async function stageReasons(sql: Sql, id: string) {
  return await sql`
    select s.stage, s.attempts, i.reason
    from public.content_job_stages s
    left join conveyor.worker_invocations i on i.id = s.invocation_id
    where s.job_id = ${id} order by s.id`;
}

Deno.test({
  name: "pipeline: a content job runs through all six stages on push alone (cron paused)",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withCronActive(sql, false, () =>
        withSetting(sql, "push_kicks", true, async () => {
          const id = await queueJob({
            topic: "zero-downtime deploys",
            audience: "SREs",
            keywords: ["blue-green", "canary"],
          });
          await waitForJob(sql, id, "completed", 90_000);
          const rows = await stageReasons(sql, id);
          assertEquals(rows.map((r) => r.stage), [
            "research",
            "outline",
            "draft",
            "qa",
            "export",
            "complete",
          ]);
          // research: the worker the enqueue's kick made the dispatcher start; every later
          // stage: the worker the previous stage's completion pushed.
          assertMatch(rows[0]!.reason, /^dispatch:kick/);
          assertEquals(rows.slice(1).map((r) => r.reason), Array(5).fill("push"));
          const [exp] =
            await sql`select title, markdown, html from public.content_exports where job_id = ${id}`;
          assertEquals(exp!.title, "Zero-downtime deploys: a guide for SREs");
          assert((exp!.html as string).includes("<h2>Understanding canary</h2>"));
        }));
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "dispatcher: the seed's curl and script answer the seed's JSON; bad calls get 4xx",
  ...opts,
  async fn() {
    const res = await manualDispatch();
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    assertSeedShape(body);

    const script = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "scripts/trigger-content-dispatcher.ts"],
      env: { SUPABASE_URL: env.apiUrl, SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(script.stdout);
    assertEquals(script.code, 0, new TextDecoder().decode(script.stderr));
    assertSeedShape(JSON.parse(out));

    const down = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "scripts/trigger-content-dispatcher.ts"],
      env: { SUPABASE_URL: "http://127.0.0.1:9", SUPABASE_SERVICE_ROLE_KEY: "x" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(down.code, 1);
    assertMatch(
      new TextDecoder().decode(down.stderr),
      /trigger-content-dispatcher: cannot reach http:\/\/127\.0\.0\.1:9\//,
    );

    const bad = await manualDispatch(env.serviceRoleKey, '{"source":"sometimes"}');
    assertEquals([bad.status, (await bad.json()).error], [400, "bad_request"]);
    const anon = await manualDispatch(env.anonKey);
    assertEquals(anon.status, 401);
    await anon.body?.cancel();
    const none = await fetch(DISPATCHER, { method: "POST", body: "{}" });
    assertEquals(none.status, 401); // verify_jwt
    await none.body?.cancel();
  },
});

Deno.test({
  name: "seed 001 playbook: the cron job is active and the SQL queries run verbatim",
  ...opts,
  async fn() {
    const sql = stackSql(1);
    try {
      const jobs = await sql.unsafe(`select jobname, schedule, active
from cron.job
where jobname like '%dispatcher%';`);
      assertEquals([...jobs], [{
        jobname: "planperfect-content-queue-dispatcher",
        schedule: "*/1 * * * *",
        active: true,
      }]);
      const [job] = await sql.unsafe(
        `select * from cron.job where jobname = 'planperfect-content-queue-dispatcher';`,
      );
      assertMatch(job!.command, /conveyor\.invoke_dispatcher\('cron'\)/);
      for (
        const q of [
          "select * from content_stage_config order by stage;",
          "select * from content_stage_config where stage = 'research';",
          "select * from get_content_stage_backlog() order by stage;",
          "select * from get_content_stage_backlog() where stage = 'research';",
          "select * from pg_extension where extname = 'pg_net';",
          `select * from content_job_events
   where stage = 'research' and status = 'error'
   order by created_at desc
   limit 10;`,
        ]
      ) await sql.unsafe(q);
      const backlog = await sql.unsafe("select * from get_content_stage_backlog() order by stage;");
      assertEquals(backlog.length, 6);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "pipeline: a failing qa records error events, retries, then fails the job",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withCronActive(sql, false, async () => {
        const id = await queueJob({ topic: "gardening", banned_words: ["gardening"] }, {
          max_attempts: 3,
        });
        await waitForJob(sql, id, "failed", 90_000);
        const evs = await sql`select status, message from public.content_job_events
                              where job_id = ${id} and stage = 'qa' order by id`;
        const errors = evs.filter((e) => e.status === "error");
        assertEquals(errors.length, 3);
        for (const e of errors) {
          assertMatch(
            e.message,
            /^qa failed: banned_words: banned word "gardening" appears \d+ time\(s\)$/,
          );
        }
        assertEquals(evs.filter((e) => e.status === "retry_scheduled").length, 2);
        assertEquals(evs.at(-1)!.status, "failed");
        const [stage] = await sql`select status, attempts from public.content_job_stages
                                  where job_id = ${id} and stage = 'qa'`;
        assertEquals(stage, { status: "failed", attempts: 3 });
        const [job] = await sql`select last_error from public.content_jobs where id = ${id}`;
        assertMatch(job!.last_error, /banned word "gardening"/);
        // No later stage was reached.
        const later = await sql`select stage from public.content_job_stages
                                where job_id = ${id} and stage in ('export', 'complete')`;
        assertEquals(later.length, 0);
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "pipeline: a killed worker's lease expires and the stage is redone",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withCronActive(sql, false, async () => {
        // Enqueue without a kick, and "crash" a worker on its research stage: claimed with a
        // 2 s lease, never settled.
        const id = await withSetting(
          sql,
          "push_kicks",
          false,
          () => queueJob({ topic: "backups" }),
        );
        const [claimed] =
          await sql`select * from public.claim_content_stage('research', 'killed-worker', null, 2)`;
        assertEquals(claimed!.job_id, id);
        await eventually(
          "the lease to expire",
          async () => {
            const [s] = await sql`select lease_expires_at < clock_timestamp() as expired
                                from public.content_job_stages where job_id = ${id} and stage = 'research'`;
            return s!.expired;
          },
          10_000,
          100,
        );
        // The safety net (here: a manual dispatch, as cron would) finds it ready again.
        const res = await manualDispatch();
        const body = await res.json();
        assert(
          body.dispatches.some((d: { stage: string }) => d.stage === "research"),
          JSON.stringify(body),
        );
        await waitForJob(sql, id, "completed", 90_000);
        const rows = await stageReasons(sql, id);
        assertEquals([rows[0]!.stage, rows[0]!.attempts, rows[0]!.reason], [
          "research",
          2,
          "dispatch:manual",
        ]);
        const expired = await sql`select message from public.content_job_events
                                  where job_id = ${id} and status = 'lease_expired'`;
        assertMatch(expired[0]!.message, /^the lease of killed-worker expired at /);
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "concurrency: with 4 racing dispatchers and slow workers, concurrent workers per stage never exceed max_concurrency (measured)",
  ...opts,
  async fn() {
    const LIMITS: Partial<Record<ContentStage, number>> = { research: 2, outline: 3 };
    const JOBS = 10;
    const active: Record<string, number> = { research: 0, outline: 0 };
    const maxActive: Record<string, number> = { research: 0, outline: 0 };
    const maxLeases: Record<string, number> = { research: 0, outline: 0 };
    // A test handler: the shipped one, made slow (~600 ms), counting executions in flight.
    const slow = (stage: ContentStage): StageHandler => async (ctx) => {
      active[stage]!++;
      maxActive[stage] = Math.max(maxActive[stage]!, active[stage]!);
      try {
        await new Promise((r) => setTimeout(r, 600));
        return await defaultStageHandlers[stage](ctx);
      } finally {
        active[stage]!--;
      }
    };
    const background: Promise<unknown>[] = [];
    const client = createClient(env.apiUrl, env.serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    const shutdown = new AbortController();
    const workers = Object.fromEntries(
      (Object.keys(LIMITS) as ContentStage[]).map((stage) => [
        `/${stage}-worker`,
        createStageWorker(stage, {
          client,
          handlers: { [stage]: slow(stage) },
          env: { CONTENT_WORKER_BUDGET_MS: "60000" },
          waitUntil: (p) => background.push(p),
          signal: shutdown.signal,
        }),
      ]),
    );
    // The slow stages' workers run in this process, reached by pg_net at a full URL.
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const w = workers[new URL(req.url).pathname];
      return w ? w(req) : new Response("not found", { status: 404 });
    });
    const base = `http://127.0.0.1:${server.addr.port}`;
    const sql = stackSql(6);
    try {
      await withCronActive(sql, false, () =>
        withStageConfig(sql, {
          research: {
            max_concurrency: 2,
            trigger_batch_size: 2,
            worker_endpoint: `${base}/research-worker`,
          },
          outline: {
            max_concurrency: 3,
            trigger_batch_size: 3,
            worker_endpoint: `${base}/outline-worker`,
          },
        }, async () => {
          const ids: string[] = [];
          for (let i = 0; i < JOBS; i++) ids.push(await queueJob({ topic: `load ${i}` }));
          let done = false;
          const sampler = (async () => {
            while (!done) {
              const rows = await sql`select stage, leased_count::int as leased
                                     from public.get_content_stage_backlog()
                                     where stage in ('research', 'outline')`;
              for (const r of rows) maxLeases[r.stage] = Math.max(maxLeases[r.stage]!, r.leased);
              await new Promise((r) => setTimeout(r, 20));
            }
          })();
          const dispatchers = Array.from({ length: 4 }, async () => {
            while (!done) {
              const res = await manualDispatch();
              assertSeedShape(await res.json());
              await new Promise((r) => setTimeout(r, 50));
            }
          });
          try {
            await eventually(
              "all jobs completed",
              async () => {
                const [r] = await sql`select count(*)::int as n from public.content_jobs
                                    where id = any(${ids}) and status = 'completed'`;
                return r!.n === JOBS;
              },
              120_000,
              200,
            );
          } finally {
            done = true;
            await Promise.all([sampler, ...dispatchers]);
          }
        }));
    } finally {
      await Promise.allSettled(background);
      shutdown.abort();
      await server.shutdown();
      await sql.end();
    }
    for (const [stage, limit] of Object.entries(LIMITS)) {
      assert(
        maxActive[stage]! <= limit!,
        `${stage}: ${maxActive[stage]} handlers ran at once (max ${limit})`,
      );
      assert(
        maxLeases[stage]! <= limit!,
        `${stage}: ${maxLeases[stage]} live leases (max ${limit})`,
      );
    }
    // Not vacuous: the limit was actually reached.
    assertEquals(maxActive.research, LIMITS.research);
  },
});

Deno.test({
  name: "stage worker: a synchronous call answers its summary; wrong stage 400, anon 401",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withCronActive(sql, false, () =>
        withSetting(sql, "push_kicks", false, async () => {
          const id = await queueJob({ topic: "sync call" });
          try {
            const call = (body: unknown, key = env.serviceRoleKey) =>
              fetch(`${env.apiUrl}/functions/v1/research-worker`, {
                method: "POST",
                headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
                body: JSON.stringify(body),
              });
            const res = await call({});
            const body = await res.json();
            assertEquals(res.status, 200, JSON.stringify(body));
            assertEquals(Object.keys(body).sort(), [
              "cancelled",
              "claimed",
              "completed",
              "duration_ms",
              "failed",
              "invocation_id",
              "released",
              "retry_waits",
              "snoozed",
              "stage",
              "stopped_by",
            ]);
            assertEquals(
              [body.stage, body.claimed, body.completed, body.stopped_by, body.invocation_id],
              ["research", 1, 1, "empty", null],
            );
            const [s] = await sql`select current_stage from public.content_jobs where id = ${id}`;
            assertEquals(s!.current_stage, "outline");
            const wrong = await call({ stage: "draft" });
            assertEquals([wrong.status, (await wrong.json()).error], [400, "bad_request"]);
            const anon = await call({}, env.anonKey);
            assertEquals(anon.status, 401);
            await anon.body?.cancel();
          } finally {
            await sql`delete from public.content_jobs where id = ${id}`;
          }
        }));
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "stage worker: on shutdown it stops, and hands the item it holds back (attempt not spent)",
  ...opts,
  async fn() {
    const sql = stackSql();
    const client = createClient(env.apiUrl, env.serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    try {
      await withCronActive(sql, false, () =>
        withSetting(sql, "push_kicks", false, async () => {
          const id = await queueJob({ topic: "shutdown" });
          try {
            const shutdown = new AbortController();
            let started!: () => void;
            const running = new Promise<void>((r) => (started = r));
            const worker = createStageWorker("research", {
              client,
              env: {},
              signal: shutdown.signal,
              handlers: {
                // A long handler (e.g. an LLM call) that only stops when aborted.
                research: (ctx) =>
                  new Promise((_, reject) => {
                    started();
                    ctx.signal.addEventListener("abort", () => reject(new Error("aborted")));
                  }),
              },
            });
            const res = worker(
              new Request("http://x/research-worker", {
                method: "POST",
                headers: {
                  authorization: `Bearer ${env.serviceRoleKey}`,
                  "content-type": "application/json",
                },
                body: "{}",
              }),
            );
            await running;
            shutdown.abort(); // beforeunload
            const body = await (await res).json();
            assertEquals(
              [body.claimed, body.released, body.failed, body.stopped_by],
              [1, 1, 0, "shutdown"],
            );
            const [st] = await sql`select status, attempts from public.content_job_stages
                                   where job_id = ${id} and stage = 'research'`;
            assertEquals(st, { status: "ready", attempts: 0 });
            const evs = await sql`select status from public.content_job_events
                                  where job_id = ${id} order by id`;
            assertEquals(evs.map((e) => e.status), ["queued", "claimed", "released"]);
          } finally {
            await sql`delete from public.content_jobs where id = ${id}`;
          }
        }));
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "pipeline: with push kicks off, cron alone drives a job through all six stages",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withCronActive(sql, true, () =>
        withSetting(sql, "push_kicks", false, async () => {
          const id = await queueJob({ topic: "cron only" });
          // pg_cron 1.4.2 fires at most once a minute; the cron-started dispatcher then keeps
          // cycling while the job is in flight.
          await waitForJob(sql, id, "completed", 150_000);
          const rows = await stageReasons(sql, id);
          assertEquals(rows.length, 6);
          for (const r of rows) assertMatch(r.reason, /^dispatch:cron/, JSON.stringify(rows));
        }));
    } finally {
      await sql.end();
    }
  },
});
