/**
 * `deno task conveyor install | upgrade | add kind | types`: Conveyor in a Supabase project
 * of your own (one made by `supabase init`, with its own migrations and functions), run from
 * a Conveyor checkout. See {@link USAGE} and docs/install.md.
 *
 * Exit codes: 0 done (or nothing to do), 1 refused (the message says why; nothing was
 * written), 2 the command line is wrong.
 *
 * @module
 */
import { resolve } from "node:path";
import { ArgsError, parseCli, usageLine } from "../args.ts";
import { StackError } from "../stack/errors.ts";
import { checkProject, liveState, projectStackDir, REPO_ROOT } from "../stack/state.ts";
import { migrationList } from "../stack/supabase_cli.ts";
import { generateTypes, POSTGRES_META_VERSION } from "../stack/typegen.ts";
import { badKindName, KIND_NAME, kindConfigEntry, kindFiles, kindsIn, kindSlug } from "./kind.ts";
import {
  type Change,
  type Identity,
  MANIFEST_PATH,
  nextVersions,
  type Plan,
  planInstall,
  SHARED_DIR,
  splitConfig,
  versionsOf,
} from "./plan.ts";
import {
  applyPlan,
  InstallError,
  manifestText,
  readDesired,
  readManifest,
  sha256,
  snapshot,
  writeFile,
} from "./project.ts";

/** The commands this module runs (tools/conveyor.ts sends them here). */
export const COMMANDS = ["install", "upgrade", "add", "types"];

/** `deno task conveyor install --help` (and the others'). */
export const USAGE =
  `Conveyor in a Supabase project of your own: install it, upgrade it, add job kinds.

usage: deno task conveyor install --project P [--dry-run] [--db-url URL] [--from C]
       deno task conveyor upgrade --project P [--dry-run] [--db-url URL] [--from C]
       deno task conveyor add kind <name> --project P [--dry-run]
       deno task conveyor types [--project P | --db-url URL | --stack-dir D] [--schema S]

  install    adds Conveyor to the project made by \`supabase init\`: its migrations (named
             after your newest, so \`supabase db push\` takes them), its functions and shared
             code (supabase/functions/_conveyor/), their [functions.*] entries in config.toml
             and supabase/conveyor.lock.json (what it wrote); prints the next steps. Your own
             files are never changed; a file in its way stops it. Run twice: no change.
  upgrade    after this checkout gained migrations or function changes: writes only what is
             new or changed, never rewrites an applied migration, and says what changed.
  add kind   a job kind of your own: a migration registering it and its queues, its worker
             function (supabase/functions/<kind>-worker/) with a typed handler to fill in,
             and the handler's test.
  types      prints the TypeScript Database types of the project's database (Supabase's
             own generator, @supabase/postgres-meta ${POSTGRES_META_VERSION}), for
             \`> supabase/functions/database.types.ts\`.

  --project P   the project: a folder with supabase/ (default: env CONVEYOR_PROJECT)
  --dry-run     list what would be written, write nothing
  --db-url URL  the database the migrations go to (\`supabase db push --db-url\`): new
                versions come after its newest, and a changed Conveyor migration is
                rewritten only if its history (supabase migration list) shows it unapplied
  --from C      the Conveyor checkout to install from (default: this one)
  --stack-dir D types: the local stack's folder (default: the project's, or .stack/local)
  --schema S    types: schemas to describe, comma-separated (default public)
  -h, --help    this text`;

/** Where output goes (the terminal, or a test's buffer). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: Io = { out: (l) => console.log(l), err: (l) => console.error(l) };

const OPTIONS = {
  project: { type: "string" },
  "dry-run": { type: "boolean" },
  "db-url": { type: "string" },
  from: { type: "string" },
  "stack-dir": { type: "string" },
  schema: { type: "string" },
} as const;

type Flags = ReturnType<typeof parse>["values"];

function parse(args: string[]) {
  return parseCli(args, { allowPositionals: true, strict: true, options: OPTIONS });
}

/** A bad command line: exit 2. */
const usage = (message: string) =>
  new InstallError(message, "deno task conveyor install --help", 2);

