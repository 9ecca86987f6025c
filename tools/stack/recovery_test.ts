/**
 * The stack survives its database going away (issue 17): `pg_ctl restart -m immediate`
 * under a stream of `/rest/v1` requests. Every answer is a 2xx, a 4xx or PostgREST's 503 (no
 * 500, no dropped connection, no driver's text); PostgREST, the gateway and the pg_net worker
 * keep running (same pids: nothing crashed and was restarted) and serve again, and the pg_net
 * worker listens again by itself, so a request queued after the restart goes out on its
 * wake, not with the safety-net poll.
 *
 * It restarts the shared test stack's Postgres (as tests/reliability_faults_test.ts does).
 */
import { assert, assertEquals } from "../test/assert.ts";
import { connect } from "../test/db.ts";
import { testEnv } from "../test/env.ts";
import { stackProcs } from "../test/procs.ts";
import { eventually } from "../test/queue.ts";
import { Cluster } from "./cluster.ts";
import { readState } from "./state.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Statuses seen by `workers` loops calling `call` until `stop` is set. */
function load(workers: number, call: (i: number) => Promise<Response>) {
  const statuses = new Map<string, number>();
  let stop = false;
  let n = 0;
  const note = (k: string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
  const loops = Array.from({ length: workers }, async () => {
    while (!stop) {
      try {
        const res = await call(n++);
        const body = await res.text();
        note(String(res.status));
        if (res.status >= 500 && res.status !== 503) note(`${res.status}: ${body.slice(0, 200)}`);
      } catch (e) {
        note(`network error: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  return {
    statuses,
    async stop() {
      stop = true;
      await Promise.all(loops);
      return Object.fromEntries(statuses);
    },
  };
}

Deno.test({
  name:
    "recovery: pg_ctl restart -m immediate under load: only 2xx/4xx/503, no service restarted, pg_net resumes",
  ...opts,
  async fn() {
    const env = testEnv();
    const state = (await readState(env.stackDir))!;
    const cluster = new Cluster(
      env.pgBin,
      `${env.stackDir}/pg`,
      state.dbPort,
      `${env.stackDir}/logs/postgres.log`,
    );
    const before = await stackProcs(env.stackDir);
    const logBefore = await Deno.readTextFile(`${env.stackDir}/logs/stack.log`);
    assert(before.postgrest && before.gateway && before.netWorker, "all three services run");
    const key = `recovery:${crypto.randomUUID().slice(0, 8)}`;
    const headers = {
      apikey: env.serviceRoleKey,
      Authorization: `Bearer ${env.serviceRoleKey}`,
      "Content-Type": "application/json",
    };
    // Reads and writes: an RPC that fails with the seed's 400, and a table read.
    const traffic = load(8, (i) =>
      i % 2
        ? fetch(`${env.apiUrl}/rest/v1/rpc/queue_job`, {
          method: "POST",
          headers,
          body: JSON.stringify({ idempotency_key: `${key}:${i}`, kind: "no-such-kind" }),
        })
        : fetch(`${env.apiUrl}/rest/v1/jobs?select=id&limit=1`, { headers }));
    await new Promise((r) => setTimeout(r, 1_000));
    await cluster.restart("immediate");
    // Serving again: PostgREST reconnected (its /ready, through the gateway's /health).
    await eventually("the API to serve again", async () => {
      const h = await fetch(`${env.apiUrl}/health`).then((r) => r.json(), () => null);
      return h?.db === true;
    }, 60_000);
    await new Promise((r) => setTimeout(r, 1_000));
    const seen = await traffic.stop();
    console.log(`statuses during the restart: ${JSON.stringify(seen)}`);
    for (const s of Object.keys(seen)) {
      assert(/^(2|4)\d\d$|^503$/.test(s), `only 2xx, 4xx and 503: saw ${s}`);
    }
    assert(Object.keys(seen).some((s) => s.startsWith("2")), "requests succeeded");

    const after = await stackProcs(env.stackDir);
    assertEquals(
      [after.postgrest?.pid, after.gateway?.pid, after.netWorker?.pid],
      [before.postgrest!.pid, before.gateway!.pid, before.netWorker!.pid],
      "no service crashed (the supervisor restarted none)",
    );

    // pg_net: the worker LISTENs again on its own (a new "listening" line, same process), so
    // a request queued now is sent on its NOTIFY, not found later by the safety-net poll.
    const log = `${env.stackDir}/logs/stack.log`;
    const listening = (text: string) =>
      text.split("\n").filter((l) => l.includes("[pg_net worker] listening on")).length;
    const listensBefore = listening(logBefore);
    await eventually(
      "the pg_net worker to listen again",
      async () => listening(await Deno.readTextFile(log)) > listensBefore,
      30_000,
    );
    const sql = connect(env.dbUrl, 1);
    try {
      const [q] = await sql`select net.http_get(${`${env.apiUrl}/health`}) as id`;
      const res = await eventually(
        "the pg_net worker to send the request",
        async () => {
          const [r] = await sql`
          select status_code, error_msg from net._http_response where id = ${q!.id}`;
          return r;
        },
        30_000,
        100,
      );
      assertEquals([res.status_code, res.error_msg], [200, null]);
      const since = (await Deno.readTextFile(log)).slice(logBefore.length);
      assert(!since.includes("safety-net poll found"), `sent on its wake:\n${since}`);
    } finally {
      await sql.end();
    }
  },
});
