/**
 * `deno task doctor`: checks a whole Conveyor deployment and prints one line per check,
 *
 *   ok   <check>
 *   FAIL <check>: <what is wrong> → <the command that fixes it>
 *   skip <check>: <why it was not checked>
 *
 * and exits 1 when any check failed (seed 000's doctor, in TypeScript). The database lints
 * (Supabase's Advisors, tools/lint/) print one FAIL line per failing finding.
 *
 * Target: SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (+ SUPABASE_DB_URL for the checks that
 * need SQL) when set, else the local stack (`.stack/local/state.json`, or the CLI's default
 * ports, and the local demo key). The `queue_job` check is a real call with seed 000's own
 * ping body (`doctor:ping`): it enqueues once, later runs return the same id (idempotency),
 * and the enrich handler skips its empty payload, so nothing is dead-lettered.
 *
 * @module
 */
import postgres from "postgres";
import { cliArgs } from "./args.ts";
import { CONTENT_STAGES } from "../supabase/functions/_shared/content/types.ts";
import {
  type TenantRow,
  TENANTS_COMMAND,
  workerUrl,
} from "../supabase/functions/_shared/operator/data.ts";
import { formatAge } from "../supabase/functions/_shared/operator/format.ts";
import { exposedSchemas, failing, loadAllowList, runLints, sortFindings } from "./lint/db_lints.ts";
import { LINTS } from "./lint/lints.ts";
import { listMigrations } from "./stack/migrate.ts";
import { serviceRoleKey } from "./stack/keys.ts";
import { checkProject, liveState, REPO_ROOT, resolveOptions } from "./stack/state.ts";

/** Where the doctor looks. */
export interface DoctorTarget {
  url: string | undefined;
  key: string | undefined;
  dbUrl: string | undefined;
  /** True when the target is the local stack (fix commands differ). */
  local: boolean;
  /** The Supabase project a local stack serves (its state.json), when not this checkout. */
  project?: string;
}

/** One check's outcome. */
export interface CheckResult {
  check: string;
  status: "ok" | "fail" | "skip";
  detail?: string;
  fix?: string;
}

/** The queues seed 000 names. */
export const SEED_QUEUES = ["q_enrich", "q_outreach", "q_enforce"] as const;

/** The worker functions that must answer. */
export const WORKER_SLUGS = ["enrich-worker", "outreach-worker", "enforce-worker", "dlq-worker"];

/** Formats a result as its output line. */
export function formatLine(r: CheckResult): string {
  if (r.status === "ok") return `ok   ${r.check}${r.detail ? ` (${r.detail})` : ""}`;
  if (r.status === "skip") return `skip ${r.check}: ${r.detail}`;
  return `FAIL ${r.check}: ${r.detail}${r.fix ? ` → ${r.fix}` : ""}`;
}

/**
 * Resolves the target from the environment, falling back to the local stack: the one serving
 * `project` when given (its own `.stack/<name>-<hash>` folder), else this checkout's.
 */
export async function resolveTarget(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  project?: string,
): Promise<DoctorTarget> {
  if (env.SUPABASE_URL) {
    return {
      url: env.SUPABASE_URL.replace(/\/+$/, ""),
      key: env.SUPABASE_SERVICE_ROLE_KEY,
      dbUrl: env.SUPABASE_DB_URL,
      local: /^https?:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(env.SUPABASE_URL),
    };
  }
  const opts = resolveOptions(project === undefined ? {} : { project });
  const state = await liveState(opts.dir);
  const apiPort = state?.apiPort ?? opts.apiPort;
  const dbPort = state?.dbPort ?? opts.dbPort;
  return {
    url: `http://127.0.0.1:${apiPort}`,
    key: env.SUPABASE_SERVICE_ROLE_KEY ?? (await serviceRoleKey()),
    dbUrl: env.SUPABASE_DB_URL ?? `postgresql://postgres:postgres@127.0.0.1:${dbPort}/postgres`,
    local: true,
    project: state?.project && state.project !== state.root ? state.project : undefined,
  };
}

