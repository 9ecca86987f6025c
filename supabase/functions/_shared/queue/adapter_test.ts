/**
 * One QueueAdapter suite, run against both providers: pgmq (Conveyor's SQL API through the
 * test stack's gateway, on a job kind of the test's own) and pg-boss (its own schema in a
 * fresh database). Code written against seed 002's interface must behave the same on both.
 */
import { assert, assertEquals } from "../../../../tools/test/assert.ts";
import { freshDb } from "../../../../tools/test/db.ts";
import {
  eventually,
  tempKind,
  testQueueConfig,
  testServiceClient,
} from "../../../../tools/test/queue.ts";
import { JobCancelError, JobSnoozeError } from "../errors.ts";
import type { DeadLetter, Job, Priority, QueueAdapter } from "./adapter.ts";
import { PgBossQueueAdapter } from "./pgboss_adapter.ts";
import { PgmqQueueAdapter } from "./pgmq_adapter.ts";

interface Setup extends AsyncDisposable {
  adapter: QueueAdapter;
  kind: string;
  /**
   * Dead letters of `kind` another consumer already took (pgmq: dead-lettering kicks the
   * dlq-worker function, which may win the race against the test's own consume).
   */
  takenDeadLetters?: (kind: string) => Promise<DeadLetter[]>;
}

const config = testQueueConfig();

const providers: Array<{ name: string; setup: () => Promise<Setup> }> = [
  {
    name: "pgmq",
    async setup() {
      const k = await tempKind();
      const adapter = new PgmqQueueAdapter(testServiceClient(), config);
      return {
        adapter,
        kind: k.kind,
        async takenDeadLetters(kind: string) {
          const { data, error } = await testServiceClient().from("dead_letter_jobs")
            .select("job_id, tenant_id, kind, reason, attempts")
            .eq("kind", kind).not("acknowledged_at", "is", null);
          if (error) throw new Error(error.message);
          const alerts = await testServiceClient().from("alert_history").select("id, value")
            .eq("rule", "dead_letter").eq("subject", kind).eq("status", "open");
          if (alerts.error) throw new Error(alerts.error.message);
          const alert = alerts.data?.[0];
          return (data ?? []).map((d) => ({
            jobId: d.job_id,
            tenantId: d.tenant_id,
            kind: d.kind,
            reason: d.reason,
            attempts: d.attempts,
            alertId: alert?.id ?? null,
            alertCount: alert ? Number(alert.value) : null,
          }));
        },
        async [Symbol.asyncDispose]() {
          await adapter.shutdown();
          await k[Symbol.asyncDispose]();
        },
      };
    },
  },
  {
    name: "pgboss",
    async setup() {
      const db = await freshDb();
      const kind = "enrich";
      const adapter = await PgBossQueueAdapter.start(db.url, config, [kind]);
      return {
        adapter,
        kind,
        async [Symbol.asyncDispose]() {
          await adapter.shutdown();
          await db[Symbol.asyncDispose]();
        },
      };
    },
  },
];

const key = () => `k:${crypto.randomUUID()}`;

/** Drains dead letters until one of `kind` shows up (here, or taken by another consumer). */
async function deadLetterOf(s: Setup): Promise<DeadLetter> {
  const seen: DeadLetter[] = [];
  return await eventually(`a dead letter of ${s.kind}`, async () => {
    await s.adapter.consumeDeadLetters((d) => {
      if (d.kind === s.kind) seen.push(d);
    });
    return seen[0] ?? (await s.takenDeadLetters?.(s.kind))?.[0];
  });
}

