/**
 * `deno task conveyor <command>`: the ops CLI. It looks at and steers a Conveyor deployment
 * (the local stack or a hosted project) through the REST API with the service-role key:
 * every command is one or two RPCs of migration 20251101000000_operator_views.sql or of the
 * queue API, so it needs no database URL. See {@link USAGE}.
 *
 * Exit codes: 0 done, 1 the deployment refused or failed (the message says why), 2 the
 * command line is wrong (the usage says how).
 *
 * @module
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import {
  type ConcurrencyKeyRow,
  contentRedriveCommand,
  type DashboardData,
  type FailedContentJobRow,
  type FailedContentJobs,
  type QueueRow,
  type StageRow,
  type TenantRow,
  withWorkerUrls,
  workerUrl,
} from "../../supabase/functions/_shared/operator/data.ts";
import {
  ago,
  clockTime,
  formatAge,
  formatCount,
  jobNumber,
  oneLine,
  shortId,
} from "../../supabase/functions/_shared/operator/format.ts";
import { ArgsError, parseCli, usageLine } from "../args.ts";
import {
  ambiguousMessage,
  CANDIDATES_SHOWN,
  type JobMatch,
  jobRefProblem,
  notFoundMessage,
} from "./job_ref.ts";
import { renderTable } from "./table.ts";
import { resolveTarget, type Target, TargetError } from "./target.ts";

/** The usage text (`deno task conveyor help`). */
export const USAGE = `Conveyor ops CLI: look at and steer a deployment through its REST API.

usage: deno task conveyor <command> [options]

  status [--minutes N] [--all] [--tenants] [--json]
        queues (kind × tier) and content stages: ready, in flight, throughput,
        dead letters and open alerts (--all: idle fast/bulk queues too); tenants
        sharing a kind or stage (--tenants: every tenant with work), starving
        tenants, and concurrency keys with parked jobs or at their limit
  enqueue <kind> [payload-json] [--idempotency-key K] [--priority fast|normal|bulk]
          [--delay SECONDS] [--critical] [--tenant UUID]
          [--concurrency-key K [--concurrency-limit N]]
        enqueue a job with queue_job; prints its number (#1234)
  tenant weight <tenant-id> <weight>
        a tenant's fair share weight (default 1; 2 = twice the share while others wait)
  keys limit <kind> <N | none> [--key K [--tenant UUID]]
        concurrency key limit: the kind's default, or (--key) one key's override
        for a tenant (default tenant); none removes the override
  enqueue content <brief-json | --topic TEXT> [--idempotency-key K]
        start a content job (research → … → complete); prints the job id
  dlq list [--kind K] [--tenant UUID] [--limit N] [--json]
        dead letters not yet redriven, newest first, then the failed content jobs
        (not with --kind or --tenant; --json: the dead letters)
  dlq show <job> [--json]
        a dead job (its newest dead letter): every attempt's error, the payload,
        the job's events; a content job: its stages, every failed attempt's
        error, its events
  dlq redrive <job>...
        put dead jobs back in their queue; a failed content job runs again from
        the stage that failed (its earlier stages' outputs are kept); nothing
        is redriven when one of the jobs is not found or ambiguous
  dlq redrive --kind K | --stage S [--limit N] | --all [--tenant UUID]
        … all dead jobs of a kind, all content jobs failed at a stage, or both
        (attempts reset; a worker is started at once; --tenant: dead letters only)
  stage pause <stage | kind>                    the dispatcher starts no more workers
  stage resume <stage | kind>                   … starts them again (now, not next minute)
  stage scale <stage | kind> <max-concurrency> [--batch N]
        set content_stage_config / job kind max_concurrency (and trigger_batch_size)
  tail [--filter kind|stage] [--interval MS] [--once]
        follow job_events and content_job_events (--once: print the latest and exit);
        a queue job shows as #1234, a content job as its id's last 8 hex digits
  dashboard [--port N]
        serve the dashboard on http://127.0.0.1:N/ (default 8787) through a local proxy
        that adds the key: for hosted projects, which serve HTML only on custom domains
  help, --help, -h

<job>: a queue job's number (1234 or '#1234': quoted, # starts a shell comment), or
a uuid (queue job, dead letter or content job), or 4 to 32 of its hex digits from its
start or its end, as the tools show it (dashes optional, any case). Digits that are a
job's number name that job. Ambiguous: the candidates are listed and nothing is done.

In a Supabase project of your own (deno task conveyor install --help; docs/install.md):
  install --project P     add Conveyor's migrations, functions and config entries
  upgrade --project P     write what is new or changed since
  add kind <name> --project P
                          a job kind: migration, worker function, typed handler, test
  types [--project P]     Database types of the project's database

Target: SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (a hosted project), otherwise the local
stack (.stack/local/state.json or CONVEYOR_STACK_DIR, else http://127.0.0.1:54321 with the
local demo key). --url and --service-key override both.`;