function jwtRole(token: string): string | null {
  try {
    const b64 = token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return typeof claims.role === "string" ? claims.role : null;
  } catch {
    return null;
  }
}

async function request(
  t: DoctorTarget,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${t.url}${path}`, {
    ...init,
    headers: {
      apikey: t.key ?? "",
      Authorization: `Bearer ${t.key ?? ""}`,
      "Content-Type": "application/json",
      ...(init.headers ?? {}),
    },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, text: await res.text() };
}

function short(text: string): string {
  try {
    const j = JSON.parse(text);
    return String(j.message ?? j.msg ?? j.error ?? text).slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

/** Cron job names the migrations schedule (`cron.schedule('<name>', …)`). */
export async function expectedCronJobs(
  dir = `${REPO_ROOT}/supabase/migrations`,
): Promise<string[]> {
  const names = new Set<string>();
  for (const m of await listMigrations(dir)) {
    const text = await Deno.readTextFile(m.path);
    for (const hit of text.matchAll(/cron\.schedule\(\s*'([^']+)'\s*,/g)) names.add(hit[1]!);
  }
  return [...names].sort();
}

/** Runs every check against `t`. */
export async function runDoctor(
  t: DoctorTarget,
  opts: { migrationsDir?: string; project?: string } = {},
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const upFix = t.local ? "deno task stack:up" : "check SUPABASE_URL (Project Settings → API)";
  const resetFix = t.local ? "deno task db:reset" : "supabase db push";

  // 1. env
  const missing = [!t.url && "SUPABASE_URL", !t.key && "SUPABASE_SERVICE_ROLE_KEY"].filter(
    Boolean,
  );
  if (missing.length) {
    out.push({
      check: "env",
      status: "fail",
      detail: `${missing.join(" and ")} not set`,
      fix: `export ${missing.map((m) => `${m}=…`).join(" ")} (Project Settings → API)`,
    });
    return out;
  }
  out.push({
    check: "env",
    status: "ok",
    detail: `${t.url}${t.dbUrl ? " + database URL" : ", no SUPABASE_DB_URL: SQL checks skipped"}`,
  });

  // 2. API reachable
  try {
    await request(t, "/rest/v1/");
    out.push({ check: "api reachable", status: "ok" });
  } catch (e) {
    out.push({
      check: "api reachable",
      status: "fail",
      detail: `cannot reach ${t.url} (${(e as Error).message.split("\n")[0]})`,
      fix: upFix,
    });
    return out;
  }

  // 3. key valid (signature checked by the API, role by us)
  const keyFix = t.local
    ? "use the service_role key that `deno task stack:status` prints"
    : "export SUPABASE_SERVICE_ROLE_KEY=<service_role key from Project Settings → API>";
  // New-style secret keys are not JWTs; the API maps them to service_role.
  const role = t.key!.startsWith("sb_secret_") ? "service_role" : jwtRole(t.key!);
  let health: Record<string, unknown> | null = null;
  if (role !== "service_role") {
    out.push({
      check: "service role key",
      status: "fail",
      detail: `the key's role is ${role ?? "unknown"}, not service_role`,
      fix: keyFix,
    });
    return out;
  }
  const h = await request(t, "/rest/v1/rpc/conveyor_health", { method: "POST", body: "{}" });
  if (h.status === 401 || (h.status === 403 && /jwt/i.test(h.text))) {
    out.push({
      check: "service role key",
      status: "fail",
      detail: `rejected: ${short(h.text)}`,
      fix: keyFix,
    });
    return out;
  }
  out.push({ check: "service role key", status: "ok" });
  if (h.status === 200) health = JSON.parse(h.text);

  // 4. queue_job visible to PostgREST (seed 000's ping)
  const ping = await request(t, "/rest/v1/rpc/queue_job", {
    method: "POST",
    body: JSON.stringify({ idempotency_key: "doctor:ping", kind: "enrich", payload: {} }),
  });
  if (ping.status === 200 && /^\d+$/.test(ping.text.trim())) {
    out.push({ check: "queue_job RPC", status: "ok", detail: `message id ${ping.text.trim()}` });
  } else if (ping.status === 404) {
    out.push({
      check: "queue_job RPC",
      status: "fail",
      detail: "PostgREST does not know public.queue_job(jsonb) (migration 0051 not applied?)",
      fix: resetFix,
    });
  } else {
    out.push({
      check: "queue_job RPC",
      status: "fail",
      detail: `HTTP ${ping.status}: ${short(ping.text)}`,
      fix: resetFix,
    });
  }

  // SQL-side checks: through SUPABASE_DB_URL when given, else what conveyor_health says.
  let sql: postgres.Sql | undefined;
  if (t.dbUrl) {
    sql = postgres(t.dbUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await sql`select 1`;
    } catch (e) {
      out.push({
        check: "database",
        status: "fail",
        detail: `cannot connect with SUPABASE_DB_URL (${(e as Error).message})`,
        fix: t.local ? "deno task stack:up" : "check SUPABASE_DB_URL (Project Settings → Database)",
      });
      await sql.end().catch(() => {});
      sql = undefined;
    }
  }
  try {
    out.push(await checkQueues(sql, health, t));
    out.push(...(await checkExtensions(sql, health)));
    if (sql) {
      out.push(await checkMigrations(sql, opts.migrationsDir, resetFix));
      out.push(await checkVault(sql, t));
      out.push(await checkCron(sql, opts.migrationsDir, resetFix));
      out.push(...(await checkLints(sql, opts.project)));
    } else {
      for (const c of ["migrations applied", "vault secrets", "cron jobs", "database lints"]) {
        out.push({ check: c, status: "skip", detail: "needs SUPABASE_DB_URL" });
      }
    }
  } finally {
    await sql?.end();
  }

  // worker functions answer
  const down: string[] = [];
  for (const slug of WORKER_SLUGS) {
    try {
      const r = await request(t, `/functions/v1/${slug}/health`, { method: "GET" });
      if (r.status !== 200) down.push(`${slug} (HTTP ${r.status}: ${short(r.text)})`);
    } catch (e) {
      down.push(`${slug} (${(e as Error).message.split("\n")[0]})`);
    }
  }
  out.push(
    down.length
      ? {
        check: "worker functions",
        status: "fail",
        detail: `not answering: ${down.join(", ")}`,
        fix: t.local
          ? "deno task stack:up (the gateway serves supabase/functions)"
          : `supabase functions deploy ${WORKER_SLUGS.join(" ")}`,
      }
      : { check: "worker functions", status: "ok", detail: WORKER_SLUGS.join(", ") },
  );

  out.push(await checkStageEndpoints(t, resetFix));
  out.push(await checkOperatorEndpoints(t));
  out.push(await checkTenants(t, resetFix));
  return out;
}

