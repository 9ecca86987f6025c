import { assert, assertEquals, assertMatch } from "./test/assert.ts";
import { connect, type FreshDb, freshDb } from "./test/db.ts";
import { testEnv } from "./test/env.ts";
import { anonKey, signJwt } from "./stack/keys.ts";
import { freePort } from "./stack/proc.ts";
import { REPO_ROOT } from "./stack/state.ts";
import { testGateway } from "./stack/gateway/test_support.ts";
import {
  type DoctorTarget,
  formatLine,
  resolveTarget,
  runDoctor,
  stageEndpoints,
  tenantsResult,
} from "./doctor.ts";

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

/** Every check, in the order the doctor prints them. */
const CHECKS = [
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
  "database lints",
  "worker functions",
  "stage endpoints",
  "operator endpoints",
  "tenants",
];

/** `deno task doctor` against `url` (+ `dbUrl`): its exit status and output lines. */
async function doctorCli(url: string, dbUrl: string): Promise<{ code: number; lines: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./doctor.ts", import.meta.url).pathname],
    env: {
      SUPABASE_URL: url,
      SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey,
      SUPABASE_DB_URL: dbUrl,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const lines = text.split("\n").filter((l) => l !== "");
  // One line per check, in order, whatever its outcome; the database lints one per finding.
  const lintFail = "FAIL database lints:";
  const heads = lines.filter((l, i) =>
    !(l.startsWith(lintFail) && lines[i - 1]?.startsWith(lintFail))
  );
  assertEquals(
    heads.map((l, i) => l.startsWith(`ok   ${CHECKS[i]}`) || l.startsWith(`FAIL ${CHECKS[i]}:`)),
    CHECKS.map(() => true),
    text + new TextDecoder().decode(out.stderr),
  );
  return { code: out.code, lines };
}

/** The lines that are not `ok`. */
const problems = (lines: string[]) => lines.filter((l) => !l.startsWith("ok   "));

/**
 * A private API over `db` (a fresh clone): an in-process gateway on the repository's
 * supabase/functions, with config.toml passed through `editConfig` and the platform
 * variables of `functionsEnv` changed, so a test can break the API side without touching
 * the shared stack's gateway or its `postgres` database.
 */
async function privateApi(
  db: FreshDb,
  { editConfig = (t: string) => t, functionsEnv = {} as Record<string, string> } = {},
) {
  const config = await Deno.readTextFile(`${REPO_ROOT}/supabase/config.toml`);
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const api = await testGateway(db.url, {
    port,
    functionsDir: `${REPO_ROOT}/supabase/functions`,
    functionsEnv: {
      SUPABASE_URL: url,
      SUPABASE_ANON_KEY: await anonKey(env.jwtSecret),
      SUPABASE_SERVICE_ROLE_KEY: env.serviceRoleKey,
      SUPABASE_DB_URL: db.url,
      SUPABASE_JWT_SECRET: env.jwtSecret,
      ...functionsEnv,
    },
    log: () => {},
  }, editConfig(config));
  return { url, [Symbol.asyncDispose]: () => api[Symbol.asyncDispose]() };
}

/**
 * A fresh clone for the checks that read SUPABASE_DB_URL's database, with the Vault secrets
 * pointing at the shared stack's API (which answers the HTTP checks).
 */
async function doctorClone(): Promise<FreshDb> {
  const db = await freshDb();
  try {
    await db.sql`select vault.create_secret(${env.apiUrl}, 'project_url')`;
    await db.sql`select vault.create_secret(${env.serviceRoleKey}, 'service_role_key')`;
    return db;
  } catch (e) {
    await db[Symbol.asyncDispose]();
    throw e;
  }
}

/** pg_cron serves only `postgres`: a clone always has these two lines, asserted as they are. */
const CLONE_CRON_LINES = [
  "FAIL pg_cron: extension pg_cron is not installed → create extension pg_cron; (Dashboard → Database → Extensions; needs shared_preload_libraries)",
  "FAIL cron jobs: pg_cron's cron.job is not available in this database → create extension pg_cron; then deno task db:reset",
];

/** Adds `line` to the `[functions.<slug>]` table of config.toml. */
function functionSetting(slug: string, line: string): (toml: string) => string {
  return (toml) => {
    const header = `[functions.${slug}]\n`;
    assert(toml.includes(header), `config.toml has ${header}`);
    return toml.replace(header, `${header}${line}\n`);
  };
}

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
        "database lints",
        "worker functions",
        "stage endpoints",
        "operator endpoints",
        "tenants",
      ]
    ) {
      assert(out.some((l) => l.startsWith(`ok   ${check}`)), `${check} in\n${out.join("\n")}`);
    }
    // seed 001's worker_endpoint is a path: the doctor shows the URL it resolves to.
    assert(
      out.includes(`ok   stage endpoints (${env.apiUrl}/functions/v1/<stage>-worker)`),
      out.join("\n"),
    );
  },
});