/** Where output goes (the terminal, or a test's buffer). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: Io = { out: (l) => console.log(l), err: (l) => console.error(l) };

/** A failure the user can act on; `code` is the exit code. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(message: string, readonly code = 1, readonly hint?: string) {
    super(message);
  }
}

const usageError = (message: string) => new CliError(`${message}\n\n${USAGE}`, 2);

const OPTIONS = {
  minutes: { type: "string" },
  all: { type: "boolean" },
  json: { type: "boolean" },
  "idempotency-key": { type: "string" },
  priority: { type: "string" },
  delay: { type: "string" },
  critical: { type: "boolean" },
  tenant: { type: "string" },
  tenants: { type: "boolean" },
  key: { type: "string" },
  "concurrency-key": { type: "string" },
  "concurrency-limit": { type: "string" },
  topic: { type: "string" },
  kind: { type: "string" },
  stage: { type: "string" },
  limit: { type: "string" },
  batch: { type: "string" },
  filter: { type: "string" },
  interval: { type: "string" },
  once: { type: "boolean" },
  port: { type: "string" },
  url: { type: "string" },
  "service-key": { type: "string" },
  "stack-dir": { type: "string" },
} as const;

type Flags = ReturnType<typeof parse>["values"];

function parse(args: string[]) {
  return parseCli(args, { allowPositionals: true, strict: true, options: OPTIONS });
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function intFlag(
  v: string | undefined,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw usageError(`--${name} must be a whole number between ${min} and ${max}, got "${v}"`);
  }
  return n;
}

function uuidArg(v: string, what: string): string {
  if (!UUID_RE.test(v)) throw usageError(`${what} must be a uuid, got "${v}"`);
  return v.toLowerCase();
}

/** A `<job>` argument: its form checked here (exit 2), what it names by the deployment. */
function refArg(v: string): string {
  const problem = jobRefProblem(v);
  if (problem) throw usageError(problem);
  return v.trim();
}

/** What a command gets. */
interface Ctx {
  io: Io;
  target: Target;
  db: SupabaseClient;
  flags: Flags;
  args: string[];
  /** Aborted to stop long-running commands (tail, dashboard). */
  signal: AbortSignal;
}

async function call<T>(ctx: Ctx, fn: string, params: Record<string, unknown> = {}): Promise<T> {
  let res;
  try {
    res = await ctx.db.rpc(fn, params);
  } catch (e) {
    throw unreachable(ctx.target, e);
  }
  if (res.error) {
    const e = res.error as { message: string; hint?: string | null; details?: string | null };
    if (/fetch failed|error sending request|Connection refused/i.test(e.message)) {
      throw unreachable(ctx.target, e);
    }
    const message = e.message.startsWith(`${fn}:`) ? e.message : `${fn}: ${e.message}`;
    throw new CliError(message, 1, e.hint ?? undefined);
  }
  return res.data as T;
}

function unreachable(target: Target, e: unknown): CliError {
  const msg = e instanceof Error ? e.message : String((e as { message?: string })?.message ?? e);
  return new CliError(
    `cannot reach ${target.url}: ${msg}`,
    1,
    target.local
      ? "is the local stack running? start it with: deno task start"
      : "check SUPABASE_URL and your network",
  );
}

// ---------------------------------------------------------------------------------------
// status

function queueTable(rows: readonly QueueRow[]): string[] {
  return renderTable<QueueRow>([
    { header: "QUEUE", value: (q) => q.queue },
    {
      header: "DISPATCH",
      value: (q) => `${q.kind_enabled ? "on" : "PAUSED"} ${q.workers}/${q.max_concurrency}`,
    },
    { header: "READY", value: (q) => q.ready },
    { header: "DELAYED", value: (q) => q.delayed },
    { header: "IN FLIGHT", value: (q) => q.in_flight },
    {
      header: "OLDEST",
      value: (q) => (q.ready > 0 ? formatAge(q.oldest_ready_age_sec) : "-"),
      align: "right",
    },
    { header: "PROCESSED", value: (q) => q.processed },
    { header: "FAILED", value: (q) => q.failed },
  ], rows);
}

function stageTable(rows: readonly StageRow[], projectUrl: string): string[] {
  return renderTable<StageRow>([
    { header: "STAGE", value: (s) => s.stage },
    { header: "STATE", value: (s) => (s.enabled ? "on" : "PAUSED") },
    { header: "READY", value: (s) => s.ready },
    { header: "RETRYING", value: (s) => s.waiting_retry },
    { header: "IN FLIGHT", value: (s) => s.in_flight },
    { header: "MAX", value: (s) => s.max_concurrency },
    { header: "DONE", value: (s) => s.completed },
    { header: "ERRORS", value: (s) => s.errors },
    {
      header: "LAST ERROR",
      value: (s) => (s.last_error_at ? clockTime(s.last_error_at) : "-"),
      align: "right",
    },
    // worker_endpoint resolved as the dispatcher does (a path against the project URL).
    { header: "WORKERS AT", value: (s) => workerUrl(s.worker_endpoint, projectUrl) ?? "-" },
  ], rows);
}

function tenantTable(rows: readonly TenantRow[]): string[] {
  return renderTable<TenantRow>([
    {
      header: "KIND/STAGE",
      value: (t) => (t.source === "content" ? `${t.target} (stage)` : t.target),
    },
    { header: "TENANT", value: (t) => t.tenant },
    { header: "WEIGHT", value: (t) => t.weight },
    { header: "READY", value: (t) => t.ready },
    { header: "WAITING", value: (t) => t.waiting },
    { header: "RUNNING", value: (t) => t.running },
    {
      header: "OLDEST",
      value: (t) => (t.oldest_ready_age_sec === null ? "-" : formatAge(t.oldest_ready_age_sec)),
      align: "right",
    },
    {
      header: "SHARE",
      value: (t) => (t.claimed_share === null ? "-" : `${Math.round(t.claimed_share * 100)}%`),
      align: "right",
    },
    { header: "", value: (t) => (t.starving ? "STARVING" : "") },
  ], rows);
}

