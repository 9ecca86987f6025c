/**
 * The upgrade test (issue 18): a project deployed from the frozen baseline (the migrations of
 * commit {@link BASELINE_COMMIT}) that holds jobs in every state takes the current
 * `supabase/migrations` the way a Supabase user upgrades: the real CLI, `supabase db push
 * --db-url …`, as `postgres`. The CLI accepts the order, no job is lost or changes state, the
 * work in flight finishes with the current functions, and the upgraded schema is the one a
 * fresh database gets (so `supabase/schema.sql` holds for upgraded projects too). A migration
 * named before the newest applied one is refused by the CLI itself.
 *
 * The jobs are put in their states with the baseline's own functions (frozen, like the
 * baseline); what runs after the push uses the current ones.
 */
import type { Sql } from "postgres";
import { assert, assertEquals } from "../test/assert.ts";
import { connect, freshDb } from "../test/db.ts";
import { testEnv } from "../test/env.ts";
import { listMigrations, upsertVaultSecret } from "./migrate.ts";
import { bootstrapDatabase } from "./roles.ts";
import { schemaDump, unifiedDiff } from "./schema_dump.ts";
import { REPO_ROOT } from "./state.ts";
import { cliDbUrl, dbPush, migrationList, supabaseCli } from "./supabase_cli.ts";

/**
 * The commit whose `supabase/migrations` is the squashed baseline: the last rewrite of
 * history. Every migration after it is a new file named later than the newest.
 */
const BASELINE_COMMIT = "2df0dc24cc3b706ece201a9d6cdf8105dd667676";

/**
 * The baseline's files and their SHA-256, as committed in {@link BASELINE_COMMIT}. Released
 * migrations never change, so the baseline is read from the tree and checked against these
 * (a clone without that commit in its history, a shallow one, runs the test all the same).
 */
const BASELINE_SHA256: Record<string, string> = {
  "0001_extensions.sql": "dda81504a276e61059988b009efd4265f39625256f7b07c7dc4114d694bf2109",
  "0010_conveyor_core.sql": "5503e257d2c57e3446433c6057d644f9ea6d57f6eb1fb295496a812c86cf45ad",
  "0011_tenant_tables.sql": "851f7619ee6d4707980de21d29a30620ff536faf814e106bdf015a549cd2df81",
  "0020_tenancy_pre_request.sql":
    "c1fc642c5270af3d4531d7ae926e1c5b7b63f0ad01832b275577e12356aa6482",
  "0050_enqueue_core.sql": "72543c2559d918a9524d8174103c18b255f4da7498cd35a0c627d588ccc839af",
  "0051_queue_job_expose.sql": "017868a0546e2a924083b308474c2e454cfed0697ade12479a00b90d1bb06cf9",
  "0052_queue_bootstrap.sql": "68d1d112188b2d4c4208b8454a3c0bd30a1f45dff17b56eb2c16c942c82eb081",
  "0053_queue_consume.sql": "26180fb52b783df1946d5a2b408a7be2798c85a6291a9b6d309876f1b143b581",
  "0054_queue_handlers.sql": "cefa82973eb3b15ee785148342260a197f6ea6e07328e6bfc022aeb7c081abb5",
  "0055_queue_observability.sql":
    "df2118a245a0257e4f94b920dd762eefd1ed2d8f85fd6c79c78aa44ec01747cf",
  "0056_queue_retention.sql": "8b3471de8f04cda83d105d596c8d3590ea20983112545190d7d74faaa7ddfaa8",
  "0060_dispatch.sql": "59ccfd87435210f44e5b51c2b3ba114e48b763a0f52b5a985b118bf57dbbb4ae",
  "0061_dead_letters.sql": "89b7b0f80a984409521e75563131ecc7652c55f3c8aa5bb4de97eff9225716c2",
  "0069_pgqueuer_enqueue.sql": "ad22b42d6bffcb9b81c57b9bf85005c9e428f4db5c2882e3eb7de1e90264de55",
  "0071_schedules.sql": "7eead1a210b4357fd8153a25a52a5d5a38d485ce28cd0dd30769dbe767f6218f",
  "20251020120000_content_dispatcher.sql":
    "232c2c847a9cfdb37d4ba4f36195d586e4fec3024d8fbb04f86b3960be44f6de",
  "20251101000000_operator_views.sql":
    "0ebde3dfdd02db681907990db77aee944bbf99da3c2bd01b78cfe772d047cd80",
};

