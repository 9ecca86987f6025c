/**
 * Faults under load (issue 10; docs/reliability.md): each test runs the ledger-checked load
 * driver (`load/driver.ts`) through the real worker loop and pgmq adapter, injects one
 * fault mid-load, and then requires the same end state: every job where it was designed to
 * end, 0 lost, nothing left `processing` or queued once the visibility timeout (3 s here)
 * has passed, the system drained without manual help, and duplicates (at-least-once) only
 * where the fault could cause them.
 *
 * The faults: worker processes SIGKILLed mid-batch, repeatedly; the gateway (and with it
 * the functions host) SIGKILLed mid-load and restarted by the supervisor; a handler that
 * hangs past its deadline; Postgres restarted with `pg_ctl restart -m immediate` (a crash:
 * pg_net's unlogged queue is emptied) while queue and content jobs run; a content stage's
 * worker endpoint refusing connections, then restored.
 *
 * They share the stack's `postgres` database (the gateway, cron and pg_net serve it) and
 * restore every setting, cron job and stage row they change, in `finally` blocks.
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { stackProcs } from "../tools/test/procs.ts";
import { eventually } from "../tools/test/queue.ts";
import { Cluster } from "../tools/stack/cluster.ts";
import { freePort } from "../tools/stack/proc.ts";
import { readState } from "../tools/stack/state.ts";
import { loadQueueConfig } from "../supabase/functions/_shared/config.ts";
import {
  checkContent,
  checkLedger,
  enqueueContentJobs,
  enqueueJobs,
  type ExecutionEvent,
  formatLedger,
  type LedgerReport,
  loadQueueEnv,
  planJobs,
  spawnWorkerProcess,
  startWorkers,
  waitForContent,
  waitForTerminal,
  type WorkerProcess,
} from "./load/driver.ts";
import {
  loadClient,
  loadKinds,
  resilientSql,
  sleep,
  testApi,
  waitForGateway,
  withDispatch,
} from "./load/fixtures.ts";
import { startStageWorkers } from "./load/stage_workers.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** The end state every fault must leave. */
function assertRecovered(r: LedgerReport): void {
  console.log(`ledger: ${formatLedger(r)}`);
  assertEquals(r.lost, [], "no job lost");
  assertEquals(r.unexpected, [], "every job ended where it was designed to");
  assertEquals(r.processing, 0, "no job left processing after the visibility timeout");
  assertEquals(r.leftoverMessages, 0, "no message left in the queues");
  assertEquals(r.doubleCompleted, [], "no job's completion was accepted twice");
}

/**
 * At-least-once: a job may run to success twice only if its first run's settle was lost,
 * which needs a fault between the two runs (or just before the second, while the first
 * run's batch was still being settled).
 */
function assertDuplicatesExplained(
  executions: ExecutionEvent[],
  duplicates: string[],
  faults: number[],
): void {
  const runs = new Map<string, ExecutionEvent[]>();
  for (const e of executions) {
    if (e.t === "end" && e.outcome === "completed") runs.set(e.key, [...runs.get(e.key) ?? [], e]);
  }
  for (const key of duplicates) {
    const [first, second] = runs.get(key)!.sort((a, b) => a.at - b.at);
    assert(
      faults.some((t) => t >= first!.at - 1_000 && t <= second!.at),
      `${key} ran to success twice with no fault in between`,
    );
  }
}

