/**
 * PgmqQueueAdapter behaviour that only the pgmq provider has (issues 16 and 17): a drain
 * lingers for work that arrives just after its queue ran dry, a rate-limited kind drains
 * continuously while its bucket refills, a drain whose dispatch slot lapsed stops, and a
 * drain rides out an API outage of a few seconds. Against the test stack's gateway, on kinds
 * of the tests' own.
 */
import { assert, assertEquals } from "../../../../tools/test/assert.ts";
import {
  type Outage,
  outageClient,
  tempKind,
  testQueueConfig,
  testServiceClient,
} from "../../../../tools/test/queue.ts";
import { PgmqQueueAdapter } from "./pgmq_adapter.ts";

Deno.test("consume(): a drain that ran dry picks up a job enqueued while it lingers (QUEUE_IDLE_LINGER_MS)", async () => {
  await using k = await tempKind();
  const adapter = new PgmqQueueAdapter(
    testServiceClient(),
    testQueueConfig({ QUEUE_IDLE_LINGER_MS: "5000" }),
  );
  try {
    await k.sql`select public.queue_job(${k.sql.json({ idempotency_key: "l-1", kind: k.kind })})`;
    const seen: number[] = [];
    const run = adapter.consume(k.kind, (job) => {
      seen.push(Number(job.payload.n ?? 0));
      if (seen.length === 1) {
        // The queue is empty now; the next job arrives while the drain lingers.
        setTimeout(() => {
          k.sql`select public.queue_job(${
            k.sql.json({ idempotency_key: "l-2", kind: k.kind, payload: { n: 2 } })
          })`.catch(() => {});
        }, 300);
      }
      return Promise.resolve({ ok: true });
    });
    const summary = await run;
    assertEquals(summary.completed, 2, "one drain ran both jobs");
    assertEquals(seen, [0, 2]);
    assertEquals(summary.stoppedBy, "empty");
  } finally {
    await adapter.shutdown();
  }
});

Deno.test("consume(): a rate-limited kind drains continuously while its bucket refills, in one drain", async () => {
  await using k = await tempKind();
  const service = `svc_${k.kind}`;
  await k.sql`update conveyor.job_kinds set service_name = ${service} where kind = ${k.kind}`;
  // 3 tokens, refilling 10/s, at most 3 at once: 24 jobs cannot be claimed in one go.
  await k.sql`insert into public.rate_limiters (tenant_id, service_name, tokens_available,
                                                max_concurrent, capacity, refill_per_sec)
              values (conveyor.default_tenant_id(), ${service}, 3, 3, 3, 10)`;
  try {
    await k.sql`select public.queue_jobs(${
      k.sql.json(
        Array.from({ length: 24 }, (_, i) => ({ idempotency_key: `rl-${i}`, kind: k.kind })),
      )
    })`;
    const adapter = new PgmqQueueAdapter(testServiceClient(), testQueueConfig());
    try {
      const summary = await adapter.consume(k.kind, () => Promise.resolve(null));
      assertEquals(summary.completed, 24, "every job ran in one drain, as tokens came back");
      assertEquals(summary.stoppedBy, "empty");
    } finally {
      await adapter.shutdown();
    }
    const [busy] = await k.sql`select count(*)::int as n from conveyor.service_leases
                               where service_name = ${service}`;
    assertEquals(busy!.n, 0, "every service slot was given back");
  } finally {
    await k.sql`delete from public.rate_limiters where service_name = ${service}`;
  }
});

Deno.test("consume(): a drain whose invocation lost its dispatch slot claims no more and says so", async () => {
  await using k = await tempKind();
  const id = crypto.randomUUID();
  await k
    .sql`insert into conveyor.worker_invocations (id, source, target, status, reason, created_at,
                                                       started_at, expires_at, worker)
              values (${id}, 'queue', ${k.kind}, 'running', 'test', now(), now(),
                      now() - interval '1 second', 'w')`;
  await k.sql`select public.queue_job(${k.sql.json({ idempotency_key: "lost-1", kind: k.kind })})`;
  const adapter = new PgmqQueueAdapter(testServiceClient(), testQueueConfig());
  try {
    const summary = await adapter.consume(k.kind, () => Promise.resolve(null), {
      invocationId: id,
    });
    assertEquals(summary.stoppedBy, "lost");
    assertEquals(summary.claimed, 0);
    const [j] = await k.sql`select status from public.jobs where kind = ${k.kind}`;
    assertEquals(j!.status, "pending", "the job waits for a worker with a live slot");
  } finally {
    await adapter.shutdown();
  }
});

for (const how of ["503", "no answer"] as Outage[]) {
  Deno.test(`consume(): a drain rides out an API outage (${how}): its settle and claims are called again until the API is back`, async () => {
    await using k = await tempKind();
    await k.sql`select public.queue_jobs(${
      k.sql.json(
        Array.from({ length: 6 }, (_, i) => ({ idempotency_key: `o-${i}`, kind: k.kind })),
      )
    })`;
    const api = outageClient();
    const adapter = new PgmqQueueAdapter(
      api.client,
      testQueueConfig({ QUEUE_BATCH_SIZE: "2", QUEUE_CONCURRENCY: "1" }),
    );
    try {
      let ran = 0;
      const summary = await adapter.consume(k.kind, () => {
        // The API goes away while the first batch runs, for longer than a retry's backoff:
        // that batch's settle (with the next claim) meets it.
        if (++ran === 1) api.outage(1_500, how);
        return Promise.resolve(null);
      });
      assert(api.failed() > 1, `the outage answered ${api.failed()} request(s)`);
      assertEquals(
        [summary.claimed, summary.completed, summary.stoppedBy],
        [6, 6, "empty"],
        "one drain ran every job, through the outage",
      );
    } finally {
      await adapter.shutdown();
    }
    const rows = await k.sql`select status, attempts from public.jobs where kind = ${k.kind}`;
    assertEquals(
      rows.map((r) => `${r.status}/${r.attempts}`),
      Array(6).fill("completed/1"),
      "every job settled once, none claimed again",
    );
  });
}

Deno.test("publish(): the same idempotency key with another payload is refused (409), naming the job", async () => {
  await using k = await tempKind();
  const adapter = new PgmqQueueAdapter(testServiceClient(), testQueueConfig());
  try {
    const id = await adapter.publish({ idempotencyKey: "same", kind: k.kind, payload: { n: 1 } });
    const err = await adapter.publish({ idempotencyKey: "same", kind: k.kind, payload: { n: 2 } })
      .then(() => null, (e: Error) => e);
    assertEquals(
      err?.message,
      `queue_job: queue_job: idempotency_key same is already used by job ${id} with another request`,
    );
    assertEquals((err?.cause as { code?: string } | undefined)?.code, "23505");
  } finally {
    await adapter.shutdown();
  }
});