function keyTable(rows: readonly ConcurrencyKeyRow[]): string[] {
  return renderTable<ConcurrencyKeyRow>([
    { header: "KIND", value: (k) => k.kind },
    { header: "TENANT", value: (k) => k.tenant },
    { header: "KEY", value: (k) => oneLine(k.concurrency_key, 40) },
    { header: "RUNNING", value: (k) => `${k.running}/${k.max_running}` },
    { header: "PARKED", value: (k) => k.waiting },
    {
      header: "WAITING",
      value: (k) => (k.oldest_waiting_age_sec === null ? "-" : formatAge(k.oldest_waiting_age_sec)),
      align: "right",
    },
  ], rows);
}

/**
 * The tenants worth showing: with --tenants every row with live work; otherwise the kinds
 * and stages two or more tenants share right now (where fair share decides), and starving
 * tenants wherever they are.
 */
function tenantsShown(rows: readonly TenantRow[], all: boolean): TenantRow[] {
  const live = rows.filter((t) => t.ready + t.waiting + t.running > 0 || t.starving);
  if (all) return live;
  const shared = new Set<string>();
  const seen = new Map<string, number>();
  for (const t of live) {
    const k = `${t.source}:${t.target}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
    if (seen.get(k)! > 1) shared.add(k);
  }
  return live.filter((t) => t.starving || shared.has(`${t.source}:${t.target}`));
}

async function status(ctx: Ctx): Promise<void> {
  const minutes = intFlag(ctx.flags.minutes, "minutes", 5, 1440) ?? 60;
  const d = await call<DashboardData>(ctx, "operator_dashboard", {
    p_minutes: minutes,
    p_limit: 5,
  });
  if (ctx.flags.json) {
    ctx.io.out(JSON.stringify(withWorkerUrls(d, ctx.target.url), null, 2));
    return;
  }
  const busy = (q: QueueRow) =>
    q.ready + q.delayed + q.in_flight + q.processed + q.failed > 0 || !q.kind_enabled;
  const queues = ctx.flags.all ? d.queues : d.queues.filter((q) => q.tier === "normal" || busy(q));
  const { io } = ctx;
  io.out(
    `Conveyor at ${ctx.target.url} (${ctx.target.label}), ${
      clockTime(d.generated_at)
    } UTC, last ${minutes} min`,
  );
  io.out("");
  for (const l of queueTable(queues)) io.out(l);
  if (queues.length < d.queues.length) {
    io.out(`(${d.queues.length - queues.length} idle fast/bulk queues hidden: --all shows them)`);
  }
  io.out("");
  for (const l of stageTable(d.stages, ctx.target.url)) io.out(l);
  io.out("");
  const tenants = d.tenants ?? [];
  const shown = tenantsShown(tenants, ctx.flags.tenants === true);
  const withWork = new Set(
    tenants.filter((t) => t.ready + t.waiting + t.running > 0).map((t) => t.tenant_id),
  ).size;
  if (shown.length > 0) {
    io.out(
      ctx.flags.tenants
        ? `Tenants with work (SHARE: of the claims over the last ${minutes} min)`
        : `Tenants sharing a kind or stage (fair share; SHARE: of the claims over the last ${minutes} min)`,
    );
    for (const l of tenantTable(shown)) io.out(l);
  } else {
    io.out(
      `Tenants: ${withWork} with work${
        withWork > 0 ? ", none sharing a kind or stage now (--tenants lists them)" : ""
      }`,
    );
  }
  for (const t of tenants.filter((x) => x.starving)) {
    io.out(
      `  STARVING: ${t.tenant}'s oldest ready ${t.target} job has waited ${
        formatAge(t.oldest_ready_age_sec ?? 0)
      } (the other tenants' median ${formatAge(t.others_median_age_sec ?? 0)}), ` +
        "and none of its jobs was claimed in the last minute",
    );
  }
  const keys = d.concurrency_keys ?? [];
  if (keys.length > 0) {
    io.out("");
    io.out("Concurrency keys with parked jobs or at their limit");
    for (const l of keyTable(keys)) io.out(l);
  }
  io.out("");
  const dl = d.dead_letters;
  const kinds = dl.by_kind.map((k) => `${k.kind} ${k.size}`).join(", ");
  const open = d.alerts.filter((a) => a.status === "open");
  io.out(`Dead letters: ${formatCount(dl.size)}${kinds ? ` (${kinds})` : ""}`);
  const fc = d.failed_content_jobs;
  const stages = fc.by_stage.map((s) => `${s.stage} ${s.size}`).join(", ");
  io.out(`Failed content jobs: ${formatCount(fc.size)}${stages ? ` (${stages})` : ""}`);
  io.out(`Open alerts: ${open.length}${open.length ? "" : ""}`);
  for (const a of open) {
    io.out(
      `  ${a.severity.padEnd(8)} ${a.rule} ${a.subject} (${a.tenant}): ${oneLine(a.message, 100)}`,
    );
  }
  io.out(`Metrics snapshot: ${ago(d.last_snapshot_at, d.generated_at)}`);
}

