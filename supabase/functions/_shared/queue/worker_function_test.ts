import { assert, assertEquals, assertThrows } from "../../../../tools/test/assert.ts";
import { testEnv } from "../../../../tools/test/env.ts";
import {
  outageClient,
  tempKind,
  testQueueConfig,
  testServiceClient,
} from "../../../../tools/test/queue.ts";
import { loadQueueConfig } from "../config.ts";
import type { HandlerRegistry } from "./handlers/mod.ts";
import { PgmqQueueAdapter } from "./pgmq_adapter.ts";
import { makeWorkerHandler } from "./worker_function.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function post(body: unknown): Request {
  return new Request("http://local/fn", {
    method: "POST",
    headers: { authorization: `Bearer ${testEnv().serviceRoleKey}` },
    body: JSON.stringify(body),
  });
}

Deno.test("loadQueueConfig() stops start-up with a message naming the bad variable", () => {
  assertThrows(() => loadQueueConfig({ QUEUE_MAX_ATTEMPTS: "zero" }), "QUEUE_MAX_ATTEMPTS");
  assertThrows(() => loadQueueConfig({ QUEUE_PROVIDER: "kafka" }), "QUEUE_PROVIDER");
});

Deno.test({
  name:
    "makeWorkerHandler() on shutdown finishes the running job, releases the rest and refuses new work",
  ...opts,
  async fn() {
    await using k = await tempKind();
    const client = testServiceClient();
    const config = testQueueConfig();
    const adapter = new PgmqQueueAdapter(client, config);
    for (let i = 0; i < 3; i++) {
      await adapter.publish({ idempotencyKey: `s:${crypto.randomUUID()}`, kind: k.kind });
    }
    const stop = new AbortController();
    const registry: HandlerRegistry = new Map();
    registry.set(k.kind, () => {
      stop.abort(); // beforeunload arrives while the first job runs
      return Promise.resolve({ ran: true });
    });
    const handler = makeWorkerHandler(k.kind, {
      client,
      config: testQueueConfig({ QUEUE_CONCURRENCY: "1" }),
      registry,
      adapter,
      signal: stop.signal,
    });
    const res = await handler(post({}));
    const sum = await res.json();
    assertEquals(res.status, 200, JSON.stringify(sum));
    assertEquals([sum.claimed, sum.completed, sum.released, sum.stopped_by], [3, 1, 2, "shutdown"]);
    const after = await handler(post({}));
    assertEquals(after.status, 503);
    await after.body?.cancel();
    const rows = await k.sql`select status, attempts from public.jobs where kind = ${k.kind}
                             order by status`;
    assertEquals(rows.map((r) => [r.status, r.attempts]), [["completed", 1], ["pending", 0], [
      "pending",
      0,
    ]]);
    const [visible] = await k.sql`
      select count(*)::int as n from pgmq.${k.sql("q_q_" + k.kind)} where vt <= clock_timestamp()`;
    assertEquals(visible!.n, 2, "the released jobs' messages are visible again at once");
  },
});

Deno.test({
  name:
    "makeWorkerHandler(): finish_invocation that meets an API outage is called again: the kind's slot is given back once the API is back",
  ...opts,
  async fn() {
    await using k = await tempKind();
    const id = crypto.randomUUID();
    await k.sql`
      insert into conveyor.worker_invocations (id, source, target, status, reason, created_at,
                                               expires_at)
      values (${id}, 'queue', ${k.kind}, 'triggered', 'test', now(), now() + interval '30 s')`;
    await k.sql`select public.queue_job(${k.sql.json({ idempotency_key: "f-1", kind: k.kind })})`;
    let outageStarted = false;
    const api = outageClient((url) => {
      // The gateway goes away just as the drain reports that it finished.
      if (!outageStarted && url.endsWith("/rpc/finish_invocation")) {
        outageStarted = true;
        api.outage(1_500, "no answer");
      }
    });
    const registry: HandlerRegistry = new Map();
    registry.set(k.kind, () => Promise.resolve({ ran: true }));
    const config = testQueueConfig({ QUEUE_DUE_WAIT_MAX_MS: "0" });
    const handler = makeWorkerHandler(k.kind, {
      client: api.client,
      config,
      registry,
      adapter: new PgmqQueueAdapter(api.client, config),
      signal: new AbortController().signal,
    });
    const res = await handler(post({ invocation_id: id }));
    const sum = await res.json();
    assertEquals(res.status, 200, JSON.stringify(sum));
    assertEquals([sum.completed, sum.stopped_by], [1, "empty"]);
    assert(api.failed() > 0, "finish_invocation met the outage");
    const [inv] = await k.sql`
      select status, summary ->> 'stopped_by' as stopped_by
      from conveyor.worker_invocations where id = ${id}`;
    assertEquals([inv!.status, inv!.stopped_by], ["finished", "empty"]);
  },
});
