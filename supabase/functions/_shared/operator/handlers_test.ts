import { assert, assertEquals, assertMatch } from "../../../../tools/test/assert.ts";
import { parseExposition, sampleValue } from "../../../../tools/test/prometheus.ts";
import { SESSION_COOKIE } from "./auth.ts";
import { type DashboardData, workerUrl } from "./data.ts";
import { createDashboardHandler, createMetricsHandler } from "./handlers.ts";

const KEY = "service-key";
const EVIL = `<script>alert("pwned")</script>`;

function sampleData(): DashboardData {
  const series = (n: number) => Array.from({ length: 60 }, (_, i) => (i === 59 ? n : 0));
  return {
    generated_at: "2026-01-01T12:00:00Z",
    window_minutes: 60,
    last_snapshot_at: "2026-01-01T11:59:30Z",
    queues: [{
      position: 1,
      kind: "enrich",
      tier: "normal",
      queue: "q_enrich",
      kind_enabled: true,
      max_concurrency: 2,
      workers: 1,
      ready: 5,
      delayed: 1,
      in_flight: 2,
      oldest_ready_age_sec: 75,
      processed: 7,
      failed: 1,
      series_start: "2026-01-01T11:01:00Z",
      processed_series: series(7),
      failed_series: series(1),
    }],
    stages: [{
      position: 1,
      stage: "research",
      queue: "content",
      enabled: false,
      max_concurrency: 4,
      trigger_batch_size: 1,
      ready: 3,
      waiting_retry: 1,
      leased: 1,
      triggered: 1,
      in_flight: 2,
      completed: 9,
      errors: 1,
      completed_total: 9,
      errors_total: 1,
      last_error_at: "2026-01-01T11:58:00Z",
      worker_endpoint: "/functions/v1/research-worker",
    }],
    stage_errors: [{
      id: 1,
      job_id: "11111111-2222-3333-4444-5555e0e0e0e1",
      stage: "research",
      message: EVIL,
      attempt: 1,
      max_attempts: 3,
      created_at: "2026-01-01T11:58:00Z",
      topic: EVIL,
    }],
    dead_letters: {
      size: 1,
      by_kind: [{ kind: "enrich", size: 1, newest: "2026-01-01T11:50:00Z" }],
      latest: [{
        id: "aaaaaaaa-2222-3333-4444-555555555555",
        job_id: "bbbbbbbb-2222-3333-4444-555555555555",
        job_number: 4711,
        tenant_id: "00000000-0000-0000-0000-000000000000",
        tenant: `t"<b>`,
        kind: "enrich",
        queue: "q_enrich",
        reason: EVIL,
        attempts: 3,
        errors: 3,
        created_at: "2026-01-01T11:50:00Z",
        acknowledged_at: null,
      }],
    },
    failed_content_jobs: {
      size: 2,
      by_stage: [{ stage: "qa", size: 1 }],
      latest: [{
        job_id: "dddddddd-2222-3333-4444-5555c0c0c0c1",
        topic: EVIL,
        stage: "qa",
        attempts: 3,
        max_attempts: 3,
        last_error: EVIL,
        failed_at: "2026-01-01T11:55:00Z",
      }, {
        // A failed job whose stage rows were edited by hand: nothing to retry from.
        job_id: "eeeeeeee-2222-3333-4444-555555555555",
        topic: null,
        stage: null,
        attempts: null,
        max_attempts: null,
        last_error: "lost",
        failed_at: "2026-01-01T11:54:00Z",
      }],
    },
    rate_limiters: [{
      tenant_id: "00000000-0000-0000-0000-000000000000",
      tenant: "default",
      service_name: "sendgrid",
      tokens: 12.5,
      capacity: 50,
      refill_per_sec: 5,
      max_concurrent: 10,
      in_use: 2,
    }],
    alerts: [{
      id: "cccccccc-2222-3333-4444-555555555555",
      tenant_id: "00000000-0000-0000-0000-000000000000",
      tenant: "default",
      rule: "queue_depth",
      subject: "q_enrich",
      severity: "warning",
      status: "open",
      message: EVIL,
      value: 1200,
      threshold: 1000,
      raised_at: "2026-01-01T11:40:00Z",
      resolved_at: null,
    }],
    tenants: [{
      source: "queue",
      target: "enrich",
      tenant_id: "aaaaaaaa-1111-4111-8111-111111111111",
      tenant: "acme",
      weight: 2,
      ready: 90_000,
      waiting: 0,
      running: 20,
      oldest_ready_age_sec: 300,
      others_median_age_sec: 1,
      claimed: 9000,
      claimed_share: 0.9,
      recently_claimed: 1200,
      starving: false,
    }, {
      source: "queue",
      target: "enrich",
      tenant_id: "bbbbbbbb-1111-4111-8111-111111111111",
      tenant: EVIL,
      weight: 1,
      ready: 4,
      waiting: 0,
      running: 0,
      oldest_ready_age_sec: 720,
      others_median_age_sec: 1,
      claimed: 0,
      claimed_share: 0,
      recently_claimed: 0,
      starving: true,
    }],
    concurrency_keys: [{
      kind: "enrich",
      tenant_id: "aaaaaaaa-1111-4111-8111-111111111111",
      tenant: "acme",
      concurrency_key: EVIL,
      running: 2,
      max_running: 2,
      waiting: 7,
      oldest_waiting_age_sec: 42,
      at_limit: true,
    }],
  };
}

