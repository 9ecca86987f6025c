/**
 * The conveyor-dashboard function in a real browser (headless Chromium over CDP) against
 * the test stack with jobs in flight: queues and stages appear by name with the numbers SQL
 * counts, user data is shown as text (never markup), the page loads nothing from elsewhere
 * and logs no error, auto-refresh works, and a screenshot lands in `.artifacts/`.
 * Anon and wrong keys get 401.
 */
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { findChromium, launchChromium } from "../tools/test/chromium.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";
import { createJob } from "./content_fixtures.ts";
import {
  claimAll,
  claimFrozen,
  DEFAULT_TENANT,
  enqueue,
  frozenStage,
  queueCounts,
  quietKind,
  stageCounts,
  TEST_WORKER,
} from "./operator_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const dashboardUrl = `${env.apiUrl}/functions/v1/conveyor-dashboard`;
const EVIL = `<img src=x onerror="alert('dlq')"> & "quotes"`;
const STAGE_EVIL = `<b>stage boom</b> & <script>alert(1)</script>`;
const STAGES = ["research", "outline", "draft", "qa", "export", "complete"];

const browser = await findChromium();
if ("skip" in browser) console.log(`[browser] dashboard browser test skipped: ${browser.skip}`);

Deno.test({
  name: "conveyor-dashboard: anon, a user token, a wrong key and no key get 401",
  ...opts,
  async fn() {
    const cases: Array<[string, HeadersInit]> = [
      ["", {}],
      ["", { authorization: `Bearer ${env.anonKey}` }],
      [`?key=${env.anonKey}`, {}],
      ["?key=not-the-key", {}],
      ["", { authorization: "Bearer not-the-key", accept: "application/json" }],
    ];
    for (const [qs, headers] of cases) {
      const res = await fetch(`${dashboardUrl}${qs}`, { headers, redirect: "manual" });
      await res.body?.cancel();
      assertEquals(res.status, 401, `${qs} ${JSON.stringify(headers)}`);
    }
    const ok = await fetch(`${dashboardUrl}?format=json`, {
      headers: { authorization: `Bearer ${env.serviceRoleKey}` },
    });
    assertEquals(ok.status, 200);
    assert(Array.isArray((await ok.json()).queues));
  },
});

interface PageData {
  queues: Record<string, Record<string, number | null>>;
  stages: Record<string, Record<string, number | null>>;
  stageText: Record<string, string>;
  dlq: number | null;
  deadRows: Array<{ job: string; text: string }>;
  errorsText: string;
  alertsText: string;
  injected: number;
  external: string[];
  href: string;
}

const EXTRACT = `(() => {
  const num = (root, f) => {
    const el = root && root.querySelector('[data-field="' + f + '"]');
    return el ? Number(el.dataset.value) : null;
  };
  const queues = {};
  for (const tr of document.querySelectorAll("tr[data-queue]")) {
    queues[tr.dataset.queue] = Object.fromEntries(
      ["ready", "delayed", "in_flight", "processed", "failed"].map((f) => [f, num(tr, f)]));
  }
  const stages = {}, stageText = {};
  for (const el of document.querySelectorAll("#stages [data-stage]")) {
    stages[el.dataset.stage] = Object.fromEntries(
      ["ready", "in_flight", "max_concurrency", "waiting_retry", "errors"].map((f) => [f, num(el, f)]));
    stageText[el.dataset.stage] = el.innerText;
  }
  return {
    queues, stages, stageText,
    dlq: num(document.getElementById("dead-letters"), "dlq_size"),
    deadRows: [...document.querySelectorAll("tr[data-dead-letter]")]
      .map((tr) => ({ job: tr.dataset.job, text: tr.innerText })),
    errorsText: document.getElementById("stage-errors").innerText,
    alertsText: document.getElementById("alerts").innerText,
    injected: document.querySelectorAll("main script, main img, main b, main iframe").length,
    external: [...document.querySelectorAll("[src], link[href]")]
      .map((e) => e.getAttribute("src") || e.getAttribute("href"))
      .filter((u) => !u.startsWith("data:")),
    href: location.href,
  };
})()`;