Deno.test({
  name:
    "fault: worker processes SIGKILLed mid-batch, repeatedly: 0 lost, duplicates only from kills",
  ...opts,
  async fn() {
    await using k = await loadKinds(1);
    const sql = resilientSql();
    const env = loadQueueEnv();
    const jobs = planJobs({
      run: `kill:${crypto.randomUUID().slice(0, 8)}`,
      kinds: k.kinds,
      n: 240,
      maxAttempts: 8,
      mix: { ok: 75, transient: 15, poison: 5, always: 5 },
      // Long enough that a worker is nearly always mid-batch when it is killed.
      sleepMs: [80, 250],
    });
    const executions: ExecutionEvent[] = [];
    const procs = new Map<number, WorkerProcess>();
    const killed = new Set<string>();
    let n = 0;
    const spawn = () => {
      const p = spawnWorkerProcess({
        name: `proc${n++}`,
        kinds: k.kinds,
        api: testApi(),
        env,
        record: (e) => executions.push(e),
      });
      procs.set(p.pid, p);
      void p.exited.then(() => procs.delete(p.pid));
    };
    let killsMidBatch = 0;
    try {
      for (let i = 0; i < 3; i++) spawn();
      const enqueued = enqueueJobs(testApi(), jobs, { ratePerSec: 20 });
      await eventually(
        "the workers to start executing",
        () => Promise.resolve(executions.length > 0),
        60_000,
      );
      // Kill a worker that holds work every 0.7–1.5 s, ten times (while there is work to be
      // held: at most 30 s); replace it at once.
      const killUntil = Date.now() + 30_000;
      while (killsMidBatch < 10 && Date.now() < killUntil) {
        await sleep(700 + Math.random() * 800);
        const busy = [...procs.values()].filter((p) => p.inFlight.size > 0);
        const victim = busy[Math.floor(Math.random() * busy.length)];
        if (!victim) continue;
        killed.add(victim.name);
        killsMidBatch++;
        victim.kill("SIGKILL");
        spawn();
      }
      await enqueued;
      await waitForTerminal(sql, jobs, 90_000);
    } finally {
      // Graceful stop; a worker that has not exited 20 s later is killed.
      for (const p of procs.values()) p.kill("SIGTERM");
      const stragglers = setTimeout(() => {
        for (const p of procs.values()) p.kill("SIGKILL");
      }, 20_000);
      await Promise.all([...procs.values()].map((p) => p.exited));
      clearTimeout(stragglers);
    }
    const r = await checkLedger(sql, jobs, executions);
    await sql.end();
    assertRecovered(r);
    assert(killsMidBatch >= 5, `workers were killed while running jobs (${killsMidBatch} times)`);
    assert(r.redeliveries > 0, "the killed workers' jobs were redelivered after the timeout");
    // At-least-once: a second successful run only of a job a killed worker had run to
    // success before it could settle it.
    const killedSuccess = new Set(
      executions.filter((e) =>
        e.t === "end" && e.outcome === "completed" &&
        killed.has(e.worker.split("-")[0]!)
      ).map((e) => e.key),
    );
    for (const key of r.duplicates) {
      assert(killedSuccess.has(key), `${key} ran twice without a kill to explain it`);
    }
  },
});

Deno.test({
  name:
    "fault: handlers that hang past their deadline are abandoned and retried; the rest of their batch is not redelivered",
  ...opts,
  async fn() {
    await using k = await loadKinds(1);
    const sql = resilientSql();
    // Batches of 8 on 2 lanes, 2 s deadlines, 3 s visibility: a lane that meets two hung jobs
    // takes longer than the visibility timeout, so the worker must keep every job of its
    // batch leased (queued, running, or done and waiting for the batch's settle).
    const env = loadQueueEnv({
      QUEUE_MAX_ATTEMPTS: "3",
      JOB_TIMEOUT_MS: "2000",
      QUEUE_BATCH_SIZE: "8",
      QUEUE_CONCURRENCY: "2",
    });
    const jobs = planJobs({
      run: `hang:${crypto.randomUUID().slice(0, 8)}`,
      kinds: k.kinds,
      n: 60,
      maxAttempts: 3,
      mix: { ok: 65, hang: 35, transient: 0, poison: 0, always: 0 },
      sleepMs: [50, 200],
      delayedShare: 0,
    });
    const executions: ExecutionEvent[] = [];
    const pool = startWorkers({
      client: loadClient(),
      config: loadQueueConfig(env),
      kinds: k.kinds,
      count: 2,
      record: (e) => executions.push(e),
    });
    try {
      await enqueueJobs(testApi(), jobs);
      await waitForTerminal(sql, jobs, 90_000);
    } finally {
      await pool.stop();
    }
    const r = await checkLedger(sql, jobs, executions);
    const hungForGood = jobs.filter((j) => j.payload.mode === "hang" && j.expect === "failed");
    const errors = await sql`select last_error from public.jobs
                             where idempotency_key = any(${hungForGood.map((j) => j.key)})`;
    await sql.end();
    assertRecovered(r);
    assert(
      hungForGood.length > 0 &&
        jobs.some((j) => j.payload.mode === "hang" && j.expect === "completed"),
    );
    for (const e of errors) assert(/deadline/.test(e.last_error), e.last_error);
    assertEquals(r.duplicates, [], "a hang makes no job run twice");
    assertEquals(r.settleRefused, 0, "no settle came after its lease had expired");
    assertEquals(r.redeliveries, 0, "every job took exactly its designed attempts");
  },
});

