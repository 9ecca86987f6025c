/**
 * A kick suppressed by the debounce is never lost, however late its transaction commits
 * (push kicks on, the dispatcher's and the dead letters' cron ticks off): job A's kick wins
 * and the dispatcher schedules its recheck; job B is enqueued in another transaction inside
 * A's window (its kick suppressed), and that transaction stays open past the recheck's time.
 * The recheck closes the window only once B's kick has committed (`close_kick_window`), so it
 * sees B. Before that handshake B waited for the cron tick: with cron off, for ever. The same
 * for dead letters, whose kicks start dlq-worker: its recheck follows its drain.
 *
 * The stack's real gateway, dispatcher function, pg_net and workers; cron and settings are
 * restored after each test.
 */
import type { Sql } from "postgres";
import { assertEquals } from "../tools/test/assert.ts";
import { eventually, tempKind } from "../tools/test/queue.ts";
import { rest, stackSql, withCronActive, withSetting } from "./content_fixtures.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** A longer window than the default 250 ms, so B's kick falls inside it on a loaded machine. */
const DEBOUNCE_MS = 1000;

/** Kicks of a target so far (each one a dispatcher call). */
async function kicks(sql: Sql, target: string): Promise<number> {
  const [k] = await sql`select kicks from conveyor.dispatch_kicks where target = ${target}`;
  return Number(k?.kicks ?? 0);
}

/**
 * Push kicks on with a `DEBOUNCE_MS` window, the cron ticks of the dispatcher and of the dead
 * letters off; restored after.
 */
function withPushKicksOnly<T>(sql: Sql, fn: () => Promise<T>): Promise<T> {
  return withCronActive(
    sql,
    false,
    () =>
      withCronActive(
        sql,
        false,
        () =>
          withSetting(
            sql,
            "push_kicks",
            true,
            () => withSetting(sql, "kick_debounce_ms", DEBOUNCE_MS, fn),
          ),
        "conveyor-dead-letters",
      ),
  );
}

/** A's worker is done: no worker of `workerTarget` is left that could find B on its own. */
function noWorkerLeft(sql: Sql, workerTarget: string): WorkerDone {
  return {
    what: `A's ${workerTarget} worker to finish`,
    async done() {
      const [r] = await sql`select count(*)::int as n from conveyor.worker_invocations
                            where target = ${workerTarget} and status <> 'finished'`;
      return r!.n === 0;
    },
  };
}

/** When B's transaction may commit, as far as A's worker goes. */
interface WorkerDone {
  what: string;
  done(): Promise<boolean>;
}

/**
 * The race: `enqueueA()` (its kick must win), then, inside A's window, `enqueueB(tx)` in a
 * transaction held open until A's worker is done (`aDone`) and the dispatcher's recheck
 * (`DEBOUNCE_MS` + 50 ms after A's kick) is well past. Returns A's window (its kick's number)
 * when B committed.
 */
async function raceSuppressedKick(
  sql: Sql,
  target: string,
  aDone: WorkerDone,
  enqueueA: () => Promise<void>,
  enqueueB: (tx: Sql) => Promise<void>,
): Promise<number> {
  // Any earlier window of the target closed, so A's kick wins.
  await sql`update conveyor.dispatch_kicks set last_kick_at = '-infinity' where target = ${target}`;
  const before = await kicks(sql, target);
  const aAt = Date.now();
  await enqueueA();
  assertEquals(await kicks(sql, target), before + 1, "A's kick won");
  await sql.begin(async (tx) => {
    await enqueueB(tx as unknown as Sql);
    const [k] = await tx`select kicks from conveyor.dispatch_kicks where target = ${target}`;
    assertEquals(Number(k!.kicks), before + 1, "B's kick was suppressed");
    // Held open: past the recheck, and until no worker of the target is left that could
    // find B on its own.
    await eventually(
      aDone.what,
      async () => await aDone.done() && Date.now() - aAt > DEBOUNCE_MS + 1000,
      30_000,
      100,
    );
  });
  return before + 1;
}

