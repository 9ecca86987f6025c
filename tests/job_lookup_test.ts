/**
 * Job references in the ops CLI (issue 19, item 1) against the test stack, end to end: jobs
 * of the shipped `enrich` kind enqueued back to back (their ids share their first 8 hex
 * digits) are shown apart by `tail` and `dlq list`, and found by every form the tools show
 * or a user may paste; an ambiguous fragment lists the candidates, an unknown one says what
 * was searched, a malformed one is a usage error, and none of them writes anything. Also
 * item 6 for queue jobs: a dead job redriven by its number and then completed by the real
 * enrich-worker keeps no stale last_error. SQL details: supabase/tests/job_lookup.test.sql.
 */
import { assert, assertEquals, assertMatch, assertNotEquals } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { eventually } from "../tools/test/queue.ts";
import { shortId } from "../supabase/functions/_shared/operator/format.ts";
import { rest } from "./content_fixtures.ts";
import { cli } from "./operator_fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const randomHex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => (b % 16).toString(16)).join("");

const FORMS =
  "give a job number (1234), a uuid, or 4 to 32 of its hex digits (its start or its end)";

interface Dead {
  key: string;
  id: string;
  number: number;
  deadLetter: string;
}

/** Enqueues bad enrich jobs back to back with the CLI; waits until each is a dead letter. */
async function deadJobs(sql: ReturnType<typeof connect>, n: number): Promise<Dead[]> {
  const tag = `lookup:${crypto.randomUUID()}`;
  const shown: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await cli([
      "enqueue",
      "enrich",
      JSON.stringify({ email: `not-an-email-${i}` }),
      "--idempotency-key",
      `${tag}:${i}`,
    ]);
    assertEquals(r.code, 0, r.err);
    shown.push(Number(/^enrich job #(\d+) enqueued \(idempotency key /.exec(r.out)![1]));
  }
  const rows = await eventually("the enrich-worker to dead-letter the jobs", async () => {
    const rs = await sql`select j.idempotency_key as key, j.id, j.msg_id, d.id as dead_letter
                         from public.jobs j join public.dead_letter_jobs d on d.job_id = j.id
                         where j.idempotency_key like ${tag + ":%"}
                         order by j.idempotency_key`;
    return rs.length === n ? rs : undefined;
  }, 60_000);
  const jobs = rows.map((r) => ({
    key: r.key as string,
    id: r.id as string,
    number: Number(r.msg_id),
    deadLetter: r.dead_letter as string,
  }));
  assertEquals(jobs.map((j) => j.number), shown, "enqueue printed each job's number");
  return jobs;
}

Deno.test({
  name:
    "job references: jobs enqueued back to back are shown apart (tail, dlq list) and found by number, #number, the shown tail, a prefix, a suffix, the whole id",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    try {
      const [a, b] = await deadJobs(sql, 2);
      assertNotEquals(a!.number, b!.number);
      assertNotEquals(shortId(a!.id), shortId(b!.id), "the random tails differ");

      const tail = await eventually("both jobs in the tail", async () => {
        const t = await cli(["tail", "--once", "--filter", "enrich"]);
        return [a!, b!].every((j) => new RegExp(`\\sdead_lettered\\s+#${j.number}\\s`).test(t.out))
          ? t.out
          : undefined;
      });
      assert(!tail.includes(a!.id.slice(0, 8)), "no id cut from its time-ordered head");

      const list = await cli(["dlq", "list", "--kind", "enrich", "--limit", "1000"]);
      assertEquals(list.code, 0, list.err);
      assertMatch(list.out, /^JOB\s+DEAD LETTER\s+WHEN \(UTC\)\s+KIND\s+ATTEMPTS\s+ERROR$/m);
      for (const j of [a!, b!]) {
        assertMatch(
          list.out,
          new RegExp(
            `^#${j.number}\\s+${
              shortId(j.deadLetter)
            }\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d  enrich\\s+1  cancelled: enrich: payload.email is not an email address`,
            "m",
          ),
        );
      }
      const json = JSON.parse((await cli(["dlq", "list", "--kind", "enrich", "--json"])).out);
      assertEquals(
        json.find((r: { id: string }) => r.id === a!.deadLetter).job_number,
        a!.number,
        "--json: each dead letter with its job's number",
      );

      // Every form names job a, and `dlq show` opens its dead letter.
      const forms = [
        String(a!.number),
        `#${a!.number}`,
        shortId(a!.id), // what a uuid shown short is: its last 8 hex digits
        shortId(a!.id).toUpperCase(),
        a!.id.slice(-17), // "xxxx-xxxxxxxxxxxx": a suffix with its dash
        a!.id.slice(0, 28), // a prefix long enough to pass the creation time
        a!.id,
        a!.id.replaceAll("-", ""),
        shortId(a!.deadLetter), // the dead letter as `dlq list` shows it
        a!.deadLetter,
      ];
      for (const ref of forms) {
        const r = await cli(["dlq", "show", ref, "--json"]);
        assertEquals(r.code, 0, `${ref}: ${r.err}`);
        assertEquals(JSON.parse(r.out).dead_letter.id, a!.deadLetter, ref);
      }
      const show = await cli(["dlq", "show", String(b!.number)]);
      assertEquals(show.out.split("\n").slice(0, 2), [
        `dead letter ${b!.deadLetter}`,
        `  job        #${b!.number} ${b!.id} (failed)`,
      ]);
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "job references: an ambiguous fragment lists the candidates (at most 10, then how many more), an unknown one says what was searched, a malformed one is a usage error; nothing is redriven",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    // 12 content jobs whose ids share a random first 8 hex digits.
    const prefix = randomHex(8);
    const ids = Array.from(
      { length: 12 },
      (_, i) => `${prefix}-0000-4000-8000-${String(i + 1).padStart(12, "0")}`,
    );
    try {
      const [dead] = await deadJobs(sql, 1);
      for (const [i, id] of ids.entries()) {
        await sql`insert into public.content_jobs (id, idempotency_key, brief, max_attempts, status,
                                                   finished_at, created_at)
                  values (${id}, ${`lookup:${id}`}, '{"topic":"t"}', 2, 'completed', now(),
                          ${new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString()})`;
      }
      const amb = await cli(["dlq", "show", prefix]);
      assertEquals(amb.code, 1);
      const lines = amb.err.split("\n");
      assertEquals(lines[0], `error: "${prefix}" is ambiguous, 12 match:`);
      assertMatch(lines[1]!, /^ {2}WHAT\s+ID\s+KIND\s+STATUS\s+CREATED \(UTC\)$/);
      assertEquals(
        lines.slice(2, 12).map((l) => l.trim().split(/\s{2,}/)),
        ids.map((id, i) => [
          "content job",
          id,
          "content",
          "completed",
          `2026-01-01 00:00:${String(i).padStart(2, "0")}`,
        ]).slice(2).reverse(),
        "the newest 10, newest first",
      );
      assertEquals(lines.slice(12), [
        "  … and 2 more",
        "  hint: give more of its digits, the job number or the whole id",
      ]);

      // With other references: none is redriven, each problem is said.
      const before = await sql`select status from public.jobs where id = ${dead!.id}`;
      const missing = randomHex(12);
      const r = await cli(["dlq", "redrive", String(dead!.number), prefix, missing]);
      assertEquals(r.code, 1);
      assertEquals(r.out, "");
      const err = r.err.split("\n");
      assertEquals(err[0], "error: nothing redriven: 2 of 3 jobs could not be resolved");
      assertEquals(err[1], `  ${prefix}: "${prefix}" is ambiguous, 12 match:`);
      assertEquals(
        err.at(-1),
        `  ${missing}: no id of a queue job, dead letter or content job starts or ends with ${missing} (ends: among the newest 100,000 queue jobs)`,
      );
      assertEquals(
        await sql`select status from public.jobs where id = ${dead!.id}`,
        before,
        "the dead job was not redriven",
      );
      assertEquals(
        (await sql`select count(*)::int as n from public.job_events
                   where job_id = ${dead!.id} and type = 'redriven'`)[0]!.n,
        0,
      );

      // None.
      assertEquals(await cli(["dlq", "show", missing]), {
        code: 1,
        out: "",
        err:
          `error: no id of a queue job, dead letter or content job starts or ends with ${missing} (ends: among the newest 100,000 queue jobs)\n  hint: list them with: deno task conveyor dlq list`,
      });
      assertEquals(await cli(["dlq", "show", "#987654321098"]), {
        code: 1,
        out: "",
        err:
          "error: no queue job is numbered 987654321098\n  hint: list them with: deno task conveyor dlq list",
      });
      const uuid = crypto.randomUUID();
      assertEquals(
        (await cli(["dlq", "redrive", uuid.toUpperCase()])).err.split("\n")[0],
        `error: no queue job, dead letter or content job has the id ${uuid}`,
      );

      // A job that never died is not a dead letter.
      const ok = await cli(["enqueue", "enrich", '{"email":"fine@example.com"}']);
      const number = Number(/#(\d+)/.exec(ok.out)![1]);
      const done = await eventually("the job to complete", async () => {
        const [j] = await sql`select id, status from public.jobs where msg_id = ${number}`;
        return j?.status === "completed" ? j : undefined;
      }, 60_000);
      assertEquals(await cli(["dlq", "show", String(number)]), {
        code: 1,
        out: "",
        err:
          `error: job #${number} (enrich, ${done.id}) is completed and was never dead-lettered\n` +
          "  hint: list the dead jobs with: deno task conveyor dlq list",
      });

      // Malformed: a usage error (exit 2), before any call.
      for (const bad of ["xyz", "abc", "#", "12-zz", "#12a", `${"a".repeat(33)}`]) {
        const u = await cli(["dlq", "redrive", String(dead!.number), bad]);
        assertEquals(u.code, 2, bad);
        assertEquals(
          u.err.split("\n")[0],
          `error: "${bad}" is not a job reference: ${FORMS}`,
          bad,
        );
        assert(u.err.includes("usage: deno task conveyor"), bad);
      }
      assertEquals(
        await sql`select status from public.jobs where id = ${dead!.id}`,
        before,
        "still not redriven",
      );
    } finally {
      await sql`delete from public.content_jobs where id in ${sql(ids)}`;
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "job references over the API: operator_find_jobs answers service_role, refuses anon, and a malformed reference is HTTP 400",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    try {
      const [dead] = await deadJobs(sql, 1);
      const r = await rest("operator_find_jobs", { p_ref: String(dead!.number) });
      assertEquals(r.status, 200);
      assertEquals(
        (r.body as Array<Record<string, unknown>>).map((m) => [
          m.source,
          m.id,
          m.job_number,
          m.dead_letter_id,
          m.kind,
          m.status,
          m.matched,
          m.total,
        ]),
        [["job", dead!.id, dead!.number, dead!.deadLetter, "enrich", "failed", "number", 1]],
      );
      const anon = await rest("operator_find_jobs", { p_ref: "1234" }, env.anonKey);
      assertEquals(
        [anon.status, (anon.body as { message: string }).message],
        [401, "permission denied for function operator_find_jobs"],
      );
      const bad = await rest("operator_find_jobs", { p_ref: "xyz" });
      assertEquals(bad.status, 400);
      assertEquals(bad.body, {
        code: "22023",
        details: null,
        hint:
          "give a job number (1234 or #1234), a uuid, or 4 to 32 of its hex digits (its start or its end)",
        message: 'operator_find_jobs: "xyz" is not a job reference',
      });
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "a dead queue job redriven by its number and completed by the enrich-worker shows no stale last_error; errors and events keep the failure (issue 19, item 6)",
  ...opts,
  async fn() {
    const sql = connect(env.dbUrl, 1);
    try {
      const [dead] = await deadJobs(sql, 1);
      const [failed] = await sql`select last_error from public.jobs where id = ${dead!.id}`;
      assertMatch(failed!.last_error, /^cancelled: enrich: payload\.email is not an email address/);
      // The cause fixed: the record gets a usable email.
      await sql`update public.jobs set payload = '{"email":"Fixed@Example.com"}'
                where id = ${dead!.id}`;
      const r = await cli(["dlq", "redrive", String(dead!.number)]);
      assertEquals(r.code, 0, r.err);
      assertMatch(r.out, new RegExp(`^job #${dead!.number} \\(enrich\\) redriven; `));
      const done = await eventually("the enrich-worker to complete the redriven job", async () => {
        const [j] = await sql`select status, attempts, last_error, errors, output
                              from public.jobs where id = ${dead!.id}`;
        return j!.status === "completed" ? j : undefined;
      }, 60_000);
      assertEquals(done.last_error, null, "no stale last_error on the completed job");
      assertEquals(done.attempts, 1);
      assertEquals(
        (done.errors as Array<{ message: string }>).map((e) => e.message),
        [failed!.last_error.replace(/^cancelled: /, "")],
        "the failure stays in errors",
      );
      const events = await sql`select type from public.job_events
                               where job_id = ${dead!.id} order by id`;
      assertEquals(
        events.map((e) => e.type).filter((t) => t === "dead_lettered" || t === "redriven"),
        ["dead_lettered", "redriven"],
        "and in the events",
      );
      const show = await cli(["dlq", "show", String(dead!.number)]);
      assertEquals(
        show.out.split("\n")[1],
        `  job        #${dead!.number} ${dead!.id} (completed)`,
      );
    } finally {
      await sql.end();
    }
  },
});
