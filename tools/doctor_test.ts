import { assert, assertEquals, assertMatch } from "./test/assert.ts";
import { freshDb } from "./test/db.ts";
import { testEnv } from "./test/env.ts";
import { signJwt } from "./stack/keys.ts";
import { type DoctorTarget, formatLine, resolveTarget, runDoctor } from "./doctor.ts";

const env = testEnv();
const stack = (over: Partial<DoctorTarget> = {}): DoctorTarget => ({
  url: env.apiUrl,
  key: env.serviceRoleKey,
  dbUrl: env.dbUrl,
  local: true,
  ...over,
});
const lines = async (t: DoctorTarget) => (await runDoctor(t)).map(formatLine);
const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "doctor: every check is ok against the test stack",
  ...opts,
  async fn() {
    const out = await lines(stack());
    assert(out.every((l) => l.startsWith("ok   ")), out.join("\n"));
    for (
      const check of [
        "env",
        "api reachable",
        "service role key",
        "queue_job RPC",
        "pgmq queues",
        "pg_net",
        "pg_cron",
        "migrations applied",
        "vault secrets",
        "cron jobs",
        "worker functions",
        "operator endpoints",
      ]
    ) {
      assert(out.some((l) => l.startsWith(`ok   ${check}`)), `${check} in\n${out.join("\n")}`);
    }
  },
});

Deno.test({
  name: "doctor: an unreachable API is one FAIL line with the command that fixes it",
  ...opts,
  async fn() {
    const out = await lines(stack({ url: "http://127.0.0.1:1" }));
    assertMatch(
      out.at(-1)!,
      /^FAIL api reachable: cannot reach http:\/\/127\.0\.0\.1:1 \(.+\) → deno task stack:up$/,
    );
  },
});

Deno.test({
  name: "doctor: a key signed with another secret, or the anon key, fails the key check",
  ...opts,
  async fn() {
    const forged = await signJwt({ role: "service_role", exp: 1983812996 }, "x".repeat(40));
    assertMatch(
      (await lines(stack({ key: forged }))).at(-1)!,
      /^FAIL service role key: rejected: .+ → use the service_role key/,
    );
    assertEquals(
      (await lines(stack({ key: env.anonKey }))).at(-1),
      "FAIL service role key: the key's role is anon, not service_role → use the service_role key that `deno task stack:status` prints",
    );
  },
});

Deno.test("doctor: a missing key is reported as an env problem", async () => {
  const out = await lines(stack({ key: undefined, local: false }));
  assertEquals(out, [
    "FAIL env: SUPABASE_SERVICE_ROLE_KEY not set → export SUPABASE_SERVICE_ROLE_KEY=… (Project Settings → API)",
  ]);
});

Deno.test({
  name:
    "doctor: a dropped queue, an unapplied migration, no pg_cron and no Vault secrets each get their line",
  ...opts,
  async fn() {
    await using db = await freshDb();
    await db.sql`select pgmq.drop_queue('q_enrich')`;
    await db.sql`delete from supabase_migrations.schema_migrations where version = '0056'`;
    const out = await lines(stack({ dbUrl: db.url }));
    const find = (check: string) =>
      out.find((l) => l.includes(` ${check}`)) ?? `(no ${check} line)`;
    assertEquals(
      find("pgmq queues"),
      `FAIL pgmq queues: missing q_enrich → psql "${db.url}" -c "select conveyor.ensure_kind_queues(kind) from conveyor.job_kinds"`,
    );
    assertEquals(
      find("migrations applied"),
      "FAIL migrations applied: not applied: 0056_queue_retention → deno task db:reset",
    );
    assertMatch(
      find("pg_cron"),
      /^FAIL pg_cron: extension pg_cron is not installed → create extension pg_cron;/,
    );
    assertEquals(
      find("vault secrets"),
      "FAIL vault secrets: missing project_url, service_role_key → deno task stack:up (stores them)",
    );
    assert(find("pg_net").startsWith("ok   pg_net"));
  },
});

Deno.test({
  name: "deno task doctor exits 1 and prints the FAIL line when the deployment is unreachable",
  ...opts,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./doctor.ts", import.meta.url).pathname],
      env: { SUPABASE_URL: "http://127.0.0.1:1", SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 1, text + new TextDecoder().decode(out.stderr));
    assertMatch(
      text,
      /^ok {3}env \(http:\/\/127\.0\.0\.1:1, no SUPABASE_DB_URL: SQL checks skipped\)\nFAIL api reachable: /,
    );
  },
});

Deno.test("resolveTarget() takes SUPABASE_URL and the key from the environment", async () => {
  const t = await resolveTarget({
    SUPABASE_URL: "https://abc.supabase.co/",
    SUPABASE_SERVICE_ROLE_KEY: "k",
  });
  assertEquals(t, { url: "https://abc.supabase.co", key: "k", dbUrl: undefined, local: false });
});