for (const p of providers) {
  const opts = { sanitizeOps: false, sanitizeResources: false };

  Deno.test({
    name: `${p.name}: publish() returns the same id for the same key, also for 20 concurrent calls`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      const k = key();
      const first = await s.adapter.publish({ idempotencyKey: k, kind: s.kind, payload: { n: 1 } });
      const again = await s.adapter.publish({ idempotencyKey: k, kind: s.kind, payload: { n: 1 } });
      assertEquals(again, first);
      const k2 = key();
      const ids = await Promise.all(
        Array.from({ length: 20 }, () => s.adapter.publish({ idempotencyKey: k2, kind: s.kind })),
      );
      assertEquals(new Set(ids).size, 1);
      const runs: unknown[] = [];
      const sum = await s.adapter.consume(s.kind, (job) => {
        runs.push(job.payload);
        return Promise.resolve(null);
      });
      assertEquals(sum.completed, 2, "two keys, two jobs");
      assertEquals(runs.length, 2);
    },
  });

  Deno.test({
    name: `${p.name}: consume() runs the handler with the job and completes it`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({
        idempotencyKey: key(),
        kind: s.kind,
        payload: { email: "a@b.co" },
        headers: { trace: "t1" },
      });
      const got: Job[] = [];
      const sum = await s.adapter.consume(s.kind, (job) => {
        got.push(job);
        return Promise.resolve({ ok: true });
      });
      assertEquals([sum.claimed, sum.completed, sum.failed, sum.stoppedBy], [1, 1, 0, "empty"]);
      assertEquals(got[0]!.payload, { email: "a@b.co" });
      assertEquals(got[0]!.attempt, 1);
      assertEquals(got[0]!.maxAttempts, 3);
      assertEquals(got[0]!.priority, "normal");
      assertEquals(got[0]!.tenantId, "00000000-0000-0000-0000-000000000000");
      const again = await s.adapter.consume(s.kind, () => Promise.resolve(null));
      assertEquals(again.claimed, 0, "a completed job is not delivered again");
    },
  });

  Deno.test({
    name: `${p.name}: consume() takes fast before normal before bulk`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      for (const priority of ["bulk", "normal", "fast"] as Priority[]) {
        await s.adapter.publish({
          idempotencyKey: key(),
          kind: s.kind,
          priority,
          payload: { priority },
        });
      }
      const order: string[] = [];
      await s.adapter.consume(s.kind, (job) => {
        order.push(job.priority);
        return Promise.resolve(null);
      }, { batchSize: 1, concurrency: 1 });
      assertEquals(order, ["fast", "normal", "bulk"]);
    },
  });

  Deno.test({
    name: `${p.name}: a delayed job is not consumed before its delay, and is after`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({ idempotencyKey: key(), kind: s.kind, delaySeconds: 2 });
      const early = await s.adapter.consume(s.kind, () => Promise.resolve(null));
      assertEquals(early.claimed, 0);
      await eventually("the delayed job to run", async () => {
        const sum = await s.adapter.consume(s.kind, () => Promise.resolve(null));
        return sum.completed === 1;
      });
    },
  });

  Deno.test({
    name: `${p.name}: a throwing handler is retried, then dead-lettered after 3 attempts`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({ idempotencyKey: key(), kind: s.kind, payload: { x: 1 } });
      const attempts: number[] = [];
      await eventually("three attempts", async () => {
        await s.adapter.consume(s.kind, (job) => {
          attempts.push(job.attempt);
          return Promise.reject(new Error(`boom on attempt ${job.attempt}`));
        });
        return attempts.length >= 3;
      });
      assertEquals(attempts, [1, 2, 3]);
      const dead = await deadLetterOf(s);
      assert(dead.reason?.includes("boom on attempt 3"), `reason: ${dead.reason}`);
      assertEquals(dead.attempts, 3);
      assertEquals(dead.alertCount, 1);
      const after = await s.adapter.consume(s.kind, () => Promise.resolve(null));
      assertEquals(after.claimed, 0, "a dead job is not retried");
    },
  });

  Deno.test({
    name: `${p.name}: JobCancelError dead-letters at once with its reason`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({ idempotencyKey: key(), kind: s.kind });
      const sum = await s.adapter.consume(s.kind, () => {
        throw new JobCancelError("payload.email is required");
      });
      assertEquals([sum.claimed, sum.cancelled], [1, 1]);
      const dead = await deadLetterOf(s);
      assert(
        dead.reason?.includes("cancelled: payload.email is required"),
        `reason: ${dead.reason}`,
      );
      assertEquals(dead.attempts, 1);
    },
  });

  Deno.test({
    name: `${p.name}: shutdown mid-batch finishes the running job and releases the rest unspent`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      for (let i = 0; i < 3; i++) await s.adapter.publish({ idempotencyKey: key(), kind: s.kind });
      const stop = new AbortController();
      const sum = await s.adapter.consume(s.kind, () => {
        stop.abort();
        return Promise.resolve("done");
      }, { batchSize: 3, concurrency: 1, signal: stop.signal });
      assertEquals([sum.claimed, sum.completed, sum.released, sum.stoppedBy], [
        3,
        1,
        2,
        "shutdown",
      ]);
      const left: number[] = [];
      const next = await s.adapter.consume(s.kind, (job) => {
        left.push(job.maxAttempts - job.attempt);
        return Promise.resolve(null);
      });
      assertEquals(next.completed, 2, "the released jobs run again");
      assertEquals(left, [2, 2], "and still have all their retries");
    },
  });

  Deno.test({
    name: `${p.name}: a critical job is allowed 5 attempts`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({ idempotencyKey: key(), kind: s.kind, critical: true });
      const max: number[] = [];
      await s.adapter.consume(s.kind, (job) => {
        max.push(job.maxAttempts);
        return Promise.resolve(null);
      });
      assertEquals(max, [5]);
    },
  });

  Deno.test({
    name: `${p.name}: JobSnoozeError runs the job later without spending an attempt`,
    ...opts,
    async fn() {
      await using s = await p.setup();
      await s.adapter.publish({ idempotencyKey: key(), kind: s.kind });
      const left: number[] = [];
      const first = await s.adapter.consume(s.kind, (job) => {
        left.push(job.maxAttempts - job.attempt);
        throw new JobSnoozeError(1);
      });
      assertEquals([first.claimed, first.snoozed], [1, 1]);
      await eventually("the snoozed job to run again", async () => {
        const sum = await s.adapter.consume(s.kind, (job) => {
          left.push(job.maxAttempts - job.attempt);
          return Promise.resolve("ok");
        });
        return sum.completed === 1;
      });
      assertEquals(left, [2, 2], "the snooze did not use up an attempt");
    },
  });
}
