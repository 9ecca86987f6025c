/**
 * The I/O around plan.ts: what a Conveyor checkout ships ({@link readDesired}), what a
 * Supabase project holds ({@link snapshot}), and writing a plan ({@link applyPlan}).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, relative, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { listMigrations } from "../stack/migrate.ts";
import {
  type Change,
  type Desired,
  type DesiredFile,
  type Identity,
  type Manifest,
  MANIFEST_PATH,
  type Plan,
  SHARED_DIR,
  type Snapshot,
} from "./plan.ts";

/** A refusal the user can act on: printed as `error: <message>` (and the hint), exit `code`. */
export class InstallError extends Error {
  override readonly name = "InstallError";
  constructor(message: string, readonly hint?: string, readonly code = 1) {
    super(message);
  }
}

/** sha256 of a text, hex. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Files under `dir` (recursive), relative to `base`; none when `dir` is missing. */
async function walk(dir: string, base: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) out.push(...await walk(path, base));
      else out.push(relative(base, path));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

async function git(from: string, args: string[]): Promise<string | null> {
  const out = await new Deno.Command("git", {
    args: ["-C", from, ...args],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => null);
  return out?.success ? new TextDecoder().decode(out.stdout).trim() : null;
}

/** Which Conveyor `from` is: CHANGELOG's latest version heading and the git commit. */
export async function identity(from: string): Promise<Identity> {
  const changelog = await Deno.readTextFile(`${from}/CHANGELOG.md`).catch(() => "");
  const heading = /^## \[([^\]]+)\]/m.exec(changelog)?.[1];
  const commit = await git(from, ["rev-parse", "HEAD"]);
  const status = commit === null
    ? ""
    : await git(from, ["status", "--porcelain", "--", "supabase/migrations", "supabase/functions"]);
  return {
    version: !heading || /unreleased/i.test(heading) ? "unreleased" : heading,
    commit,
    dirty: (status ?? "") !== "",
  };
}

/** Is this file part of what Conveyor ships from a function folder? (Not tests, not data.) */
function shippedFile(rel: string): boolean {
  return rel.endsWith(".ts") && !/_test\.ts$/.test(rel) && !rel.split("/").includes("testdata");
}

/**
 * What the Conveyor checkout `from` installs: its migrations (in apply order), its function
 * folders (`_shared` goes to `_conveyor`, so imports of `../_shared/` are rewritten) and
 * their `[functions.*]` settings from its config.toml.
 */
export async function readDesired(from: string): Promise<Desired> {
  const migrations: Desired["migrations"] = [];
  for (const m of await listMigrations(`${from}/supabase/migrations`)) {
    const content = await Deno.readTextFile(m.path);
    migrations.push({ source: relative(from, m.path), content, sha256: sha256(content) });
  }
  const functions: DesiredFile[] = [];
  const folders: string[] = [];
  const slugs: string[] = [];
  const fnDir = `${from}/supabase/functions`;
  const entries = [];
  for await (const e of Deno.readDir(fnDir)) if (e.isDirectory) entries.push(e.name);
  for (const name of entries.sort()) {
    if (name !== "_shared" && !/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) continue;
    const folder = name === "_shared" ? SHARED_DIR : `supabase/functions/${name}`;
    if (name !== "_shared") slugs.push(name);
    folders.push(folder);
    for (const rel of await walk(`${fnDir}/${name}`, `${fnDir}/${name}`)) {
      if (!shippedFile(rel)) continue;
      const source = `supabase/functions/${name}/${rel}`;
      // The shared code's folder has another name in the project: say so wherever it is named.
      const content = (await Deno.readTextFile(`${from}/${source}`)).replaceAll(
        "_shared/",
        "_conveyor/",
      );
      functions.push({ path: `${folder}/${rel}`, source, content, sha256: sha256(content) });
    }
  }
  const config = parseToml(await Deno.readTextFile(`${from}/supabase/config.toml`)) as {
    functions?: Record<string, Record<string, string | number | boolean>>;
  };
  const functionConfig: Desired["functionConfig"] = {};
  for (const slug of slugs) {
    const settings = config.functions?.[slug];
    if (settings) functionConfig[slug] = settings;
  }
  return {
    conveyor: await identity(from),
    migrations,
    functions,
    folders,
    functionConfig,
  };
}

/** Reads and checks `supabase/conveyor.lock.json`; null when absent. */
export async function readManifest(project: string): Promise<Manifest | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${project}/${MANIFEST_PATH}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (typeof m?.files !== "object" || typeof m?.config !== "object") throw new Error("fields");
    m.kinds ??= {};
    return m;
  } catch {
    throw new InstallError(
      `${MANIFEST_PATH} is not Conveyor's manifest (it does not parse as one)`,
      "restore it from version control",
    );
  }
}

/** The project as the planner needs it: migration names, file hashes, config.toml, manifest. */
export async function snapshot(project: string, desired: Desired): Promise<Snapshot> {
  const manifest = await readManifest(project);
  const migrationNames: string[] = [];
  try {
    for await (const e of Deno.readDir(`${project}/supabase/migrations`)) {
      if (e.isFile) migrationNames.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const paths = new Set<string>([
    ...Object.keys(manifest?.files ?? {}),
    ...desired.functions.map((f) => f.path),
  ]);
  for (const folder of desired.folders) {
    for (const p of await walk(`${project}/${folder}`, project)) paths.add(p);
  }
  const files = new Map<string, string>();
  for (const p of paths) {
    try {
      files.set(p, sha256(await Deno.readTextFile(`${project}/${p}`)));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  const config = await Deno.readTextFile(`${project}/supabase/config.toml`).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  });
  return { migrationNames: migrationNames.sort(), files, config, manifest };
}

/** Writes one file, making its folder. */
export async function writeFile(project: string, path: string, content: string): Promise<void> {
  await Deno.mkdir(dirname(`${project}/${path}`), { recursive: true });
  await Deno.writeTextFile(`${project}/${path}`, content);
}

/** The manifest as written: sorted keys come from the planner; two-space JSON. */
export function manifestText(m: Manifest): string {
  return JSON.stringify(m, null, 2) + "\n";
}

/**
 * Writes a conflict-free plan: files, removals (and the folders they leave empty),
 * config.toml, and the manifest last, so an interrupted run is finished by the next one (a
 * written file equal to Conveyor's is taken as Conveyor's).
 */
export async function applyPlan(project: string, plan: Plan): Promise<void> {
  if (plan.conflicts.length) throw new Error("applyPlan: the plan has conflicts");
  for (const c of plan.changes) {
    if (c.action === "remove") await removeFile(project, c);
    else await writeFile(project, c.path, c.content!);
  }
  if (plan.config) await Deno.writeTextFile(`${project}/supabase/config.toml`, plan.config.text);
  if (plan.manifestChanged) await writeFile(project, MANIFEST_PATH, manifestText(plan.manifest));
}

async function removeFile(project: string, c: Change): Promise<void> {
  await Deno.remove(`${project}/${c.path}`).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  // Empty folders up to supabase/functions go too (a function Conveyor no longer ships).
  const stop = resolve(project, "supabase/functions");
  for (let d = dirname(resolve(project, c.path)); d.startsWith(`${stop}/`); d = dirname(d)) {
    try {
      await Deno.remove(d); // only when empty
    } catch {
      break;
    }
  }
}