// ---------------------------------------------------------------------------------------
// enqueue

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw usageError(`${what} is not valid JSON (${(e as Error).message}): ${text}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw usageError(`${what} must be a JSON object, got ${text}`);
  }
  return v as Record<string, unknown>;
}

async function enqueue(ctx: Ctx): Promise<void> {
  const [kind, payloadText] = ctx.args;
  if (!kind) throw usageError("enqueue needs a kind (enrich, outreach, enforce, … or content)");
  const key = ctx.flags["idempotency-key"] ?? `cli:${crypto.randomUUID()}`;
  if (kind === "content") {
    const brief = payloadText
      ? parseJsonObject(payloadText, "the brief")
      : ctx.flags.topic
      ? { topic: ctx.flags.topic }
      : null;
    if (!brief) {
      throw usageError('enqueue content needs a brief: \'{"topic":"…"}\' or --topic TEXT');
    }
    if (ctx.flags.topic && !brief.topic) brief.topic = ctx.flags.topic;
    const id = await call<string>(ctx, "queue_content_job", { idempotency_key: key, brief });
    ctx.io.out(`content job ${id} (idempotency key ${key})`);
    return;
  }
  const body: Record<string, unknown> = {
    idempotency_key: key,
    kind,
    payload: payloadText ? parseJsonObject(payloadText, "the payload") : {},
  };
  if (ctx.flags.priority) body.priority = ctx.flags.priority;
  const delay = intFlag(ctx.flags.delay, "delay", 0, 2_592_000);
  if (delay !== undefined) body.delay_seconds = delay;
  if (ctx.flags.critical) body.critical = true;
  if (ctx.flags.tenant) body.tenant_id = uuidArg(ctx.flags.tenant, "--tenant");
  if (ctx.flags["concurrency-key"] !== undefined) {
    body.concurrency_key = ctx.flags["concurrency-key"];
  }
  const climit = intFlag(ctx.flags["concurrency-limit"], "concurrency-limit", 1, 1000);
  if (climit !== undefined) body.concurrency_limit = climit;
  const number = await call<number>(ctx, "queue_job", body);
  ctx.io.out(`${kind} job ${jobNumber(number)} enqueued (idempotency key ${key})`);
}

// ---------------------------------------------------------------------------------------
// dlq

interface DeadLetter {
  id: string;
  tenant_id: string;
  job_id: string;
  /** The job's number: added by the CLI (list_dead_letter_jobs returns the table's rows). */
  job_number?: number;
  kind: string;
  queue_name: string;
  payload: unknown;
  reason: string;
  errors: Array<{ message?: string; attempt?: number; at?: string }>;
  attempts: number;
  created_at: string;
  redriven_at: string | null;
  acknowledged_at: string | null;
}

async function dlqList(ctx: Ctx): Promise<void> {
  const limit = intFlag(ctx.flags.limit, "limit", 1, 1000) ?? 50;
  const rows = await call<DeadLetter[]>(ctx, "list_dead_letter_jobs", {
    p_tenant_id: ctx.flags.tenant ? uuidArg(ctx.flags.tenant, "--tenant") : null,
    p_kind: ctx.flags.kind ?? null,
    p_limit: limit,
  });
  const numbers = await jobNumbers(ctx, rows.map((r) => r.job_id));
  for (const r of rows) r.job_number = numbers.get(r.job_id);
  if (ctx.flags.json) {
    ctx.io.out(JSON.stringify(rows, null, 2));
    return;
  }
  if (rows.length === 0) {
    ctx.io.out("The dead-letter queue is empty.");
  } else {
    for (
      const l of renderTable<DeadLetter>([
        { header: "JOB", value: (r) => jobNumber(r.job_number) },
        { header: "DEAD LETTER", value: (r) => shortId(r.id) },
        {
          header: "WHEN (UTC)",
          value: (r) => `${r.created_at.slice(0, 10)} ${clockTime(r.created_at)}`,
        },
        { header: "KIND", value: (r) => r.kind },
        { header: "ATTEMPTS", value: (r) => r.attempts },
        { header: "ERROR", value: (r) => r.reason, max: 70 },
      ], rows)
    ) ctx.io.out(l);
    ctx.io.out(
      `${rows.length} dead letter(s). Show or redrive one by its job number: ` +
        `deno task conveyor dlq show|redrive ${rows[0]!.job_number ?? "<job>"}`,
    );
  }
  // Content jobs belong to no tenant and no kind: a filtered list is about dead letters.
  if (!ctx.flags.kind && !ctx.flags.tenant) await failedContentList(ctx, limit);
}

/** The failed content jobs after the dead letters (only when there are any). */
async function failedContentList(ctx: Ctx, limit: number): Promise<void> {
  const fc = await call<FailedContentJobs>(ctx, "operator_failed_content_jobs", {
    p_limit: limit,
  });
  if (fc.latest.length === 0) return;
  ctx.io.out("");
  for (
    const l of renderTable<FailedContentJobRow>([
      { header: "CONTENT JOB", value: (r) => shortId(r.job_id) },
      {
        header: "FAILED (UTC)",
        value: (r) => `${r.failed_at.slice(0, 10)} ${clockTime(r.failed_at)}`,
      },
      { header: "STAGE", value: (r) => r.stage ?? "?" },
      { header: "ATTEMPTS", value: (r) => r.attempts ?? "?" },
      { header: "TOPIC", value: (r) => r.topic ?? "", max: 30 },
      { header: "ERROR", value: (r) => r.last_error ?? "", max: 60 },
    ], fc.latest)
  ) ctx.io.out(l);
  ctx.io.out(
    `${fc.size} failed content job(s). Retry from the failed stage: ${
      contentRedriveCommand(shortId(fc.latest[0]!.job_id))
    }`,
  );
}

/** The numbers of queue jobs (jobs.msg_id), by job id; 200 ids per request (URL length). */
async function jobNumbers(ctx: Ctx, jobIds: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const ids = [...new Set(jobIds)];
  for (let i = 0; i < ids.length; i += 200) {
    const { data, error } = await ctx.db.from("jobs").select("id, msg_id")
      .in("id", ids.slice(i, i + 200));
    if (error) throw new CliError(`jobs: ${error.message}`);
    for (const r of data as Array<{ id: string; msg_id: number }>) out.set(r.id, r.msg_id);
  }
  return out;
}

/**
 * The one queue job, dead letter or content job a `<job>` reference names
 * (operator_find_jobs); none or several: an error that says which were searched or lists
 * the candidates (exit 1).
 */
async function findJob(ctx: Ctx, ref: string): Promise<JobMatch> {
  const rows = await call<JobMatch[]>(ctx, "operator_find_jobs", {
    p_ref: ref,
    p_limit: CANDIDATES_SHOWN,
  });
  if (rows.length === 0) {
    throw new CliError(notFoundMessage(ref), 1, "list them with: deno task conveyor dlq list");
  }
  if (rows.length > 1) {
    throw new CliError(
      ambiguousMessage(ref, rows),
      1,
      "give more of its digits, the job number or the whole id",
    );
  }
  return rows[0]!;
}

/** What `dlq show` / `dlq redrive` act on. */
type DlqTarget =
  | { type: "dead_letter"; id: string; jobId: string; jobNumber: number; kind: string }
  | { type: "content"; id: string };

/**
 * A match as a `dlq` target: a dead letter, a queue job's newest dead letter, or a content
 * job. A queue job that never died has none: an error (exit 1).
 */
function dlqTarget(m: JobMatch): DlqTarget {
  if (m.source === "content_job") return { type: "content", id: m.id };
  if (!m.dead_letter_id) {
    throw new CliError(
      `job ${
        jobNumber(m.job_number)
      } (${m.kind}, ${m.id}) is ${m.status} and was never dead-lettered`,
      1,
      "list the dead jobs with: deno task conveyor dlq list",
    );
  }
  return {
    type: "dead_letter",
    id: m.dead_letter_id,
    jobId: m.job_id!,
    jobNumber: m.job_number!,
    kind: m.kind,
  };
}

async function dlqShow(ctx: Ctx): Promise<void> {
  const [idArg, ...more] = ctx.args;
  if (!idArg) throw usageError("dlq show needs a job: its number, or (part of) an id");
  if (more.length) throw usageError("dlq show takes one job");
  const target = dlqTarget(await findJob(ctx, refArg(idArg)));
  if (target.type === "content") return await contentShow(ctx, target.id);
  const id = target.id;
  const d = await call<{
    dead_letter: DeadLetter;
    job: {
      msg_id: number;
      status: string;
      attempts: number;
      queue_name: string;
      priority: string;
      tenant_id: string;
    } | null;
    critical: boolean;
    events: Array<{ type: string; at: string; payload: Record<string, unknown> }>;
  }>(ctx, "inspect_dead_letter_job", { p_id: id });
  if (ctx.flags.json) {
    ctx.io.out(JSON.stringify(d, null, 2));
    return;
  }
  const dl = d.dead_letter;
  const { io } = ctx;
  io.out(`dead letter ${dl.id}`);
  io.out(
    `  job        ${jobNumber(target.jobNumber)} ${dl.job_id} (${d.job?.status ?? "gone"}${
      d.critical ? ", critical" : ""
    })`,
  );
  io.out(`  kind       ${dl.kind}, queue ${dl.queue_name}, tenant ${dl.tenant_id}`);
  io.out(`  dead since ${dl.created_at}${dl.redriven_at ? `, redriven ${dl.redriven_at}` : ""}`);
  io.out(`  attempts   ${dl.attempts}`);
  io.out(`  reason     ${dl.reason}`);
  io.out("errors:");
  for (const e of dl.errors ?? []) {
    io.out(`  attempt ${e.attempt ?? "?"} at ${e.at ?? "?"}: ${e.message ?? ""}`);
  }
  io.out("payload:");
  for (const l of JSON.stringify(dl.payload, null, 2).split("\n")) io.out(`  ${l}`);
  io.out("events:");
  for (const e of d.events) {
    const detail = e.payload.error ?? e.payload.reason ??
      (e.payload.attempt ? `attempt ${e.payload.attempt}` : "");
    io.out(`  ${e.at}  ${e.type.padEnd(16)} ${detail}`);
  }
}

/** `inspect_content_job()`. */
interface ContentInspection {
  job: {
    id: string;
    status: string;
    current_stage: string | null;
    brief: Record<string, unknown>;
    last_error: string | null;
    max_attempts: number;
    created_at: string;
    finished_at: string | null;
  };
  stages: Array<{
    stage: string;
    status: string;
    attempts: number;
    max_attempts: number;
    last_error: string | null;
    errors: Array<{ message?: string; attempt?: number; at?: string }>;
    finished_at: string | null;
  }>;
  events: Array<{ stage: string | null; status: string; message: string | null; at: string }>;
}

/** `dlq show <content job id>`: the job, its stages and their errors, its events. */
async function contentShow(ctx: Ctx, id: string): Promise<void> {
  const d = await call<ContentInspection>(ctx, "inspect_content_job", { p_job_id: id });
  if (ctx.flags.json) {
    ctx.io.out(JSON.stringify(d, null, 2));
    return;
  }
  const { io } = ctx;
  const j = d.job;
  const failed = d.stages.findLast((s) => s.status === "failed");
  io.out(`content job ${j.id}`);
  io.out(
    `  status     ${j.status}${failed ? ` at stage ${failed.stage}` : ""}` +
      `${j.finished_at ? ` since ${j.finished_at}` : ""}`,
  );
  io.out(`  topic      ${String(j.brief.topic ?? "")}`);
  if (j.last_error) io.out(`  last error ${j.last_error}`);
  io.out("stages:");
  for (const s of d.stages) {
    io.out(
      `  ${s.stage.padEnd(9)} ${s.status.padEnd(11)} attempt ${s.attempts} of ${s.max_attempts}`,
    );
  }
  io.out("errors:");
  for (const s of d.stages) {
    for (const e of s.errors ?? []) {
      io.out(`  ${s.stage} attempt ${e.attempt ?? "?"} at ${e.at ?? "?"}: ${e.message ?? ""}`);
    }
  }
  io.out("events:");
  for (const e of d.events) {
    io.out(`  ${e.at}  ${(e.stage ?? "job").padEnd(9)} ${e.status.padEnd(16)} ${e.message ?? ""}`);
  }
  if (j.status === "failed") {
    io.out(
      failed
        ? `Retry from ${failed.stage}: ${contentRedriveCommand(j.id)}`
        : "No stage of it is failed: there is nothing to retry from.",
    );
  }
}

async function startWorker(ctx: Ctx, kind: string): Promise<string> {
  try {
    const n = await call<number>(ctx, "trigger_queue_worker", {
      p_kind: kind,
      p_count: 1,
      p_reason: "redrive",
    });
    return n > 0
      ? `${kind} worker started`
      // Usually because the redrive itself kicked the dispatcher, whose worker is already on
      // its way (often done by now): not "all slots busy", which a newcomer reads as a fault.
      : `no extra ${kind} worker started (the redrive kicked the dispatcher, which starts one unless every slot is busy or the kind is paused)`;
  } catch (e) {
    return `no worker started (${(e as Error).message}); the dispatcher's next cycle runs it`;
  }
}

