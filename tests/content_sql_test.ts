/**
 * The content pipeline's SQL API on a fresh database each (seed 001, issue 6):
 * queue_content_job's validation and idempotency, claim/settle with leases, retries and
 * failure, lease expiry, the capacity-checked triggers and the concurrency invariant under
 * racing connections, debounced kicks, the invocation hand-shake, backlog counts,
 * retention, and the real dispatcher code against that database (its pg_net requests stay
 * queued, so what it would send is inspected exactly). The clock is injected (p_now).
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertMatch, assertRejects } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import {
  createDispatcherHandler,
  runDispatchCycle,
} from "../supabase/functions/_shared/dispatch/dispatcher.ts";
import {
  at,
  contentDb,
  createJob,
  dbNow,
  FAKE_PROJECT_URL,
  queuedRequests,
  sqlDispatchStore,
  stageLoad,
} from "./content_fixtures.ts";

const SEC = 1000;

async function claim(
  sql: Sql,
  stage: string,
  o: {
    worker?: string;
    invocation?: string | null;
    lease?: number;
    max?: number | null;
    now?: Date;
  } = {},
) {
  const rows = await sql`
    select * from public.claim_content_stage(${stage}, ${o.worker ?? "w"}, ${o.invocation ?? null},
                                             ${o.lease ?? 60}, ${o.max ?? null}, ${o.now ?? null})`;
  return rows[0];
}

async function settle(
  sql: Sql,
  item: { job_id: string; stage: string; lease_id: string },
  status: string,
  extra: Record<string, unknown> = {},
  now?: Date,
  overrides: Record<string, number> = {},
) {
  const results = [{
    job_id: item.job_id,
    stage: item.stage,
    lease_id: item.lease_id,
    status,
    ...extra,
  }];
  const rows = await sql`
    select * from public.settle_content_stages('w', ${sql.json(results as never)},
                                               ${sql.json(overrides)}, ${now ?? null})`;
  return rows[0]!;
}

async function events(sql: Sql, jobId: string) {
  return (await sql`select stage, status, message from public.content_job_events
                    where job_id = ${jobId} order by id`).map((e) =>
    `${e.stage ?? "-"}:${e.status}`
  );
}

const EXPORT_OUTPUT = { title: "T", markdown: "# T\n\nHello world", html: "<h1>T</h1>" };

/** Runs a job through every stage by hand (claim + settle), returns its id. */
async function runJobByHand(sql: Sql): Promise<string> {
  const id = await createJob(sql);
  for (const stage of ["research", "outline", "draft", "qa", "export", "complete"]) {
    const item = await claim(sql, stage);
    assertEquals(item?.job_id, id, `claimed ${stage}`);
    const out = await settle(sql, item as never, "completed", {
      output: stage === "export" ? EXPORT_OUTPUT : { stage },
    });
    assertEquals([out.accepted, out.outcome], [true, "completed"]);
  }
  return id;
}