const dashboard = (load = () => Promise.resolve(sampleData())) =>
  createDashboardHandler({
    load,
    credentials: () => [KEY],
    site: () => "test",
    refreshSec: 10,
    projectUrl: () => "https://abc.supabase.co/",
  });
const get = (path: string, headers: Record<string, string> = {}) =>
  new Request(`http://fn.local/conveyor-dashboard${path}`, { headers });

Deno.test("conveyor-dashboard: no credential or the anon key → 401 (HTML for browsers, JSON for APIs)", async () => {
  const h = dashboard();
  const page = await h(get("", { accept: "text/html" }));
  assertEquals(page.status, 401);
  assertMatch(page.headers.get("content-type")!, /text\/html/);
  assertMatch(await page.text(), /service-role key/);
  const api = await h(get("", { authorization: "Bearer anon", accept: "application/json" }));
  assertEquals(api.status, 401);
  assertEquals((await api.json()).error, "unauthorized");
  assertEquals((await h(get("?key=anon"))).status, 401);
});

Deno.test("conveyor-dashboard: ?key= is traded for a session cookie and a URL without the key", async () => {
  const h = dashboard();
  const res = await h(get(`?key=${KEY}&minutes=30`));
  assertEquals(res.status, 303);
  assertEquals(res.headers.get("location"), "conveyor-dashboard?minutes=30");
  const cookie = res.headers.get("set-cookie")!;
  assertMatch(cookie, /HttpOnly/);
  assertMatch(cookie, /Path=\/functions\/v1\/conveyor-dashboard/);
  const token = cookie.split(";")[0]!;
  const page = await h(get("?minutes=30", { cookie: token, accept: "text/html" }));
  assertEquals(page.status, 200);
  assert(token.startsWith(`${SESSION_COOKIE}=v1.`));
});