/** The project folder: --project, else CONVEYOR_PROJECT; checked to be a Supabase project. */
function projectOf(flags: Flags, from: string): string {
  const dir = flags.project ?? (Deno.env.get("CONVEYOR_PROJECT") || undefined);
  if (dir === undefined) throw usage("which project? give --project <folder with supabase/>");
  let project: string;
  try {
    project = checkProject(dir);
  } catch (e) {
    if (e instanceof StackError) throw new InstallError(e.message, e.hint);
    throw e;
  }
  if (resolve(project) === resolve(from)) {
    throw new InstallError(
      `${project} is the Conveyor checkout itself; install into your own project's folder`,
    );
  }
  return project;
}

function describe(c: Identity): string {
  const commit = c.commit ? `commit ${c.commit.slice(0, 7)}` : "no git commit";
  return `${c.version} (${commit}${c.dirty ? ", with uncommitted changes" : ""})`;
}

const WORD: Record<Change["action"], string> = {
  add: "add",
  update: "update",
  restore: "restore",
  remove: "remove",
};

/** The plan as lines: migrations one by one, a function folder added whole as one line. */
function planLines(plan: Plan, old: Identity | null): string[] {
  const lines: string[] = [];
  const row = (action: string, path: string, why = "") =>
    lines.push(`  ${action.padEnd(8)} ${path}${why ? `   ${why}` : ""}`);
  const byFolder = new Map<string, Change[]>();
  for (const c of plan.changes) {
    if (c.path.startsWith("supabase/migrations/")) {
      row(WORD[c.action], c.path, c.action === "add" ? "" : `(Conveyor's ${c.source})`);
      continue;
    }
    const folder = c.path.split("/").slice(0, 3).join("/");
    byFolder.set(folder, [...(byFolder.get(folder) ?? []), c]);
  }
  for (const [folder, cs] of byFolder) {
    if (cs.length > 1 && cs.every((c) => c.action === cs[0]!.action)) {
      row(WORD[cs[0]!.action], `${folder}/`, `(${cs.length} files)`);
    } else for (const c of cs) row(WORD[c.action], c.path);
  }
  if (plan.config) {
    const n = plan.manifest.config.functions.length;
    row(
      "update",
      "supabase/config.toml",
      plan.config.action === "add"
        ? `(appends Conveyor's block: [functions.*] of its ${n} functions)`
        : `(Conveyor's block: [functions.*] of its ${n} functions)`,
    );
  }
  if (plan.manifestChanged) {
    const what = old && plan.changes.length === 0 && !plan.config
      ? `(now Conveyor ${describe(plan.manifest.conveyor)})`
      : "(what Conveyor wrote, for upgrades)";
    row(old ? "update" : "add", MANIFEST_PATH, what);
  }
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  return lines;
}

/** The functions whose deployed code a plan changes (shared code: all of them). */
function changedFunctions(plan: Plan): string[] {
  const touched = plan.changes.filter((c) => c.path.startsWith("supabase/functions/"));
  if (touched.some((c) => c.path.startsWith(`${SHARED_DIR}/`))) return ["every function"];
  return [...new Set(touched.map((c) => c.path.split("/")[2]!))].sort();
}

function nextSteps(project: string, plan: Plan, fresh: boolean): string[] {
  const migrations =
    plan.changes.filter((c) => c.path.startsWith("supabase/migrations/") && c.action !== "remove")
      .length;
  const fns = changedFunctions(plan);
  if (fresh) {
    return [
      "",
      "Next steps (docs/install.md):",
      "  1. Once per hosted project, the Vault secrets the database calls functions with (SQL editor):",
      "       select vault.create_secret('https://<project-ref>.supabase.co', 'project_url');",
      "       select vault.create_secret('<service_role key>', 'service_role_key');",
      `  2. supabase db push             applies the ${migrations} migrations (Conveyor's come after yours)`,
      "  3. supabase functions deploy    deploys the workers, the dispatcher and the dashboard",
      `  4. deno task conveyor add kind <name> --project ${project}   a job kind of your own`,
      `  Locally: deno task start --project ${project}   (the stack pushes the migrations itself)`,
    ];
  }
  const out = ["", "Next:"];
  if (migrations) {
    out.push(`  supabase db push            applies the ${migrations} new migration(s)`);
  }
  if (fns.length) out.push(`  supabase functions deploy   changed: ${fns.join(", ")}`);
  return out.length > 2 ? out : [];
}