Deno.test("queue_content_job: every bad body gets its own message and writes nothing", async () => {
  await using db = await contentDb();
  const bad: Array<[unknown, string]> = [
    [[], "queue_content_job: the body must be a JSON object"],
    [{ brief: { topic: "x" } }, "queue_content_job: missing idempotency_key"],
    [{ idempotency_key: " ", brief: { topic: "x" } }, "queue_content_job: missing idempotency_key"],
    [
      { idempotency_key: "k".repeat(256), brief: { topic: "x" } },
      "idempotency_key is longer than 255",
    ],
    [{ idempotency_key: "k" }, "queue_content_job: missing brief"],
    [{ idempotency_key: "k", brief: "x" }, "queue_content_job: brief must be a JSON object"],
    [{ idempotency_key: "k", brief: {} }, "queue_content_job: brief.topic is required"],
    [{ idempotency_key: "k", brief: { topic: 3 } }, "queue_content_job: brief.topic is required"],
    [{ idempotency_key: "k", brief: { topic: "t".repeat(301) } }, "brief.topic is longer than 300"],
    [
      { idempotency_key: "k", brief: { topic: "x", audience: 1 } },
      "queue_content_job: brief.audience must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", keywords: "a" } },
      "queue_content_job: brief.keywords must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", keywords: [""] } },
      "queue_content_job: brief.keywords must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", banned_words: [1] } },
      "queue_content_job: brief.banned_words must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", length: "huge" } },
      "queue_content_job: brief.length must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", length: 50 } },
      "queue_content_job: brief.length must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", title: "" } },
      "queue_content_job: brief.title must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x", pad: "p".repeat(70_000) } },
      "queue_content_job: brief too large",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x" }, max_attempts: 0 },
      "queue_content_job: max_attempts must be",
    ],
    [
      { idempotency_key: "k", brief: { topic: "x" }, kind: "enrich" },
      'queue_content_job: unknown field "kind"',
    ],
  ];
  for (const [body, message] of bad) {
    const err = await assertRejects(
      () => db.sql`select public.queue_content_job(${db.sql.json(body as never)}::jsonb)`,
      message,
    ) as Error & { code?: string };
    assertEquals(err.code, "P0001", message);
  }
  const [n] = await db.sql`select (select count(*) from public.content_jobs)::int as jobs,
    (select count(*) from public.content_job_stages)::int as stages,
    (select count(*) from public.content_job_events)::int as events,
    (select count(*) from net.http_request_queue)::int as requests`;
  assertEquals(n, { jobs: 0, stages: 0, events: 0, requests: 0 });
});