Deno.test("conveyor-dashboard: the page escapes user data and carries a nonce-based CSP", async () => {
  const res = await dashboard()(get("", { authorization: `Bearer ${KEY}` }));
  assertEquals(res.status, 200);
  const body = await res.text();
  const csp = res.headers.get("content-security-policy")!;
  const nonce = /script-src 'nonce-([^']+)'/.exec(csp)![1]!;
  assert(!csp.includes("unsafe-inline"));
  assertEquals(body.match(/<script/g)!.length, 1, "only our own script");
  assert(body.includes(`<script nonce="${nonce}">`));
  assert(!body.includes(EVIL), "user data is never raw markup");
  assert(body.includes("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"));
  assert(!/\sstyle="/.test(body), "no style attributes (the CSP forbids them)");
  assert(
    !/(?:(?:src|href|action)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)(?:https?:)?\/\//i.test(
      body,
    ),
    "nothing loaded from elsewhere",
  );
  assertMatch(body, /data-queue="q_enrich"/);
  assertMatch(body, /data-stage="research"/);
  assertMatch(body, /<span class="pill warn">paused<\/span>/);
});

Deno.test("conveyor-dashboard: ?fragment=1 answers the main part, ?format=json the data, HEAD no body", async () => {
  const h = dashboard();
  const auth = { authorization: `Bearer ${KEY}` };
  const frag = await (await h(get("?fragment=1", auth))).text();
  assert(!frag.includes("<html"));
  assertMatch(frag, /id="queues"/);
  const data = await (await h(get("?format=json", auth))).json();
  assertEquals(data.queues[0].queue, "q_enrich");
  const head = await h(
    new Request("http://fn.local/conveyor-dashboard", { method: "HEAD", headers: auth }),
  );
  assertEquals([head.status, await head.text()], [200, ""]);
  assertEquals(
    (await h(new Request("http://fn.local/x", { method: "POST", headers: auth }))).status,
    405,
  );
});

Deno.test("conveyor-dashboard: each stage card shows where its workers are called (the resolved URL)", async () => {
  const auth = { authorization: `Bearer ${KEY}` };
  const body = await (await dashboard()(get("", auth))).text();
  assert(
    body.includes(
      '<div class="stage-url muted" data-field="worker_url" title="worker_endpoint: /functions/v1/research-worker">workers at <code>https://abc.supabase.co/functions/v1/research-worker</code></div>',
    ),
    body,
  );
  const data = await (await dashboard()(get("?format=json", auth))).json();
  assertEquals(
    [data.stages[0].worker_endpoint, data.stages[0].worker_url],
    ["/functions/v1/research-worker", "https://abc.supabase.co/functions/v1/research-worker"],
  );
});

Deno.test("conveyor-dashboard: a queue job is shown by its number, a content job by its uuid's random tail", async () => {
  const body = await (await dashboard()(get("", { authorization: `Bearer ${KEY}` }))).text();
  assert(
    body.includes('<code title="bbbbbbbb-2222-3333-4444-555555555555">#4711</code>'),
    "the dead job's number",
  );
  assert(body.includes("<code>dlq redrive 4711</code>"), "the redrive example takes the number");
  assert(
    body.includes('<code title="dddddddd-2222-3333-4444-5555c0c0c0c1">c0c0c0c1</code>'),
    "a failed content job: the last 8 hex digits",
  );
  assert(body.includes("job <code>e0e0e0e1</code>"), "a stage error's job: the same");
});

Deno.test("conveyor-dashboard: failed content jobs are listed with the exact command that retries each", async () => {
  const body = await (await dashboard()(get("", { authorization: `Bearer ${KEY}` }))).text();
  assert(
    body.includes(
      '<code data-field="redrive_command">deno task conveyor dlq redrive dddddddd-2222-3333-4444-5555c0c0c0c1</code>',
    ),
    body,
  );
  assertMatch(body, /data-field="failed_content_jobs" data-value="2"/);
  assertMatch(
    body,
    /<tr data-content-job="eeeeeeee-2222-3333-4444-555555555555" data-stage="">[\s\S]*?no failed stage to retry from[\s\S]*?<\/tr>/,
  );
  assertEquals(body.match(/data-field="redrive_command"/g)!.length, 1);
  assert(
    body.includes(
      '<code>POST /rest/v1/rpc/redrive_content_job {"p_job_id": "&lt;job id&gt;"}</code>',
    ),
  );
  const empty = sampleData();
  empty.failed_content_jobs = { size: 0, by_stage: [], latest: [] };
  const none = await (await dashboard(() => Promise.resolve(empty))(
    get("?fragment=1", { authorization: `Bearer ${KEY}` }),
  )).text();
  assert(none.includes('<p class="muted" id="failed-content-jobs">No failed content jobs.</p>'));
});