/**
 * The tenants `operator_tenants` flags as starving (issue 21): ready work whose oldest job has
 * waited far longer than the other tenants' of the same kind or stage, with nothing of it
 * claimed in the last minute. One result: ok, or fail naming each with the command to look.
 */
export function tenantsResult(rows: readonly TenantRow[]): CheckResult {
  const check = "tenants";
  const starving = rows.filter((r) => r.starving);
  if (starving.length === 0) {
    const withWork = new Set(rows.filter((r) => r.ready + r.running > 0).map((r) => r.tenant_id));
    return { check, status: "ok", detail: `${withWork.size} with work, none starving` };
  }
  return {
    check,
    status: "fail",
    detail: starving.map((r) =>
      `tenant ${r.tenant} is starving on ${r.source === "content" ? "stage " : ""}${r.target}: ` +
      `its oldest ready job has waited ${formatAge(r.oldest_ready_age_sec ?? 0)} ` +
      `(the other tenants' median ${formatAge(r.others_median_age_sec ?? 0)}) and none ` +
      "was claimed in the last minute"
    ).join("; "),
    fix: `${TENANTS_COMMAND} (then its weight: deno task conveyor tenant weight <tenant-id> <n>, ` +
      "or its concurrency keys: deno task conveyor keys limit)",
  };
}