Deno.test("queue_content_job: the same key gives the same id, also from 20 concurrent calls", async () => {
  await using db = await contentDb();
  const conns = Array.from({ length: 20 }, () => connect(db.url, 1));
  try {
    const ids = await Promise.all(
      conns.map((c) => createJob(c, { topic: "race" }, {}, "same-key")),
    );
    assertEquals(new Set(ids).size, 1);
    const [n] = await db.sql`select (select count(*) from public.content_jobs)::int as jobs,
      (select count(*) from public.content_job_stages)::int as stages`;
    assertEquals(n, { jobs: 1, stages: 1 });
    const [job] = await db.sql`select status, current_stage, max_attempts from public.content_jobs`;
    assertEquals(job, { status: "pending", current_stage: "research", max_attempts: 3 });
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
});

Deno.test("stages: claim → complete moves a job through all six stages, writes the export and completes the job", async () => {
  await using db = await contentDb();
  const id = await runJobByHand(db.sql);
  const [job] = await db
    .sql`select status, finished_at is not null as finished from public.content_jobs`;
  assertEquals(job, { status: "completed", finished: true });
  const [exp] = await db
    .sql`select title, markdown, html, word_count from public.content_exports where job_id = ${id}`;
  assertEquals(exp, { ...EXPORT_OUTPUT, word_count: 4 });
  const evs = await events(db.sql, id);
  assertEquals(evs.slice(0, 4), [
    "research:queued",
    "research:claimed",
    "research:completed",
    "outline:ready",
  ]);
  assertEquals(evs.at(-1), "-:job_completed");
  // The next claim sees the outputs of every completed stage.
  const id2 = await createJob(db.sql);
  await settle(db.sql, (await claim(db.sql, "research"))! as never, "completed", {
    output: { n: 1 },
  });
  const outline = await claim(db.sql, "outline");
  assertEquals([outline!.job_id, outline!.outputs], [id2, { research: { n: 1 } }]);
});

Deno.test("stages: a settle from a foreign or expired lease is refused and recorded", async () => {
  await using db = await contentDb();
  const id = await createJob(db.sql);
  const t = await dbNow(db.sql);
  const item = (await claim(db.sql, "research", { lease: 10, now: t }))!;
  const foreign = await settle(
    db.sql,
    { ...item, lease_id: crypto.randomUUID() } as never,
    "completed",
  );
  assertEquals([foreign.accepted, foreign.outcome], [false, "refused"]);
  const late = await settle(db.sql, item as never, "completed", {}, at(t, 11));
  assertEquals([late.accepted, late.outcome], [false, "refused"]);
  const refused = await db.sql`select message from public.content_job_events
                               where job_id = ${id} and status = 'settle_refused' order by id`;
  assertEquals(refused.map((r) => r.message), [
    "completed from w refused: the lease is held by another claim",
    "completed from w refused: the lease expired",
  ]);
  const [s] = await db.sql`select status from public.content_job_stages where job_id = ${id}`;
  assertEquals(s!.status, "in_progress");
});

Deno.test("stages: a failure records an error event, retries after backoff, then fails the job (seed playbook query)", async () => {
  await using db = await contentDb();
  const id = await createJob(db.sql, { topic: "x" }, { max_attempts: 2 });
  const t = await dbNow(db.sql);
  const first = (await claim(db.sql, "research", { now: t }))!;
  const r1 = await settle(db.sql, first as never, "failed", {
    error: { message: "model timed out" },
  }, at(t, 1));
  assertEquals(r1.outcome, "retry_scheduled");
  // Backoff 1 s from the failure: not claimable before, claimable after.
  assertEquals(await claim(db.sql, "research", { now: at(t, 1.5) }), undefined);
  const second = (await claim(db.sql, "research", { now: at(t, 2.1) }))!;
  assertEquals(second.attempt, 2);
  const r2 = await settle(db.sql, second as never, "failed", {
    error: { message: "model timed out again" },
  }, at(t, 3));
  assertEquals(r2.outcome, "failed");
  const [job] = await db.sql`select status, last_error from public.content_jobs where id = ${id}`;
  assertEquals(job, { status: "failed", last_error: "model timed out again" });
  const [stage] = await db.sql`select status, attempts, jsonb_array_length(errors) as errors
                               from public.content_job_stages where job_id = ${id}`;
  assertEquals(stage, { status: "failed", attempts: 2, errors: 2 });
  // Seed 001's troubleshooting query, verbatim.
  const errs = await db.sql.unsafe(`select * from content_job_events
   where stage = 'research' and status = 'error'
   order by created_at desc
   limit 10;`);
  assertEquals(errs.map((e) => e.message), ["model timed out again", "model timed out"]);
  assertEquals((await events(db.sql, id)).slice(-3), [
    "research:error",
    "research:failed",
    "-:job_failed",
  ]);
});

Deno.test("stages: a cancelled stage fails the job at once; a snoozed one keeps its attempt", async () => {
  await using db = await contentDb();
  const a = await createJob(db.sql);
  const t = await dbNow(db.sql);
  const ia = (await claim(db.sql, "research", { now: t }))!;
  assertEquals(
    (await settle(db.sql, ia as never, "snoozed", { snooze_seconds: 5 }, t)).outcome,
    "snoozed",
  );
  assertEquals(await claim(db.sql, "research", { now: at(t, 4) }), undefined);
  const again = (await claim(db.sql, "research", { now: at(t, 6) }))!;
  assertEquals([again.job_id, again.attempt], [a, 1]);
  assertEquals(
    (await settle(
      db.sql,
      again as never,
      "cancelled",
      { error: { message: "bad brief" } },
      at(t, 6),
    )).outcome,
    "failed",
  );
  const [job] = await db.sql`select status from public.content_jobs where id = ${a}`;
  assertEquals(job!.status, "failed");
});

Deno.test("stages: an expired lease is reclaimed (the stage is redone), and fails the job on the last attempt", async () => {
  await using db = await contentDb();
  const id = await createJob(db.sql, { topic: "x" }, { max_attempts: 2 });
  const t = await dbNow(db.sql);
  const killed = (await claim(db.sql, "research", { worker: "killed", lease: 5, now: t }))!;
  assertEquals(await claim(db.sql, "research", { now: at(t, 4) }), undefined);
  const load = await stageLoad(db.sql, at(t, 6));
  assertEquals([load.research!.ready, load.research!.leased], [1, 0]);
  const redo = (await claim(db.sql, "research", { worker: "w2", lease: 5, now: at(t, 6) }))!;
  assertEquals([redo.job_id, redo.attempt], [id, 2]);
  assert(redo.lease_id !== killed.lease_id);
  const ev = await db
    .sql`select message from public.content_job_events where job_id = ${id} and status = 'lease_expired'`;
  assertMatch(ev[0]!.message, /^the lease of killed expired at /);
  // The killed worker comes back: refused.
  assertEquals(
    (await settle(db.sql, killed as never, "completed", {}, at(t, 7))).outcome,
    "refused",
  );
  // The redo dies too, on the last attempt: the next claim fails the job instead.
  assertEquals(await claim(db.sql, "research", { now: at(t, 20) }), undefined);
  const [job] = await db.sql`select status, last_error from public.content_jobs where id = ${id}`;
  assertEquals(job!.status, "failed");
  assertMatch(job!.last_error, /lease of w2 expired on the last attempt \(2 of 2\)/);
});

Deno.test("release_content_stages hands a claim back without spending the attempt", async () => {
  await using db = await contentDb();
  const id = await createJob(db.sql);
  const item = (await claim(db.sql, "research"))!;
  const rel = await db.sql`select * from public.release_content_stages('w', ${
    db.sql.json([{ job_id: item.job_id, stage: "research", lease_id: item.lease_id }])
  })`;
  assertEquals(rel.length, 1);
  const again = (await claim(db.sql, "research"))!;
  assertEquals([again.job_id, again.attempt], [id, 1]);
  const ext = await db.sql`select * from public.extend_content_stages('w', ${
    db.sql.json([{ job_id: again.job_id, stage: "research", lease_id: again.lease_id }])
  }, 600)`;
  assertEquals(ext.length, 1);
  assert(new Date(ext[0]!.lease_expires_at).getTime() > Date.now() + 500 * SEC);
});

Deno.test("trigger_content_worker: within max_concurrency and ready work, URL and key from Vault, the seed's body", async () => {
  await using db = await contentDb();
  for (let i = 0; i < 5; i++) await createJob(db.sql);
  await db.sql`delete from net.http_request_queue`; // the enqueue kicks
  await db.sql`update public.content_stage_config set max_concurrency = 2 where stage = 'research'`;
  const [a] = await db.sql`select public.trigger_content_worker('research', 5) as n`;
  const [b] = await db.sql`select public.trigger_content_worker('research', 5) as n`;
  assertEquals([a!.n, b!.n], [2, 0]);
  const reqs = await queuedRequests(db.sql);
  assertEquals(
    reqs.map((r) => r.url),
    Array(2).fill(`${FAKE_PROJECT_URL}/functions/v1/research-worker`),
  );
  const r = reqs[0]!;
  assertEquals(Object.keys(r.body).sort(), ["async", "invocation_id", "source", "stage"]);
  assertEquals([r.body.stage, r.body.async, r.body.source], ["research", true, "content"]);
  assertEquals(r.headers.Authorization, "Bearer test-service-key");
  const inv = await db
    .sql`select status, reason, request_id from conveyor.worker_invocations order by created_at`;
  assertEquals(inv.map((i) => [i.status, i.reason]), [["triggered", "manual"], [
    "triggered",
    "manual",
  ]]);
  // An env override above the table's value allows more; 0 allows none.
  const [c] = await db.sql`select public.trigger_content_worker('research', 5, 3) as n`;
  const [d] = await db.sql`select public.trigger_content_worker('research', 5, 0) as n`;
  assertEquals([c!.n, d!.n], [1, 0]);
  // A full URL is used as is.
  await db
    .sql`update public.content_stage_config set worker_endpoint = 'https://workers.example/r' where stage = 'outline'`;
  await db.sql`update public.content_stage_config set max_concurrency = 9 where stage = 'research'`;
  const item = (await claim(db.sql, "research"))!;
  await settle(db.sql, item as never, "completed", { output: {} });
  const last = (await queuedRequests(db.sql)).at(-1)!;
  assertEquals([last.url, last.body.stage], ["https://workers.example/r", "outline"]);
  const [push] = await db
    .sql`select reason from conveyor.worker_invocations where target = 'outline'`;
  assertEquals(push!.reason, "push");
});

Deno.test("trigger_content_worker: a triggered invocation that never starts expires and frees its slot", async () => {
  await using db = await contentDb();
  for (let i = 0; i < 3; i++) await createJob(db.sql);
  await db.sql`update public.content_stage_config set max_concurrency = 1 where stage = 'research'`;
  const t = await dbNow(db.sql);
  const n = async (now: Date) =>
    (await db
      .sql`select conveyor.trigger_content_workers('research', 1, null, 'test', ${now}) as n`)[0]!
      .n;
  assertEquals(await n(t), 1);
  assertEquals(await n(at(t, 29)), 0);
  assertEquals(await n(at(t, 31)), 1); // the first one was lost (30 s TTL)
  const rows = await db
    .sql`select status, summary from conveyor.worker_invocations order by created_at`;
  assertEquals(rows.map((r) => [r.status, r.summary?.expired ?? false]), [["finished", true], [
    "triggered",
    false,
  ]]);
});

Deno.test("trigger_content_worker: disabled stages, unknown stages and missing Vault secrets", async () => {
  await using db = await contentDb();
  await createJob(db.sql);
  await db.sql`update public.content_stage_config set enabled = false where stage = 'research'`;
  const [a] = await db.sql`select public.trigger_content_worker('research', 1) as n`;
  assertEquals(a!.n, 0);
  assertEquals(await claim(db.sql, "research"), undefined); // a paused stage refuses claims
  await assertRejects(
    () => db.sql`select public.trigger_content_worker('nope', 1)`,
    "trigger_content_worker: unknown stage nope",
  );
  await db.sql`update public.content_stage_config set enabled = true where stage = 'research'`;
  await db.sql`delete from vault.secrets where name = 'project_url'`;
  await assertRejects(
    () => db.sql`select public.trigger_content_worker('research', 1)`,
    'Vault secret "project_url" is missing',
  );
});

Deno.test("invariant: live leases + triggered invocations never exceed max_concurrency while triggers and claims race", async () => {
  await using db = await contentDb();
  const MAX = 3;
  for (let i = 0; i < 40; i++) await createJob(db.sql);
  await db
    .sql`update public.content_stage_config set max_concurrency = ${MAX} where stage = 'research'`;
  const conns = Array.from({ length: 8 }, () => connect(db.url, 1));
  const sampler = connect(db.url, 1);
  let running = true;
  let worst = 0;
  let samples = 0;
  const sample = (async () => {
    while (running) {
      const load = (await stageLoad(sampler)).research!;
      worst = Math.max(worst, load.leased + load.triggered);
      samples++;
    }
  })();
  try {
    await Promise.all(conns.map(async (c, i) => {
      for (let k = 0; k < 25; k++) {
        if ((i + k) % 3 === 0) {
          await c`select public.trigger_content_worker('research', 2)`;
          continue;
        }
        // A worker: consume a triggered invocation if there is one, claim, maybe settle.
        const [inv] = await c`select id from conveyor.worker_invocations
                              where status = 'triggered' and target = 'research' limit 1`;
        const item = await claim(c, "research", { worker: `w${i}`, invocation: inv?.id ?? null });
        if (item && k % 2 === 0) await settle(c, item as never, "completed", { output: {} });
      }
    }));
  } finally {
    running = false;
    await sample;
    await Promise.all([...conns, sampler].map((c) => c.end()));
  }
  assert(samples > 10, `sampled ${samples} times`);
  assert(worst <= MAX, `leases + triggered reached ${worst} > ${MAX}`);
  assertEquals(worst, MAX, "the race reached the limit (the test is not vacuous)");
});

Deno.test("kicks: queue_content_job kicks the dispatcher at most once per 250 ms, never with push_kicks off", async () => {
  await using db = await contentDb();
  await createJob(db.sql);
  await createJob(db.sql);
  let reqs = await queuedRequests(db.sql);
  assertEquals(reqs.length, 1);
  assertEquals(reqs[0]!.url, `${FAKE_PROJECT_URL}/functions/v1/content-queue-dispatcher`);
  // The window: the kick's number, which the dispatcher's recheck closes (close_kick_window).
  const [k] = await db
    .sql`select kicks from conveyor.dispatch_kicks where target = 'content:research'`;
  assertEquals(reqs[0]!.body, {
    source: "kick",
    target: "content:research",
    recheck_ms: 300,
    window: Number(k!.kicks),
  });
  await new Promise((r) => setTimeout(r, 300));
  await createJob(db.sql);
  reqs = await queuedRequests(db.sql);
  assertEquals(reqs.length, 2);
  // conveyor.enqueue kicks too, per kind.
  await db
    .sql`select public.queue_job('{"idempotency_key":"q1","kind":"enrich","payload":{}}'::jsonb)`;
  reqs = await queuedRequests(db.sql);
  assertEquals(reqs.at(-1)!.body.target, "queue:enrich");
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  await new Promise((r) => setTimeout(r, 300));
  await createJob(db.sql);
  await db
    .sql`select public.queue_job('{"idempotency_key":"q2","kind":"enrich","payload":{}}'::jsonb)`;
  assertEquals((await queuedRequests(db.sql)).length, 3);
  // Cron's call asks for a sweep when pushes are off.
  await db.sql`select conveyor.invoke_dispatcher('cron')`;
  assertEquals((await queuedRequests(db.sql)).at(-1)!.body, { source: "cron", sweep_ms: 45000 });
});

Deno.test("kicks: a failing kick (no Vault secrets) never fails the enqueue", async () => {
  await using db = await contentDb();
  await db.sql`delete from vault.secrets`;
  const id = await createJob(db.sql);
  assert(id);
  assertEquals((await queuedRequests(db.sql)).length, 0);
});

Deno.test("start_invocation / finish_invocation: run once, refuse repeats, expire, follow up when work is left", async () => {
  await using db = await contentDb();
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  for (let i = 0; i < 3; i++) {
    await db.sql`select public.queue_job(${
      db.sql.json({ idempotency_key: `e${i}`, kind: "enrich", payload: {} })
    }::jsonb)`;
  }
  await db.sql`update conveyor.job_kinds set max_concurrency = 1 where kind = 'enrich'`;
  const [t] = await db.sql`select public.trigger_queue_worker('enrich', 3) as n`;
  assertEquals(t!.n, 1);
  const [req] = await queuedRequests(db.sql);
  assertEquals(req!.url, `${FAKE_PROJECT_URL}/functions/v1/enrich-worker`);
  assertEquals([req!.body.kind, req!.body.source, req!.body.async], ["enrich", "queue", true]);
  const inv = req!.body.invocation_id as string;
  const start = async (id: string) =>
    (await db.sql`select public.start_invocation(${id}, 'w') as ok`)[0]!.ok;
  assertEquals(await start(inv), true);
  assertEquals(await start(inv), false); // a repeated delivery
  assertEquals(await start(crypto.randomUUID()), false);
  const [full] = await db.sql`select public.trigger_queue_worker('enrich', 1) as n`;
  assertEquals(full!.n, 0); // running counts as in flight
  await db.sql`select public.finish_invocation(${inv}, '{"stopped_by":"empty"}')`;
  const [row] = await db
    .sql`select status, summary from conveyor.worker_invocations where id = ${inv}`;
  assertEquals([row!.status, row!.summary], ["finished", { stopped_by: "empty" }]);
  // Stopped by its budget with work left: a successor is started (push on).
  await db.sql`update conveyor.settings set value = 'true' where key = 'push_kicks'`;
  await db.sql`select public.trigger_queue_worker('enrich', 1)`;
  const [inv2] = await db
    .sql`select id from conveyor.worker_invocations where status = 'triggered'`;
  assertEquals(await start(inv2!.id), true);
  await db.sql`select public.finish_invocation(${inv2!.id}, '{"stoppedBy":"budget"}')`;
  const follow = await db.sql`select reason, status from conveyor.worker_invocations
                              where reason = 'follow_up'`;
  assertEquals(follow.map((f) => f.status), ["triggered"]);
  // A triggered invocation that started too late runs only if a slot is free.
  await db.sql`update conveyor.worker_invocations set expires_at = now() - interval '1 s'
               where reason = 'follow_up'`;
  const [late] = await db
    .sql`select id from conveyor.worker_invocations where reason = 'follow_up'`;
  await db.sql`update conveyor.job_kinds set max_concurrency = 0 where kind = 'enrich'`;
  assertEquals(await start(late!.id), false);
  await db.sql`update conveyor.job_kinds set max_concurrency = 1 where kind = 'enrich'`;
  assertEquals(await start(late!.id), true);
});

Deno.test("get_content_stage_backlog / get_dispatch_backlog: ready and in-flight counts per target", async () => {
  await using db = await contentDb();
  for (let i = 0; i < 3; i++) await createJob(db.sql);
  await claim(db.sql, "research");
  await db.sql`select public.trigger_content_worker('research', 1)`;
  const rows = await db.sql.unsafe(`select * from get_content_stage_backlog() order by stage;`);
  assertEquals(rows.map((r) => r.stage), [
    "complete",
    "draft",
    "export",
    "outline",
    "qa",
    "research",
  ]);
  const r = rows.find((x) => x.stage === "research")!;
  assertEquals(
    [r.ready_count, r.in_flight_count, r.leased_count, r.triggered_count].map(Number),
    [2, 2, 1, 1],
  );
  await db
    .sql`select public.queue_job('{"idempotency_key":"q","kind":"enforce","payload":{}}'::jsonb)`;
  const all = await db
    .sql`select source, target, ready_count::int as ready from public.get_dispatch_backlog()`;
  assertEquals(all.find((x) => x.target === "enforce"), {
    source: "queue",
    target: "enforce",
    ready: 1,
  });
  assertEquals(all.filter((x) => x.source === "content").length, 6);
});

Deno.test("seed 001 playbook: the configuration queries and updates work as written", async () => {
  await using db = await contentDb();
  const rows = await db.sql.unsafe(`select * from content_stage_config order by stage;`);
  assertEquals(Object.keys(rows[0]!), [
    "stage",
    "queue",
    "worker_endpoint",
    "max_concurrency",
    "trigger_batch_size",
    "enabled",
    "last_updated_at",
  ]);
  const before = rows.find((r) => r.stage === "research")!.last_updated_at as Date;
  await new Promise((r) => setTimeout(r, 10));
  await db.sql.unsafe(`update content_stage_config
set max_concurrency = 10
where stage = 'research';`);
  await db.sql.unsafe(`update content_stage_config
set enabled = false
where stage = 'draft';`);
  const [r] = await db.sql.unsafe(`select * from content_stage_config where stage = 'research';`);
  assertEquals(r!.max_concurrency, 10);
  assert((r!.last_updated_at as Date).getTime() > before.getTime(), "last_updated_at moved");
  await db.sql.unsafe(`select * from get_content_stage_backlog() where stage = 'research';`);
  const ext = await db.sql.unsafe(`select * from pg_extension where extname = 'pg_net';`);
  assertEquals(ext.length, 1);
});

Deno.test("API roles: anon and authenticated reach neither the content tables nor the RPCs", async () => {
  await using db = await contentDb();
  for (const role of ["anon", "authenticated"]) {
    const as = (q: string) =>
      assertRejects(
        () =>
          db.sql.begin(async (tx) => {
            await tx.unsafe(`set local role ${role}`);
            await tx.unsafe(q);
          }),
        "permission denied",
      );
    await as("select * from public.content_jobs");
    await as("select * from public.content_stage_config");
    await as(`select public.queue_content_job('{"idempotency_key":"k","brief":{"topic":"x"}}')`);
    await as("select * from public.get_content_stage_backlog()");
    await as("select public.start_invocation(gen_random_uuid(), 'w')");
  }
  const [rls] = await db.sql`select count(*)::int as n from pg_class
    where relname in ('content_stage_config','content_jobs','content_job_stages','content_job_events','content_exports')
      and relrowsecurity`;
  assertEquals(rls!.n, 5);
});

Deno.test("dispatcher (real code, fresh database): max_concurrency changes apply on the next cycle", async () => {
  await using db = await contentDb();
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  for (let i = 0; i < 6; i++) await createJob(db.sql);
  await db
    .sql`update public.content_stage_config set max_concurrency = 1, trigger_batch_size = 10 where stage = 'research'`;
  const store = sqlDispatchStore(db.sql);
  const first = await runDispatchCycle(store, {}, "dispatch:test");
  assertEquals(first.result.dispatches, [{
    stage: "research",
    queue: "content",
    workers_triggered: 1,
  }]);
  assertEquals((await runDispatchCycle(store, {}, "dispatch:test")).result.dispatches, []);
  await db.sql.unsafe(
    `update content_stage_config set max_concurrency = 4 where stage = 'research'`,
  );
  const third = await runDispatchCycle(store, {}, "dispatch:test");
  assertEquals(third.result.dispatches, [{
    stage: "research",
    queue: "content",
    workers_triggered: 3,
  }]);
  assertEquals((await queuedRequests(db.sql)).length, 4);
});

Deno.test("dispatcher (real code, fresh database): env override 0 disables a stage, enabled = false pauses it", async () => {
  await using db = await contentDb();
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  await createJob(db.sql);
  await createJob(db.sql);
  // Move one job on to outline so two stages have work.
  await settle(db.sql, (await claim(db.sql, "research"))! as never, "completed", { output: {} });
  const store = sqlDispatchStore(db.sql);
  const post = (env: Record<string, string>) =>
    createDispatcherHandler({ store, env })(
      new Request("http://x/", {
        method: "POST",
        headers: {
          authorization: `Bearer x.${btoa(JSON.stringify({ role: "service_role" }))}.y`,
          "content-type": "application/json",
        },
        body: '{"source":"manual"}',
      }),
    ).then((r) => r.json());
  const off = await post({ CONTENT_STAGE_RESEARCH_MAX_CONCURRENCY: "0" });
  assertEquals(off.dispatches, [{ stage: "outline", queue: "content", workers_triggered: 1 }]);
  await db.sql`update public.content_stage_config set enabled = false where stage = 'research'`;
  assertEquals((await post({})).dispatches, []); // outline already has its worker triggered
  const inv = await db.sql`select target from conveyor.worker_invocations`;
  assertEquals(inv.map((i) => i.target), ["outline"]);
  await db.sql`update public.content_stage_config set enabled = true where stage = 'research'`;
  assertEquals((await post({})).dispatches, [{
    stage: "research",
    queue: "content",
    workers_triggered: 1,
  }]);
});

Deno.test("dispatcher (real code, fresh database): an idle system gets zero worker invocations", async () => {
  await using db = await contentDb();
  const store = sqlDispatchStore(db.sql);
  await db.sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  await runJobByHand(db.sql); // history, but nothing ready
  await db.sql`delete from net.http_request_queue`;
  const out = await runDispatchCycle(store, {}, "dispatch:test");
  assertEquals(out.result.dispatches, []);
  assertEquals(out.idle, true);
  const [n] = await db.sql`select (select count(*) from conveyor.worker_invocations)::int as inv,
    (select count(*) from net.http_request_queue)::int as req`;
  assertEquals(n, { inv: 0, req: 0 });
});

Deno.test("prune_content deletes finished jobs older than retention_hours with their rows", async () => {
  await using db = await contentDb();
  const done = await runJobByHand(db.sql);
  const live = await createJob(db.sql);
  const [r] = await db.sql`select conveyor.prune_content(1, now() + interval '2 hours') as n`;
  assertEquals(r!.n, 1);
  const left = await db.sql`select id from public.content_jobs`;
  assertEquals(left.map((j) => j.id), [live]);
  const [n] = await db
    .sql`select count(*)::int as n from public.content_job_events where job_id = ${done}`;
  assertEquals(n!.n, 0);
});
