/**
 * The lint run CI relies on: Supabase's database lints against the migrated database (a
 * fresh clone of the template), judged with supabase/lints.allow.json; then the allow-list
 * rules and the CLI's output and exit status. Each lint's own behaviour is lints_test.ts.
 */
import { assertEquals, assertMatch, assertRejects } from "../test/assert.ts";
import { freshDb } from "../test/db.ts";
import {
  type AllowEntry,
  exposedSchemas,
  failing,
  type Finding,
  formatFinding,
  loadAllowList,
  matchAllowList,
  runLints,
} from "./db_lints.ts";
import { LINTS } from "./lints.ts";

/** Lints whose findings depend on usage statistics: meaningless on a fresh database. */
const usesStats = new Set(LINTS.filter((l) => l.usesStats).map((l) => l.name));

Deno.test("the migrated database: no ERROR, every WARN and INFO fixed or allow-listed, no stale entry", async () => {
  await using db = await freshDb();
  const report = await runLints(db.sql, {
    schemas: await exposedSchemas(),
    allow: await loadAllowList(),
  });
  const judged = report.findings.filter((f) => !usesStats.has(f.lint));
  assertEquals(judged.filter((f) => f.level === "ERROR").map(formatFinding), []);
  // INFO never fails a run, but here each one needs its reason in the allow-list too.
  assertEquals(judged.filter((f) => !f.allowed).map(formatFinding), []);
  assertEquals(report.stale.filter((e) => !usesStats.has(e.lint)), []);
});

const finding = (over: Partial<Finding>): Finding => ({
  lint: "auth_rls_initplan",
  level: "WARN",
  object: "public.t:p",
  detail: "d",
  fix: "f",
  remediation: "r",
  ...over,
});

Deno.test("matchAllowList() accepts a finding only for the same lint and object, and names the stale entries", () => {
  const keep: AllowEntry = { lint: "auth_rls_initplan", object: "public.t:p", reason: "why" };
  const other: AllowEntry = { lint: "auth_rls_initplan", object: "public.u:p", reason: "why" };
  const notRun: AllowEntry = { lint: "unused_index", object: "public.t:i", reason: "why" };
  const report = matchAllowList(
    [finding({}), finding({ lint: "duplicate_index", object: "public.u:p" })],
    [keep, other, notRun],
    ["auth_rls_initplan", "duplicate_index"],
  );
  assertEquals(report.findings.map((f) => f.allowed), [keep, undefined]);
  assertEquals(report.stale, [other]);
});

Deno.test("failing(): every ERROR, a WARN unless allow-listed, never an INFO", () => {
  const allowed: AllowEntry = { lint: "x", object: "y", reason: "z" };
  assertEquals(
    [
      finding({ level: "ERROR" }),
      finding({ level: "ERROR", allowed }),
      finding({ level: "WARN" }),
      finding({ level: "WARN", allowed }),
      finding({ level: "INFO" }),
    ].map(failing),
    [true, true, true, false, false],
  );
});

Deno.test("loadAllowList() refuses unknown lints, ERROR lints, missing reasons and duplicates", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const load = async (allow: unknown[]) => {
      await Deno.writeTextFile(file, JSON.stringify({ allow }));
      return await loadAllowList(file);
    };
    const ok = { lint: "auth_rls_initplan", object: "public.t:p", reason: "why" };
    assertEquals(await load([ok]), [ok]);
    await assertRejects(
      () => load([{ ...ok, lint: "nope" }]),
      `${file}: nope public.t:p: no such lint`,
    );
    await assertRejects(
      () => load([{ ...ok, lint: "security_definer_view", object: "public.v" }]),
      `${file}: security_definer_view public.v: ERROR findings cannot be allow-listed`,
    );
    await assertRejects(
      () => load([{ ...ok, reason: " " }]),
      `${file}: auth_rls_initplan public.t:p: object and reason required`,
    );
    await assertRejects(
      () => load([ok, ok]),
      `${file}: auth_rls_initplan public.t:p: listed twice`,
    );
  } finally {
    await Deno.remove(file);
  }
});

async function cli(dbUrl: string): Promise<{ code: number; lines: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./db_lints.ts", import.meta.url).pathname, "--db-url", dbUrl],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(new TextDecoder().decode(out.stderr), "");
  return { code: out.code, lines: text.split("\n").filter((l) => l !== "") };
}

Deno.test("deno task lint:db: exit 0 on the migrated database, 1 with one line for an ERROR", async () => {
  await using db = await freshDb();
  const before = await cli(db.url);
  assertEquals(before.code, 0, before.lines.join("\n"));
  assertMatch(
    before.lines.at(-1)!,
    /^\d+ findings: 0 error, \d+ warn, \d+ info; \d+ allow-listed, 0 failing; 0 stale allow-list entries$/,
  );
  await db.sql.unsafe(`create view public.lint_probe as select 1 as one;
                       grant select on public.lint_probe to anon;`);
  const after = await cli(db.url);
  assertEquals(after.code, 1);
  assertEquals(after.lines.filter((l) => l.startsWith("ERROR")), [
    "ERROR security_definer_view public.lint_probe: view runs with its owner's rights → " +
    "alter view public.lint_probe set (security_invoker = true); " +
    "(https://supabase.com/docs/guides/database/database-linter?lint=0010_security_definer_view)",
  ]);
});
