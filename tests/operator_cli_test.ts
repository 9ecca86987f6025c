/**
 * The ops CLI (`deno task conveyor`) against the test stack: in-process through `main()`
 * for most commands (fast, output captured), and as a real `deno task` subprocess for the
 * task line and exit codes. The dead-letter round trip is the real one: a job of the
 * shipped `enrich` kind is dead-lettered, redriven with the CLI, and completed afterwards
 * by the real enrich-worker.
 */
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";
import { main, serveDashboardProxy, USAGE } from "../tools/ops/cli.ts";
import { shortId } from "../supabase/functions/_shared/operator/format.ts";
import { claimAll, cli, cliEnv, TEST_WORKER } from "./operator_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
Deno.test({
  name: "conveyor CLI: usage errors exit 2 with the usage (a bad flag: one line), help exits 0",
  ...opts,
  async fn() {
    for (
      const args of [
        [],
        ["bogus"],
        ["dlq"],
        ["dlq", "nope"],
        ["stage"],
        ["stage", "scale", "qa", "many"],
        ["enqueue"],
        ["dlq", "show", "not-a-uuid"],
        ["enqueue", "enrich", "{not json"],
      ]
    ) {
      const r = await cli(args);
      assertEquals(r.code, 2, `${args.join(" ")}: ${r.out}${r.err}`);
      assert(r.err.includes("usage: deno task conveyor"), args.join(" "));
    }
    const help = await cli(["help"]);
    assertEquals([help.code, help.out], [0, USAGE]);
    assertEquals(await cli(["status", "--help"]), { code: 0, out: USAGE, err: "" });
    // A mistyped flag is one line; the usage is a --help away.
    assertEquals(await cli(["status", "--no-such-flag"]), {
      code: 2,
      out: "",
      err: "error: unknown option --no-such-flag; see --help",
    });
  },
});

Deno.test({
  name: "conveyor CLI: status prints every queue and stage by name (and --json the data)",
  ...opts,
  async fn() {
    const r = await cli(["status"]);
    assertEquals(r.code, 0, r.err);
    for (
      const name of [
        "q_enrich",
        "q_outreach",
        "q_enforce",
        "research",
        "outline",
        "draft",
        "qa",
        "export",
        "complete",
      ]
    ) {
      assertMatch(r.out, new RegExp(`^${name}\\s`, "m"));
    }
    assertMatch(r.out, /^QUEUE\s+DISPATCH\s+READY/m);
    assertMatch(r.out, /^STAGE\s+STATE\s+READY.*\sWORKERS AT$/m);
    // worker_endpoint is a path: the CLI shows where the dispatcher calls the workers.
    assert(
      r.out.split("\n").some((l) =>
        l.startsWith("research ") && l.endsWith(` ${env.apiUrl}/functions/v1/research-worker`)
      ),
      r.out,
    );
    assertMatch(r.out, /^Dead letters: \d+/m);
    const j = await cli(["status", "--json", "--all"]);
    assertEquals(j.code, 0, j.err);
    const data = JSON.parse(j.out);
    assertEquals(data.stages.length, 6);
    assertEquals(data.stages[0].worker_url, `${env.apiUrl}/functions/v1/research-worker`);
  },
});

