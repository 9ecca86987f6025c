/**
 * The local stack's CLI as a user drives it: `up` or `start` twice is one stack, `down` with nothing
 * running is no error, a stale pid and a port in use get clear messages, migrations apply
 * once (the Supabase CLI's history), `reset` rebuilds the database with supabase/seed.sql,
 * and a cluster made before the hosted role layout is moved aside, not reused.
 */
import { assert, assertEquals, assertMatch } from "../test/assert.ts";
import { connect } from "../test/db.ts";
import { stackProcs } from "../test/procs.ts";
import { eventually } from "../test/queue.ts";
import { stackInfo } from "./supervisor.ts";
import { testEnv } from "../test/env.ts";
import { Cluster } from "./cluster.ts";
import { listMigrations } from "./migrate.ts";
import { freePort } from "./proc.ts";
import { dbPush, migrationList } from "./supabase_cli.ts";
import { REPO_ROOT } from "./state.ts";

const MAIN = `${REPO_ROOT}/tools/stack/main.ts`;

/** A stack folder the postgres OS user can traverse (makeTempDir creates it 0700). */
async function stackTempDir(prefix: string): Promise<string> {
  await Deno.mkdir(`${REPO_ROOT}/.stack`, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: `${REPO_ROOT}/.stack`, prefix });
  await Deno.chmod(dir, 0o755);
  return dir;
}

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: res.code, out: dec.decode(res.stdout) + dec.decode(res.stderr) };
}

Deno.test("stack: up or start on a running stack starts nothing new; migrations are recorded once", async () => {
  const env = testEnv();
  const before = JSON.parse(await Deno.readTextFile(`${env.stackDir}/state.json`));
  const r = await cli("up", "--dir", env.stackDir);
  assertEquals(r.code, 0, r.out);
  assertMatch(r.out, new RegExp(`Stack already running \\(pid ${before.pid}\\), nothing to do`));
  const started = await cli("start", "--dir", env.stackDir);
  assertEquals(started.code, 0, started.out);
  assertMatch(
    started.out,
    new RegExp(`Stack already running \\(pid ${before.pid}\\), nothing started`),
  );
  assertMatch(started.out, /service_role key: ey/, "start shows the running stack's banner");
  const after = JSON.parse(await Deno.readTextFile(`${env.stackDir}/state.json`));
  assertEquals(after.pid, before.pid);

  const sql = connect(env.dbUrl, 2);
  try {
    assertEquals(await dbPush(REPO_ROOT, env.dbUrl), [], "supabase db push has nothing to do");
    const listed = await migrationList(REPO_ROOT, env.dbUrl);
    const local = (await listMigrations(`${REPO_ROOT}/supabase/migrations`)).map((f) => f.version);
    assertEquals(listed, local.map((v) => ({ local: v, remote: v })), "supabase migration list");
    const files = await listMigrations(`${REPO_ROOT}/supabase/migrations`);
    const rows =
      await sql`select version from supabase_migrations.schema_migrations order by version`;
    assertEquals(rows.map((r) => r.version).sort(), files.map((f) => f.version).sort());
  } finally {
    await sql.end();
  }
});