/** What `redrive_content_job` / `redrive_content_jobs` return, a row per job. */
interface ContentRedrive {
  job_id: string;
  stage: string;
  workers_started: number;
}

/** The worker part of a content redrive's line. */
function contentWorkerNote(stage: string, started: number): string {
  return started > 0
    ? `${stage} worker started`
    : `no ${stage} worker started now (all slots busy, the stage paused or push kicks off); the dispatcher runs it`;
}

/** Redrives the failed content jobs of a stage (--stage) or of every stage (--all). */
async function contentRedriveMany(ctx: Ctx, stage: string | null, limit: number): Promise<void> {
  const rows = await call<ContentRedrive[]>(ctx, "redrive_content_jobs", {
    p_stage: stage,
    p_limit: limit,
  });
  const started = rows.reduce((n, r) => n + r.workers_started, 0);
  ctx.io.out(`redrove ${rows.length} content job(s); ${started} stage worker(s) started`);
}

async function dlqRedrive(ctx: Ctx): Promise<void> {
  const { io, flags } = ctx;
  const modes = [flags.kind, flags.stage, flags.all].filter(Boolean).length;
  if (modes > 1) throw usageError("give one of --kind, --stage or --all");
  if (modes === 1) {
    if (ctx.args.length) throw usageError("give ids, or --kind / --stage / --all, not both");
    const limit = intFlag(flags.limit, "limit", 1, 1000) ?? (flags.all ? 1000 : 100);
    if (flags.stage) {
      if (flags.tenant) {
        throw usageError("--tenant applies to dead letters: content jobs have none");
      }
      return await contentRedriveMany(ctx, flags.stage, limit);
    }
    const rows = await call<Array<{ job_id: string; msg_id: number }>>(
      ctx,
      "redrive_dead_letter_jobs",
      {
        p_tenant_id: flags.tenant ? uuidArg(flags.tenant, "--tenant") : null,
        p_kind: flags.kind ?? null,
        p_limit: limit,
      },
    );
    io.out(`redrove ${rows.length} job(s)`);
    if (rows.length) {
      const kinds = flags.kind ? [flags.kind] : await kindsOfJobs(ctx, rows.map((r) => r.job_id));
      for (const k of kinds) io.out(await startWorker(ctx, k));
    }
    if (flags.all && !flags.tenant) await contentRedriveMany(ctx, null, limit);
    return;
  }
  if (ctx.args.length === 0) {
    throw usageError("dlq redrive needs ids, --kind K, --stage S or --all");
  }
  // Every reference is checked, then resolved, before anything is redriven: a typo or an
  // ambiguous fragment among several ids redrives none of them.
  const refs = ctx.args.map(refArg);
  const targets: DlqTarget[] = [];
  const problems: string[] = [];
  for (const ref of refs) {
    try {
      targets.push(dlqTarget(await findJob(ctx, ref)));
    } catch (e) {
      if (!(e instanceof CliError) || refs.length === 1) throw e;
      problems.push(`${ref}: ${e.message}`);
    }
  }
  if (problems.length) {
    throw new CliError(
      `nothing redriven: ${problems.length} of ${refs.length} jobs could not be resolved\n${
        problems.map((p) => p.replace(/^/gm, "  ")).join("\n")
      }`,
    );
  }
  let failed = 0;
  for (const [i, target] of targets.entries()) {
    try {
      if (target.type === "content") {
        const [r] = await call<ContentRedrive[]>(ctx, "redrive_content_job", {
          p_job_id: target.id,
        });
        io.out(
          `content job ${r!.job_id} redriven from ${r!.stage} (attempts reset); ${
            contentWorkerNote(r!.stage, r!.workers_started)
          }`,
        );
        continue;
      }
      await call<number>(ctx, "redrive_dead_job", { p_job_id: target.jobId });
      io.out(
        `job ${jobNumber(target.jobNumber)} (${target.kind}) redriven; ${await startWorker(
          ctx,
          target.kind,
        )}`,
      );
    } catch (e) {
      failed++;
      io.err(`error: ${refs[i]}: ${(e as Error).message}`);
    }
  }
  if (failed) throw new CliError(`${failed} of ${targets.length} redrive(s) failed`);
}