Deno.test({
  name:
    "conveyor CLI: enqueue (idempotent), enqueue content, and a refused kind exits 1 with the seed's error",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    try {
      const key = `cli:${crypto.randomUUID()}`;
      const a = await cli([
        "enqueue",
        "enrich",
        '{"email":"Cli@Example.com"}',
        "--idempotency-key",
        key,
      ]);
      assertEquals(a.code, 0, a.err);
      const b = await cli([
        "enqueue",
        "enrich",
        '{"email":"Cli@Example.com"}',
        "--idempotency-key",
        key,
      ]);
      assertEquals(b.out, a.out, "same key, same message id");
      const [job] = await sql`select kind, payload from public.jobs where idempotency_key = ${key}`;
      assertEquals(job, { kind: "enrich", payload: { email: "Cli@Example.com" } });

      const bad = await cli(["enqueue", "mail", "{}"]);
      assertEquals(bad.code, 1);
      assertMatch(bad.err, /queue_job: unsupported kind mail/);

      const ckey = `cli:${crypto.randomUUID()}`;
      const c = await cli([
        "enqueue",
        "content",
        "--topic",
        "CLI topic",
        "--idempotency-key",
        ckey,
      ]);
      assertEquals(c.code, 0, c.err);
      const [cj] =
        await sql`select id, brief from public.content_jobs where idempotency_key = ${ckey}`;
      assertEquals(cj!.brief, { topic: "CLI topic" });
      assert(c.out.includes(cj!.id), c.out);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "conveyor CLI: stage pause / scale / resume change what the dispatcher reads; unknown targets exit 1",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    const [before] = await sql`select enabled, max_concurrency, trigger_batch_size
                               from public.content_stage_config where stage = 'qa'`;
    try {
      const cfg = async () =>
        (await sql`select enabled, max_concurrency, trigger_batch_size
                   from public.content_stage_config where stage = 'qa'`)[0];
      assertEquals((await cli(["stage", "pause", "qa"])).code, 0);
      assertEquals((await cfg())!.enabled, false);
      const s = await cli(["stage", "scale", "qa", "7", "--batch", "3"]);
      assertEquals(s.code, 0, s.err);
      assertMatch(s.out, /stage qa: paused, max_concurrency 7, trigger_batch_size 3/);
      assertEquals(await cfg(), { enabled: false, max_concurrency: 7, trigger_batch_size: 3 });
      const r = await cli(["stage", "resume", "qa"]);
      assertMatch(r.out, /stage qa: enabled/);
      assertEquals((await cfg())!.enabled, true);
      const k = await cli(["stage", "scale", "enforce", "3"]);
      assertMatch(k.out, /job kind enforce: enabled, max_concurrency 3/);
      await cli(["stage", "scale", "enforce", "2"]);
      const nope = await cli(["stage", "pause", "nope"]);
      assertEquals(nope.code, 1);
      assertMatch(nope.err, /no content stage or job kind named nope/);
      assertMatch(nope.err, /hint: stages: research, outline/);
    } finally {
      await sql`update public.content_stage_config
                set enabled = ${before!.enabled}, max_concurrency = ${before!.max_concurrency},
                    trigger_batch_size = ${before!.trigger_batch_size}
                where stage = 'qa'`;
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "conveyor CLI: dlq list / show / redrive re-runs a dead enrich job, which the enrich-worker then completes",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 2);
    const key = `cli-dlq:${crypto.randomUUID()}`;
    try {
      // Pause enrich (with the CLI) so no worker takes our job before we fail it.
      assertEquals((await cli(["stage", "pause", "enrich"])).code, 0);
      await eventually("enrich workers to finish", async () => {
        const [r] = await sql`select count(*)::int as n from conveyor.worker_invocations
                              where source = 'queue' and target = 'enrich' and status <> 'finished'
                                and expires_at > now()`;
        return r!.n === 0;
      }, 60_000);
      const e = await cli([
        "enqueue",
        "enrich",
        '{"email":"Grace@Navy.MIL","name":"grace hopper"}',
        "--idempotency-key",
        key,
      ]);
      assertEquals(e.code, 0, e.err);
      const [job] = await sql`select id, msg_id from public.jobs where idempotency_key = ${key}`;
      const jobId = job!.id as string;
      const number = Number(job!.msg_id);

      // Act as a worker whose downstream is down: cancel ours, hand back the others.
      const claimed = await claimAll(sql, "enrich", 1000, 120);
      const mine = claimed.find((c) => c.job_id === jobId);
      assert(mine, "our job was claimed");
      await sql`select * from public.settle_jobs(${TEST_WORKER}, ${
        sql.json(
          [{
            job_id: jobId,
            lease_id: mine.lease_id,
            status: "cancelled",
            error: { message: "simulated outage" },
          }] as never,
        )
      }::jsonb)`;
      const others = claimed.filter((c) => c.job_id !== jobId).map((c) => ({
        job_id: c.job_id,
        lease_id: c.lease_id,
      }));
      if (others.length) {
        await sql`select * from public.release_jobs(${TEST_WORKER}, ${
          sql.json(others as never)
        }::jsonb)`;
      }

      const list = await cli(["dlq", "list", "--kind", "enrich", "--limit", "1000"]);
      assertEquals(list.code, 0, list.err);
      const [dead] = await sql`select id from public.dead_letter_jobs where job_id = ${jobId}`;
      assertMatch(
        list.out,
        new RegExp(
          `^#${number}\\s+${shortId(dead!.id)}\\s.*\\senrich\\s+1  cancelled: simulated outage$`,
          "m",
        ),
        "listed by the job's number and the dead letter's last 8 hex digits",
      );

      const show = await cli(["dlq", "show", jobId]);
      assertEquals(show.code, 0, show.err);
      assertMatch(show.out, /reason\s+cancelled: simulated outage/);
      assertMatch(show.out, /"email": "Grace@Navy.MIL"/);
      assertMatch(show.out, /dead_lettered/);

      assertEquals((await cli(["stage", "resume", "enrich"])).code, 0);
      const redrive = await cli(["dlq", "redrive", dead!.id]);
      assertEquals(redrive.code, 0, redrive.err);
      // Either line is right: the redrive's own dispatcher kick may have started the worker first.
      assertMatch(
        redrive.out,
        new RegExp(
          `^job #${number} \\(enrich\\) redriven; (enrich worker started|no extra enrich worker ` +
            `started \\(the redrive kicked the dispatcher, which starts one unless every slot is ` +
            `busy or the kind is paused\\))$`,
          "m",
        ),
      );

      const done = await eventually("the enrich-worker to complete the redriven job", async () => {
        const [j] = await sql`select status, attempts, output from public.jobs where id = ${jobId}`;
        return j!.status === "completed" ? j : undefined;
      }, 60_000);
      assertEquals(done.attempts, 1, "attempts were reset by the redrive");
      assertEquals((done.output as { contact: { email: string } }).contact.email, "grace@navy.mil");
      const events =
        await sql`select type from public.job_events where job_id = ${jobId} order by id`;
      const types = events.map((r) => r.type);
      assertEquals(
        types.slice(types.indexOf("redriven")),
        ["redriven"],
        "the run after the redrive is in the ledger (audit 'lean': no claim or success events)",
      );

      const again = await cli(["dlq", "redrive", dead!.id]);
      assertEquals(again.code, 1, "a completed job cannot be redriven");
      assertMatch(again.err, /only failed jobs can be redriven/);

      const tail = await cli(["tail", "--once", "--filter", "enrich"]);
      assertEquals(tail.code, 0, tail.err);
      assertMatch(tail.out, new RegExp(`enrich\\s+redriven\\s+#${number}$`, "m"));
    } finally {
      await cli(["stage", "resume", "enrich"]);
      await sql.end();
    }
  },
});