const opts = { sanitizeOps: false, sanitizeResources: false };

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function sha256(path: string): Promise<string | null> {
  const bytes = await Deno.readFile(path).catch(() => null);
  if (bytes === null) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A Supabase project folder holding the baseline's migrations (read from the tree, each
 * checked against its recorded hash) and the project's config.toml.
 */
async function baselineProject(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "conveyor-baseline-" });
  await Deno.mkdir(`${dir}/supabase/migrations`, { recursive: true });
  await Deno.copyFile(`${REPO_ROOT}/supabase/config.toml`, `${dir}/supabase/config.toml`);
  for (const [file, hash] of Object.entries(BASELINE_SHA256)) {
    const path = `${REPO_ROOT}/supabase/migrations/${file}`;
    const now = await sha256(path);
    assert(
      now === hash,
      `supabase/migrations/${file} ${now === null ? "is gone" : "was edited"} since the baseline (${
        BASELINE_COMMIT.slice(0, 7)
      }): released migrations never change, add a new one`,
    );
    await Deno.copyFile(path, `${dir}/supabase/migrations/${file}`);
  }
  return dir;
}

/** `supabase db push`, timed; returns the migrations the CLI applied. */
async function timedPush(root: string, url: string, what: string): Promise<string[]> {
  const t0 = performance.now();
  const applied = await dbPush(root, url);
  const ms = Math.round(performance.now() - t0);
  console.log(`  ${what}: ${applied.length} migration(s) pushed in ${ms} ms`);
  return applied;
}

/** One job as the test records it: its ledger row, its message and its dead letter. */
interface JobState {
  id: string;
  number: string;
  state: string;
  kind: string;
  queue: string;
  status: string;
  attempts: number;
  max_attempts: number | null;
  critical: boolean;
  dedupe_key: string | null;
  dedupe_held: boolean;
  lease_id: string | null;
  locked_until: string | null;
  run_at: string;
  finished_at: string | null;
  last_error: string | null;
  errors: number;
  dead_letter: string | null;
  /** Where its pgmq message is: the tier queue (with read count and visibility), the archive, the DLQ. */
  message: string;
}

/** Everything the upgrade must leave as it was. */
interface Snapshot {
  jobs: JobState[];
  content: Record<string, unknown>[];
  schedules: Record<string, unknown>[];
  /** Per pgmq queue: messages in the queue and in its archive. */
  queues: Record<string, string>;
}

async function snapshot(sql: Sql): Promise<Snapshot> {
  // The jobs' state names: the ledger's status, with pending split by why it waits and
  // failed by why it failed (the dead letter's reason).
  const rows = await sql`
    select j.id, j.msg_id::text as number,
           case
             when j.status = 'pending' and j.attempts > 0 then 'retrying'
             when j.status = 'pending' and j.run_at > now() then 'delayed'
             when j.status = 'pending' then 'ready'
             when j.status = 'failed' and d.reason like 'cancelled:%' then 'cancelled'
             when j.status = 'failed' then 'dead-lettered'
             else j.status
           end as state,
           j.kind, j.queue_name as queue, j.status, j.attempts, j.max_attempts,
           exists (select from public.critical_jobs c where c.job_id = j.id) as critical,
           j.dedupe_key,
           exists (select from conveyor.dedupe_keys k where k.job_id = j.id) as dedupe_held,
           j.lease_id, j.locked_until::text, j.run_at::text, j.finished_at::text, j.last_error,
           jsonb_array_length(j.errors) as errors, d.reason as dead_letter,
           d.dlq_msg_id
    from public.jobs j
    left join public.dead_letter_jobs d on d.job_id = j.id and d.redriven_at is null
    order by j.msg_id`;
  const jobs: JobState[] = [];
  for (const r of rows) {
    const { dlq_msg_id, ...row } = r;
    const [q] = await sql.unsafe(
      `select read_ct, vt::text from pgmq."q_${r.queue}" where msg_id = $1`,
      [r.number],
    );
    const [a] = await sql.unsafe(`select 1 from pgmq."a_${r.queue}" where msg_id = $1`, [
      r.number,
    ]);
    const [dlq] = dlq_msg_id === null
      ? []
      : await sql`select 1 from pgmq.q_q_dlq where msg_id = ${dlq_msg_id}`;
    const where = [
      q ? `queue (read ${q.read_ct}, visible ${q.vt})` : null,
      a ? "archive" : null,
      dlq ? "dlq" : null,
    ].filter(Boolean);
    jobs.push({ ...row, message: where.join(", ") || "none" } as JobState);
  }
  const content = await sql`
    select c.id, c.status as job_status, c.current_stage, s.stage, s.status, s.attempts,
           s.lease_id, s.lease_expires_at::text, s.available_at::text
    from public.content_jobs c join public.content_job_stages s on s.job_id = c.id
    order by c.id, s.id`;
  const schedules = await sql`
    select id, name, cron, kind, enabled, next_run_at::text, materialised_through::text,
           last_run_at::text
    from public.schedules order by id`;
  const names = (await sql`select queue_name from pgmq.meta order by queue_name`)
    .map((r) => r.queue_name as string);
  const counts = await sql.unsafe(
    names.map((n) =>
      `select '${n}' as queue, (select count(*) from pgmq."q_${n}") as queued,
              (select count(*) from pgmq."a_${n}") as archived`
    ).join(" union all "),
  );
  const queues = Object.fromEntries(
    counts.map((c) => [c.queue as string, `${c.queued} queued, ${c.archived} archived`]),
  );
  return {
    jobs,
    content: content.map((r) => ({ ...r })),
    schedules: schedules.map((r) => ({ ...r })),
    queues,
  };
}

