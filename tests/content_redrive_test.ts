/**
 * Retrying a failed content job from its failed stage (issue 19, items 5 and 6).
 *
 * - On a fresh database each (the clock injected, pg_net requests left queued so what
 *   would be sent is inspected exactly): redrive_content_job's transition and its push of
 *   the stage's worker, no push when the stage is paused (the dispatcher then starts it),
 *   the bulk redrive_content_jobs, and last_error cleared once stages and jobs complete.
 * - On the test stack, end to end: a job whose qa fails for good (banned words), seen in
 *   `dlq list`, `dlq show` and the dashboard, refused to anon and authenticated over the
 *   gateway, redriven with the CLI once the brief is fixed, then completed by the real
 *   qa, export and complete workers with its history kept and no stale last_error.
 *
 * The refusals and privileges of the RPC itself: supabase/tests/content_redrive.test.sql.
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { shortId } from "../supabase/functions/_shared/operator/format.ts";
import { runDispatchCycle } from "../supabase/functions/_shared/dispatch/dispatcher.ts";
import {
  at,
  contentDb,
  createJob,
  dbNow,
  FAKE_PROJECT_URL,
  queuedRequests,
  rest,
  sqlDispatchStore,
  stackSql,
  withCronActive,
} from "./content_fixtures.ts";
import { cli } from "./operator_fixtures.ts";
import { tenantToken } from "./tenant_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const EXPORT_OUTPUT = { title: "T", markdown: "# T\n\nHello world", html: "<h1>T</h1>" };

async function claim(sql: Sql, stage: string, now?: Date) {
  const [r] = await sql`
    select * from public.claim_content_stage(${stage}, 'w', null, 60, null, ${now ?? null})`;
  return r as
    | {
      job_id: string;
      stage: string;
      lease_id: string;
      attempt: number;
      outputs: Record<string, unknown>;
    }
    | undefined;
}

async function settle(
  sql: Sql,
  item: { job_id: string; stage: string; lease_id: string },
  status: string,
  extra: Record<string, unknown> = {},
  now?: Date,
): Promise<string> {
  const results = [{
    job_id: item.job_id,
    stage: item.stage,
    lease_id: item.lease_id,
    status,
    ...extra,
  }];
  const [r] = await sql`
    select outcome from public.settle_content_stages('w', ${sql.json(results as never)},
                                                     '{}', ${now ?? null})`;
  return r!.outcome as string;
}

/** Claims and completes `stage` (its next claimable item must be the job's). */
async function complete(sql: Sql, id: string, stage: string): Promise<void> {
  const item = await claim(sql, stage);
  assertEquals(item?.job_id, id, `claimed ${stage}`);
  const out = await settle(sql, item!, "completed", {
    output: stage === "export" ? EXPORT_OUTPUT : { stage },
  });
  assertEquals(out, "completed", stage);
}

/** A job whose research, outline and draft completed and whose qa failed both attempts. */
async function jobFailedAtQa(sql: Sql): Promise<string> {
  const id = await createJob(sql, { topic: "x" }, { max_attempts: 2 });
  for (const stage of ["research", "outline", "draft"]) await complete(sql, id, stage);
  const t = await dbNow(sql);
  const first = (await claim(sql, "qa", t))!;
  assertEquals(
    await settle(sql, first, "failed", { error: { message: "qa failed: boom 1" } }, at(t, 1)),
    "retry_scheduled",
  );
  const second = (await claim(sql, "qa", at(t, 2.1)))!;
  assertEquals(
    await settle(sql, second, "failed", { error: { message: "qa failed: boom 2" } }, at(t, 3)),
    "failed",
  );
  // The workers the completions pushed never start on a fresh database: let them be done,
  // as real ones would be by the time an operator redrives.
  await sql`update conveyor.worker_invocations set status = 'finished', finished_at = now()`;
  await sql`delete from net.http_request_queue`;
  return id;
}

async function redrive(sql: Sql, id: string) {
  const [r] = await sql`select * from public.redrive_content_job(${id})`;
  return r;
}

