import { assertEquals, assertRejects } from "../../../tools/test/assert.ts";
import { testEnv } from "../../../tools/test/env.ts";
import { tempKind, testQueueConfig, testServiceClient } from "../../../tools/test/queue.ts";
import { QueueError } from "./errors.ts";
import { defineHandler, enqueue, JobCancelError, jobKind, runHandler, serveKind } from "./jobs.ts";

interface Invoice {
  invoice_id: string;
  amount_cents: number;
}

const invoice = jobKind<Invoice>("invoice_test");

Deno.test("defineHandler() gives a typed payload, and a handler that throws at once still rejects", async () => {
  const handler = defineHandler(invoice, (job, { log }) => {
    if (job.payload.amount_cents < 0) throw new JobCancelError("negative amount");
    log("sending", { id: job.payload.invoice_id });
    return { sent: job.payload.invoice_id, cents: job.payload.amount_cents };
  });
  const { output, logs } = await runHandler(handler, { invoice_id: "inv-1", amount_cents: 1200 });
  assertEquals(output, { sent: "inv-1", cents: 1200 });
  assertEquals(logs, [{ message: "sending", extra: { id: "inv-1" } }]);
  const err = await assertRejects(
    () => runHandler(handler, { invoice_id: "inv-2", amount_cents: -1 }),
    "negative amount",
  );
  assertEquals(err instanceof JobCancelError, true);
});

Deno.test("the payload type is checked where jobs are enqueued and where they are handled", () => {
  // Compile-time checks: `deno test` type-checks this file, so each line below must be an
  // error (a stray one makes @ts-expect-error itself fail). Never run.
  const never = false as boolean;
  if (never) {
    const client = testServiceClient();
    // @ts-expect-error: amount_cents must be a number
    void enqueue(client, invoice, { invoice_id: "x", amount_cents: "12" }, { idempotencyKey: "k" });
    // @ts-expect-error: invoice_id is missing
    void enqueue(client, invoice, { amount_cents: 12 }, { idempotencyKey: "k" });
    // @ts-expect-error: an idempotency key is required
    void enqueue(client, invoice, { invoice_id: "x", amount_cents: 12 }, {});
    defineHandler(invoice, (job) => {
      // @ts-expect-error: the payload has no field "amount"
      return job.payload.amount;
    });
  }
});

Deno.test({
  name: "enqueue() returns the job's number; serveKind() runs the kind's jobs with the handler",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using k = await tempKind();
    const kind = jobKind<Invoice>(k.kind);
    const client = testServiceClient();
    const n = await enqueue(client, kind, { invoice_id: "inv-7", amount_cents: 700 }, {
      idempotencyKey: `inv:${k.kind}`,
      priority: "fast",
    });
    assertEquals(typeof n, "number");
    const again = await enqueue(client, kind, { invoice_id: "inv-7", amount_cents: 700 }, {
      idempotencyKey: `inv:${k.kind}`,
      priority: "fast",
    });
    assertEquals(again, n, "the same key and request give the same job");
    const seen: string[] = [];
    const handler = defineHandler(kind, (job) => {
      seen.push(`${job.payload.invoice_id}:${job.payload.amount_cents}:${job.priority}`);
      return { ok: true };
    });
    const serve = serveKind(handler, { client, config: testQueueConfig() });
    const res = await serve(
      new Request("http://local/fn", {
        method: "POST",
        headers: { authorization: `Bearer ${testEnv().serviceRoleKey}` },
        body: "{}",
      }),
    );
    const sum = await res.json();
    assertEquals([res.status, sum.kind, sum.claimed, sum.completed], [200, k.kind, 1, 1]);
    assertEquals(seen, ["inv-7:700:fast"]);
    const [row] = await k
      .sql`select status, output, msg_id from public.jobs where kind = ${k.kind}`;
    assertEquals([row!.status, row!.output, Number(row!.msg_id)], ["completed", { ok: true }, n]);
  },
});

Deno.test("enqueue() throws queue_job's own refusals as QueueError", async () => {
  await using k = await tempKind();
  const client = testServiceClient();
  const unknown = await assertRejects(
    () =>
      enqueue(client, jobKind<Invoice>("no_such_kind"), { invoice_id: "x", amount_cents: 1 }, {
        idempotencyKey: "x",
      }),
    "queue_job: unsupported kind no_such_kind",
  );
  assertEquals([unknown instanceof QueueError, (unknown as QueueError).code], [
    true,
    "bad_request",
  ]);
  const kind = jobKind<Invoice>(k.kind);
  await enqueue(client, kind, { invoice_id: "a", amount_cents: 1 }, { idempotencyKey: "dup" });
  const reused = await assertRejects(
    () => enqueue(client, kind, { invoice_id: "b", amount_cents: 2 }, { idempotencyKey: "dup" }),
    "is already used by job",
  );
  assertEquals([reused instanceof QueueError, (reused as QueueError).code], [true, "conflict"]);
});