async function appliedVersions(project: string, dbUrl: string | undefined) {
  if (!dbUrl) return null;
  try {
    const rows = await migrationList(project, dbUrl);
    return new Set(rows.map((r) => r.remote).filter((v): v is string => v !== null));
  } catch (e) {
    if (e instanceof StackError) throw new InstallError(e.message);
    throw e;
  }
}

async function install(io: Io, flags: Flags, command: "install" | "upgrade"): Promise<number> {
  const from = flags.from ? checkProject(flags.from) : REPO_ROOT;
  const project = projectOf(flags, from);
  const desired = await readDesired(from);
  const snap = await snapshot(project, desired);
  if (command === "upgrade" && !snap.manifest) {
    throw new InstallError(
      `Conveyor is not installed in ${project} (no ${MANIFEST_PATH})`,
      `deno task conveyor install --project ${project}`,
    );
  }
  const plan = planInstall(desired, snap, {
    now: new Date(),
    applied: await appliedVersions(project, flags["db-url"]),
    sha256,
  });
  const old = snap.manifest?.conveyor ?? null;
  if (plan.conflicts.length) {
    io.err(`error: nothing was written to ${project}:`);
    for (const c of plan.conflicts) io.err(`  ${c}`);
    return 1;
  }
  const changed = plan.changes.length > 0 || plan.config !== null || plan.manifestChanged;
  if (!changed) {
    io.out(
      `Nothing to do: ${project} has Conveyor ${
        describe(desired.conveyor)
      }, every file as it wrote it.`,
    );
    for (const n of plan.notes) io.out(`  note: ${n}`);
    return 0;
  }
  const dry = flags["dry-run"] === true;
  const verb = dry ? "Would write" : old ? "Upgrading" : "Installing";
  io.out(
    old && (old.commit !== desired.conveyor.commit || old.version !== desired.conveyor.version)
      ? `${verb} ${project}: Conveyor ${describe(old)} → ${describe(desired.conveyor)}`
      : `${verb} Conveyor ${describe(desired.conveyor)} into ${project}`,
  );
  for (const l of planLines(plan, old)) io.out(l);
  if (dry) {
    io.out("(dry run: nothing written)");
    return 0;
  }
  await applyPlan(project, plan);
  const n = plan.changes.length + (plan.config ? 1 : 0) + (plan.manifestChanged ? 1 : 0);
  io.out(`Done: ${n} file(s) written or removed.`);
  for (const l of nextSteps(project, plan, old === null)) io.out(l);
  return 0;
}

async function addKind(io: Io, flags: Flags, args: string[]): Promise<number> {
  if (args[0] !== "kind") throw usage(`add needs "kind <name>"`);
  const name = args[1];
  if (name === undefined) throw usage("add kind needs a name, e.g. add kind send_invoice");
  if (args.length > 2) throw usage(`unexpected argument "${args[2]}"`);
  const project = projectOf(flags, REPO_ROOT);
  if (!KIND_NAME.test(name)) throw new InstallError(badKindName(name), undefined, 2);
  const manifest = await readManifest(project);
  if (!manifest) {
    throw new InstallError(
      `Conveyor is not installed in ${project} (no ${MANIFEST_PATH})`,
      `deno task conveyor install --project ${project}`,
    );
  }
  const dir = `${project}/supabase/migrations`;
  const migrations: { name: string; text: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".sql")) {
      migrations.push({ name: e.name, text: await Deno.readTextFile(`${dir}/${e.name}`) });
    }
  }
  migrations.sort((a, b) => (a.name < b.name ? -1 : 1));
  const known = kindsIn(migrations);
  const where = known.get(name) ?? manifest.kinds[name]?.migration;
  if (where) {
    throw new InstallError(
      `kind ${name} already exists (supabase/migrations/${where.split("/").at(-1)})`,
    );
  }
  const slug = kindSlug(name);
  const fnDir = `supabase/functions/${slug}`;
  if (await Deno.stat(`${project}/${fnDir}`).then(() => true, () => false)) {
    throw new InstallError(`${fnDir}/ already exists: the worker of kind ${name} would go there`);
  }
  const config = await Deno.readTextFile(`${project}/supabase/config.toml`);
  const { before, after } = splitConfig(config);
  if (new RegExp(`^\\[functions\\.${slug}\\]`, "m").test(before + after)) {
    throw new InstallError(`supabase/config.toml already has [functions.${slug}]`);
  }
  const [version] = nextVersions(versionsOf(migrations.map((m) => m.name)), 1, new Date());
  const files = kindFiles(name, version!);
  const dry = flags["dry-run"] === true;
  io.out(`${dry ? "Would add" : "Adding"} job kind ${name} to ${project}`);
  for (const f of files) io.out(`  add      ${f.path}`);
  io.out(`  update   supabase/config.toml   ([functions.${slug}], after your entries)`);
  io.out(`  update   ${MANIFEST_PATH}`);
  if (dry) {
    io.out("(dry run: nothing written)");
    return 0;
  }
  for (const f of files) await writeFile(project, f.path, f.content);
  await Deno.writeTextFile(
    `${project}/supabase/config.toml`,
    `${config.replace(/\s+$/, "")}\n\n${kindConfigEntry(name)}`,
  );
  manifest.kinds[name] = { migration: files[0]!.path, function: fnDir };
  await writeFile(project, MANIFEST_PATH, manifestText(manifest));
  io.out(
    [
      "",
      "Next:",
      `  1. ${fnDir}/kind.ts: the payload type; handler.ts: the work; handler_test.ts: its test`,
      `  2. deno task test --project ${project}      runs the handler's test on a local stack`,
      `  3. supabase db push                        registers the kind and creates its queues`,
      `     supabase functions deploy ${slug}`,
      `  4. enqueue with enqueue(supabase, ${camelOf(name)}, payload, { idempotencyKey }) of`,
      `     ../_conveyor/jobs.ts, or POST /rest/v1/rpc/queue_job with {"kind": "${name}", …}`,
    ].join("\n"),
  );
  return 0;
}