async function kindsOfJobs(ctx: Ctx, jobIds: string[]): Promise<string[]> {
  const { data, error } = await ctx.db.from("jobs").select("kind").in("id", jobIds.slice(0, 500));
  if (error) throw new CliError(`jobs: ${error.message}`);
  return [...new Set((data ?? []).map((r) => (r as { kind: string }).kind))];
}

// ---------------------------------------------------------------------------------------
// stage

async function stage(ctx: Ctx): Promise<void> {
  const [action, target, value] = ctx.args;
  if (!action || !["pause", "resume", "scale"].includes(action)) {
    throw usageError("stage needs pause, resume or scale");
  }
  if (!target) throw usageError(`stage ${action} needs a content stage or a job kind`);
  const params: Record<string, unknown> = { p_target: target };
  if (action === "pause") params.p_enabled = false;
  if (action === "resume") params.p_enabled = true;
  if (action === "scale") {
    const max = intFlag(value, "max-concurrency", 0, 1000);
    if (max === undefined) {
      throw usageError("stage scale needs the new max_concurrency, e.g. stage scale research 8");
    }
    params.p_max_concurrency = max;
    const batch = intFlag(ctx.flags.batch, "batch", 1, 100);
    if (batch !== undefined) params.p_trigger_batch_size = batch;
  }
  const r = await call<{
    source: string;
    target: string;
    enabled: boolean;
    max_concurrency: number;
    trigger_batch_size: number;
    kicked?: boolean;
  }>(ctx, "operator_configure_target", params);
  const what = r.source === "content" ? "stage" : "job kind";
  ctx.io.out(
    `${what} ${r.target}: ${
      r.enabled ? "enabled" : "paused"
    }, max_concurrency ${r.max_concurrency}, trigger_batch_size ${r.trigger_batch_size}${
      r.kicked ? " (dispatcher kicked)" : ""
    }`,
  );
}