Deno.test("stack: a port in use gets a message and a fix, not a stack trace", async () => {
  const env = testEnv();
  const dbPort = Number(new URL(env.dbUrl).port);
  const dir = await stackTempDir("porttest-");
  try {
    for (const cmd of ["start", "up"]) {
      const r = await cli(
        cmd,
        "--dir",
        dir,
        "--db-port",
        String(dbPort),
        "--api-port",
        String(freePort()),
      );
      assertEquals(r.code, 1, r.out);
      assertMatch(r.out, new RegExp(`error: port ${dbPort} \\(database\\) is already in use`));
      assertMatch(
        r.out,
        new RegExp(`fix: stop that program \\(\`ss -tanp \\| grep :${dbPort}\` shows it`),
      );
      // Nothing was started, so nothing is said to be stopped.
      assert(!r.out.includes("stopping PostgreSQL"), r.out);
      assert(!r.out.includes("    at "), `no stack trace:\n${r.out}`);
      // Checked before anything was created: no cluster, no log folder.
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), [], cmd);
    }
    const apiPort = Number(new URL(env.apiUrl).port);
    const api = await cli(
      "start",
      "--dir",
      dir,
      "--api-port",
      String(apiPort),
      "--db-port",
      String(freePort()),
    );
    assertEquals(api.code, 1, api.out);
    assertMatch(api.out, new RegExp(`error: port ${apiPort} \\(API\\) is already in use`));
  } finally {
    await cli("down", "--dir", dir);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stack: reset on a running stack (under load, --debug): the seed again, services unharmed, no failed kick", async () => {
  const dir = await stackTempDir("resettest-");
  const ports = ["--api-port", String(freePort()), "--db-port", String(freePort())];
  try {
    const up = await cli("up", "--dir", dir, ...ports, "--debug");
    assertEquals(up.code, 0, up.out);
    const state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`));
    const url = `postgresql://postgres:postgres@127.0.0.1:${state.dbPort}/postgres`;
    const api = `http://127.0.0.1:${state.apiPort}`;
    const key = (await stackInfo(state.apiPort, state.dbPort)).serviceRoleKey;

    let sql = connect(url, 1);
    try {
      await sql`insert into public.tenants (name) values ('made-before-reset')`;
    } finally {
      await sql.end();
    }
    const before = await stackProcs(dir);
    // Reads all through the reset: only 2xx, 4xx or PostgREST's 503, never a 500.
    const statuses = new Map<number | string, number>();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const r = await fetch(`${api}/rest/v1/tenants?select=name&limit=1`, {
          headers: { apikey: key },
        }).then(async (res) => (await res.body?.cancel(), res.status), (e) => String(e));
        statuses.set(r, (statuses.get(r) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const reset = await cli("reset", "--dir", dir);
    reading = false;
    await reader;
    assertEquals(reset.code, 0, reset.out);
    assertMatch(reset.out, /Seeding data from supabase\/seed\.sql/);
    assertMatch(reset.out, /dispatch cycle: HTTP 200/);
    const seen = Object.fromEntries(statuses);
    console.log(`statuses during the reset: ${JSON.stringify(seen)}`);
    for (const s of Object.keys(seen)) {
      assert(
        /^(2|4)\d\d$|^503$/.test(s),
        `only 2xx, 4xx and 503 during the reset: ${JSON.stringify(seen)}`,
      );
    }
    const after = await stackProcs(dir);
    assertEquals(
      [after.postgrest?.pid, after.gateway?.pid, after.netWorker?.pid],
      [before.postgrest?.pid, before.gateway?.pid, before.netWorker?.pid],
      "no service crashed during the reset",
    );

    sql = connect(url, 1);
    try {
      // The seed's work was dispatched after the reset (its kicks were held): every pg_net
      // request since (worker triggers, kicks) reached its function.
      await eventually("the seed's work to go out through pg_net", async () => {
        const [r] = await sql`
          select (select count(*) from net._http_response)::int as answered,
                 (select count(*) from net.http_request_queue)::int as queued`;
        return r!.answered > 0 && r!.queued === 0;
      }, 60_000);
      const failed = await sql`
        select id, status_code, error_msg from net._http_response
        where error_msg is not null or status_code not between 200 and 299`;
      assertEquals([...failed], [], "no failed pg_net request (kick or trigger) after the reset");

      const gone = await sql`select 1 from public.tenants where name = 'made-before-reset'`;
      assertEquals(gone.length, 0, "the reset dropped what was there");
      const [demo] = await sql`
        select count(*)::int as jobs from public.jobs j join public.tenants t on t.id = j.tenant_id
        where t.name = 'demo'`;
      assert(demo!.jobs >= 15, `seed.sql enqueued the demo jobs (${demo!.jobs})`);
      // Every tier of every kind has a demo job (the header of seed.sql promises it).
      const tiers = await sql`
        select k.kind, t.tier from conveyor.job_kinds k
        cross join (values (''), ('_fast'), ('_bulk')) as t(tier)
        where not exists (
          select 1 from public.jobs j join public.tenants d on d.id = j.tenant_id
          where d.name = 'demo' and j.queue_name = k.queue_name || t.tier)`;
      assertEquals(tiers.map((r) => `${r.kind}${r.tier}`), [], "no queue tier without a demo job");
      const [content] = await sql`select count(*)::int as n from public.content_jobs`;
      assertEquals(content!.n, 3);
      const files = await listMigrations(`${REPO_ROOT}/supabase/migrations`);
      const [m] = await sql`select count(*)::int as n from supabase_migrations.schema_migrations`;
      assertEquals(m!.n, files.length);
    } finally {
      await sql.end();
    }
    // --debug: request lines from the gateway and from PostgREST.
    const log = await Deno.readTextFile(`${dir}/logs/stack.log`);
    assertMatch(log, /\[gateway\] GET \/rest\/v1\/tenants 200 \d+ms/);
    assertMatch(log, /\[postgrest\] .*"GET \/tenants\?select=name&limit=1 HTTP\/1\.1" 200/);

    const down1 = await cli("down", "--dir", dir);
    assertEquals(down1.code, 0, down1.out);
    assertMatch(down1.out, /Stack stopped/);
    const down2 = await cli("down", "--dir", dir);
    assertEquals(down2.code, 0, down2.out);
    assertMatch(down2.out, /No stack running\./);

    // A state file left by a killed supervisor (pid that no longer exists).
    await Deno.writeTextFile(`${dir}/state.json`, JSON.stringify({ ...state, pid: 2 ** 22 + 7 }));
    const stale = await cli("down", "--dir", dir);
    assertEquals(stale.code, 0, stale.out);
    assertMatch(stale.out, /Removed stale state of pid \d+ \(it was not running\)\./);
  } finally {
    await cli("down", "--dir", dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("stack: a cluster made before the hosted role layout is moved aside, not reused", async () => {
  const dir = await stackTempDir("oldlayout-");
  try {
    // What initdb leaves that exists() looks at; no marker: postgres was the superuser.
    await Deno.mkdir(`${dir}/pg`);
    await Deno.writeTextFile(`${dir}/pg/PG_VERSION`, "15\n");
    const cluster = new Cluster(testEnv().pgBin, `${dir}/pg`, freePort(), `${dir}/pg.log`);
    assertEquals(await cluster.hasHostedRoles(), false);
    const aside = await cluster.retireOldLayout();
    assertMatch(aside ?? "", new RegExp(`^${dir}/pg\\.before-hosted-roles-\\d+$`));
    assertEquals(await Deno.readTextFile(`${aside}/PG_VERSION`), "15\n", "nothing deleted");
    assertEquals(await cluster.exists(), false, "init() will make a new cluster");
    assertEquals(await cluster.retireOldLayout(), null, "nothing left to move");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stack: state.json follows a restarted gateway to its new pid", async () => {
  const env = testEnv();
  const before = JSON.parse(await Deno.readTextFile(`${env.stackDir}/state.json`));
  const old = before.services.gateway as number;
  Deno.kill(old, "SIGKILL");
  const deadline = Date.now() + 30_000;
  let now = old;
  while (Date.now() < deadline) {
    now = JSON.parse(await Deno.readTextFile(`${env.stackDir}/state.json`)).services.gateway;
    if (now !== old) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert(now !== old, "state.json names the new gateway pid");
  assert(await Deno.stat(`/proc/${now}`).then(() => true, () => false), "and that pid runs");
  // Leave the stack healthy for the tests after this one.
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const ok = await fetch(`${env.apiUrl}/health`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("the gateway did not come back");
});

Deno.test("stack: without --debug the log has no request lines (errors and state changes only)", async () => {
  const env = testEnv();
  // A few requests of every kind first.
  for (const path of ["/rest/v1/jobs?select=id&limit=1", "/functions/v1/conveyor-metrics"]) {
    const res = await fetch(`${env.apiUrl}${path}`, {
      headers: { apikey: env.serviceRoleKey, Authorization: `Bearer ${env.serviceRoleKey}` },
    });
    await res.body?.cancel();
  }
  const log = await Deno.readTextFile(`${env.stackDir}/logs/stack.log`);
  const requests = log.split("\n").filter((l) =>
    /\[gateway\] (GET|POST|PATCH|PUT|DELETE|HEAD|OPTIONS) \/\S* [23]\d\d \d+ms$/.test(l) ||
    /\[postgrest\] .*" [23]\d\d /.test(l) ||
    /\[pg_net worker\] batch: \d+ request\(s\) \(\d+ answered, 0 failed\)/.test(l)
  );
  assertEquals(requests, []);
  assertMatch(log, /\[postgrest\] .*Schema cache loaded/, "state changes are logged");
});

Deno.test("stack: every command answers --help with its usage; a bad flag or command is one line", async () => {
  for (const cmd of ["start", "up", "down", "status", "reset"]) {
    const r = await cli(cmd, "--help");
    assertEquals(r.code, 0, r.out);
    assertMatch(r.out, /^usage: deno task \S+/);
  }
  const cases: [string[], RegExp][] = [
    [["up", "--bogus"], /^error: Unknown option '--bogus' \(usage: deno task stack:up --help\)\n$/],
    [
      ["down", "--api-port", "5"],
      /^error: down does not take --api-port \(usage: deno task stack:down --help\)\n$/,
    ],
    [
      ["start", "--db-port", "x"],
      /^error: --db-port must be a port number, got "x" \(usage: deno task start --help\)\n$/,
    ],
    [
      ["frob"],
      /^error: unknown command "frob"; commands: start, up, down, status, reset \(usage: deno task start --help\)\n$/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = await cli(...args);
    assertEquals(r.code, 2, r.out);
    assertMatch(r.out, want);
  }
});