Deno.test({
  name:
    "fault: the gateway (and its functions host) SIGKILLed twice mid-load: clients recover, 0 lost, one job per key",
  ...opts,
  async fn() {
    await using k = await loadKinds(2);
    const sql = resilientSql();
    const env = loadQueueEnv();
    const jobs = planJobs({
      run: `gw:${crypto.randomUUID().slice(0, 8)}`,
      kinds: k.kinds,
      n: 200,
      maxAttempts: 8,
      sleepMs: [10, 60],
    });
    const executions: ExecutionEvent[] = [];
    const away = { count: 0 };
    const pool = startWorkers({
      client: loadClient(30_000, away),
      config: loadQueueConfig(env),
      kinds: k.kinds,
      count: 3,
      record: (e) => executions.push(e),
    });
    const kills: number[] = [];
    const orphans: number[] = [];
    let lastBack = 0;
    let enqueueStats;
    try {
      const enqueued = enqueueJobs(testApi(), jobs, { ratePerSec: 20 });
      for (let i = 0; i < 2; i++) {
        await sleep(2_500);
        const before = await stackProcs(testEnv().stackDir);
        assert(before.gateway, "the gateway runs");
        // Its function processes (the dispatcher, at least: enqueues kick it) lose their
        // host with it; they must stop by themselves, not linger as orphans.
        orphans.push(...before.functions.map((f) => f.pid));
        Deno.kill(before.gateway.pid, "SIGKILL");
        kills.push(Date.now());
        await eventually("the supervisor to start a new gateway", async () => {
          const now = await stackProcs(testEnv().stackDir);
          return now.gateway && now.gateway.pid !== before.gateway!.pid;
        }, 30_000);
        await waitForGateway();
        lastBack = Date.now();
      }
      enqueueStats = await enqueued;
      await waitForTerminal(sql, jobs, 90_000);
    } finally {
      await pool.stop();
    }
    const r = await checkLedger(sql, jobs, executions);
    const [after] = await sql`
      select count(*)::int as n from public.jobs
      where kind = any(${k.kinds}) and status = 'completed' and finished_at > ${new Date(
      lastBack,
    )}`;
    const [perKey] = await sql`
      select count(*)::int as rows, count(distinct idempotency_key)::int as keys
      from public.jobs where kind = any(${k.kinds})`;
    await sql.end();
    assertRecovered(r);
    assert(enqueueStats.retries > 0, "the enqueuer saw the gateway go away");
    assertEquals(
      enqueueStats.acknowledged,
      jobs.length,
      "every enqueue was acknowledged in the end",
    );
    assertEquals([perKey!.rows, perKey!.keys], [jobs.length, jobs.length], "one job per key");
    // The workers call again through the outage (retryTransient), so their loops need not
    // fail: their requests met it.
    assert(away.count > 0, "the workers' requests met the gateway away");
    assert(after!.n > 0, "workers completed jobs after the last restart");
    assert(orphans.length > 0, "the killed gateways had function processes (the dispatcher)");
    assertDuplicatesExplained(executions, r.duplicates, kills);
    await eventually(
      "the killed gateway's function processes to exit",
      () =>
        Promise.resolve(orphans.every((pid) => {
          try {
            return Deno.readTextFileSync(`/proc/${pid}/stat`).includes(") Z");
          } catch {
            return true;
          }
        })),
      20_000,
    );
  },
});

/** Short content leases and invocation expiry, so lost work comes back in seconds. */
const STAGE_ENV = {
  CONTENT_LEASE_SEC: "4",
  CONTENT_STAGE_TIMEOUT_MS: "2000",
  CONTENT_HEARTBEAT_MS: "1000",
  CONTENT_WORKER_BUDGET_MS: "20000",
};