// ---------------------------------------------------------------------------------------
// tenant weight, keys limit

async function tenantWeight(ctx: Ctx): Promise<void> {
  const [action, tenant, value] = ctx.args;
  if (action !== "weight" || !tenant || value === undefined) {
    throw usageError("tenant needs: weight <tenant-id> <weight>");
  }
  const weight = Number(value);
  if (!Number.isFinite(weight)) throw usageError(`the weight must be a number, got "${value}"`);
  const r = await call<{ tenant: string; tenant_id: string; weight: number }>(
    ctx,
    "operator_set_tenant_weight",
    { p_tenant: uuidArg(tenant, "the tenant id"), p_weight: weight },
  );
  ctx.io.out(`tenant ${r.tenant} (${r.tenant_id}): fair share weight ${r.weight}`);
}

async function keysLimit(ctx: Ctx): Promise<void> {
  const [action, kind, value] = ctx.args;
  if (action !== "limit" || !kind || value === undefined) {
    throw usageError("keys needs: limit <kind> <N | none> [--key K [--tenant UUID]]");
  }
  const key = ctx.flags.key;
  if (value === "none" && key === undefined) {
    throw usageError("keys limit <kind> none removes a key's override: give --key");
  }
  if (ctx.flags.tenant && key === undefined) {
    throw usageError("--tenant goes with --key (a kind's default applies to every tenant)");
  }
  const limit = value === "none" ? null : intFlag(value, "limit", 1, 1000);
  const r = await call<{ limit: number | null; woken: number }>(
    ctx,
    "operator_set_concurrency_limit",
    {
      p_kind: kind,
      p_limit: limit,
      p_key: key ?? null,
      p_tenant: ctx.flags.tenant ? uuidArg(ctx.flags.tenant, "--tenant") : null,
    },
  );
  const what = key === undefined
    ? `${kind}: concurrency keys run at most ${r.limit} job(s) at once by default`
    : r.limit === null
    ? `${kind} key ${key}: override removed`
    : `${kind} key ${key}: at most ${r.limit} job(s) at once`;
  ctx.io.out(`${what}${r.woken ? ` (${r.woken} parked job(s) woken)` : ""}`);
}

// ---------------------------------------------------------------------------------------
// tail

interface EventRow {
  source: "job" | "content";
  id: number;
  created_at: string;
  job_id: string;
  subject: string;
  event: string;
  message: string | null;
  tenant: string | null;
  /** A queue job's number; null for a content job's event. */
  job_number: number | null;
}

function eventLine(e: EventRow): string {
  return [
    clockTime(e.created_at),
    e.source.padEnd(7),
    e.subject.padEnd(10),
    e.event.padEnd(16),
    // A queue job by its number; a content job by its id's random tail.
    (e.source === "job" ? jobNumber(e.job_number) : shortId(e.job_id)).padEnd(8),
    oneLine(e.message ?? "", 120),
    e.tenant && e.tenant !== "default" ? `[${e.tenant}]` : "",
  ].join("  ").trimEnd();
}