function camelOf(kind: string): string {
  return kind.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

async function types(io: Io, flags: Flags): Promise<number> {
  let dbUrl = flags["db-url"];
  let project: string | undefined;
  if (!dbUrl) {
    project = flags.project ? projectOf(flags, REPO_ROOT) : undefined;
    const dir = flags["stack-dir"]
      ? resolve(Deno.env.get("INIT_CWD") || Deno.cwd(), flags["stack-dir"])
      : project
      ? projectStackDir(project)
      : (Deno.env.get("CONVEYOR_STACK_DIR") || `${REPO_ROOT}/.stack/local`);
    const state = await liveState(dir);
    if (!state) {
      throw new InstallError(
        `no local stack runs from ${dir}`,
        project
          ? `deno task stack:up --project ${project}   (or give --db-url)`
          : "deno task stack:up   (or give --project P, --stack-dir D or --db-url)",
      );
    }
    dbUrl = `postgresql://postgres:postgres@127.0.0.1:${state.dbPort}/postgres`;
  }
  const schemas = (flags.schema ?? "public").split(",").map((s) => s.trim()).filter(Boolean);
  try {
    io.out(
      (await generateTypes(dbUrl, {
        schemas,
        header: `Database types (schemas: ${schemas.join(", ")}) by Supabase's type generator ` +
          `(@supabase/postgres-meta ${POSTGRES_META_VERSION}),\nfrom \`deno task conveyor types\`. ` +
          `Do not edit: generate them again after a migration.`,
        log: (l) => io.err(l),
      })).replace(/\n$/, ""),
    );
  } catch (e) {
    if (e instanceof StackError) throw new InstallError(e.message, e.hint);
    throw e;
  }
  return 0;
}

/** Runs one of {@link COMMANDS}; returns the exit code. */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let parsed;
  try {
    parsed = parse(args);
  } catch (e) {
    if (!(e instanceof ArgsError)) throw e;
    io.err(usageLine(e.message));
    return 2;
  }
  if (parsed.help) {
    io.out(USAGE);
    return 0;
  }
  const [cmd, ...rest] = parsed.positionals;
  try {
    if ((cmd === "install" || cmd === "upgrade" || cmd === "types") && rest.length) {
      throw usage(`unexpected argument "${rest[0]}"`);
    }
    switch (cmd) {
      case "install":
      case "upgrade":
        return await install(io, parsed.values, cmd);
      case "add":
        return await addKind(io, parsed.values, rest);
      case "types":
        return await types(io, parsed.values);
      default:
        throw usage(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof InstallError) {
      io.err(`error: ${e.message}`);
      if (e.hint) io.err(`  ${e.code === 2 ? "see" : "fix"}: ${e.hint}`);
      return e.code;
    }
    throw e;
  }
}
