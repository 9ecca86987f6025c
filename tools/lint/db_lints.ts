/**
 * `deno task lint:db`: Supabase's database lints (the dashboard's Advisors, see
 * {@link LINTS}) against a database, one line per finding:
 *
 *   <LEVEL> <lint> <object>: <detail> → <fix> (<link>) [allow-listed]
 *
 * then a summary line. Exits 1 on any ERROR and on any WARN that
 * `supabase/lints.allow.json` does not list; INFO never fails the run. Allow-list entries
 * that match nothing are reported as `stale` (the CI test fails on them).
 *
 *   deno task lint:db [--db-url URL] [--schemas public,graphql_public] [--allow FILE] [--list]
 *
 * `--db-url`: else SUPABASE_DB_URL, else the local stack's database. `--schemas`: the
 * schemas PostgREST serves, else `[api] schemas` of supabase/config.toml.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { parse as parseToml } from "smol-toml";
import { type Lint, type LintLevel, lintQuery, LINTS, remediationUrl } from "./lints.ts";
import { liveState, REPO_ROOT, resolveOptions } from "../stack/state.ts";

/** The allow-list's one place. */
export const ALLOW_FILE = `${REPO_ROOT}/supabase/lints.allow.json`;

/** One object a lint reported. */
export interface Finding {
  lint: string;
  level: LintLevel;
  object: string;
  detail: string;
  /** The SQL (or step) that fixes this finding. */
  fix: string;
  remediation: string;
  /** The allow-list entry that accepts it, if any. */
  allowed?: AllowEntry;
}

/** An accepted finding: which lint, on which object, and why it stays. */
export interface AllowEntry {
  lint: string;
  object: string;
  reason: string;
  /** Set while a fix is on its way (says who or where), so the entry is removed after. */
  pending?: string;
}

/** A run's outcome. */
export interface LintReport {
  findings: Finding[];
  /** Allow-list entries that matched no finding. */
  stale: AllowEntry[];
}

/** Reads `[api] schemas` from supabase/config.toml: what PostgREST serves. */
export async function exposedSchemas(root = REPO_ROOT): Promise<string[]> {
  const cfg = parseToml(await Deno.readTextFile(`${root}/supabase/config.toml`)) as {
    api?: { schemas?: string[] };
  };
  return cfg.api?.schemas ?? ["public", "graphql_public"];
}

/**
 * Reads and checks the allow-list: known lints only, a reason on every entry, no ERROR
 * (those are never accepted), no duplicates.
 */
export async function loadAllowList(file = ALLOW_FILE): Promise<AllowEntry[]> {
  const doc = JSON.parse(await Deno.readTextFile(file)) as { allow?: AllowEntry[] };
  const entries = doc.allow ?? [];
  const seen = new Set<string>();
  for (const e of entries) {
    const where = `${file}: ${e.lint} ${e.object}`;
    const lint = LINTS.find((l) => l.name === e.lint);
    if (!lint) throw new Error(`${where}: no such lint`);
    if (lint.level === "ERROR") throw new Error(`${where}: ERROR findings cannot be allow-listed`);
    if (!e.object || !e.reason?.trim()) throw new Error(`${where}: object and reason required`);
    const key = `${e.lint}\t${e.object}`;
    if (seen.has(key)) throw new Error(`${where}: listed twice`);
    seen.add(key);
  }
  return entries;
}

/** Runs one lint: its findings, not yet matched to the allow-list. */
export async function runLint(
  sql: postgres.Sql,
  lint: Lint,
  schemas: string[],
): Promise<Finding[]> {
  // search_path '' so pg_get_expr qualifies every name the same way on every connection.
  const rows = await sql.begin("read only", async (tx) => {
    await tx`set local search_path = ''`;
    return await tx.unsafe(lintQuery(lint), [schemas]);
  }).catch((e: Error) => {
    throw new Error(`lint ${lint.name}: ${e.message}`, { cause: e });
  });
  return rows.map((r) => ({
    lint: lint.name,
    level: lint.level,
    object: r.object as string,
    detail: r.detail as string,
    fix: (r.fix as string | null) ?? lint.fix,
    remediation: remediationUrl(lint),
  }));
}

/** Runs `lints` (default: all) and matches the findings to the allow-list. */
export async function runLints(
  sql: postgres.Sql,
  opts: { schemas: string[]; allow?: AllowEntry[]; lints?: Lint[] },
): Promise<LintReport> {
  const lints = opts.lints ?? LINTS;
  const findings: Finding[] = [];
  for (const lint of lints) findings.push(...await runLint(sql, lint, opts.schemas));
  return matchAllowList(findings, opts.allow ?? [], lints.map((l) => l.name));
}