/** "ready 4, delayed 1, …": how many jobs are in each state. */
function perState(s: Snapshot): string {
  const n = new Map<string, number>();
  for (const j of s.jobs) n.set(j.state, (n.get(j.state) ?? 0) + 1);
  return [...n].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k} ${v}`).join(", ");
}

const WORKER = "upgrade-test";

/** A job in every state, a content job mid-pipeline and a schedule: the baseline's functions. */
async function jobsInEveryState(sql: Sql) {
  const queueJob = async (body: Record<string, unknown>) => {
    const [r] = await sql`select public.queue_job(${sql.json(body as never)}) as n`;
    return String(r!.n);
  };
  const claim = async (kind: string, vt: number) =>
    await sql<{ job_id: string; lease_id: string; msg_id: string }[]>`
      select job_id, lease_id, msg_id::text from public.claim_jobs(
        p_kind => ${kind}, p_worker => ${WORKER}, p_qty => 10, p_vt => ${vt})`;
  const settle = async (
    job: { job_id: string; lease_id: string },
    status: string,
    error: string | null,
    policy: Record<string, unknown> = {},
  ) => {
    const [r] = await sql`select outcome from public.settle_jobs(${WORKER}, ${
      sql.json([{ ...job, status, error: error === null ? null : { message: error } }] as never)
    }, ${sql.json(policy as never)})`;
    return r!.outcome as string;
  };
  /** Enqueues an enrich job, claims it alone and settles it. */
  const settled = async (
    key: string,
    status: string,
    error: string | null,
    policy: Record<string, unknown> = {},
  ) => {
    const n = await queueJob({ idempotency_key: key, kind: "enrich", payload: { key } });
    const got = await claim("enrich", 30);
    assertEquals(got.map((j) => j.msg_id), [n], `${key}: claimed alone`);
    return { n, outcome: await settle(got[0]!, status, error, policy) };
  };

  const completed = await settled("upgrade:completed", "completed", null);
  assertEquals(completed.outcome, "completed");
  const dead = await settled("upgrade:dead", "failed", "boom", { max_attempts: 1 });
  assertEquals(dead.outcome, "dead_lettered");
  const cancelled = await settled("upgrade:cancelled", "cancelled", "no email");
  assertEquals(cancelled.outcome, "dead_lettered");
  const hour = 3_600_000;
  const retrying = await settled("upgrade:retrying", "failed", "timeout", {
    backoff_base_ms: hour,
    backoff_max_ms: hour,
  });
  assertEquals(retrying.outcome, "retry_scheduled");

  // Processing: claimed, lease held across the upgrade (10 minutes: longer than the test).
  const processing = await queueJob({ idempotency_key: "upgrade:processing", kind: "enforce" });
  const held = await claim("enforce", 600);
  assertEquals(held.map((j) => j.msg_id), [processing]);

  const ready = await queueJob({ idempotency_key: "upgrade:ready", kind: "outreach" });
  const readyFast = await queueJob({
    idempotency_key: "upgrade:ready-fast",
    kind: "outreach",
    priority: "fast",
  });
  const delayed = await queueJob({
    idempotency_key: "upgrade:delayed",
    kind: "outreach",
    priority: "bulk",
    delay_seconds: 3600,
  });
  const critical = await queueJob({
    idempotency_key: "upgrade:critical",
    kind: "outreach",
    critical: true,
  });
  const [pq] = await sql`
    select public.fn_pgqueuer_enqueue('fetch', convert_to('hello', 'utf8'), 0, '0 seconds',
                                      'upgrade:dedupe', null)::text as n`;
  const pgqueuer = pq!.n as string;

  // A content job mid-pipeline: research completed, outline claimed (lease held).
  const [cj] = await sql`select public.queue_content_job(${
    sql.json({ idempotency_key: "upgrade:content", brief: { topic: "upgrades" } })
  }) as id`;
  const contentId = cj!.id as string;
  const claimStage = async (stage: string) => {
    const [r] = await sql<{ job_id: string; stage: string; lease_id: string }[]>`
      select job_id, stage, lease_id from public.claim_content_stage(${stage}, ${WORKER}, null, 600)`;
    assertEquals(r?.job_id, contentId, `${stage} claimed`);
    return r!;
  };
  const research = await claimStage("research");
  const [rs] = await sql`select outcome from public.settle_content_stages(${WORKER}, ${
    sql.json([{ ...research, status: "completed", output: { notes: "n" } }] as never)
  })`;
  assertEquals(rs?.outcome, "completed");
  const outline = await claimStage("outline");

  const [sc] = await sql`
    insert into public.schedules (tenant_id, name, cron, kind, payload)
    values (conveyor.default_tenant_id(), 'upgrade nightly', '0 3 * * *', 'enrich', '{"n": 1}')
    returning id, next_run_at`;

  return {
    numbers: {
      completed: completed.n,
      dead: dead.n,
      cancelled: cancelled.n,
      retrying: retrying.n,
      processing,
      ready,
      readyFast,
      delayed,
      critical,
      pgqueuer,
    },
    lease: held[0]!,
    content: { id: contentId, outline },
    schedule: { id: sc!.id as string, nextRunAt: sc!.next_run_at as Date },
  };
}

Deno.test({
  ...opts,
  name:
    "upgrade: the baseline's database with jobs in every state takes the current migrations through the CLI; no job lost",
  async fn() {
    const env = testEnv();
    const name = `t_upgrade_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const empty = `${name}_empty`;
    const url = withDb(env.dbUrl, name);
    const admin = connect(env.dbUrl, 1);
    const baseline = await baselineProject();
    let conn: Sql | null = null;
    try {
      console.log(`  baseline ${BASELINE_COMMIT.slice(0, 7)}, database ${name}`);
      // A new project: the platform's part (superuser), then the baseline pushed as postgres.
      await admin.unsafe(`create database ${name}`);
      await bootstrapDatabase(withDb(env.adminDbUrl, name));
      const baselineFiles = await listMigrations(`${baseline}/supabase/migrations`);
      assertEquals(
        await timedPush(baseline, url, "baseline push"),
        baselineFiles.map((m) => `${m.version}_${m.name}`),
      );
      // A copy without jobs, upgraded alongside: its whole dump must be a fresh database's.
      await admin.unsafe(`create database ${empty} template ${name}`);

      const sql = conn = connect(url, 2);
      await upsertVaultSecret(sql, "project_url", "http://127.0.0.1:9");
      await upsertVaultSecret(sql, "service_role_key", "upgrade-test-key");
      const made = await jobsInEveryState(sql);
      const before = await snapshot(sql);
      const n = made.numbers;
      assertEquals(
        before.jobs.map((j) => [j.number, j.state]),
        [
          [n.completed, "completed"],
          [n.dead, "dead-lettered"],
          [n.cancelled, "cancelled"],
          [n.retrying, "retrying"],
          [n.processing, "processing"],
          [n.ready, "ready"],
          [n.readyFast, "ready"],
          [n.delayed, "delayed"],
          [n.critical, "ready"],
          [n.pgqueuer, "ready"],
        ],
        "the baseline's database holds a job in every state",
      );
      assertEquals(
        before.jobs.filter((j) => j.critical || j.dedupe_held).map((j) => j.number),
        [n.critical, n.pgqueuer],
      );
      console.log(`  jobs before: ${perState(before)}`);

      // The upgrade: the current migrations, the same CLI, the same role.
      const local = await listMigrations(`${REPO_ROOT}/supabase/migrations`);
      const known = new Set(baselineFiles.map((m) => m.version));
      const expected = local.filter((m) => !known.has(m.version)).map((m) =>
        `${m.version}_${m.name}`
      );
      assertEquals(await timedPush(REPO_ROOT, url, "upgrade push"), expected);
      assertEquals(
        await timedPush(REPO_ROOT, withDb(env.dbUrl, empty), "upgrade push (no jobs)"),
        expected,
      );
      const t0 = performance.now();
      assertEquals(
        await migrationList(REPO_ROOT, url),
        local.map((m) => ({ local: m.version, remote: m.version })),
        "migration list: every local version applied, nothing else",
      );
      console.log(
        `  migration list: ${local.length} local = remote (${
          Math.round(performance.now() - t0)
        } ms)`,
      );

      const after = await snapshot(sql);
      console.log(`  jobs after:  ${perState(after)}`);
      assertEquals(after, before, "every job, stage, schedule and message as before the upgrade");

      // The work in flight finishes with the current functions.
      // settle_jobs answers in no particular order: by job id here.
      const settle = async (results: Record<string, unknown>[]) =>
        (await sql`select job_id, accepted, outcome from public.settle_jobs(${WORKER}, ${
          sql.json(results as never)
        }) order by job_id`).map((r) => ({ ...r }));
      const claim = async (kind: string) =>
        await sql<{ job_id: string; lease_id: string; msg_id: string; max_attempts: number }[]>`
          select job_id, lease_id, msg_id::text, max_attempts
          from public.claim_jobs(p_kind => ${kind}, p_worker => ${WORKER}, p_qty => 10)
          order by msg_id`;
      const done = (jobs: { job_id: string; lease_id: string }[]) =>
        jobs.map((j) => ({ job_id: j.job_id, lease_id: j.lease_id, status: "completed" }));
      const accepted = (jobs: { job_id: string }[]) =>
        jobs.map((j) => ({ job_id: j.job_id, accepted: true, outcome: "completed" }))
          .sort((a, b) => (a.job_id < b.job_id ? -1 : 1));

      assertEquals(
        await settle(done([made.lease])),
        accepted([made.lease]),
        "the processing job settles with the lease it took before the upgrade",
      );
      const outreach = await claim("outreach");
      assertEquals(
        outreach.map((j) => [j.msg_id, j.max_attempts]),
        [[n.ready, null], [n.readyFast, null], [n.critical, 5]],
        "the ready outreach jobs (not the delayed one); the critical one keeps its 5 attempts",
      );
      const fetch = await claim("fetch");
      assertEquals(fetch.map((j) => j.msg_id), [n.pgqueuer]);
      const dup = await sql`
        select public.fn_pgqueuer_enqueue('fetch', null, 0, '0 seconds', 'upgrade:dedupe', null)`
        .then(() => null, (e) => e);
      assertEquals(
        [dup?.code, dup?.message],
        ["23505", "fn_pgqueuer_enqueue: dedupe_key upgrade:dedupe is already queued or running"],
        "the running pgqueuer job still holds its dedupe key",
      );
      assertEquals(await settle(done([...outreach, ...fetch])), accepted([...outreach, ...fetch]));

      const [redriven] = await sql`select public.redrive_dead_job(${
        before.jobs.find((j) => j.number === n.dead)!.id
      })::text as n`;
      assertEquals(redriven?.n, n.dead, "the dead letter is redriven under its number");
      const again = await claim("enrich");
      assertEquals(again.map((j) => j.msg_id), [n.dead], "and runs again (the retrying job waits)");
      assertEquals(await settle(done(again)), accepted(again));

      const [stage] = await sql`select stage, accepted, outcome from public.settle_content_stages(
        ${WORKER}, ${
        sql.json([{ ...made.content.outline, status: "completed", output: { o: 1 } }] as never)
      })`;
      assertEquals(
        { ...stage },
        { stage: "outline", accepted: true, outcome: "completed" },
        "the content stage claimed before the upgrade settles with its lease",
      );
      const [draft] = await sql`
        select status from public.content_job_stages
        where job_id = ${made.content.id} and stage = 'draft'`;
      assertEquals(draft?.status, "ready", "and the pipeline moves on");

      const fired = await sql`
        select outcome from public.materialise_schedules(${made.schedule.nextRunAt})
        where schedule_id = ${made.schedule.id}`;
      assertEquals(fired.map((r) => r.outcome), ["enqueued"], "the schedule still fires");

      const finished = await snapshot(sql);
      console.log(`  jobs after the in-flight work finished: ${perState(finished)}`);

      // The upgraded schema is a fresh database's: the whole dump for the copy without jobs
      // (seeded rows included), the schema sections for the one with jobs. Neither database
      // runs pg_cron (it serves only `postgres`), so both dumps say so instead of listing the
      // cron jobs: those are compared by schema_dump_test on the stack's own database.
      await using fresh = await freshDb();
      const dump = (u: string, seededRows = true) =>
        schemaDump({ url: u, cronUrl: u, pgBin: env.pgBin, seededRows });
      for (
        const [label, got, want] of [
          [
            "upgraded database without jobs",
            await dump(withDb(env.dbUrl, empty)),
            await dump(fresh.url),
          ],
          [
            "upgraded database with jobs (schema sections)",
            await dump(url, false),
            await dump(fresh.url, false),
          ],
        ] as const
      ) {
        if (got !== want) {
          throw new Error(
            `the ${label} dump differs from a fresh database's:\n${await unifiedDiff(
              want,
              got,
              ["fresh database", label],
            )}`,
          );
        }
      }
      console.log("  schema dump: upgraded = fresh");
    } finally {
      await conn?.end();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.unsafe(`drop database if exists ${empty} with (force)`);
      await admin.end();
      await Deno.remove(baseline, { recursive: true });
    }
  },
});

