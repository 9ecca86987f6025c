import { createHash } from "node:crypto";
import { assertEquals } from "../test/assert.ts";
import {
  CONFIG_END,
  configBlock,
  type Desired,
  type Manifest,
  nextVersions,
  type Plan,
  planInstall,
  type Snapshot,
  splitConfig,
  withBlock,
} from "./plan.ts";

const sha = (t: string) => createHash("sha256").update(t).digest("hex");
const NOW = new Date("2026-12-07T10:00:00Z");
const USER_CONFIG =
  `project_id = "app"\n\n[api]\nport = 54321\n\n[functions.hello]\nverify_jwt = false\n`;

/** A small Conveyor: two migrations, shared code and one worker. */
function desired(over: Partial<Record<string, string>> = {}): Desired {
  const m = (name: string, text: string) => ({
    source: `supabase/migrations/${name}`,
    content: over[name] ?? text,
    sha256: sha(over[name] ?? text),
  });
  const f = (path: string, source: string, text: string) => ({
    path,
    source,
    content: over[path] ?? text,
    sha256: sha(over[path] ?? text),
  });
  const migrations = [m("0001_extensions.sql", "create extension pgmq;\n")];
  migrations.push(m("0051_queue_job_expose.sql", "create function queue_job();\n"));
  if (over.newMigration) migrations.push(m("20261208000000_more.sql", over.newMigration));
  return {
    conveyor: { version: "unreleased", commit: "abc", dirty: false },
    migrations,
    functions: [
      f("supabase/functions/_conveyor/jobs.ts", "supabase/functions/_shared/jobs.ts", "jobs\n"),
      f(
        "supabase/functions/enrich-worker/index.ts",
        "supabase/functions/enrich-worker/index.ts",
        "serve\n",
      ),
    ],
    folders: ["supabase/functions/_conveyor", "supabase/functions/enrich-worker"],
    functionConfig: { "enrich-worker": { verify_jwt: true } },
  };
}

function project(files: Record<string, string>, manifest: Manifest | null = null): Snapshot {
  return {
    migrationNames: Object.keys(files).filter((p) => p.startsWith("supabase/migrations/"))
      .map((p) => p.split("/").at(-1)!),
    files: new Map(
      Object.entries(files).filter(([p]) => p !== "supabase/config.toml")
        .map(([p, t]) => [p, sha(t)]),
    ),
    config: files["supabase/config.toml"] ?? null,
    manifest,
  };
}

const ctx = (applied: string[] | null = null) => ({
  now: NOW,
  applied: applied && new Set(applied),
  sha256: sha,
});

/** The project's files after a plan (as applyPlan writes them). */
function applied(files: Record<string, string>, plan: Plan): Record<string, string> {
  const out = { ...files };
  for (const c of plan.changes) {
    if (c.action === "remove") delete out[c.path];
    else out[c.path] = c.content!;
  }
  if (plan.config) out["supabase/config.toml"] = plan.config.text;
  return out;
}

/** A project made by supabase init with one migration of its own, Conveyor installed. */
function installed(d = desired()) {
  const before = {
    "supabase/config.toml": USER_CONFIG,
    "supabase/migrations/20261201120000_invoices.sql": "create table invoices();\n",
  };
  const plan = planInstall(d, project(before), ctx());
  return { files: applied(before, plan), manifest: plan.manifest, plan };
}

Deno.test("nextVersions() follows the newest version, one second apart, never before now", () => {
  assertEquals(nextVersions(["20261201120000"], 2, NOW), ["20261207100000", "20261207100001"]);
  assertEquals(nextVersions(["20261231235959", "0084"], 2, NOW), [
    "20270101000000",
    "20270101000001",
  ]);
  assertEquals(nextVersions(["0001", "0084"], 1, NOW), ["20261207100000"], "00NN sorts first");
  assertEquals(nextVersions([], 1, NOW), ["20261207100000"]);
  assertEquals(nextVersions(["20261399999999"], 2, NOW), ["20261400000000", "20261400000001"]);
});

