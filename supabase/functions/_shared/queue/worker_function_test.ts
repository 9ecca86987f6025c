import { assert, assertEquals, assertThrows } from "../../../../tools/test/assert.ts";
import { testEnv } from "../../../../tools/test/env.ts";
import {
  outageClient,
  tempKind,
  testQueueConfig,
  testServiceClient,
} from "../../../../tools/test/queue.ts";
import { loadQueueConfig } from "../config.ts";
import { noCounts } from "../worker_loop.ts";
import type { ConsumeOptions, ConsumeSummary, QueueAdapter } from "./adapter.ts";
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

/**
 * An adapter whose dead-letter drains only report: each drain is logged by its worker name
 * and answers the next of `drains` (claimed, stopped_by).
 */
function deadLetterAdapter(log: string[], drains: Array<[number, ConsumeSummary["stoppedBy"]]>) {
  const adapter = {
    provider: "pgmq",
    consumeDeadLetters(_onDead: unknown, o: ConsumeOptions = {}) {
      log.push(`drain ${o.workerId?.replace(/^dlq-worker:[^:]+/, "W")}`);
      const [claimed, stoppedBy] = drains.shift() ?? [0, "empty"];
      return Promise.resolve({
        kind: "dlq",
        ...noCounts(),
        claimed,
        completed: claimed,
        batches: claimed > 0 ? 1 : 0,
        stoppedBy,
        durationMs: 5,
      });
    },
    shutdown: () => Promise.resolve(),
  } as unknown as QueueAdapter;
  return adapter;
}

Deno.test("dlq-worker with a kick's window drains, closes the window, then drains again as <worker>:recheck-<window>", async () => {
  const log: string[] = [];
  let waited = true;
  const drains: Array<[number, ConsumeSummary["stoppedBy"]]> = [];
  const handler = makeWorkerHandler("dlq", {
    config: testQueueConfig(),
    adapter: deadLetterAdapter(log, drains),
    kickWindows: {
      closeKickWindow: (target, window) => {
        log.push(`close ${target} ${window}`);
        return Promise.resolve(waited);
      },
    },
    signal: new AbortController().signal,
  });
  drains.push([1, "empty"], [2, "empty"]);
  const res = await handler(post({ source: "kick", async: false, window: 7 }));
  const sum = await res.json();
  assertEquals(res.status, 200, JSON.stringify(sum));
  assertEquals(log, ["drain W", "close dlq 7", "drain W:recheck-7"]);
  assertEquals(
    [sum.claimed, sum.completed, sum.batches, sum.stopped_by, sum.duration_ms],
    [3, 3, 2, "empty", 10],
    "the answer counts both drains",
  );

  // A close that stopped waiting (a suppressed kick's transaction still open) is logged, and
  // the drain still runs again: it sees every letter committed by then.
  log.length = 0;
  waited = false;
  await (await handler(post({ window: 8 }))).body?.cancel();
  assertEquals(log, ["drain W", "close dlq 8", "drain W:recheck-8"]);

  // No window (cron's call, a manual one): one drain. A drain that stopped on its budget
  // leaves the rest to the next kick or cron, as without a window.
  log.length = 0;
  await (await handler(post({ source: "cron" }))).body?.cancel();
  drains.push([50, "budget"]);
  await (await handler(post({ window: 9 }))).body?.cancel();
  assertEquals(log, ["drain W", "drain W"]);
});

Deno.test("worker request: window must be a kick number (a whole number, 1 or more), and only dlq-worker takes one", async () => {
  const log: string[] = [];
  const kickWindows = {
    closeKickWindow: () => {
      log.push("close");
      return Promise.resolve(true);
    },
  };
  const dlq = makeWorkerHandler("dlq", {
    config: testQueueConfig(),
    adapter: deadLetterAdapter(log, []),
    kickWindows,
    signal: new AbortController().signal,
  });
  for (
    const [window, message] of [
      [0, "window must be a kick number (1 or more)"],
      [-3, "window must be a kick number (1 or more)"],
      [1.5, "window must be a kick number (1 or more)"],
      ["7", "window must be a number"],
      [null, "window must be a number"],
    ] as const
  ) {
    const res = await dlq(post({ source: "kick", window }));
    const body = await res.json();
    assertEquals(
      [res.status, body.error, body.message],
      [400, "bad_request", message],
      `${window}`,
    );
  }
  const enrich = makeWorkerHandler("enrich", {
    config: testQueueConfig(),
    adapter: deadLetterAdapter(log, []),
    kickWindows,
    signal: new AbortController().signal,
  });
  const res = await enrich(post({ window: 3 }));
  const body = await res.json();
  assertEquals([res.status, body.error, body.message], [
    400,
    "bad_request",
    "window is for dlq-worker only (enrich-worker's kicks go to the dispatcher)",
  ]);
  assertEquals(log, [], "nothing was drained or closed");
});
