/**
 * The ledger-checked load driver without faults (issue 10): mixed kinds, priorities,
 * delays and planned failures through the real pgmq adapter and worker loop over the
 * gateway, four workers at once. Every job must end exactly where it was designed to
 * (completed, or in the dead-letter queue), nothing lost, nothing left processing or
 * queued, and, with no fault injected, no job executed to success twice.
 *
 * The faults (killed workers, gateway, Postgres, hangs, refused endpoints) are in
 * `reliability_faults_test.ts`; racing dispatchers and rate limits under concurrent
 * claimers are already measured by `content_pipeline_test.ts` ("4 racing dispatchers") and
 * `rate_limiters_test.ts` ("8 concurrent claimers").
 */
import { assertEquals } from "../tools/test/assert.ts";
import { loadQueueConfig } from "../supabase/functions/_shared/config.ts";
import {
  checkLedger,
  enqueueJobs,
  type ExecutionEvent,
  formatLedger,
  loadQueueEnv,
  planJobs,
  startWorkers,
  waitForTerminal,
} from "./load/driver.ts";
import { loadClient, loadKinds, resilientSql, testApi } from "./load/fixtures.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "load: 300 mixed jobs on 4 workers end exactly where designed, 0 lost, 0 duplicates (ledger-checked)",
  ...opts,
  async fn() {
    await using k = await loadKinds(2);
    const sql = resilientSql();
    const env = loadQueueEnv({ QUEUE_MAX_ATTEMPTS: "3" });
    const jobs = planJobs({
      run: `load:${crypto.randomUUID().slice(0, 8)}`,
      kinds: k.kinds,
      n: 300,
      maxAttempts: 3,
      mix: { ok: 70, transient: 20, poison: 5, always: 5 },
      delayedShare: 0.1,
    });
    const executions: ExecutionEvent[] = [];
    const pool = startWorkers({
      client: loadClient(),
      config: loadQueueConfig(env),
      kinds: k.kinds,
      count: 4,
      record: (e) => executions.push(e),
    });
    try {
      const stats = await enqueueJobs(testApi(), jobs);
      assertEquals(stats.acknowledged, jobs.length);
      await waitForTerminal(sql, jobs, 60_000);
    } finally {
      await pool.stop();
    }
    const r = await checkLedger(sql, jobs, executions);
    await sql.end();
    console.log(`ledger: ${formatLedger(r)}`);
    assertEquals(r.lost, [], "no job lost");
    assertEquals(r.unexpected, [], "every job ended where it was designed to");
    assertEquals([r.processing, r.leftoverMessages], [0, 0], "nothing processing or queued");
    assertEquals(r.doubleCompleted, [], "no job completed twice");
    assertEquals(r.duplicates, [], "no fault injected: no job ran to success twice");
    assertEquals(r.redeliveries, 0, "no fault injected: every job took its designed attempts");
    assertEquals(pool.errors, [], "no worker loop failed");
    // Not vacuous: the mix really reached both terminal states.
    assertEquals(r.completed + r.deadLettered, jobs.length);
  },
});