Deno.test({
  name:
    "conveyor-dashboard in Chromium: queues and stages by name, numbers = SQL, escaped errors, no console errors, screenshot",
  ignore: "skip" in browser,
  ...opts,
  async fn() {
    if (!("path" in browser)) return;
    const sql = connect(env.dbUrl, 2);
    await using kind = await quietKind();
    const alertSubject = `q_${kind.kind}`;
    try {
      // Queue side: 4 normal (one delayed an hour), 2 fast, 1 bulk; claim 3 (fast first),
      // complete one, cancel one into the dead-letter queue with an HTML-ish error.
      const key = (n: string) => `dash:${kind.kind}:${n}`;
      for (let i = 0; i < 3; i++) {
        await enqueue({ idempotency_key: key(`n${i}`), kind: kind.kind, payload: { i } });
      }
      await enqueue({
        idempotency_key: key("late"),
        kind: kind.kind,
        payload: {},
        delay_seconds: 3600,
      });
      for (let i = 0; i < 2; i++) {
        await enqueue({
          idempotency_key: key(`f${i}`),
          kind: kind.kind,
          payload: { i },
          priority: "fast",
        });
      }
      await enqueue({ idempotency_key: key("b0"), kind: kind.kind, payload: {}, priority: "bulk" });
      const claimed = await claimAll(sql, kind.kind, 3);
      assertEquals(
        claimed.map((c) => c.queue_name).sort(),
        [`q_${kind.kind}`, `q_${kind.kind}_fast`, `q_${kind.kind}_fast`].sort(),
      );
      const fast = claimed.filter((c) => c.queue_name.endsWith("_fast"));
      await sql`select public.complete_job(${fast[0]!.job_id}, ${
        fast[0]!.lease_id
      }, '{"ok":true}'::jsonb)`;
      await sql`select * from public.settle_jobs(${TEST_WORKER}, ${
        sql.json(
          [{
            job_id: fast[1]!.job_id,
            lease_id: fast[1]!.lease_id,
            status: "cancelled",
            error: { message: EVIL },
          }] as never,
        )
      }::jsonb)`;
      const deadJob = fast[1]!.job_id;
      await sql`select public.capture_queue_metrics()`;
      await sql`
        insert into public.alert_history (tenant_id, rule, subject, severity, message, value, threshold)
        values (${DEFAULT_TENANT}, 'dead_letter', ${alertSubject}, 'critical',
                ${`1 dead letter in ${alertSubject}: ${EVIL}`}, 1, 1)`;

      // Content side: research paused and drained; three jobs ready, one claimed and failed
      // (an error event, retried after 1 s), another claimed and held.
      await using _research = await frozenStage(sql, "research");
      for (let i = 0; i < 3; i++) {
        await createJob(sql, { topic: `dashboard test ${i} <i>${kind.kind}</i>` });
      }
      await claimFrozen(sql, "research", { error: STAGE_EVIL });
      await claimFrozen(sql, "research");
      await new Promise((r) => setTimeout(r, 1500)); // the failed item is ready again

      // Jobs of earlier tests may still run out of retries in the background: the dead-letter
      // count can only grow (nothing redrives meanwhile), so it is bracketed.
      const dlqSize = async () =>
        (await sql`select count(*)::int as n from public.dead_letter_jobs where redriven_at is null`)[
          0
        ]!
          .n as number;
      const dlqBefore = await dlqSize();
      await using chrome = await launchChromium(browser.path);
      const page = await chrome.newPage();
      const status = await page.goto(`${dashboardUrl}?key=${env.serviceRoleKey}`);
      assertEquals(status, 200);
      const seen = await page.evaluate<PageData>(EXTRACT);

      // What SQL counts, right after the page was rendered (nothing moves meanwhile).
      for (const tier of ["", "_fast", "_bulk"]) {
        const q = `q_${kind.kind}${tier}`;
        assertEquals(seen.queues[q], await queueCounts(sql, q), `queue ${q}`);
      }
      assertEquals(seen.queues[`q_${kind.kind}`], {
        ready: 2,
        delayed: 1,
        in_flight: 1,
        processed: 0,
        failed: 0,
      });
      assertEquals(seen.queues[`q_${kind.kind}_fast`], {
        ready: 0,
        delayed: 0,
        in_flight: 0,
        processed: 1,
        failed: 1,
      });
      assertEquals(seen.queues[`q_${kind.kind}_bulk`]!.ready, 1);
      for (const q of ["q_enrich", "q_outreach", "q_enforce"]) {
        assert(q in seen.queues, `${q} shown`);
      }

      assertEquals(Object.keys(seen.stages), STAGES, "every stage, in pipeline order");
      const research = await stageCounts(sql, "research");
      assertEquals(
        {
          ready: seen.stages.research!.ready,
          in_flight: seen.stages.research!.in_flight,
          max: seen.stages.research!.max_concurrency,
        },
        { ready: research.ready, in_flight: research.in_flight, max: research.max_concurrency },
      );
      assert(research.ready >= 2 && research.in_flight >= 1, JSON.stringify(research));
      assertMatch(seen.stageText.research!, /paused/);
      assert(seen.stages.research!.errors! >= 1);

      const dlqAfter = await dlqSize();
      assert(
        seen.dlq !== null && dlqBefore <= seen.dlq && seen.dlq <= dlqAfter && seen.dlq > 0,
        `dead letters shown ${seen.dlq}, SQL ${dlqBefore}..${dlqAfter}`,
      );
      const row = seen.deadRows.find((r) => r.job === deadJob);
      assert(row, "the dead job is among the latest");
      assert(row.text.includes(`cancelled: ${EVIL}`), row.text);
      const [dead] = await sql`select msg_id from public.jobs where id = ${deadJob}`;
      assert(row.text.includes(`#${dead!.msg_id}`), `the job by its number: ${row.text}`);
      assert(seen.errorsText.includes(STAGE_EVIL), seen.errorsText);
      assert(seen.alertsText.includes(EVIL), seen.alertsText);
      assertEquals(seen.injected, 0, "no markup from user data");
      assertEquals(seen.external, [], "nothing loaded from elsewhere");
      assert(!seen.href.includes("key="), "the key left the address bar");

      // Auto-refresh path: fetch the fragment with the session cookie and swap it in.
      await page.evaluate(`document.getElementById("refresh-now").click()`);
      await eventually(
        "the in-place refresh",
        async () =>
          (await page.evaluate<string>(`document.getElementById("refresh-status").textContent`))
            .startsWith("updated"),
      );
      assertEquals(
        (await page.evaluate<PageData>(EXTRACT)).queues[`q_${kind.kind}`],
        seen.queues[`q_${kind.kind}`],
      );

      await Deno.mkdir(`${REPO_ROOT}/.artifacts`, { recursive: true });
      const png = await page.screenshot();
      await Deno.writeFile(`${REPO_ROOT}/.artifacts/dashboard.png`, png);
      assert(png.length > 20_000, "a real screenshot");
      assertEquals(
        page.problems,
        [],
        "no console errors, exceptions, failed loads or CSP violations",
      );
      console.log(`[browser] screenshot: .artifacts/dashboard.png (${png.length} bytes)`);
    } finally {
      await sql`delete from public.alert_history where subject = ${alertSubject}`;
      await sql.end();
    }
  },
});
