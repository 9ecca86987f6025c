/**
 * `deno task test`: starts a private stack (own data folder and free ports, so the code under
 * test is always this checkout's, even while another stack runs on 54321/54322), builds the
 * migrated template database, runs every Deno test and every pgTAP file, stops the stack and
 * prints one final line: `N passed, N failed` (the sum over both runners).
 *
 *   deno task test [--filter <text>] [--keep] [--only deno|sql] [--stack-dir D]
 *                  [--project P] [files…]
 *
 * `--stack-dir` (default `.stack/test`) lets several test runs of one checkout proceed at
 * the same time, each with its own stack. `--project P` tests another Supabase project (one
 * Conveyor was installed into) the same way: its migrations on the private stack, its
 * `*_test.ts` / `*.test.ts` under `P/supabase/functions` and `P/supabase/tests/*.test.sql`.
 *
 * @module
 */
import { resolve } from "node:path";
import { cliArgs, usageExit } from "../args.ts";
import { freePort } from "../stack/proc.ts";
import { checkProject, projectDenoConfig, REPO_ROOT } from "../stack/state.ts";
import { StackError } from "../stack/errors.ts";
import { adminSql, setupDatabase, stackInfo } from "../stack/supervisor.ts";
import { dbUrl, PG_SUPERUSER } from "../stack/cluster.ts";
import { findPgBin } from "../stack/pg_binaries.ts";
import { TEMPLATE_DB } from "./db.ts";

const USAGE =
  `usage: deno task test [--filter TEXT] [--only deno|sql] [--keep] [--stack-dir D] [--project P]
                      [files…]

Starts a private stack (own folder, free ports), runs every Deno test and every pgTAP file
(or only the given *_test.ts / *.test.sql files) and ends with "N passed, N failed".

  --filter TEXT   only Deno tests whose name contains TEXT
  --only deno|sql only the Deno tests, or only pgTAP
  --keep          leave the stack running afterwards (its stop command is printed)
  --stack-dir D   the stack's folder (default .stack/test); one per concurrent run
  --project P     test another Supabase project (a folder with supabase/, e.g. one Conveyor
                  was installed into): its migrations, the *_test.ts and *.test.ts files under
                  P/supabase/functions and P/supabase/tests/*.test.sql; files are relative to P
  -h, --help      this text`;

const { values, positionals } = cliArgs(USAGE, {
  allowPositionals: true,
  options: {
    filter: { type: "string" },
    keep: { type: "boolean", default: false },
    only: { type: "string" },
    "stack-dir": { type: "string" },
    project: { type: "string" },
  },
});

if (values.only !== undefined && values.only !== "deno" && values.only !== "sql") {
  usageExit(`--only must be deno or sql, got "${values.only}"`);
}

let project = REPO_ROOT;
if (values.project !== undefined) {
  try {
    project = checkProject(values.project);
  } catch (e) {
    if (!(e instanceof StackError)) throw e;
    console.error(`error: ${e.message}${e.hint ? `\n  fix: ${e.hint}` : ""}`);
    Deno.exit(1);
  }
}
const deno = Deno.execPath();
const dir = resolve(REPO_ROOT, values["stack-dir"] ?? ".stack/test");
const apiPort = freePort();
const dbPort = freePort();
const log = (l: string) => console.log(`[test] ${l}`);
let passed = 0;
let failed = 0;

async function stackCmd(cmd: "up" | "down"): Promise<boolean> {
  const args = ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, cmd, "--dir", dir];
  if (cmd === "up") {
    args.push("--api-port", String(apiPort), "--db-port", String(dbPort), "--project", project);
  }
  const res = await new Deno.Command(deno, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  return res.success;
}