Deno.test({
  ...opts,
  name:
    "upgrade: the CLI refuses a migration named before the newest applied one, and takes one named after it",
  async fn() {
    await using db = await freshDb(); // the current migrations, applied by the CLI
    const dir = await Deno.makeTempDir({ prefix: "conveyor-cli-" });
    try {
      await Deno.mkdir(`${dir}/supabase/migrations`, { recursive: true });
      await Deno.copyFile(`${REPO_ROOT}/supabase/config.toml`, `${dir}/supabase/config.toml`);
      for (const m of await listMigrations(`${REPO_ROOT}/supabase/migrations`)) {
        await Deno.copyFile(m.path, `${dir}/supabase/migrations/${m.path.split("/").at(-1)}`);
      }
      // An old-style number and a timestamp older than the newest applied migration.
      const late = "create table public.too_late (id int);\n";
      await Deno.writeTextFile(`${dir}/supabase/migrations/0072_x.sql`, late);
      await Deno.writeTextFile(`${dir}/supabase/migrations/20251019000000_x.sql`, late);
      const history = () =>
        db.sql`select count(*)::int as n, to_regclass('public.too_late')::text as t
               from supabase_migrations.schema_migrations`;
      const [was] = await history();

      const res = await supabaseCli(dir, ["db", "push", "--db-url", cliDbUrl(db.url)]);
      assertEquals(res.code, 1, `the CLI refused:\n${res.stderr}`);
      const text = res.stderr.trim().split("\n");
      assertEquals(text.slice(text.findIndex((l) => l.startsWith("Found local"))), [
        "Found local migration files to be inserted before the last migration on remote database.",
        "",
        "Rerun the command with --include-all flag to apply these migrations:",
        "supabase/migrations/0072_x.sql",
        "supabase/migrations/20251019000000_x.sql",
      ]);
      assertEquals((await history())[0], was, "nothing applied");

      // The same change named after the newest is accepted.
      await Deno.remove(`${dir}/supabase/migrations/0072_x.sql`);
      await Deno.rename(
        `${dir}/supabase/migrations/20251019000000_x.sql`,
        `${dir}/supabase/migrations/20991231235959_x.sql`,
      );
      assertEquals(await dbPush(dir, db.url), ["20991231235959_x"]);
      assertEquals((await history())[0], { n: was!.n + 1, t: "too_late" });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