Deno.test({
  name: "kick recheck: a content job whose suppressed kick commits after the recheck is started",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withPushKicksOnly(sql, async () => {
        let a = "";
        const bKey = `kick-race-b:${crypto.randomUUID()}`;
        await raceSuppressedKick(
          sql,
          "content:research",
          noWorkerLeft(sql, "research"),
          async () => {
            const r = await rest("queue_content_job", {
              idempotency_key: `kick-race-a:${crypto.randomUUID()}`,
              brief: { topic: "kick race A" },
            });
            assertEquals(r.status, 200, JSON.stringify(r.body));
            a = r.body as string;
          },
          async (tx) => {
            await tx`select public.queue_content_job(${
              tx.json({ idempotency_key: bKey, brief: { topic: "kick race B" } })
            })`;
          },
        );
        // B's research stage was started by the recheck of A's kick, not by cron.
        const started = await eventually("job B's research stage to start", async () => {
          const [s] = await sql`
                select i.reason from public.content_jobs j
                join public.content_job_stages s on s.job_id = j.id and s.stage = 'research'
                join conveyor.worker_invocations i on i.id = s.invocation_id
                where j.idempotency_key = ${bKey}`;
          return s;
        }, 15_000);
        assertEquals(started.reason, "dispatch:kick-recheck");
        // Both jobs finish (the rest of the pipeline is pushed stage to stage).
        for (const cond of [sql`id = ${a}`, sql`idempotency_key = ${bKey}`]) {
          await eventually("jobs A and B to complete", async () => {
            const [j] = await sql`select status from public.content_jobs where ${cond}`;
            return j?.status === "completed";
          }, 60_000);
        }
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name: "kick recheck: a queue_job whose suppressed kick commits after the recheck is run",
  ...opts,
  async fn() {
    const sql = stackSql();
    try {
      await withPushKicksOnly(sql, async () => {
        const aKey = `kick-race-a:${crypto.randomUUID()}`;
        const bKey = `kick-race-b:${crypto.randomUUID()}`;
        const payload = { email: "ada@example.com", name: "ada lovelace" };
        await raceSuppressedKick(
          sql,
          "queue:enrich",
          noWorkerLeft(sql, "enrich"),
          async () => {
            const r = await rest("queue_job", {
              idempotency_key: aKey,
              kind: "enrich",
              payload,
            });
            assertEquals(r.status, 200, JSON.stringify(r.body));
          },
          async (tx) => {
            await tx`select public.queue_job(${
              tx.json({ idempotency_key: bKey, kind: "enrich", payload })
            })`;
          },
        );
        for (const key of [aKey, bKey]) {
          await eventually(`job ${key} to complete`, async () => {
            const [j] = await sql`select status from public.jobs where idempotency_key = ${key}`;
            return j?.status === "completed";
          }, 15_000);
        }
        // B's worker was started by the recheck of A's kick (no other dispatch ran).
        const [inv] = await sql`
              select count(*)::int as n from conveyor.worker_invocations i, public.jobs j
              where i.target = 'enrich' and i.reason = 'dispatch:kick-recheck'
                and j.idempotency_key = ${bKey} and i.created_at > j.created_at`;
        assertEquals(inv!.n, 1);
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "kick recheck: a dead letter whose suppressed kick commits after dlq-worker drained is handled by that kick's run",
  ...opts,
  async fn() {
    await using k = await tempKind();
    const sql = stackSql();
    try {
      await withPushKicksOnly(sql, async () => {
        // Two claimed jobs of a kind of its own: failed with max_attempts 1, each is
        // dead-lettered, and the dead letter's insert kicks dlq-worker (target dlq).
        const claim = async (n: string) => {
          await sql`select public.queue_job(${
            sql.json({ idempotency_key: `kick-race-${n}:${crypto.randomUUID()}`, kind: k.kind })
          })`;
          const [c] = await sql`select job_id, lease_id
                                from public.claim_jobs(p_kind => ${k.kind}, p_worker => 't')`;
          return c!;
        };
        const a = await claim("a");
        const b = await claim("b");
        const deadLetter = async (s: Sql, c: typeof a) => {
          const [f] = await s`select public.fail_job(${c.job_id}, ${c.lease_id}, 'boom',
                                                     '{"max_attempts": 1}') as o`;
          assertEquals(f!.o, "dead_lettered");
        };
        const acknowledged = async (c: typeof a) => {
          const [d] = await sql`select acknowledged_at from public.dead_letter_jobs
                                where job_id = ${c.job_id}`;
          return d?.acknowledged_at != null;
        };
        const window = await raceSuppressedKick(
          sql,
          "dlq",
          { what: "dlq-worker to acknowledge A's dead letter", done: () => acknowledged(a) },
          () => deadLetter(sql, a),
          (tx) => deadLetter(tx, b),
        );
        await eventually("B's dead letter to be acknowledged", () => acknowledged(b), 15_000);
        // By the run A's kick started: its recheck drain, which process_dead_letters records
        // on the letter's event as `<A's drain>:recheck-<A's window>`.
        const worker = async (c: typeof a) =>
          (await sql`select payload ->> 'worker' as w from public.job_events
                     where job_id = ${c.job_id} and type = 'dead_letter_acknowledged'`)
            .map((r) => r.w as string);
        const [aWorker] = await worker(a);
        assertEquals(await worker(b), [`${aWorker}:recheck-${window}`]);
        // One open dead_letter alert of the kind, raised for A and bumped for B.
        const alerts = await sql`select status, value::int as value from public.alert_history
                                 where rule = 'dead_letter' and subject = ${k.kind}`;
        assertEquals(alerts.map((r) => [r.status, r.value]), [["open", 2]]);
      });
    } finally {
      await sql.end();
    }
  },
});

/**
 * One kick lock per window: a recheck waiting for a kick its window suppressed (a transaction
 * still open) holds up no kick of a later window, and waits at most `kick_close_wait_ms`.
 * Direct SQL on a target of its own; the dispatcher endpoint points nowhere, so no dispatcher
 * call (and no recheck of its own) runs.
 */
Deno.test({
  name:
    "kick windows: a waiting recheck holds up no later kick and waits at most kick_close_wait_ms",
  ...opts,
  async fn() {
    const sql = stackSql(8);
    const target = `test:kick-window-${crypto.randomUUID()}`;
    const kick = async (s: Sql) => (await s`select conveyor.kick(${target}) as won`)[0]!.won;
    const newest = async () =>
      (await sql`select kicks, last_kick_at = '-infinity' as reset from conveyor.dispatch_kicks
                 where target = ${target}`)[0]!;
    // Advisory locks a backend is waiting for (not yet granted).
    const waitingLocks = async (pid: number) =>
      (await sql`select count(*)::int as n from pg_locks
                 where pid = ${pid} and locktype = 'advisory' and not granted`)[0]!.n;
    // Past the window (`kick_debounce_ms`): the next kick wins.
    const windowOver = () => new Promise((r) => setTimeout(r, DEBOUNCE_MS + 100));
    const held = await sql.reserve();
    const waiter = await sql.reserve();
    const later = await sql.reserve();
    try {
      await withPushKicksOnly(
        sql,
        () =>
          withSetting(sql, "dispatcher_endpoint", "/functions/v1/no-such-function", async () => {
            assertEquals(await kick(sql), true, "the first kick wins");
            const n = Number((await newest()).kicks);
            await held`begin`;
            assertEquals(await kick(held), false, "a kick inside its window is suppressed");
            await windowOver();

            // The recheck of window n waits for `held` ...
            const [w] = await waiter`select pg_backend_pid() as pid`;
            const closing = waiter`select public.close_kick_window(${target}, ${n}) as waited`
              .then((r) => r[0]!.waited as boolean);
            await eventually(
              "the recheck to wait for the suppressed kick",
              async () => await waitingLocks(w!.pid) === 1,
            );
            // ... while kicks go on: one wins window n + 1, one is suppressed in it.
            assertEquals(await kick(sql), true, "a kick after window n wins");
            await later`begin`;
            const suppressed = await Promise.race([
              kick(later),
              new Promise((r) => setTimeout(() => r("blocked"), 5_000)),
            ]);
            assertEquals(
              suppressed,
              false,
              "a kick suppressed in window n + 1 is not held up",
            );
            await later`rollback`;
            assertEquals(
              await waitingLocks(w!.pid),
              1,
              "the recheck of window n was still waiting",
            );
            await held`commit`;
            assertEquals(
              await closing,
              true,
              "it returns once the suppressed kick committed",
            );
            const after = await newest();
            assertEquals(
              [Number(after.kicks), after.reset],
              [n + 1, false],
              "window n + 1, the newest, is left to its own recheck",
            );

            // The wait is bounded: kick_close_wait_ms 200, a suppressed kick left open.
            await withSetting(sql, "kick_close_wait_ms", 200, async () => {
              await windowOver();
              assertEquals(await kick(sql), true, "window n + 2");
              await held`begin`;
              assertEquals(await kick(held), false, "suppressed in it, and left open");
              const [c] = await waiter`select public.close_kick_window(${target}, ${
                n + 2
              }) as waited`;
              assertEquals(c!.waited, false, "the recheck stops waiting");
              assertEquals(
                (await newest()).reset,
                true,
                "... and closes the window all the same",
              );
              await held`rollback`;
            });
          }),
      );
    } finally {
      for (const c of [held, waiter, later]) {
        await c`rollback`.catch(() => {});
        c.release();
      }
      await sql`delete from conveyor.dispatch_kicks where target = ${target}`;
      await sql.end();
    }
  },
});