Deno.test({
  name:
    "fault: pg_ctl restart -m immediate mid-load: every acknowledged job and content job finishes, 0 lost",
  ...opts,
  async fn() {
    await using k = await loadKinds(2);
    const sql = resilientSql(6);
    const state = await readState(testEnv().stackDir);
    const cluster = new Cluster(
      testEnv().pgBin,
      `${testEnv().stackDir}/pg`,
      state!.dbPort,
      `${testEnv().stackDir}/logs/postgres.log`,
    );
    const run = `pg:${crypto.randomUUID().slice(0, 8)}`;
    const jobs = planJobs({ run, kinds: k.kinds, n: 200, maxAttempts: 8, sleepMs: [10, 80] });
    const executions: ExecutionEvent[] = [];
    const client = loadClient();
    await using stages = startStageWorkers({ client, env: STAGE_ENV, slowMs: 150 });
    const pool = startWorkers({
      client,
      config: loadQueueConfig(loadQueueEnv()),
      kinds: k.kinds,
      count: 3,
      record: (e) => executions.push(e),
    });
    let contentIds: string[] = [];
    let restartedAt = 0;
    const startedAt = async () => (await sql`select pg_postmaster_start_time() as t`)[0]!.t as Date;
    const startedBefore = await startedAt();
    try {
      // Cron stays on: with pg_net's queue emptied by the crash, kicks, pushes and cron's
      // dispatcher are what restart the content stages (after their leases and the lost
      // invocations expire: 4 s and 5 s here).
      const settings = {
        cron: true,
        pushKicks: true,
        invocationTtlSec: 5,
        stages: stages.endpoints(),
      };
      await withDispatch(sql, settings, async () => {
        const enqueued = enqueueJobs(testApi(), jobs, { ratePerSec: 25 });
        const content = enqueueContentJobs(testApi(), run, 16, { ratePerSec: 2 });
        await sleep(3_000);
        await cluster.restart("immediate");
        restartedAt = Date.now();
        await waitForGateway();
        await enqueued;
        contentIds = await content;
        await waitForTerminal(sql, jobs, 60_000);
        await waitForContent(sql, contentIds, 120_000);
      });
    } finally {
      await pool.stop();
    }
    const startedAfter = await startedAt();
    const r = await checkLedger(sql, jobs, executions);
    const c = await checkContent(sql, contentIds);
    await sql.end();
    assert(startedAfter > startedBefore, "Postgres was restarted");
    assertRecovered(r);
    assertDuplicatesExplained(executions, r.duplicates, [restartedAt]);
    console.log(`content: ${JSON.stringify(c)}`);
    assertEquals(
      [c.jobs, c.completed, c.notCompleted, c.openStages, c.doubleCompleted, c.exports],
      [16, 16, [], 0, 0, 16],
    );
  },
});

Deno.test({
  name:
    "fault: a stage's worker endpoint refuses connections, then is restored: the jobs wait, then finish by themselves",
  ...opts,
  async fn() {
    const sql = resilientSql();
    const run = `refused:${crypto.randomUUID().slice(0, 8)}`;
    const closed = `http://127.0.0.1:${freePort()}/outline-worker`;
    const [orig] = await sql`select worker_endpoint from public.content_stage_config
                             where stage = 'outline'`;
    const started = new Date();
    let ids: string[] = [];
    // The shipped worker functions serve every stage but outline, whose endpoint is a closed
    // port. pg_net gets "connection refused"; the invocations it could not deliver hold
    // their slots until they expire (3 s here); then the next dispatch (cron's, or one a
    // completing stage or an enqueue causes) starts the workers again.
    const settings = {
      cron: true,
      pushKicks: true,
      invocationTtlSec: 3,
      stages: { outline: { worker_endpoint: closed } },
    };
    await withDispatch(sql, settings, async () => {
      ids = await enqueueContentJobs(testApi(), run, 5);
      await eventually("outline triggers to be refused", async () => {
        const [r] = await sql`
          select count(*)::int as n
          from conveyor.worker_invocations i
          join net._http_response r on r.id = i.request_id
          where i.target = 'outline' and i.created_at >= ${started} and r.error_msg is not null`;
        return r!.n > 0;
      }, 60_000);
      const [waiting] = await sql`
        select count(*)::int as n from public.content_job_stages
        where job_id = any(${ids}) and stage = 'outline' and status = 'ready'`;
      assert(waiting!.n > 0, "jobs wait at outline while its endpoint is down");
      // Restore the endpoint; nobody calls anything by hand from here on.
      await sql`update public.content_stage_config set worker_endpoint = ${orig!.worker_endpoint}
                where stage = 'outline'`;
      await waitForContent(sql, ids, 150_000);
    });
    const c = await checkContent(sql, ids);
    await sql.end();
    console.log(`content: ${JSON.stringify(c)}`);
    assertEquals(
      [c.jobs, c.completed, c.notCompleted, c.openStages, c.doubleCompleted, c.exports],
      [5, 5, [], 0, 0, 5],
    );
  },
});
