/**
 * The conveyor-metrics function through the test stack: valid Prometheus text (parsed
 * strictly), the numbers SQL counts, counters that only go up (across a metrics snapshot,
 * and across the deletion of the events they count), label values escaped, 401 for anon.
 */
import type { Sql } from "postgres";
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { type MetricFamily, parseExposition, sampleValue } from "../tools/test/prometheus.ts";
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
} from "./operator_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const metricsUrl = `${env.apiUrl}/functions/v1/conveyor-metrics`;

async function scrape(): Promise<MetricFamily[]> {
  const res = await fetch(metricsUrl, {
    headers: { authorization: `Bearer ${env.serviceRoleKey}` },
  });
  const text = await res.text();
  assertEquals(res.status, 200, text);
  assertMatch(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  return parseExposition(text);
}

const queueLabels = (queue: string) => ({ queue, tenant_id: DEFAULT_TENANT });

async function completeOne(sql: Sql, kind: string): Promise<void> {
  const [c] = await claimAll(sql, kind, 1);
  await sql`select public.complete_job(${c!.job_id}, ${c!.lease_id}, null)`;
}

Deno.test({
  name: "conveyor-metrics: anon, a wrong key and no key get 401",
  ...opts,
  async fn() {
    for (
      const init of [
        {},
        { headers: { authorization: `Bearer ${env.anonKey}` } },
        { headers: { authorization: "Bearer nope" } },
      ]
    ) {
      const res = await fetch(metricsUrl, init);
      await res.body?.cancel();
      assertEquals(res.status, 401);
    }
    const res = await fetch(`${metricsUrl}?key=${env.anonKey}`);
    await res.body?.cancel();
    assertEquals(res.status, 401);
  },
});

Deno.test({
  name: "conveyor-metrics: every family has HELP and TYPE, names follow the conventions",
  ...opts,
  async fn() {
    const fams = await scrape();
    assert(fams.length > 15, `${fams.length} families`);
    for (const f of fams) {
      assert(f.help.length > 0, `HELP of ${f.name}`);
      assert(["counter", "gauge"].includes(f.type), `TYPE of ${f.name}: ${f.type}`);
      assertMatch(f.name, /^conveyor_[a-z_]+$/);
      assertEquals(f.type === "counter", f.name.endsWith("_total"), f.name);
      assert(f.samples.length > 0, `samples of ${f.name}`);
    }
    assertEquals(sampleValue(fams, "conveyor_up", {}), 1);
    const labels = new Set(fams.flatMap((f) => f.samples.flatMap((s) => Object.keys(s.labels))));
    for (const l of ["queue", "stage", "tenant"]) assert(labels.has(l), `label ${l}`);
  },
});

Deno.test({
  name:
    "conveyor-metrics: queue gauges equal SQL counts; processed_total only goes up, also across a snapshot",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 2);
    await using kind = await quietKind();
    const q = `q_${kind.kind}`;
    try {
      for (let i = 0; i < 4; i++) {
        await enqueue({
          idempotency_key: `met:${kind.kind}:${i}`,
          kind: kind.kind,
          payload: { i },
        });
      }
      await enqueue({
        idempotency_key: `met:${kind.kind}:late`,
        kind: kind.kind,
        payload: {},
        delay_seconds: 600,
      });
      await completeOne(sql, kind.kind);
      await claimAll(sql, kind.kind, 1); // one in flight
      let fams = await scrape();
      const counts = await queueCounts(sql, q);
      assertEquals(counts, { ready: 2, delayed: 1, in_flight: 1, processed: 1, failed: 0 });
      assertEquals(sampleValue(fams, "conveyor_queue_ready_jobs", queueLabels(q)), counts.ready);
      assertEquals(
        sampleValue(fams, "conveyor_queue_delayed_jobs", queueLabels(q)),
        counts.delayed,
      );
      assertEquals(
        sampleValue(fams, "conveyor_queue_in_flight_jobs", queueLabels(q)),
        counts.in_flight,
      );
      assertEquals(sampleValue(fams, "conveyor_queue_processed_jobs_total", queueLabels(q)), 1);
      assertEquals(sampleValue(fams, "conveyor_queue_failed_jobs_total", queueLabels(q)), 0);
      const [oldest] = await sql`
        select floor(extract(epoch from now() - min(run_at)))::int as age from public.jobs
        where queue_name = ${q} and status = 'pending' and run_at <= now()`;
      const age = sampleValue(fams, "conveyor_queue_oldest_ready_age_seconds", queueLabels(q));
      assert(Math.abs(age - oldest!.age) <= 1, `oldest age ${age} vs ${oldest!.age}`);
      // Idle tiers of the default tenant are 0, not absent.
      assertEquals(sampleValue(fams, "conveyor_queue_ready_jobs", queueLabels(`${q}_bulk`)), 0);

      // A snapshot moves "finished since the last snapshot" into the totals: no jump, no drop.
      await completeOne(sql, kind.kind);
      fams = await scrape();
      assertEquals(sampleValue(fams, "conveyor_queue_processed_jobs_total", queueLabels(q)), 2);
      await sql`select public.capture_queue_metrics()`;
      fams = await scrape();
      assertEquals(sampleValue(fams, "conveyor_queue_processed_jobs_total", queueLabels(q)), 2);
      await completeOne(sql, kind.kind);
      fams = await scrape();
      assertEquals(sampleValue(fams, "conveyor_queue_processed_jobs_total", queueLabels(q)), 3);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "conveyor-metrics: stage gauges equal SQL; errors_total only goes up, also when retention deletes the events",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 2);
    try {
      await using _research = await frozenStage(sql, "research");
      const before = sampleValue(await scrape(), "conveyor_stage_errors_total", {
        stage: "research",
      });
      await createJob(sql, { topic: "metrics test" });
      // The oldest ready item of the stage gets the error (ours, or one another test left).
      const failed = await claimFrozen(sql, "research", { error: "metrics test failure" });
      let fams = await scrape();
      assertEquals(
        sampleValue(fams, "conveyor_stage_errors_total", { stage: "research" }),
        before + 1,
      );
      assertEquals(sampleValue(fams, "conveyor_stage_enabled", { stage: "research" }), 0);
      const counts = await stageCounts(sql, "research");
      assertEquals(
        sampleValue(fams, "conveyor_stage_max_concurrency_workers", { stage: "research" }),
        counts.max_concurrency,
      );
      assertEquals(
        sampleValue(fams, "conveyor_stage_in_flight_workers", { stage: "research" }),
        counts.in_flight,
      );
      for (const stage of ["research", "outline", "draft", "qa", "export", "complete"]) {
        const [cfg] =
          await sql`select max_concurrency from public.content_stage_config where stage = ${stage}`;
        assertEquals(
          sampleValue(fams, "conveyor_stage_max_concurrency_workers", { stage }),
          cfg!.max_concurrency,
        );
      }
      // Retention deletes finished jobs with their events; the counter keeps them.
      await sql`delete from public.content_jobs where id = ${failed.job_id}`;
      fams = await scrape();
      assertEquals(
        sampleValue(fams, "conveyor_stage_errors_total", { stage: "research" }),
        before + 1,
      );
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "conveyor-metrics: label values are escaped, so a tenant name with quotes, backslashes and line feeds round-trips",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    const name = `ops "metrics" \\ test\n${crypto.randomUUID().slice(0, 8)}`;
    const [t] = await sql`insert into public.tenants (name) values (${name}) returning id`;
    try {
      const fams = await scrape();
      assertEquals(
        sampleValue(fams, "conveyor_rate_limiter_capacity_tokens", {
          tenant: name,
          service: "stripe",
        }),
        100,
      );
      assertEquals(
        sampleValue(fams, "conveyor_rate_limiter_tokens", { tenant: name, service: "twilio" }),
        10,
      );
    } finally {
      await sql`delete from public.rate_limiters where tenant_id = ${t!.id}`;
      await sql`delete from public.tenants where id = ${t!.id}`;
      await sql.end();
    }
  },
});