Deno.test("tenantsResult(): a starving tenant fails the check with its wait and the command to look", () => {
  const row = {
    source: "queue" as const,
    target: "enrich",
    tenant_id: "bbbbbbbb-1111-4111-8111-111111111111",
    tenant: "beta",
    weight: 1,
    ready: 3,
    waiting: 0,
    running: 0,
    oldest_ready_age_sec: 900,
    others_median_age_sec: 2,
    claimed: 0,
    claimed_share: 0,
    recently_claimed: 0,
    starving: true,
  };
  const busy = {
    ...row,
    tenant_id: "aaaaaaaa-1111-4111-8111-111111111111",
    tenant: "acme",
    ready: 50_000,
    oldest_ready_age_sec: 2,
    others_median_age_sec: 900,
    starving: false,
  };
  assertEquals(
    formatLine(tenantsResult([busy, row])),
    "FAIL tenants: tenant beta is starving on enrich: its oldest ready job has waited 15 min " +
      "(the other tenants' median 2 s) and none was claimed in the last minute → " +
      "deno task conveyor status --tenants (then its weight: deno task conveyor tenant weight " +
      "<tenant-id> <n>, or its concurrency keys: deno task conveyor keys limit)",
  );
  assertEquals(formatLine(tenantsResult([busy])), "ok   tenants (1 with work, none starving)");
});

