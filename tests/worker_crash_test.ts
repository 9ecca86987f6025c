/**
 * Issue 17, finding 1 (the local half): a worker function's process killed with `kill -9`
 * mid-drain. The functions host saw which invocations it had delivered to that process and
 * not seen finish, and finishes them for it (`finish_invocation`, summary
 * `{"stopped_by":"crashed","exit_code":137,"signal":"SIGKILL"}`), so the kind's dispatcher
 * slots are free at once, not after `invocation_run_sec` (300 s); a dispatch right after
 * starts a new worker and the kind drains (the dead worker's claimed jobs come back after
 * their visibility timeout).
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { type FunctionProc, stackProcs } from "../tools/test/procs.ts";
import { eventually } from "../tools/test/queue.ts";

const env = testEnv();

Deno.test({
  name:
    "a worker process killed with -9 mid-drain frees its dispatcher slots at once; the kind drains",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const sql = connect(env.dbUrl, 2);
    const run = `crash:${crypto.randomUUID().slice(0, 8)}`;
    const n = 600;
    try {
      const items = Array.from({ length: n }, (_, i) => ({
        idempotency_key: `${run}:${i}`,
        kind: "enrich",
        payload: { email: `crash${i}@example.com`, name: `Crash Test ${i}` },
      }));
      // One call, one kick: the dispatcher starts enrich-worker invocations over pg_net.
      await sql`select count(*) from public.queue_jobs(${sql.json(items)})`;

      // Catch the worker process mid-drain: freeze it, and keep it frozen only if one of
      // its invocations is running (so it cannot finish them before the kill).
      let victim: FunctionProc | undefined;
      let running: string[] = [];
      await eventually(
        "an enrich-worker invocation running in its process",
        async () => {
          const p = (await stackProcs(env.stackDir)).functions.find((f) =>
            f.slug === "enrich-worker"
          );
          if (!p) return false;
          Deno.kill(p.pid, "SIGSTOP");
          const rows = await sql<{ id: string }[]>`
          select id from conveyor.worker_invocations
          where source = 'queue' and target = 'enrich' and status = 'running'`;
          if (rows.length === 0) {
            Deno.kill(p.pid, "SIGCONT");
            return false;
          }
          victim = p;
          running = rows.map((r) => r.id);
          return true;
        },
        60_000,
        20,
      );
      Deno.kill(victim!.pid, "SIGKILL");

      const finished = await eventually(
        "the dead process's invocations to be finished",
        async () => {
          const rows = await sql<{ status: string; summary: unknown }[]>`
          select status, summary from conveyor.worker_invocations where id = any(${running})`;
          return rows.every((r) => r.status === "finished") && rows;
        },
        15_000,
      );
      for (const r of finished) {
        assertEquals(r.summary, { stopped_by: "crashed", exit_code: 137, signal: "SIGKILL" });
      }

      // The slots are free: a dispatch now starts an enrich worker again.
      const res = await fetch(`${env.apiUrl}/functions/v1/content-queue-dispatcher`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${env.serviceRoleKey}`,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({ source: "manual" }),
      });
      const cycle = await res.json();
      assertEquals(res.status, 200, JSON.stringify(cycle));
      // The dispatcher's answer (what it started) goes into the failure message.
      await eventually(
        `a new enrich-worker process (dispatch: ${JSON.stringify(cycle)})`,
        async () => {
          const p = (await stackProcs(env.stackDir)).functions.find((f) =>
            f.slug === "enrich-worker"
          );
          return p && p.pid !== victim!.pid;
        },
        30_000,
      );

      // Drained: what the dead worker held comes back after its visibility timeout (90 s),
      // then cron's dispatcher (every minute) starts a worker for it.
      await eventually(
        "every job of the run to finish",
        async () => {
          const [r] = await sql<{ done: number }[]>`
          select count(*)::int as done from public.jobs
          where idempotency_key like ${run + ":%"} and status = 'completed'`;
          return r!.done === n;
        },
        240_000,
        1_000,
      );
      const [left] = await sql<{ n: number }[]>`
        select count(*)::int as n from conveyor.worker_invocations
        where source = 'queue' and target = 'enrich' and status = 'running'
          and id = any(${running})`;
      assert(left!.n === 0, "none of the dead process's invocations runs again");
    } finally {
      await sql.end();
    }
  },
});