Deno.test({
  name: "conveyor CLI: tail follows new events until stopped",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    const ac = new AbortController();
    const out: string[] = [];
    try {
      const running = main(["tail", "--interval", "200"], {
        out: (l) => out.push(l),
        err: () => {},
      }, {
        env: cliEnv,
        signal: ac.signal,
      });
      await eventually("the first page of events", () => Promise.resolve(out.length > 0));
      // A job that fails once: its retry is an event (a healthy job's run is the ledger's).
      const key = `cli-tail:${crypto.randomUUID()}`;
      assertEquals(
        (await cli([
          "enqueue",
          "enrich",
          '{"email":"tail@example.com","fail_attempts":1}',
          "--idempotency-key",
          key,
        ])).code,
        0,
      );
      const [job] = await sql`select msg_id from public.jobs where idempotency_key = ${key}`;
      const line = new RegExp(`\\sretry_scheduled\\s+#${job!.msg_id}\\s`);
      await eventually(
        "the retry_scheduled event in the tail",
        () => Promise.resolve(out.some((l) => line.test(l))),
        30_000,
      );
      ac.abort();
      assertEquals(await running, 0);
    } finally {
      ac.abort();
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "conveyor CLI: the dashboard proxy serves the page as text/html with the key added server-side",
  ...opts,
  async fn() {
    const ac = new AbortController();
    let url = "";
    const server = serveDashboardProxy(
      { url: env.apiUrl, key: env.serviceRoleKey, label: "test", local: true },
      0,
      ac.signal,
      (u) => (url = u),
    );
    try {
      await eventually("the proxy to listen", () => Promise.resolve(url !== ""));
      const page = await fetch(url, { headers: { accept: "text/html" } });
      assertEquals(page.status, 200);
      assertMatch(page.headers.get("content-type")!, /^text\/html/);
      assertMatch(await page.text(), /<h1>Conveyor<\/h1>/);
      const frag = await fetch(`${url}?fragment=1`);
      assertMatch(await frag.text(), /id="queues"/);
      const missing = await fetch(`${url}elsewhere`);
      await missing.body?.cancel();
      assertEquals(missing.status, 404);
    } finally {
      ac.abort();
      await server.finished;
    }
  },
});

Deno.test({
  name: "deno task conveyor: runs as a task against SUPABASE_URL; errors give non-zero exit codes",
  ...opts,
  async fn() {
    const run = async (args: string[], extra: Record<string, string> = {}) => {
      const res = await new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", "conveyor", ...args],
        cwd: REPO_ROOT,
        env: {
          SUPABASE_URL: env.apiUrl,
          SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey,
          NO_COLOR: "1",
          ...extra,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: res.code, out: dec.decode(res.stdout), err: dec.decode(res.stderr) };
    };
    const ok = await run(["status"]);
    assertEquals(ok.code, 0, ok.err);
    assertMatch(ok.out, /^QUEUE/m);
    assertEquals((await run(["frobnicate"])).code, 2);
    const down = await run(["status"], { SUPABASE_URL: "http://127.0.0.1:9" });
    assertEquals(down.code, 1);
    assertMatch(down.err, /cannot reach http:\/\/127\.0\.0\.1:9/);
    const noKey = await run(["status"], {
      SUPABASE_URL: "https://example.supabase.co",
      SUPABASE_SERVICE_ROLE_KEY: "",
    });
    assertEquals(noKey.code, 1);
    assertMatch(noKey.err, /SUPABASE_SERVICE_ROLE_KEY is not set/);
  },
});