async function checkTenants(t: DoctorTarget, resetFix: string): Promise<CheckResult> {
  const r = await request(t, "/rest/v1/rpc/operator_tenants", {
    method: "POST",
    body: JSON.stringify({ p_minutes: 5 }),
  });
  if (r.status === 404) {
    return {
      check: "tenants",
      status: "fail",
      detail:
        "PostgREST does not know public.operator_tenants (migration 20261207120100 not applied?)",
      fix: resetFix,
    };
  }
  if (r.status !== 200) {
    return { check: "tenants", status: "fail", detail: `HTTP ${r.status}: ${short(r.text)}` };
  }
  return tenantsResult(JSON.parse(r.text) as TenantRow[]);
}

/**
 * Where each content stage's workers are called: `content_stage_config.worker_endpoint`
 * (seed 001) resolved against the project URL, as the dispatcher resolves it against Vault
 * `project_url`. Shown compactly when every stage follows `<project>/functions/v1/<stage>-worker`.
 */
async function checkStageEndpoints(t: DoctorTarget, fix: string): Promise<CheckResult> {
  const r = await request(t, "/rest/v1/content_stage_config?select=stage,worker_endpoint", {
    method: "GET",
  });
  if (r.status !== 200) {
    return {
      check: "stage endpoints",
      status: "fail",
      detail: `content_stage_config: HTTP ${r.status}: ${short(r.text)}`,
      fix,
    };
  }
  return stageEndpoints(JSON.parse(r.text), t.url!, fix);
}

/** The `stage endpoints` line for the rows of content_stage_config (pure; see above). */
export function stageEndpoints(
  rows: ReadonlyArray<{ stage: string; worker_endpoint: string }>,
  projectUrl: string,
  fix: string,
): CheckResult {
  const check = "stage endpoints";
  const byStage = new Map(rows.map((r) => [r.stage, workerUrl(r.worker_endpoint, projectUrl)]));
  const missing = CONTENT_STAGES.filter((s) => !byStage.has(s));
  if (missing.length) {
    return {
      check,
      status: "fail",
      detail: `no content_stage_config row for ${missing.join(", ")}`,
      fix,
    };
  }
  const usual = (stage: string) => `${projectUrl}/functions/v1/${stage}-worker`;
  const listed = (stages: readonly string[]) =>
    stages.map((s) => `${s} → ${byStage.get(s)}`).join(", ");
  const other = CONTENT_STAGES.filter((s) => byStage.get(s) !== usual(s));
  const detail = other.length === CONTENT_STAGES.length
    ? listed(other)
    : `${usual("<stage>")}${other.length ? `; except ${listed(other)}` : ""}`;
  return { check, status: "ok", detail };
}

/** The operator endpoints (issue 8): the metrics function answers the key with conveyor_up 1. */
async function checkOperatorEndpoints(t: DoctorTarget): Promise<CheckResult> {
  const check = "operator endpoints";
  const fix = t.local
    ? "deno task stack:up (the gateway serves supabase/functions)"
    : "supabase functions deploy conveyor-dashboard conveyor-metrics --no-verify-jwt";
  try {
    const r = await request(t, "/functions/v1/conveyor-metrics", { method: "GET" });
    if (r.status === 200 && /^conveyor_up 1$/m.test(r.text)) {
      return { check, status: "ok", detail: "conveyor-metrics, conveyor-dashboard" };
    }
    if (r.status === 401) {
      return {
        check,
        status: "fail",
        detail: "conveyor-metrics refuses the service role key (HTTP 401)",
        fix: t.local
          ? "use the key the stack printed"
          : "check SUPABASE_SERVICE_ROLE_KEY; the functions compare it with their own SUPABASE_SERVICE_ROLE_KEY",
      };
    }
    return {
      check,
      status: "fail",
      detail: `conveyor-metrics: HTTP ${r.status}: ${short(r.text)}`,
      fix,
    };
  } catch (e) {
    return {
      check,
      status: "fail",
      detail: `conveyor-metrics: ${(e as Error).message.split("\n")[0]}`,
      fix,
    };
  }
}