/**
 * Marks each finding with the entry that accepts it (same lint, same object); entries of
 * the lints that `ran` which accept nothing are stale.
 */
export function matchAllowList(
  findings: Finding[],
  allow: AllowEntry[],
  ran: string[],
): LintReport {
  const used = new Set<AllowEntry>();
  const marked = findings.map((f) => {
    const allowed = allow.find((e) => e.lint === f.lint && e.object === f.object);
    if (allowed) used.add(allowed);
    return { ...f, allowed };
  });
  return { findings: marked, stale: allow.filter((e) => ran.includes(e.lint) && !used.has(e)) };
}

/** True when the finding fails a run: an ERROR, or a WARN nobody accepted. */
export function failing(f: Finding): boolean {
  return f.level === "ERROR" || (f.level === "WARN" && !f.allowed);
}

/** A finding's output line. */
export function formatFinding(f: Finding): string {
  // The reason stays in the allow-list file; the line says only that it is accepted.
  const accepted = f.allowed ? ` [allow-listed${f.allowed.pending ? ", fix pending" : ""}]` : "";
  return `${
    f.level.padEnd(5)
  } ${f.lint} ${f.object}: ${f.detail} → ${f.fix} (${f.remediation})${accepted}`;
}

/** The closing line: counts by level, how many allow-listed, stale entries. */
export function summary(r: LintReport): string {
  const n = (level: LintLevel) => r.findings.filter((f) => f.level === level).length;
  const allowed = r.findings.filter((f) => f.allowed).length;
  const failed = r.findings.filter(failing).length;
  return `${r.findings.length} findings: ${n("ERROR")} error, ${n("WARN")} warn, ${n("INFO")} ` +
    `info; ${allowed} allow-listed, ${failed} failing; ${r.stale.length} stale allow-list entries`;
}

const ORDER: Record<LintLevel, number> = { ERROR: 0, WARN: 1, INFO: 2 };

/** Sorts findings: level, lint, object. */
export function sortFindings(findings: Finding[]): Finding[] {
  return [...findings].sort((a, b) =>
    ORDER[a.level] - ORDER[b.level] || a.lint.localeCompare(b.lint) ||
    a.object.localeCompare(b.object)
  );
}

const HELP = `usage: deno task lint:db [--db-url URL] [--schemas a,b] [--allow FILE] [--list]

Runs Supabase's database lints (the dashboard's Advisors) and prints one line per finding:
  <LEVEL> <lint> <object>: <detail> → <fix> (<link>) [allow-listed]
Exit 1 on any ERROR or any WARN not in the allow-list; INFO never fails.

  --db-url URL    database to lint (default: SUPABASE_DB_URL, else the local stack)
  --schemas a,b   schemas PostgREST serves (default: [api] schemas of supabase/config.toml)
  --allow FILE    allow-list (default: supabase/lints.allow.json)
  --list          print the lints (level, name, categories, what each finds) and exit
  --help          this text`;

async function defaultDbUrl(): Promise<string> {
  const env = Deno.env.get("SUPABASE_DB_URL");
  if (env) return env;
  const opts = resolveOptions();
  const port = (await liveState(opts.dir))?.dbPort ?? opts.dbPort;
  return `postgresql://postgres:postgres@127.0.0.1:${port}/postgres`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "db-url": { type: "string" },
      schemas: { type: "string" },
      allow: { type: "string" },
      list: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.list) {
    for (const l of LINTS) {
      console.log(`${l.level.padEnd(5)} ${l.name} [${l.categories.join(", ")}]: ${l.about}`);
    }
    return 0;
  }
  const schemas = values.schemas
    ? values.schemas.split(",").map((s) => s.trim()).filter(Boolean)
    : await exposedSchemas();
  const allow = await loadAllowList(values.allow ?? ALLOW_FILE);
  const sql = postgres(values["db-url"] ?? await defaultDbUrl(), {
    max: 1,
    onnotice: () => {},
    connect_timeout: 10,
  });
  try {
    const report = await runLints(sql, { schemas, allow });
    for (const f of sortFindings(report.findings)) console.log(formatFinding(f));
    for (const e of report.stale) {
      console.log(`stale ${e.lint} ${e.object}: allow-listed but not found (remove the entry)`);
    }
    console.log(summary(report));
    return report.findings.some(failing) ? 1 : 0;
  } finally {
    await sql.end();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
