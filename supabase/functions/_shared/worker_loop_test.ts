import { assertEquals } from "../../../tools/test/assert.ts";
import { JobCancelError, JobSnoozeError } from "./errors.ts";
import { type LoopSource, type Outcome, runLoop } from "./worker_loop.ts";

/** An in-memory source: items are numbers; `behaviour` decides what the handler does. */
function memorySource(
  items: number[],
  behaviour: (n: number, signal: AbortSignal) => Promise<string>,
) {
  const pending = [...items];
  const settled: Array<{ item: number; outcome: Outcome<string> }> = [];
  const released: number[] = [];
  let active = 0;
  let maxActive = 0;
  const source: LoopSource<number, string> = {
    claim: (max) => Promise.resolve(pending.splice(0, max)),
    async run(n, signal) {
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        return await behaviour(n, signal);
      } finally {
        active--;
      }
    },
    settle: (results) => {
      settled.push(...results);
      return Promise.resolve();
    },
    release: (xs) => {
      released.push(...xs);
      return Promise.resolve();
    },
  };
  return { source, settled, released, maxActive: () => maxActive };
}

const opts = { batchSize: 4, concurrency: 2, budgetMs: 60_000, jobTimeoutMs: 1_000 };

Deno.test("runLoop() drains the source in batches and stops when it is empty", async () => {
  const m = memorySource([1, 2, 3, 4, 5, 6, 7, 8, 9], (n) => Promise.resolve(`done ${n}`));
  const s = await runLoop(m.source, opts);
  assertEquals([s.claimed, s.completed, s.batches, s.stoppedBy], [9, 9, 3, "empty"]);
  assertEquals(m.settled.map((r) => r.item).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertEquals(m.maxActive(), 2);
});

Deno.test("runLoop() maps thrown errors to failed, cancelled and snoozed outcomes", async () => {
  const m = memorySource([1, 2, 3], (n) => {
    if (n === 1) throw new Error("boom");
    if (n === 2) throw new JobCancelError("bad input");
    throw new JobSnoozeError(30);
  });
  const s = await runLoop(m.source, opts);
  const byItem = Object.fromEntries(m.settled.map((r) => [r.item, r.outcome.status]));
  assertEquals(byItem, { 1: "failed", 2: "cancelled", 3: "snoozed" });
  assertEquals([s.failed, s.cancelled, s.snoozed], [1, 1, 1]);
});

Deno.test("runLoop() fails a handler that outlives its deadline and aborts its signal", async () => {
  let aborted = false;
  const m = memorySource([1], (_n, signal) =>
    new Promise((resolve) => {
      signal.addEventListener("abort", () => {
        aborted = true;
        resolve("late");
      });
    }));
  await runLoop(m.source, { ...opts, jobTimeoutMs: 50 });
  const outcome = m.settled[0]!.outcome;
  assertEquals(outcome.status, "failed");
  assertEquals(outcome.status === "failed" && outcome.error.name, "DeadlineError");
  assertEquals(aborted, true);
});

Deno.test("runLoop() heartbeats keep every held item leased: queued, running and finished-unsettled", async () => {
  const m = memorySource([1, 2, 3], async (n) => {
    if (n === 2) await new Promise((r) => setTimeout(r, 120));
    return `done ${n}`;
  });
  const extended: number[][] = [];
  const source: LoopSource<number, string> = {
    ...m.source,
    extend: (xs) => {
      extended.push([...xs].sort());
      return Promise.resolve();
    },
  };
  await runLoop(source, { ...opts, batchSize: 3, concurrency: 1, heartbeatMs: 20 });
  // While 2 ran, 1 (done, waiting for the batch's settle) and 3 (waiting for a lane) were
  // held too: their leases must not lapse, or their settles are refused and they run twice.
  assertEquals(extended.length > 0, true);
  for (const xs of extended) assertEquals(xs, [1, 2, 3]);
});

Deno.test("runLoop() on shutdown releases unstarted items and settles running ones", async () => {
  const ctl = new AbortController();
  const m = memorySource([1, 2, 3, 4], async (n) => {
    if (n === 1) ctl.abort();
    await new Promise((r) => setTimeout(r, 10));
    return `done ${n}`;
  });
  const s = await runLoop(m.source, { ...opts, concurrency: 1, signal: ctl.signal });
  assertEquals(s.stoppedBy, "shutdown");
  assertEquals(m.settled.map((r) => r.item), [1]);
  assertEquals(m.released, [2, 3, 4]);
});

Deno.test("runLoop() does not start a batch once the budget is spent", async () => {
  let t = 0;
  const m = memorySource([1, 2, 3, 4, 5, 6], (n) => {
    t += 40_000;
    return Promise.resolve(`done ${n}`);
  });
  const s = await runLoop(m.source, { ...opts, batchSize: 2, concurrency: 1, now: () => t });
  assertEquals(s.stoppedBy, "budget");
  assertEquals(s.claimed, 2);
});

Deno.test("runLoop() with settleAndClaim settles each batch and claims the next in one call", async () => {
  const m = memorySource([1, 2, 3, 4, 5, 6, 7, 8, 9], (n) => Promise.resolve(`done ${n}`));
  const calls: string[] = [];
  const source: LoopSource<number, string> = {
    ...m.source,
    claim: (max) => {
      calls.push("claim");
      return m.source.claim(max);
    },
    settle: (results) => {
      calls.push("settle");
      return m.source.settle(results);
    },
    settleAndClaim: async (results, max) => {
      calls.push("settleAndClaim");
      await m.source.settle(results);
      return await m.source.claim(max);
    },
  };
  const s = await runLoop(source, opts);
  assertEquals([s.claimed, s.completed, s.batches, s.stoppedBy], [9, 9, 3, "empty"]);
  assertEquals(calls, ["claim", "settleAndClaim", "settleAndClaim", "settleAndClaim"]);
  assertEquals(m.settled.map((r) => r.item).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("runLoop() releases a batch claimed by settleAndClaim when shutdown comes first", async () => {
  const ctl = new AbortController();
  const m = memorySource([1, 2, 3, 4, 5, 6], (n) => Promise.resolve(`done ${n}`));
  const source: LoopSource<number, string> = {
    ...m.source,
    settleAndClaim: async (results, max) => {
      await m.source.settle(results);
      const got = await m.source.claim(max);
      ctl.abort(); // shutdown arrives while the next batch is in hand
      return got;
    },
  };
  const s = await runLoop(source, { ...opts, signal: ctl.signal });
  assertEquals(s.stoppedBy, "shutdown");
  assertEquals(m.settled.map((r) => r.item), [1, 2, 3, 4]);
  assertEquals(m.released, [5, 6]);
  assertEquals([s.claimed, s.completed, s.released], [6, 4, 2]);
});