async function checkQueues(
  sql: postgres.Sql | undefined,
  health: Record<string, unknown> | null,
  t: DoctorTarget,
): Promise<CheckResult> {
  let missing: string[];
  if (sql) {
    const rows = await sql`
      select q from unnest(${SEED_QUEUES as unknown as string[]}::text[]) q
      where to_regclass(format('pgmq.%I', 'q_' || q)) is null`.catch(() => null);
    missing = rows ? rows.map((r) => r.q as string) : [...SEED_QUEUES];
  } else if (health) {
    const gone = new Set((health.missing_queues as string[] | undefined) ?? []);
    missing = SEED_QUEUES.filter((q) => gone.has(q));
  } else {
    return {
      check: "pgmq queues",
      status: "fail",
      detail: "conveyor_health() is not available (migration 0055 not applied?)",
      fix: t.local ? "deno task db:reset" : "supabase db push",
    };
  }
  if (missing.length === 0) {
    return { check: "pgmq queues", status: "ok", detail: SEED_QUEUES.join(", ") };
  }
  const db = t.dbUrl ? `"${t.dbUrl}"` : '"$SUPABASE_DB_URL"';
  return {
    check: "pgmq queues",
    status: "fail",
    detail: `missing ${missing.join(", ")}`,
    fix: `psql ${db} -c "select conveyor.ensure_kind_queues(kind) from conveyor.job_kinds"`,
  };
}

async function checkExtensions(
  sql: postgres.Sql | undefined,
  health: Record<string, unknown> | null,
): Promise<CheckResult[]> {
  let have: Record<string, string | null>;
  if (sql) {
    const rows = await sql`select extname, extversion from pg_extension`;
    have = Object.fromEntries(rows.map((r) => [r.extname, r.extversion]));
  } else if (health?.extensions) {
    have = health.extensions as Record<string, string | null>;
  } else {
    return [{
      check: "pg_net and pg_cron",
      status: "skip",
      detail: "needs SUPABASE_DB_URL or conveyor_health()",
    }];
  }
  const out: CheckResult[] = [];
  for (
    const [ext, fix] of [
      [
        "pg_net",
        "create extension pg_net with schema extensions; (Dashboard → Database → Extensions)",
      ],
      [
        "pg_cron",
        "create extension pg_cron; (Dashboard → Database → Extensions; needs shared_preload_libraries)",
      ],
    ] as const
  ) {
    out.push(
      have[ext]
        ? { check: ext, status: "ok", detail: `version ${have[ext]}` }
        : { check: ext, status: "fail", detail: `extension ${ext} is not installed`, fix },
    );
  }
  return out;
}

async function checkMigrations(
  sql: postgres.Sql,
  dir = `${REPO_ROOT}/supabase/migrations`,
  fix: string,
): Promise<CheckResult> {
  const files = await listMigrations(dir);
  const rows = await sql`select version from supabase_migrations.schema_migrations`.catch(() =>
    null
  );
  if (!rows) {
    return {
      check: "migrations applied",
      status: "fail",
      detail: "supabase_migrations.schema_migrations does not exist (no migration ever applied)",
      fix,
    };
  }
  const done = new Set(rows.map((r) => r.version as string));
  const missing = files.filter((f) => !done.has(f.version)).map((f) => `${f.version}_${f.name}`);
  return missing.length
    ? {
      check: "migrations applied",
      status: "fail",
      detail: `not applied: ${missing.join(", ")}`,
      fix,
    }
    : { check: "migrations applied", status: "ok", detail: `${files.length} of ${files.length}` };
}