Deno.test("workerUrl() resolves a path against the project URL like conveyor.endpoint_url()", () => {
  const base = "https://abc.supabase.co/";
  assertEquals(
    workerUrl("/functions/v1/qa-worker", base),
    "https://abc.supabase.co/functions/v1/qa-worker",
  );
  assertEquals(
    workerUrl("functions/v1/qa-worker", "http://127.0.0.1:54321"),
    "http://127.0.0.1:54321/functions/v1/qa-worker",
  );
  assertEquals(workerUrl("HTTPS://workers.example/qa", base), "HTTPS://workers.example/qa");
  assertEquals(workerUrl("/functions/v1/qa-worker", undefined), null);
  assertEquals(workerUrl("/functions/v1/qa-worker", "  "), null);
});

Deno.test("conveyor-dashboard: a database failure is a 503 with the reason, escaped", async () => {
  const h = dashboard(() => Promise.reject(new Error("db <down>")));
  const res = await h(get("", { authorization: `Bearer ${KEY}`, accept: "text/html" }));
  assertEquals(res.status, 503);
  assertMatch(await res.text(), /db &lt;down&gt;/);
});

Deno.test("conveyor-metrics: 401 without the key; with it, parseable exposition with conveyor_up", async () => {
  const h = createMetricsHandler({
    credentials: () => [KEY],
    load: () =>
      Promise.resolve([
        {
          metric: "conveyor_queue_ready_jobs",
          labels: { queue: "q_enrich", tenant: 'a"b' },
          value: 4,
        },
      ]),
  });
  assertEquals((await h(new Request("http://fn.local/conveyor-metrics"))).status, 401);
  const res = await h(
    new Request("http://fn.local/conveyor-metrics", {
      headers: { authorization: `Bearer ${KEY}` },
    }),
  );
  assertEquals(res.status, 200);
  assertMatch(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const fams = parseExposition(await res.text());
  assertEquals(sampleValue(fams, "conveyor_up", {}), 1);
  assertEquals(sampleValue(fams, "conveyor_queue_ready_jobs", { tenant: 'a"b' }), 4);
});

Deno.test("conveyor-metrics: a database failure is a 503 (the scrape fails, up == 0)", async () => {
  const h = createMetricsHandler({
    credentials: () => [KEY],
    load: () => Promise.reject(new Error("down")),
  });
  const res = await h(new Request("http://fn.local/conveyor-metrics?key=" + KEY));
  assertEquals(res.status, 503);
  await res.body?.cancel();
});

Deno.test("conveyor-dashboard: tenants sharing a kind, a starving one flagged with the command to look, and keys at their limit", async () => {
  const body = await (await dashboard()(get("", { authorization: `Bearer ${KEY}` }))).text();
  assertMatch(
    body,
    /<tr data-tenant-row="queue:enrich:bbbbbbbb-1111-4111-8111-111111111111"\s+data-starving="true">[\s\S]*?<span class="pill err">starving<\/span>/,
  );
  assertMatch(
    body,
    /data-tenant-row="queue:enrich:aaaaaaaa-1111-4111-8111-111111111111"\s+data-starving="false">[\s\S]*?data-field="claimed_share" data-value="0.9">90%</,
  );
  assert(body.includes("<code>deno task conveyor status --tenants</code>"), "the command to look");
  assertMatch(body, /data-field="running" data-value="2">2 \/ 2</);
  assertMatch(body, /data-field="waiting" data-value="7">7</);
  assert(!body.includes(EVIL), "tenant names and keys are escaped");
});