Deno.test("redrive_content_job: the failed stage is ready again with its attempts reset and its worker pushed", async () => {
  await using db = await contentDb();
  const id = await jobFailedAtQa(db.sql);
  assertEquals(await redrive(db.sql, id), { job_id: id, stage: "qa", workers_started: 1 });

  const reqs = await queuedRequests(db.sql);
  assertEquals(reqs.map((r) => r.url), [`${FAKE_PROJECT_URL}/functions/v1/qa-worker`]);
  assertEquals([reqs[0]!.body.stage, reqs[0]!.body.source], ["qa", "content"]);
  const inv = await db.sql`select target, reason, status from conveyor.worker_invocations
                           where status = 'triggered'`;
  assertEquals([...inv], [{ target: "qa", reason: "redrive", status: "triggered" }]);

  const [st] = await db.sql`select status, attempts, last_error, jsonb_array_length(errors) as n
                            from public.content_job_stages where job_id = ${id} and stage = 'qa'`;
  assertEquals(st, { status: "ready", attempts: 0, last_error: "qa failed: boom 2", n: 2 });
  const [job] = await db.sql`select status, last_error, finished_at from public.content_jobs
                             where id = ${id}`;
  assertEquals(job, { status: "running", last_error: null, finished_at: null });

  // The retried qa gets the outputs of the stages before it, and the job then completes.
  const again = (await claim(db.sql, "qa"))!;
  assertEquals([again.job_id, again.attempt], [id, 1]);
  assertEquals(Object.keys(again.outputs).sort(), ["draft", "outline", "research"]);
  assertEquals(await settle(db.sql, again, "completed", { output: { passed: true } }), "completed");
  await complete(db.sql, id, "export");
  await complete(db.sql, id, "complete");

  const [done] = await db.sql`select status, last_error from public.content_jobs where id = ${id}`;
  assertEquals(done, { status: "completed", last_error: null });
  const stages = await db.sql`select stage, status, attempts, last_error,
                                     jsonb_array_length(errors) as n
                              from public.content_job_stages where job_id = ${id} order by id`;
  assertEquals(stages.map((s) => `${s.stage}:${s.status}:${s.attempts}:${s.last_error}:${s.n}`), [
    "research:completed:1:null:0",
    "outline:completed:1:null:0",
    "draft:completed:1:null:0",
    "qa:completed:1:null:2",
    "export:completed:1:null:0",
    "complete:completed:1:null:0",
  ]);
  const evs = await db.sql`select coalesce(stage, '-') || ':' || status as e
                           from public.content_job_events where job_id = ${id} and id >= (
                             select min(id) from public.content_job_events
                             where job_id = ${id} and stage = 'qa' and status = 'error')
                           order by id`;
  assertEquals(evs.map((e) => e.e), [
    "qa:error",
    "qa:retry_scheduled",
    "qa:claimed",
    "qa:error",
    "qa:failed",
    "-:job_failed",
    "qa:redriven",
    "qa:claimed",
    "qa:completed",
    "export:ready",
    "export:claimed",
    "export:completed",
    "complete:ready",
    "complete:claimed",
    "complete:completed",
    "-:job_completed",
  ]);
});

Deno.test("redrive_content_job: a paused stage gets no worker now; the dispatcher starts it once resumed", async () => {
  await using db = await contentDb();
  const id = await jobFailedAtQa(db.sql);
  await db.sql`update public.content_stage_config set enabled = false where stage = 'qa'`;
  assertEquals(await redrive(db.sql, id), { job_id: id, stage: "qa", workers_started: 0 });
  assertEquals((await queuedRequests(db.sql)).length, 0);
  await db.sql`update public.content_stage_config set enabled = true where stage = 'qa'`;
  const cycle = await runDispatchCycle(sqlDispatchStore(db.sql), {}, "dispatch:test");
  assertEquals(cycle.result.dispatches, [{ stage: "qa", queue: "content", workers_triggered: 1 }]);
  assertEquals((await claim(db.sql, "qa"))?.job_id, id);
});

Deno.test("redrive_content_job: with push kicks off nothing is sent (cron's dispatcher runs it)", async () => {
  await using db = await contentDb();
  const id = await jobFailedAtQa(db.sql);
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  assertEquals(await redrive(db.sql, id), { job_id: id, stage: "qa", workers_started: 0 });
  assertEquals((await queuedRequests(db.sql)).length, 0);
});

Deno.test("redrive_content_jobs: the jobs failed at a stage, or the oldest failures first, up to the limit", async () => {
  await using db = await contentDb();
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  const cancel = async (stage: string) => {
    const item = (await claim(db.sql, stage))!;
    assertEquals(
      await settle(db.sql, item, "cancelled", { error: { message: `${stage} bad` } }),
      "failed",
    );
    return item.job_id;
  };
  await createJob(db.sql);
  const a = await cancel("research");
  await createJob(db.sql);
  const b = await cancel("research");
  const c = await createJob(db.sql);
  await complete(db.sql, c, "research");
  assertEquals(await cancel("outline"), c);
  const ids = (rows: Array<Record<string, unknown>>) => rows.map((r) => [r.job_id, r.stage]);

  assertEquals(
    ids(await db.sql`select * from public.redrive_content_jobs('outline')`),
    [[c, "outline"]],
  );
  assertEquals(ids(await db.sql`select * from public.redrive_content_jobs(null, 1)`), [[
    a,
    "research",
  ]]);
  assertEquals(ids(await db.sql`select * from public.redrive_content_jobs()`), [[b, "research"]]);
  assertEquals((await db.sql`select * from public.redrive_content_jobs()`).length, 0);
  const [n] = await db.sql`select count(*)::int as n from public.content_jobs
                           where status = 'running'`;
  assertEquals(n!.n, 3);
});