Deno.test("stageEndpoints(): paths resolve against the project URL; other URLs are listed", () => {
  const base = "https://abc.supabase.co";
  const rows = ["research", "outline", "draft", "qa", "export", "complete"].map((stage) => ({
    stage,
    worker_endpoint: `/functions/v1/${stage}-worker`,
  }));
  assertEquals(
    formatLine(stageEndpoints(rows, base, "fix")),
    `ok   stage endpoints (${base}/functions/v1/<stage>-worker)`,
  );
  rows[1]!.worker_endpoint = "https://workers.example/outline";
  rows[3]!.worker_endpoint = "functions/v1/qa-v2";
  assertEquals(
    formatLine(stageEndpoints(rows, base, "fix")),
    `ok   stage endpoints (${base}/functions/v1/<stage>-worker; except outline → https://workers.example/outline, qa → ${base}/functions/v1/qa-v2)`,
  );
  assertEquals(
    formatLine(stageEndpoints(rows.slice(0, 4), base, "deno task db:reset")),
    "FAIL stage endpoints: no content_stage_config row for export, complete → deno task db:reset",
  );
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

// The breaks below leave the shared stack as it was. Those on the API side (queue_job, the
// worker and operator functions) happen behind a private gateway over a fresh clone; the
// doctor's SQL checks still read the shared `postgres` database (read-only), the only one
// pg_cron serves, so every other check can be ok and the exit status is the break's alone
// (the queue_job test shows the unbroken fixture: all ok, exit 0).

Deno.test({
  name: "doctor: queue_job missing from the API is the queue_job RPC line, exit 1",
  ...opts,
  async fn() {
    await using db = await freshDb();
    await using api = await privateApi(db);
    const before = await doctorCli(api.url, env.dbUrl);
    assertEquals([before.code, problems(before.lines)], [0, []]);
    await db.sql`drop function public.queue_job(jsonb)`;
    const after = await doctorCli(api.url, env.dbUrl);
    assertEquals([after.code, problems(after.lines)], [1, [
      "FAIL queue_job RPC: PostgREST does not know public.queue_job(jsonb) (migration 0051 not applied?) → deno task db:reset",
    ]]);
  },
});

Deno.test({
  name: "doctor: a worker function that is not served is the worker functions line, exit 1",
  ...opts,
  async fn() {
    await using db = await freshDb();
    await using api = await privateApi(db, {
      editConfig: functionSetting("dlq-worker", "enabled = false"),
    });
    const out = await doctorCli(api.url, env.dbUrl);
    assertEquals([out.code, problems(out.lines)], [1, [
      "FAIL worker functions: not answering: dlq-worker (HTTP 404: Function not found) → deno task stack:up (the gateway serves supabase/functions)",
    ]]);
  },
});

Deno.test({
  name: "doctor: conveyor-metrics not served, or refusing the key, is the operator endpoints line",
  ...opts,
  async fn() {
    await using db = await freshDb();
    {
      await using api = await privateApi(db, {
        editConfig: functionSetting("conveyor-metrics", "enabled = false"),
      });
      const out = await doctorCli(api.url, env.dbUrl);
      assertEquals([out.code, problems(out.lines)], [1, [
        "FAIL operator endpoints: conveyor-metrics: HTTP 404: Function not found → deno task stack:up (the gateway serves supabase/functions)",
      ]]);
    }
    // The functions hold another (valid) service-role key than the one the doctor uses.
    const other = await signJwt(
      { iss: "supabase-demo", role: "service_role", exp: 1983812997 },
      env.jwtSecret,
    );
    await using api = await privateApi(db, { functionsEnv: { SUPABASE_SERVICE_ROLE_KEY: other } });
    const out = await doctorCli(api.url, env.dbUrl);
    assertEquals([out.code, problems(out.lines)], [1, [
      "FAIL operator endpoints: conveyor-metrics refuses the service role key (HTTP 401) → use the key the stack printed",
    ]]);
  },
});

Deno.test({
  name: "doctor: a database without pg_net is the pg_net line, exit 1",
  ...opts,
  async fn() {
    // pg_net is checked in SUPABASE_DB_URL's database, so this one is a fresh clone.
    await using db = await doctorClone();
    const before = await doctorCli(env.apiUrl, db.url);
    assertEquals([before.code, problems(before.lines)], [1, CLONE_CRON_LINES]);
    // pg_net is the platform's (created by the superuser, as hosted does): so is dropping it.
    const admin = connect(db.adminUrl, 1);
    try {
      await admin`drop extension pg_net cascade`;
    } finally {
      await admin.end();
    }
    const after = await doctorCli(env.apiUrl, db.url);
    assertEquals([after.code, problems(after.lines)], [1, [
      "FAIL pg_net: extension pg_net is not installed → create extension pg_net with schema extensions; (Dashboard → Database → Extensions)",
      ...CLONE_CRON_LINES,
    ]]);
  },
});

Deno.test({
  name: "doctor: each lint ERROR or unlisted WARN is a database lints line, exit 1",
  ...opts,
  async fn() {
    // As in the pg_net test: a fresh clone, whose pg_cron lines are asserted as they are.
    await using db = await doctorClone();
    const before = await doctorCli(env.apiUrl, db.url);
    assertEquals([before.code, problems(before.lines)], [1, CLONE_CRON_LINES]);
    await db.sql.unsafe(`create view public.doctor_probe as select 1 as one;
                         grant select on public.doctor_probe to anon;
                         create function public.doctor_probe() returns int language sql
                           as 'select 1';
                         revoke execute on function public.doctor_probe() from public;`);
    const after = await doctorCli(env.apiUrl, db.url);
    const link = "https://supabase.com/docs/guides/database/database-linter?lint=";
    assertEquals([after.code, problems(after.lines)], [1, [
      ...CLONE_CRON_LINES,
      "FAIL database lints: ERROR security_definer_view public.doctor_probe: view runs with its owner's rights → alter view public.doctor_probe set (security_invoker = true); " +
      `(${link}0010_security_definer_view)`,
      "FAIL database lints: WARN function_search_path_mutable public.doctor_probe(): no search_path setting → alter function public.doctor_probe() set search_path = ''; " +
      `(${link}0011_function_search_path_mutable)`,
      // the view is in GraphQL for anon, and for authenticated by public's default privileges
      "FAIL database lints: WARN pg_graphql_anon_table_exposed public.doctor_probe: view in the GraphQL schema for anon → revoke select on public.doctor_probe from anon; " +
      `(${link}0026_pg_graphql_anon_table_exposed)`,
      "FAIL database lints: WARN pg_graphql_authenticated_table_exposed public.doctor_probe: view in the GraphQL schema for authenticated → revoke select on public.doctor_probe from authenticated; " +
      `(${link}0027_pg_graphql_authenticated_table_exposed)`,
    ]]);
  },
});

Deno.test({
  name: "doctor: an unscheduled cron job is the cron jobs line, exit 1",
  ...opts,
  async fn() {
    // cron.job exists only in the shared `postgres` database: the job is unscheduled there
    // and put back as it was (same row, same jobid) in the finally. The one chosen runs
    // hourly at :17 (retention) and no test waits for it.
    const job = "conveyor-retention";
    const sql = connect(env.dbUrl, 1);
    // Only the superuser writes cron.job rows directly (postgres may only read it).
    const admin = connect(env.adminDbUrl, 1);
    try {
      const [saved] = await sql`select to_jsonb(j) as row from cron.job j where jobname = ${job}`;
      assert(saved, `${job} is scheduled`);
      await sql`select cron.unschedule(${job})`;
      try {
        const out = await doctorCli(env.apiUrl, env.dbUrl);
        assertEquals([out.code, problems(out.lines)], [1, [
          `FAIL cron jobs: missing ${job} → deno task db:reset`,
        ]]);
      } finally {
        await admin`insert into cron.job select * from jsonb_populate_record(null::cron.job, ${
          admin.json(saved.row)
        })`;
      }
      const out = await doctorCli(env.apiUrl, env.dbUrl);
      assertEquals([out.code, problems(out.lines)], [0, []]);
    } finally {
      await sql.end();
      await admin.end();
    }
  },
});
