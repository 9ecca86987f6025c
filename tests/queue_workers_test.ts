/**
 * The queue worker functions over HTTP, through the test stack's /functions/v1 exactly as
 * the dispatcher and an operator call them: drain and summary, auth, body validation,
 * async mode, health, and the shipped handlers' effects (jobs.output, outbox, decisions,
 * dead-letter alerts).
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { withCronActive } from "./content_fixtures.ts";

const env = testEnv();
const fnUrl = (slug: string, sub = "") => `${env.apiUrl}/functions/v1/${slug}${sub}`;
const opts = { sanitizeOps: false, sanitizeResources: false };

async function enqueue(body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${env.apiUrl}/rest/v1/rpc/queue_job`, {
    method: "POST",
    headers: {
      apikey: env.serviceRoleKey,
      Authorization: `Bearer ${env.serviceRoleKey}`,
      "Content-Type": "application/json",
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assertEquals(res.status, 200, text);
}

function call(slug: string, body: unknown, key = env.serviceRoleKey, sub = ""): Promise<Response> {
  return fetch(fnUrl(slug, sub), {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function jobByKey(key: string) {
  const sql = connect(env.dbUrl, 1);
  try {
    const [j] = await sql`select id, status, output, last_error from public.jobs
                          where idempotency_key = ${key}`;
    return j;
  } finally {
    await sql.end();
  }
}

Deno.test({
  name: "enrich-worker: POST with the service role drains the queue and answers the summary",
  ...opts,
  async fn() {
    const key = `w:${crypto.randomUUID()}`;
    await enqueue({
      idempotency_key: key,
      kind: "enrich",
      payload: { email: "Grace@Navy.MIL", name: "grace hopper" },
    });
    const res = await call("enrich-worker", {});
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    assertEquals(Object.keys(body).sort(), [
      "batches",
      "cancelled",
      "claimed",
      "completed",
      "duration_ms",
      "failed",
      "kind",
      "released",
      "snoozed",
      "stopped_by",
    ]);
    assertEquals([body.kind, body.stopped_by], ["enrich", "empty"]);
    // The dispatcher (kicked by the enqueue) may have drained it first: the job is what counts.
    const job = await eventually("the enrich job to complete", async () => {
      const j = await jobByKey(key);
      return j?.status === "completed" ? j : undefined;
    });
    assertEquals(job!.status, "completed");
    assertEquals(job!.output.contact.email, "grace@navy.mil");
    assertEquals(job!.output.contact.full_name, "Grace Hopper");
  },
});

Deno.test({
  name: "worker functions refuse the anon key and a missing token",
  ...opts,
  async fn() {
    for (const slug of ["enrich-worker", "outreach-worker", "enforce-worker", "dlq-worker"]) {
      const anon = await call(slug, {}, env.anonKey);
      const body = await anon.json();
      assert(anon.status === 401 || anon.status === 403, `${slug}: ${anon.status}`);
      assert(body.error === "unauthorized" || typeof body.msg === "string", JSON.stringify(body));
      const none = await fetch(fnUrl(slug), { method: "POST", body: "{}" });
      await none.body?.cancel();
      assertEquals(none.status, 401);
    }
  },
});

Deno.test({
  name: "worker functions answer 400 JSON for a bad body",
  ...opts,
  async fn() {
    for (const body of ['{"async":"yes"}', '{"invocation_id":"nope"}', "{not json", "[1]"]) {
      const res = await call("enforce-worker", body);
      const err = await res.json();
      assertEquals(res.status, 400, body);
      assertEquals(err.error, "bad_request");
    }
  },
});

Deno.test({
  name: "a worker called with an invocation the dispatcher does not know drains nothing",
  ...opts,
  async fn() {
    // A repeated or expired delivery has no dispatch slot: draining would break max_concurrency.
    const res = await call("enforce-worker", { invocation_id: crypto.randomUUID() });
    const body = await res.json();
    assertEquals(res.status, 200, JSON.stringify(body));
    assertEquals([body.kind, body.claimed, body.batches, body.stopped_by], [
      "enforce",
      0,
      0,
      "refused",
    ]);
  },
});

Deno.test({
  name: "outreach-worker with async: true answers 202 at once and delivers into the outbox",
  ...opts,
  async fn() {
    const key = `o:${crypto.randomUUID()}`;
    await enqueue({
      idempotency_key: key,
      kind: "outreach",
      payload: {
        to: "ada@example.com",
        template: "welcome",
        vars: { first_name: "Ada", company: "Acme" },
      },
    });
    const res = await call("outreach-worker", { async: true });
    assertEquals([res.status, await res.json()], [202, { accepted: true }]);
    const job = await eventually("the outreach job to complete", async () => {
      const j = await jobByKey(key);
      return j?.status === "completed" ? j : undefined;
    });
    const sql = connect(env.dbUrl, 1);
    try {
      const [m] = await sql`select recipient, subject, body, status from public.outbox_messages
                            where job_id = ${job.id}`;
      assertEquals([m!.recipient, m!.subject, m!.status], [
        "ada@example.com",
        "Welcome to Acme, Ada",
        "sent",
      ]);
      assertEquals(job.output.message_id !== undefined, true);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "enforce-worker records a decision with the matched rules",
  ...opts,
  async fn() {
    const key = `e:${crypto.randomUUID()}`;
    await enqueue({
      idempotency_key: key,
      kind: "enforce",
      payload: { subject: "acct-9", country: "KP", amount: 50_000 },
    });
    const res = await call("enforce-worker", {});
    assertEquals(res.status, 200, await res.clone().text());
    await res.body?.cancel();
    const job = await eventually("the enforce job to complete", async () => {
      const j = await jobByKey(key);
      return j?.status === "completed" ? j : undefined;
    });
    assertEquals(job.output.decision, "deny");
    const sql = connect(env.dbUrl, 1);
    try {
      const [d] =
        await sql`select decision, subject, matched_rules from public.enforcement_decisions
                            where job_id = ${job.id}`;
      assertEquals([d!.decision, d!.subject], ["deny", "acct-9"]);
      assertEquals(d!.matched_rules.map((r: { id: string }) => r.id), [
        "sanctioned_country",
        "large_amount",
      ]);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "an enrich job without an email is cancelled, and dlq-worker raises the dead_letter alert",
  ...opts,
  async fn() {
    const key = `x:${crypto.randomUUID()}`;
    await enqueue({ idempotency_key: key, kind: "enrich", payload: { name: "No Email" } });
    const drained = await call("enrich-worker", {});
    assertEquals(drained.status, 200);
    await drained.body?.cancel();
    const job = await eventually("the enrich job to be cancelled", async () => {
      const j = await jobByKey(key);
      return j?.status === "failed" ? j : undefined;
    });
    assertEquals(job!.last_error, "cancelled: enrich: payload.email is required");
    // Dead-lettering kicks dlq-worker by itself; a manual call may therefore find the
    // letter already taken (claimed 0). Either way the letter ends acknowledged.
    const res = await call("dlq-worker", {});
    const sum = await res.json();
    assertEquals([res.status, sum.kind], [200, "dlq"]);
    const sql = connect(env.dbUrl, 1);
    try {
      await eventually("the dead letter to be acknowledged by dlq-worker", async () => {
        const [dead] = await sql`select acknowledged_at from public.dead_letter_jobs
                                 where job_id = ${job!.id}`;
        return dead?.acknowledged_at ?? null;
      });
      const [alert] = await sql`select value, message from public.alert_history
                                where rule = 'dead_letter' and subject = 'enrich' and status = 'open'`;
      assert(Number(alert!.value) >= 1);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "GET /<slug>/health answers the DB status and the kind's queue stats",
  ...opts,
  async fn() {
    const res = await fetch(fnUrl("enrich-worker", "/health"), {
      headers: { Authorization: `Bearer ${env.serviceRoleKey}` },
    });
    const body = await res.json();
    assertEquals([res.status, body.status, body.db, body.provider], [200, "ok", "ok", "pgmq"]);
    assertEquals(body.queue.map((q: { tier: string }) => q.tier), ["fast", "normal", "bulk"]);
    const dlq = await (await fetch(fnUrl("dlq-worker", "/health"), {
      headers: { Authorization: `Bearer ${env.serviceRoleKey}` },
    })).json();
    assertEquals(dlq.queue.map((q: { queue: string }) => q.queue), ["q_dlq"]);
  },
});

Deno.test({
  name:
    "a job that becomes due after its queue ran dry is started at its due time, not at the next cron minute",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    try {
      // Cron paused, and a delayed enqueue kicks nobody: only the drain's wake-up can start it.
      await withCronActive(sql, false, async () => {
        const key = `due:${crypto.randomUUID()}`;
        const since = new Date(Date.now() - 1000);
        await enqueue({
          idempotency_key: key,
          kind: "enforce",
          delay_seconds: 2,
          payload: { subject: "due-soon", country: "FR" },
        });
        const res = await call("enforce-worker", {});
        const body = await res.json();
        assertEquals(res.status, 200, JSON.stringify(body));
        await eventually("the delayed job to complete", async () => {
          const j = await jobByKey(key);
          return j?.status === "completed" ? j : undefined;
        }, 20_000);
        // Started by the wake-up's capacity-checked trigger (or, on a slow machine, by the
        // drain itself if the job was already due when it ran).
        // (Its summary is written when it finishes, after it lingered for more work.)
        const by = body.claimed >= 1
          ? { n: 0 }
          : await eventually("the due worker's summary", async () => {
            const [r] = await sql`
            select count(*)::int as n from conveyor.worker_invocations i
            where i.source = 'queue' and i.target = 'enforce' and i.reason = 'due'
              and i.created_at >= ${since} and (i.summary ->> 'claimed')::int >= 1`;
            return r!.n >= 1 ? r : undefined;
          }, 10_000);
        assert(by!.n >= 1 || body.claimed >= 1, JSON.stringify({ by, body }));
      });
    } finally {
      await sql.end();
    }
  },
});