Deno.test("planInstall() on a fresh project: migrations after the project's, functions, config block", () => {
  const { plan, files } = installed();
  assertEquals(plan.conflicts, []);
  assertEquals(plan.changes.map((c) => [c.action, c.path]), [
    ["add", "supabase/migrations/20261207100000_conveyor_0001_extensions.sql"],
    ["add", "supabase/migrations/20261207100001_conveyor_0051_queue_job_expose.sql"],
    ["add", "supabase/functions/_conveyor/jobs.ts"],
    ["add", "supabase/functions/enrich-worker/index.ts"],
  ]);
  assertEquals(plan.config?.action, "add");
  assertEquals(
    files["supabase/config.toml"],
    `${USER_CONFIG}\n${configBlock({ "enrich-worker": { verify_jwt: true } })}`,
    "the user's text untouched, Conveyor's block appended",
  );
  assertEquals(Object.keys(plan.manifest.files).length, 4);
  assertEquals(plan.manifestChanged, true);
});

Deno.test("planInstall() a second time changes nothing", () => {
  const { files, manifest } = installed();
  const again = planInstall(desired(), project(files, manifest), ctx());
  assertEquals([again.changes, again.conflicts, again.config, again.manifestChanged], [
    [],
    [],
    null,
    false,
  ]);
});

Deno.test("upgrade writes exactly a new Conveyor migration, after the project's newest", () => {
  const { files, manifest } = installed();
  files["supabase/migrations/20261207110000_mine.sql"] = "alter table invoices add x int;\n";
  const plan = planInstall(
    desired({ newMigration: "create table more();\n" }),
    project(files, manifest),
    ctx(),
  );
  assertEquals(plan.conflicts, []);
  assertEquals(plan.changes.map((c) => [c.action, c.path, c.source]), [[
    "add",
    "supabase/migrations/20261207110001_conveyor_20261208000000_more.sql",
    "supabase/migrations/20261208000000_more.sql",
  ]]);
  assertEquals(plan.config, null);
});

Deno.test("a changed Conveyor migration is rewritten only when the database's history shows it unapplied", () => {
  const { files, manifest } = installed();
  const d = desired({ "0051_queue_job_expose.sql": "create function queue_job(jsonb);\n" });
  const path = "supabase/migrations/20261207100001_conveyor_0051_queue_job_expose.sql";
  const unknown = planInstall(d, project(files, manifest), ctx());
  assertEquals(unknown.conflicts, [
    `Conveyor's supabase/migrations/0051_queue_job_expose.sql changed since it was written to ${path}; a migration the database may have applied is never rewritten: give --db-url <database> so the CLI's history shows whether it was`,
  ]);
  const applied = planInstall(
    d,
    project(files, manifest),
    ctx(["20261207100000", "20261207100001"]),
  );
  assertEquals(applied.conflicts.length, 1);
  assertEquals(applied.conflicts[0]!.includes("is already applied to the database"), true);
  const pending = planInstall(d, project(files, manifest), ctx(["20261207100000"]));
  assertEquals(pending.conflicts, []);
  assertEquals(pending.changes.map((c) => [c.action, c.path]), [["update", path]]);
});