/** Runs a command in the project folder, echoing its output, and returns the output text. */
async function tee(cmd: string, args: string[], env: Record<string, string>) {
  const child = new Deno.Command(cmd, {
    args,
    env,
    cwd: project,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pipe = async (s: ReadableStream<Uint8Array>, out: typeof Deno.stdout) => {
    for await (const chunk of s) {
      text += new TextDecoder().decode(chunk);
      await out.write(chunk);
    }
  };
  const [status] = await Promise.all([
    child.status,
    pipe(child.stdout, Deno.stdout),
    pipe(child.stderr, Deno.stderr),
  ]);
  return { code: status.code, text };
}

// deno-lint-ignore no-control-regex -- strip ANSI colours before parsing summaries
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Another project's Deno tests: `*_test.ts` and `*.test.ts` under `supabase/functions` (the
 * Supabase docs put them in `supabase/functions/tests/`, Conveyor's `add kind` beside the
 * handler), relative to the project.
 */
async function projectTests(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${project}/${rel}`)) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory && e.name !== "node_modules") await walk(path);
      else if (e.isFile && /(_test|\.test)\.ts$/.test(e.name)) out.push(path);
    }
  };
  await walk("supabase/functions").catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  return out.sort();
}

async function runDenoTests(env: Record<string, string>): Promise<void> {
  const args = ["test", "-A", "--no-prompt"];
  const config = await projectDenoConfig(project);
  if (config) args.push("--config", config);
  if (values.filter) args.push("--filter", values.filter);
  const files = positionals.filter((p) => p.endsWith(".ts"));
  // Files named, none of them Deno's: only those (pgTAP) run.
  if (positionals.length > 0 && files.length === 0) return;
  if (project !== REPO_ROOT && files.length === 0) {
    files.push(...await projectTests());
    if (files.length === 0) {
      log(`no *_test.ts under ${project}/supabase/functions: no Deno tests to run`);
      return;
    }
  }
  args.push(...files);
  const { code, text } = await tee(deno, args, env);
  const plain = text.replace(ANSI, "");
  const summary = plain.match(/(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed/);
  if (summary) {
    passed += Number(summary[1]);
    failed += Number(summary[2]);
  } else if (code !== 0) {
    log("deno test failed before running tests (see above)");
    failed += 1;
  }
}

async function runPgTap(env: Record<string, string>): Promise<void> {
  const files: string[] = [];
  const wanted = positionals.filter((p) => p.endsWith(".sql"));
  if (wanted.length) files.push(...wanted);
  else if (positionals.length > 0) return; // files named, none of them pgTAP's
  else {
    try {
      for await (const e of Deno.readDir(`${project}/supabase/tests`)) {
        if (e.isFile && e.name.endsWith(".test.sql")) files.push(`supabase/tests/${e.name}`);
      }
    } catch (e) {
      // A project without pgTAP tests has no supabase/tests.
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  files.sort();
  if (files.length === 0) return;
  const { code, text } = await tee("pg_prove", [
    "--verbose",
    "-h",
    "127.0.0.1",
    "-p",
    String(dbPort),
    "-U",
    "postgres",
    "-d",
    "postgres",
    ...files,
  ], { ...env, PGPASSWORD: "postgres" });
  const ok = text.match(/^\s*ok \d+/gm)?.length ?? 0;
  const notOk = text.match(/^\s*not ok \d+/gm)?.length ?? 0;
  // A file that dies (bad plan, SQL error) reports no "not ok" line: count it once.
  const broken = text.match(/^\S+\.sql\s+\(Wstat: .*\)$|Parse errors: /gm)?.length ?? 0;
  passed += ok;
  failed += notOk + (notOk === 0 && code !== 0 ? Math.max(1, broken) : 0);
}

async function main(): Promise<number> {
  log(`private stack in ${dir} on ports ${apiPort}/${dbPort}`);
  if (project !== REPO_ROOT) log(`project ${project}`);
  await stackCmd("down");
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  if (!(await stackCmd("up"))) {
    failed += 1;
    log("the stack did not start");
    return 1;
  }
  const info = await stackInfo(apiPort, dbPort);
  try {
    log(`building template database ${TEMPLATE_DB}`);
    const adminUrl = dbUrl(dbPort, "postgres", PG_SUPERUSER);
    // The template belongs to postgres (CREATEDB), so tests clone and drop their copies as
    // postgres; the platform's part of it is the superuser's, as in the stack's database.
    const user = adminSql(info.dbUrl);
    try {
      await user.unsafe(`drop database if exists ${TEMPLATE_DB} with (force)`);
      await user.unsafe(`create database ${TEMPLATE_DB}`);
    } finally {
      await user.end();
    }
    // pgTAP runs in the stack's database; plpgsql_check is a privileged extension there.
    const admin = adminSql(adminUrl);
    try {
      await admin`create extension if not exists pgtap with schema extensions`;
      await admin`create extension if not exists plpgsql_check with schema extensions`;
    } finally {
      await admin.end();
    }
    await setupDatabase(
      { url: dbUrl(dbPort, TEMPLATE_DB), adminUrl: dbUrl(dbPort, TEMPLATE_DB, PG_SUPERUSER) },
      project,
      (l) => log(`template: ${l}`),
    );
    const env: Record<string, string> = {
      CONVEYOR_DB_URL: info.dbUrl,
      CONVEYOR_ADMIN_DB_URL: adminUrl,
      SUPABASE_URL: info.apiUrl,
      SUPABASE_ANON_KEY: info.anonKey,
      SUPABASE_SERVICE_ROLE_KEY: info.serviceRoleKey,
      SUPABASE_JWT_SECRET: info.jwtSecret,
      CONVEYOR_PG_BIN: await findPgBin(),
      CONVEYOR_STACK_DIR: dir,
    };
    if (values.only !== "sql") await runDenoTests(env);
    if (values.only !== "deno") await runPgTap(env);
  } catch (e) {
    failed += 1;
    log(`harness error: ${(e as Error).stack ?? e}`);
  } finally {
    if (values.keep) log(`stack kept running: deno run -A tools/stack/main.ts down --dir ${dir}`);
    else await stackCmd("down");
  }
  return failed > 0 ? 1 : 0;
}

const code = await main();
console.log(`\n${passed} passed, ${failed} failed`);
Deno.exit(code);