async function tail(ctx: Ctx): Promise<void> {
  const interval = intFlag(ctx.flags.interval, "interval", 100, 60_000) ?? 1000;
  const filter = ctx.flags.filter ?? null;
  // Ids are assigned at insert and become visible at commit, so a later poll may see a
  // lower id than one already shown: re-read a short overlap and skip what was printed.
  const OVERLAP = 50;
  const seen = new Set<string>();
  let lastJob: number | null = null;
  let lastContent: number | null = null;
  const first = await call<EventRow[]>(ctx, "operator_events", {
    p_after_job_event: null,
    p_after_content_event: null,
    p_limit: 20,
    p_filter: filter,
  });
  const show = (rows: EventRow[]) => {
    for (const e of rows) {
      const k = `${e.source}:${e.id}`;
      if (seen.has(k)) continue;
      seen.add(k);
      ctx.io.out(eventLine(e));
      if (e.source === "job") lastJob = Math.max(lastJob ?? 0, e.id);
      else lastContent = Math.max(lastContent ?? 0, e.id);
    }
    if (seen.size > 20_000) seen.clear();
  };
  show(first);
  if (first.length === 0) ctx.io.out("(no events yet)");
  if (ctx.flags.once) return;
  lastJob ??= 0;
  lastContent ??= 0;
  ctx.io.err(`following events every ${interval} ms (Ctrl-C stops)…`);
  while (!ctx.signal.aborted) {
    await new Promise((r) => {
      const t = setTimeout(r, interval);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(t);
        r(undefined);
      }, { once: true });
    });
    if (ctx.signal.aborted) break;
    show(
      await call<EventRow[]>(ctx, "operator_events", {
        p_after_job_event: Math.max(0, lastJob - OVERLAP),
        p_after_content_event: Math.max(0, lastContent - OVERLAP),
        p_limit: 500,
        p_filter: filter,
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------
// dashboard proxy

/**
 * Serves the dashboard on 127.0.0.1:`port`, fetching every request from the deployment's
 * conveyor-dashboard function with the key as a bearer token. Hosted Supabase rewrites
 * `text/html` answers of edge functions to `text/plain` unless the project has a custom
 * domain; the proxy restores the type, so the page renders in any browser.
 */
export function serveDashboardProxy(
  target: Target,
  port: number,
  signal: AbortSignal,
  onListen: (url: string) => void = () => {},
): Deno.HttpServer {
  return Deno.serve({
    hostname: "127.0.0.1",
    port,
    signal,
    onListen: ({ port: p }) => onListen(`http://127.0.0.1:${p}/`),
  }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname !== "/") return new Response("not found\n", { status: 404 });
    const params = new URLSearchParams(url.search);
    params.delete("key");
    const qs = params.toString();
    const upstream = await fetch(
      `${target.url}/functions/v1/conveyor-dashboard${qs ? `?${qs}` : ""}`,
      {
        headers: {
          authorization: `Bearer ${target.key}`,
          apikey: target.key,
          accept: req.headers.get("accept") ?? "text/html",
        },
      },
    ).catch((e) =>
      new Response(`cannot reach ${target.url}: ${(e as Error).message}\n`, { status: 502 })
    );
    const headers = new Headers(upstream.headers);
    for (const h of ["content-length", "content-encoding", "transfer-encoding", "set-cookie"]) {
      headers.delete(h);
    }
    if (
      upstream.ok && (headers.get("content-type") ?? "").startsWith("text/plain") &&
      params.get("format") !== "json"
    ) {
      headers.set("content-type", "text/html; charset=utf-8");
    }
    return new Response(upstream.body, { status: upstream.status, headers });
  });
}

async function dashboard(ctx: Ctx): Promise<void> {
  const port = intFlag(ctx.flags.port, "port", 0, 65535) ?? 8787;
  const server = serveDashboardProxy(ctx.target, port, ctx.signal, (url) => {
    ctx.io.out(`Dashboard of ${ctx.target.url} at ${url} (bound to 127.0.0.1 only; Ctrl-C stops)`);
  });
  await server.finished;
}

// ---------------------------------------------------------------------------------------

const COMMANDS: Record<string, (ctx: Ctx) => Promise<void>> = {
  status,
  enqueue,
  stage,
  tail,
  dashboard,
  tenant: tenantWeight,
  keys: keysLimit,
  "dlq list": dlqList,
  "dlq show": dlqShow,
  "dlq redrive": dlqRedrive,
};

/** Runs the CLI; returns the exit code. */
export async function main(
  args: string[],
  io: Io = consoleIo,
  opts: { env?: (name: string) => string | undefined; signal?: AbortSignal } = {},
): Promise<number> {
  let parsed;
  try {
    parsed = parse(args);
  } catch (e) {
    if (!(e instanceof ArgsError)) throw e;
    // One line for a mistyped flag: the usage is a `--help` away.
    io.err(usageLine(e.message));
    return 2;
  }
  const [cmd, ...rest] = parsed.positionals;
  if (!cmd || cmd === "help" || parsed.help) {
    (cmd || parsed.help ? io.out : io.err)(USAGE);
    return cmd === "help" || parsed.help ? 0 : 2;
  }
  let name = cmd;
  let cmdArgs = rest;
  if (cmd === "dlq") {
    const sub = rest[0];
    if (!sub || !["list", "show", "redrive"].includes(sub)) {
      io.err(`error: dlq needs list, show or redrive\n\n${USAGE}`);
      return 2;
    }
    name = `dlq ${sub}`;
    cmdArgs = rest.slice(1);
  }
  const run = COMMANDS[name];
  if (!run) {
    io.err(`error: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  try {
    const target = await resolveTarget({
      url: parsed.values.url,
      serviceKey: parsed.values["service-key"],
      stackDir: parsed.values["stack-dir"],
    }, opts.env);
    const db = createClient(target.url, target.key, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    await run({
      io,
      target,
      db,
      flags: parsed.values,
      args: cmdArgs,
      signal: opts.signal ?? new AbortController().signal,
    });
    return 0;
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`error: ${e.message}`);
      if (e.hint) io.err(`  hint: ${e.hint}`);
      return e.code;
    }
    if (e instanceof TargetError) {
      io.err(`error: ${e.message}`);
      return 1;
    }
    io.err(`error: ${(e as Error).stack ?? e}`);
    return 1;
  }
}