Deno.test("function files: updated when unchanged by the user, kept or refused when changed", () => {
  const { files, manifest } = installed();
  const jobs = "supabase/functions/_conveyor/jobs.ts";
  const index = "supabase/functions/enrich-worker/index.ts";
  // Conveyor changed jobs.ts; the project's copy is as written: update.
  const up = planInstall(desired({ [jobs]: "jobs v2\n" }), project(files, manifest), ctx());
  assertEquals(up.changes.map((c) => [c.action, c.path]), [["update", jobs]]);
  // The user changed index.ts, Conveyor did not: kept, with a note.
  const edited = { ...files, [index]: "my serve\n" };
  const kept = planInstall(desired(), project(edited, manifest), ctx());
  assertEquals([kept.changes, kept.conflicts], [[], []]);
  assertEquals(kept.notes, [`${index} was changed since Conveyor wrote it; left as it is`]);
  // Both changed it: refused.
  const both = planInstall(desired({ [index]: "serve v2\n" }), project(edited, manifest), ctx());
  assertEquals(both.conflicts, [
    `${index} was changed since Conveyor wrote it, and Conveyor's ${index} changed too`,
  ]);
  // Deleted by the user: restored.
  const gone = { ...files };
  delete gone[jobs];
  const back = planInstall(desired(), project(gone, manifest), ctx());
  assertEquals(back.changes.map((c) => [c.action, c.path]), [["restore", jobs]]);
});

Deno.test("a file Conveyor did not write is never overwritten, and its folder is not taken", () => {
  const before = {
    "supabase/config.toml": USER_CONFIG,
    "supabase/functions/enrich-worker/index.ts": "someone else's\n",
    "supabase/functions/_conveyor/notes.md": "mine\n",
  };
  const plan = planInstall(desired(), project(before), ctx());
  assertEquals(plan.conflicts, [
    "supabase/functions/enrich-worker/index.ts exists and was not written by Conveyor",
    "supabase/functions/_conveyor/notes.md exists and was not written by Conveyor: supabase/functions/_conveyor/ is Conveyor's folder",
  ]);
});

Deno.test("a file Conveyor no longer ships is removed, unless the user changed it", () => {
  const { files, manifest } = installed();
  const d = desired();
  d.functions = d.functions.filter((f) => !f.path.includes("enrich-worker"));
  d.folders = ["supabase/functions/_conveyor"];
  d.functionConfig = {};
  const plan = planInstall(d, project(files, manifest), ctx());
  assertEquals(plan.changes.map((c) => [c.action, c.path]), [[
    "remove",
    "supabase/functions/enrich-worker/index.ts",
  ]]);
  assertEquals(plan.config?.action, "update");
  const edited = { ...files, "supabase/functions/enrich-worker/index.ts": "mine\n" };
  const kept = planInstall(d, project(edited, manifest), ctx());
  assertEquals(kept.changes, []);
  assertEquals(
    kept.manifest.files["supabase/functions/enrich-worker/index.ts"] !== undefined,
    true,
  );
});

Deno.test("config.toml: a function of the user's with Conveyor's name, or an edited block, is refused", () => {
  const clash = USER_CONFIG + "\n[functions.enrich-worker]\nverify_jwt = false\n";
  const plan = planInstall(desired(), project({ "supabase/config.toml": clash }), ctx());
  assertEquals(plan.conflicts, [
    "supabase/config.toml already has [functions.enrich-worker]: a function of yours has the name of one of Conveyor's",
  ]);
  const { files, manifest } = installed();
  const edited = files["supabase/config.toml"]!.replace("verify_jwt = true", "verify_jwt = false");
  const refused = planInstall(
    desired(),
    project({ ...files, "supabase/config.toml": edited }, manifest),
    ctx(),
  );
  assertEquals(refused.conflicts.length, 1);
  assertEquals(refused.conflicts[0]!.startsWith("Conveyor's block in supabase/config.toml"), true);
});

Deno.test("withBlock() replaces Conveyor's block in place; the user's entries after it stay", () => {
  const old = configBlock({ "a-worker": { verify_jwt: true } });
  const after = "\n[functions.send-invoice-worker]\nverify_jwt = true\n";
  const text = `${USER_CONFIG}\n${old}${after}`;
  const block = configBlock({
    "a-worker": { verify_jwt: true },
    "b-worker": { verify_jwt: false },
  });
  assertEquals(withBlock(text, block), `${USER_CONFIG}\n${block}${after}`);
  assertEquals(splitConfig(withBlock(text, block)).block, block);
  assertEquals(block.endsWith(`${CONFIG_END}\n`), true);
});