Deno.test("settle_content_stages: a stage that fails and then succeeds keeps its errors but shows no last_error", async () => {
  await using db = await contentDb();
  const id = await createJob(db.sql);
  const t = await dbNow(db.sql);
  const first = (await claim(db.sql, "research", t))!;
  await settle(db.sql, first, "failed", { error: { message: "model timed out" } }, at(t, 1));
  const [retrying] = await db.sql`select status, last_error from public.content_job_stages
                                  where job_id = ${id}`;
  assertEquals(retrying, { status: "ready", last_error: "model timed out" });
  const second = (await claim(db.sql, "research", at(t, 2.1)))!;
  assertEquals(await settle(db.sql, second, "completed", { output: {} }, at(t, 3)), "completed");
  const [s] = await db.sql`select status, last_error, errors -> 0 ->> 'message' as first_error
                           from public.content_job_stages
                           where job_id = ${id} and stage = 'research'`;
  assertEquals(s, { status: "completed", last_error: null, first_error: "model timed out" });
});

// ---------------------------------------------------------------------------------------
// End to end on the test stack

function waitForJob(sql: Sql, id: string, status: string) {
  return eventually(
    `content job ${id} ${status}`,
    async () => {
      const [j] = await sql`select status from public.content_jobs where id = ${id}`;
      const s = j!.status as string;
      if (s !== status && (s === "completed" || s === "failed")) {
        throw new Error(`content job ${id} ended ${s}, expected ${status}`);
      }
      return s === status;
    },
    90_000,
    100,
  );
}

