/**
 * The tour's retry (docs/tour.md §3): an `enrich` job whose payload asks its first two
 * attempts to fail (`fail_attempts: 2`) goes through the real path — queue_job over the
 * gateway, the dispatcher's kick, enrich-worker over pg_net — is retried with exponential
 * backoff by the SQL settle, and is completed by its third attempt with the enriched record.
 */
import { assertEquals } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";

const env = testEnv();

Deno.test({
  name: "enrich with fail_attempts 2: two retry_scheduled events with backoff, then completed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const key = `tour:retry:${crypto.randomUUID()}`;
    const res = await fetch(`${env.apiUrl}/rest/v1/rpc/queue_job`, {
      method: "POST",
      headers: {
        apikey: env.serviceRoleKey,
        Authorization: `Bearer ${env.serviceRoleKey}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({
        idempotency_key: key,
        kind: "enrich",
        payload: { email: "Ada@Example.com", name: "ada lovelace", fail_attempts: 2 },
      }),
    });
    assertEquals(res.status, 200, await res.clone().text());
    await res.body?.cancel();
    const sql = connect(env.dbUrl, 1);
    try {
      // Backoff 1 s + 2 s; a worker whose queue ran dry wakes for the due retry itself.
      const job = await eventually("the enrich job to complete on its third attempt", async () => {
        const [j] = await sql`select id, status, attempts, output, errors, last_error
                              from public.jobs where idempotency_key = ${key}`;
        return j?.status === "completed" ? j : undefined;
      }, 60_000);
      assertEquals(job.attempts, 3);
      assertEquals(job.output.contact.full_name, "Ada Lovelace");
      assertEquals(
        (job.errors as Array<{ message: string; attempt: number }>).map((e) => [
          e.attempt,
          e.message,
        ]),
        [
          [1, "enrich: transient failure on attempt 1, as payload.fail_attempts = 2 asks"],
          [2, "enrich: transient failure on attempt 2, as payload.fail_attempts = 2 asks"],
        ],
      );
      const events = await sql`select type, payload from public.job_events
                               where job_id = ${job.id} order by id`;
      // Audit 'lean': the retries are events; the claims and the success are the ledger's.
      assertEquals(events.map((e) => e.type), ["retry_scheduled", "retry_scheduled"]);
      assertEquals(job.last_error, null, "the success cleared the last error (errors keep it)");
      const retries = events.filter((e) => e.type === "retry_scheduled").map((e) => e.payload);
      assertEquals(retries.map((p) => [p.attempt, p.max_attempts, p.delay_ms]), [
        [1, 3, 1000],
        [2, 3, 2000],
      ]);
      const [dead] = await sql`select count(*)::int as n from public.dead_letter_jobs
                               where job_id = ${job.id}`;
      assertEquals(dead!.n, 0);
    } finally {
      await sql.end();
    }
  },
});