async function checkVault(sql: postgres.Sql, t: DoctorTarget): Promise<CheckResult> {
  const rows = await sql`
    select name from vault.decrypted_secrets
    where name in ('project_url', 'service_role_key') and coalesce(decrypted_secret, '') <> ''`
    .catch(() => null);
  if (!rows) {
    return {
      check: "vault secrets",
      status: "fail",
      detail: "Vault (vault.decrypted_secrets) is not available",
      fix: "create extension if not exists supabase_vault;",
    };
  }
  const have = new Set(rows.map((r) => r.name as string));
  const missing = ["project_url", "service_role_key"].filter((n) => !have.has(n));
  if (missing.length === 0) {
    return { check: "vault secrets", status: "ok", detail: "project_url, service_role_key" };
  }
  const value = (
    n: string,
  ) => (n === "project_url" ? t.url ?? "<project url>" : "<service_role key>");
  return {
    check: "vault secrets",
    status: "fail",
    detail: `missing ${missing.join(", ")}`,
    fix: t.local
      ? "deno task stack:up (stores them)"
      : missing.map((n) => `select vault.create_secret('${value(n)}', '${n}');`).join(" "),
  };
}

async function checkCron(
  sql: postgres.Sql,
  dir: string | undefined,
  fix: string,
): Promise<CheckResult> {
  const expected = await expectedCronJobs(dir);
  const rows = await sql`select jobname from cron.job`.catch(() => null);
  if (!rows) {
    return {
      check: "cron jobs",
      status: "fail",
      detail: "pg_cron's cron.job is not available in this database",
      fix: "create extension pg_cron; then " + fix,
    };
  }
  const have = new Set(rows.map((r) => r.jobname as string));
  const missing = expected.filter((n) => !have.has(n));
  return missing.length
    ? { check: "cron jobs", status: "fail", detail: `missing ${missing.join(", ")}`, fix }
    : { check: "cron jobs", status: "ok", detail: expected.join(", ") };
}

/** `deno task doctor --help`. */
export const USAGE = `usage: deno task doctor [--project P]

Checks a whole Conveyor deployment: one line per check, "ok", "skip" or
"FAIL <check>: <what is wrong> → <the command that fixes it>"; exits 1 when a check failed.

Target: SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (+ SUPABASE_DB_URL for the SQL checks),
otherwise the local stack (.stack/local/state.json or CONVEYOR_STACK_DIR, else the ports
54321/54322 and the local demo key); with --project, the stack serving that project.

  --project P   the Supabase project Conveyor was installed into (deno task conveyor
                install): its migrations and config.toml are what is checked against,
                and its local stack (.stack/<name>-<hash>) the target without SUPABASE_URL
                (default: the local stack's project, else this checkout)`;
/**
 * Supabase's database lints (`deno task lint:db`, the dashboard's Advisors) judged with
 * supabase/lints.allow.json: one FAIL line per ERROR or unlisted WARN, with its fix.
 */
async function checkLints(sql: postgres.Sql, project?: string): Promise<CheckResult[]> {
  const check = "database lints";
  try {
    const report = await runLints(sql, {
      schemas: await exposedSchemas(project),
      allow: await loadAllowList(),
    });
    const bad = sortFindings(report.findings.filter(failing));
    if (bad.length === 0) {
      const allowed = report.findings.filter((f) => f.allowed).length;
      const info = report.findings.filter((f) => f.level === "INFO" && !f.allowed).length;
      return [{
        check,
        status: "ok",
        detail: `${LINTS.length} lints: ${allowed} findings allow-listed, ${info} info`,
      }];
    }
    return bad.map((f) => ({
      check,
      status: "fail",
      detail: `${f.level} ${f.lint} ${f.object}: ${f.detail}`,
      fix: `${f.fix} (${f.remediation})`,
    }));
  } catch (e) {
    return [{
      check,
      status: "fail",
      detail: `could not run: ${(e as Error).message}`,
      fix: 'deno task lint:db --db-url "$SUPABASE_DB_URL"',
    }];
  }
}

if (import.meta.main) {
  const { values } = cliArgs(USAGE, { options: { project: { type: "string" } } });
  let project: string | undefined;
  try {
    if (values.project !== undefined) project = checkProject(values.project);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(2);
  }
  const target = await resolveTarget(Deno.env.toObject(), project);
  project ??= target.project;
  const results = await runDoctor(
    target,
    project ? { project, migrationsDir: `${project}/supabase/migrations` } : {},
  );
  for (const r of results) console.log(formatLine(r));
  Deno.exit(results.some((r) => r.status === "fail") ? 1 : 0);
}