Deno.test({
  name:
    "conveyor CLI: a content job failed at qa is listed, shown, redriven with dlq redrive, and completed by the real workers",
  ...opts,
  async fn() {
    const sql = stackSql();
    const handEdited = crypto.randomUUID();
    try {
      await withCronActive(sql, false, async () => {
        const q = await rest("queue_content_job", {
          idempotency_key: `redrive-e2e:${crypto.randomUUID()}`,
          brief: { topic: "gardening", banned_words: ["gardening"] },
          max_attempts: 2,
        });
        assertEquals(q.status, 200, JSON.stringify(q.body));
        const id = q.body as string;
        await waitForJob(sql, id, "failed");
        const banned = 'qa failed: banned_words: banned word "gardening" appears';

        // Seen: dlq list, dlq show, the dashboard.
        const list = await cli(["dlq", "list"]);
        assertEquals(list.code, 0, list.err);
        assertMatch(
          list.out,
          new RegExp(
            `^${
              shortId(id)
            }\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d  qa\\s+2  gardening\\s+qa failed`,
            "m",
          ),
        );
        assertMatch(
          list.out,
          /^\d+ failed content job\(s\)\. Retry from the failed stage: deno task conveyor dlq redrive [0-9a-f]{8}$/m,
        );
        // By the last 8 hex digits the list shows, as by the whole id.
        const show = await cli(["dlq", "show", shortId(id)]);
        assertEquals(show.code, 0, show.err);
        assertEquals((await cli(["dlq", "show", id])).out, show.out);
        const lines = show.out.split("\n");
        assertEquals(lines[0], `content job ${id}`);
        assertMatch(lines[1]!, /^ {2}status {5}failed at stage qa since \d{4}-/);
        assertEquals(lines[2], "  topic      gardening");
        assert(lines[3]!.startsWith(`  last error ${banned}`), lines[3]);
        assertEquals(lines.slice(4, 9), [
          "stages:",
          "  research  completed   attempt 1 of 2",
          "  outline   completed   attempt 1 of 2",
          "  draft     completed   attempt 1 of 2",
          "  qa        failed      attempt 2 of 2",
        ]);
        assertEquals(lines.at(-1), `Retry from qa: deno task conveyor dlq redrive ${id}`);
        const page = await fetch(`${env.apiUrl}/functions/v1/conveyor-dashboard?fragment=1`, {
          headers: { authorization: `Bearer ${env.serviceRoleKey}` },
        });
        assertEquals(page.status, 200);
        const html = await page.text();
        assert(
          html.includes(
            `<code data-field="redrive_command">deno task conveyor dlq redrive ${id}</code>`,
          ),
          "the dashboard shows the command that retries it",
        );

        // Operators only: anon and a signed-in user are refused by the gateway.
        const anon = await rest("redrive_content_job", { p_job_id: id }, env.anonKey);
        const user = await rest(
          "redrive_content_job",
          { p_job_id: id },
          await tenantToken(null, env.jwtSecret),
        );
        for (const r of [anon, user]) {
          assertEquals(
            (r.body as { message: string }).message,
            "permission denied for function redrive_content_job",
          );
        }
        assertEquals([anon.status, user.status], [401, 403]);

        // The refusals, as the CLI prints them.
        const unknown = crypto.randomUUID();
        assertEquals(await cli(["dlq", "redrive", unknown]), {
          code: 1,
          out: "",
          err:
            `error: no queue job, dead letter or content job has the id ${unknown}\n  hint: list them with: deno task conveyor dlq list`,
        });
        await sql`insert into public.content_jobs (id, idempotency_key, brief, max_attempts, status,
                                                   last_error, finished_at)
                  values (${handEdited}, ${`redrive-e2e:${handEdited}`}, '{"topic":"t"}', 1,
                          'failed', 'edited by hand', now())`;
        assertEquals(await cli(["dlq", "redrive", handEdited]), {
          code: 1,
          out: "",
          err:
            `error: ${handEdited}: redrive_content_job: content job ${handEdited} has no failed stage to retry from\nerror: 1 of 1 redrive(s) failed`,
        });

        // Fix the cause, then redrive: qa runs again (a free slot: its last worker is done).
        await sql`update public.content_jobs set brief = brief - 'banned_words' where id = ${id}`;
        await eventually("qa workers to finish", async () => {
          const [r] = await sql`select count(*)::int as n from conveyor.worker_invocations
                                where source = 'content' and target = 'qa'
                                  and status = 'triggered' and expires_at > now()`;
          return r!.n === 0;
        }, 60_000);
        assertEquals(await cli(["dlq", "redrive", id]), {
          code: 0,
          out: `content job ${id} redriven from qa (attempts reset); qa worker started`,
          err: "",
        });
        await waitForJob(sql, id, "completed");

        const [job] = await sql`select last_error from public.content_jobs where id = ${id}`;
        assertEquals(job!.last_error, null, "no stale last_error on the completed job");
        const stages = await sql`select stage, attempts, last_error, errors
                                 from public.content_job_stages where job_id = ${id} order by id`;
        assertEquals(stages.map((s) => [s.stage, s.attempts, s.last_error]), [
          ["research", 1, null],
          ["outline", 1, null],
          ["draft", 1, null],
          ["qa", 1, null],
          ["export", 1, null],
          ["complete", 1, null],
        ]);
        const qaErrors = stages[3]!.errors as Array<{ message: string; attempt: number }>;
        assertEquals(qaErrors.map((e) => e.attempt), [1, 2], "the failures are kept");
        for (const e of qaErrors) assert(e.message.startsWith(banned), e.message);
        const evs = await sql`select status from public.content_job_events
                              where job_id = ${id} and stage = 'qa' order by id`;
        assertEquals(evs.map((e) => e.status), [
          "ready",
          "claimed",
          "error",
          "retry_scheduled",
          "claimed",
          "error",
          "failed",
          "redriven",
          "claimed",
          "completed",
        ]);
        const [exp] = await sql`select title from public.content_exports where job_id = ${id}`;
        assertMatch(exp!.title, /^Gardening/);

        const again = await cli(["dlq", "redrive", id]);
        assertEquals(again, {
          code: 1,
          out: "",
          err:
            `error: ${id}: redrive_content_job: content job ${id} is completed, only failed jobs can be redriven\nerror: 1 of 1 redrive(s) failed`,
        });
        const tail = await cli(["tail", "--once", "--filter", "qa"]);
        assertMatch(tail.out, new RegExp(`qa\\s+redriven\\s+${shortId(id)}  qa runs again`));
      });
    } finally {
      await sql`delete from public.content_jobs where id = ${handEdited}`;
      await sql.end();
    }
  },
});

Deno.test({
  name: "conveyor CLI: dlq redrive --stage and --kind together, or with ids, are usage errors",
  ...opts,
  async fn() {
    for (
      const [args, msg] of [
        [
          ["dlq", "redrive", "--kind", "enrich", "--stage", "qa"],
          "give one of --kind, --stage or --all",
        ],
        [
          ["dlq", "redrive", "--stage", "qa", crypto.randomUUID()],
          "give ids, or --kind / --stage / --all, not both",
        ],
        [["dlq", "redrive"], "dlq redrive needs ids, --kind K, --stage S or --all"],
      ] as const
    ) {
      const r = await cli([...args]);
      assertEquals(r.code, 2, r.err);
      assert(r.err.startsWith(`error: ${msg}\n\nConveyor ops CLI`), r.err);
    }
    const bad = await cli(["dlq", "redrive", "--stage", "nope"]);
    assertEquals(bad, {
      code: 1,
      out: "",
      err:
        "error: redrive_content_jobs: unknown stage nope\n  hint: stages: research, outline, draft, qa, export, complete",
    });
  },
});
