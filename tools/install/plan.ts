/**
 * What `deno task conveyor install` / `upgrade` writes into a Supabase project, decided
 * without I/O (project.ts reads the project and writes the plan): Conveyor's files as this
 * checkout has them ({@link Desired}), the project as it is ({@link Snapshot}, with the
 * manifest of what Conveyor wrote before) in, a {@link Plan} out.
 *
 * The rules:
 * - Conveyor's migrations are written once each, named `<version>_conveyor_<its name>.sql`
 *   with a version after the project's newest migration (and the database's, when known), so
 *   `supabase db push` takes them. A migration already written is never rewritten when its
 *   source changed: the database may have applied it. Only when the caller knows from the
 *   CLI's history that it was not applied is it rewritten; otherwise that is a conflict.
 * - Functions and shared code: a file is written when missing, replaced when Conveyor's
 *   version changed and the project's copy is still what Conveyor wrote, removed when
 *   Conveyor no longer ships it. A file Conveyor did not write, or one the user changed that
 *   Conveyor would change too, is a conflict.
 * - config.toml: Conveyor's `[functions.*]` entries live in one marked block at its end; the
 *   user's part of the file is never touched, and must not name Conveyor's functions.
 * - Any conflict and nothing is written.
 *
 * @module
 */
import { parse as parseToml } from "smol-toml";

/** Which Conveyor wrote a project's files. */
export interface Identity {
  /** The latest released version in CHANGELOG.md, or "unreleased". */
  version: string;
  /** The checkout's git commit, when it is a git checkout. */
  commit: string | null;
  /** True when the checkout had uncommitted changes in what is installed. */
  dirty: boolean;
}

/** One file Conveyor wrote, in the manifest. */
export interface ManifestFile {
  /** Where it comes from, relative to the Conveyor checkout. */
  source: string;
  /** sha256 (hex) of the content written. */
  sha256: string;
}

/** A job kind `add kind` made. */
export interface ManifestKind {
  migration: string;
  function: string;
}

/** `supabase/conveyor.lock.json`: what Conveyor wrote into the project, so upgrades know. */
export interface Manifest {
  conveyor: Identity;
  /** Project path (relative to the project folder) → what was written there. */
  files: Record<string, ManifestFile>;
  /** Conveyor's block in supabase/config.toml. */
  config: { sha256: string; functions: string[] };
  /** Kinds made by `add kind` (their files are the user's: upgrades leave them alone). */
  kinds: Record<string, ManifestKind>;
}

/** A file Conveyor ships, ready to be written. */
export interface DesiredFile {
  /** Project path, e.g. `supabase/functions/_conveyor/jobs.ts`. */
  path: string;
  /** Path in the Conveyor checkout, e.g. `supabase/functions/_shared/jobs.ts`. */
  source: string;
  content: string;
  sha256: string;
}

/** What this Conveyor checkout installs. */
export interface Desired {
  conveyor: Identity;
  /** Migrations in apply order; `path` is unset (versions are given by the plan). */
  migrations: Omit<DesiredFile, "path">[];
  /** Function and shared-code files. */
  functions: DesiredFile[];
  /** The function folders these files live in (`supabase/functions/<slug>`). */
  folders: string[];
  /** Conveyor's `[functions.*]` entries: slug → settings. */
  functionConfig: Record<string, Record<string, string | number | boolean>>;
}

/** The project as it is. */
export interface Snapshot {
  /** File names in `supabase/migrations`. */
  migrationNames: string[];
  /**
   * sha256 of each file that matters: every manifest path, every desired path and every
   * file under Conveyor's function folders. Missing files are absent.
   */
  files: Map<string, string>;
  /** supabase/config.toml's text (null: no such file). */
  config: string | null;
  manifest: Manifest | null;
}

/** What the caller knows besides the files. */
export interface PlanContext {
  /** For new migration versions: they come after this time too. */
  now: Date;
  /**
   * Versions in the database's migration history (`supabase migration list --db-url`), when
   * a database was given; null when unknown.
   */
  applied: Set<string> | null;
  /** sha256 of a text (the I/O layer's; the planner stays synchronous). */
  sha256: (text: string) => string;
}

/** One file to write or remove. */
export interface Change {
  path: string;
  action: "add" | "update" | "restore" | "remove";
  source?: string;
  /** The content to write (not for remove). */
  content?: string;
}

/** What install/upgrade would do. */
export interface Plan {
  changes: Change[];
  /** Reasons nothing may be written; empty when the plan may be applied. */
  conflicts: string[];
  /** Things the user should know that change nothing (a file they edited, kept). */
  notes: string[];
  /** The new config.toml text when it changes, else null; and what changed in it. */
  config: { text: string; action: "add" | "update" } | null;
  /** The manifest to write (also when only Conveyor's identity changed). */
  manifest: Manifest;
  /** True when the manifest differs from the one in the project. */
  manifestChanged: boolean;
}

/** The project path of the manifest. */
export const MANIFEST_PATH = "supabase/conveyor.lock.json";
/** Where Conveyor's shared code goes (`_shared` in this repository): a folder of its own. */
export const SHARED_DIR = "supabase/functions/_conveyor";
/** The lines around Conveyor's block in config.toml. */
export const CONFIG_BEGIN =
  "# >>> Conveyor: its edge functions (written by `deno task conveyor install`; upgrade rewrites this block)";
export const CONFIG_END = "# <<< Conveyor";

/** The version of a migration file name (its digits up to the first `_`), or null. */
export function versionOf(name: string): string | null {
  return /^(\d+)_.*\.sql$/.exec(name.split("/").at(-1)!)?.[1] ?? null;
}

/** The versions of migration file names (those that have one). */
export function versionsOf(names: Iterable<string>): string[] {
  return [...names].map(versionOf).filter((v): v is string => v !== null);
}

/** `YYYYMMDDHHMMSS` (UTC) of a date. */
export function timestamp(d: Date): string {
  return d.toISOString().replace(/\D/g, "").slice(0, 14);
}

/**
 * `count` migration versions after every one in `existing` and not before `now`, one second
 * apart, as `supabase migration new` names files. A newest version that is not a timestamp
 * is followed numerically.
 */
export function nextVersions(existing: Iterable<string>, count: number, now: Date): string[] {
  let newest = "";
  for (const v of existing) {
    // Versions are digits: the longer is the larger ("20251020120000" after "0084").
    if (v.length > newest.length || (v.length === newest.length && v > newest)) newest = v;
  }
  if (!newest || newest.length < 14) {
    return Array.from({ length: count }, (_, i) => timestamp(new Date(now.getTime() + i * 1000)));
  }
  const p = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(newest)?.slice(1).map(Number);
  const when = p ? Date.UTC(p[0]!, p[1]! - 1, p[2]!, p[3]!, p[4]!, p[5]!) : NaN;
  if (!p || timestamp(new Date(when)) !== newest) {
    // Not a timestamp (Date.UTC would roll month 13 over) but as long or longer: count on.
    let n = BigInt(newest);
    return Array.from({ length: count }, () => String(++n));
  }
  const at = Math.max(now.getTime(), when + 1000);
  return Array.from({ length: count }, (_, i) => timestamp(new Date(at + i * 1000)));
}

/** The project file name of Conveyor's migration `source` (`…/0051_queue_job_expose.sql`). */
export function migrationTarget(version: string, source: string): string {
  return `supabase/migrations/${version}_conveyor_${source.split("/").at(-1)}`;
}

/** Conveyor's block for config.toml: its functions' entries between the marker lines. */
export function configBlock(functionConfig: Desired["functionConfig"]): string {
  const lines = [CONFIG_BEGIN];
  for (const slug of Object.keys(functionConfig).sort()) {
    lines.push(`[functions.${slug}]`);
    for (const [k, v] of Object.entries(functionConfig[slug]!)) {
      lines.push(`${k} = ${typeof v === "string" ? JSON.stringify(v) : String(v)}`);
    }
    lines.push("");
  }
  lines.push(CONFIG_END);
  return lines.join("\n") + "\n";
}

/**
 * Splits config.toml around Conveyor's block: the user's text before and after it, and the
 * block itself (null when absent: then `before` is the whole file).
 */
export function splitConfig(text: string): { before: string; block: string | null; after: string } {
  const begin = text.indexOf(`${CONFIG_BEGIN}\n`);
  if (begin < 0) return { before: text, block: null, after: "" };
  const endAt = text.indexOf(`${CONFIG_END}\n`, begin);
  const end = endAt < 0 ? text.length : endAt + CONFIG_END.length + 1;
  return { before: text.slice(0, begin), block: text.slice(begin, end), after: text.slice(end) };
}

/** config.toml with Conveyor's block `block`: in place of the old one, else at the end. */
export function withBlock(text: string, block: string): string {
  const { before, block: present, after } = splitConfig(text);
  if (present !== null) return before + block + after;
  const head = text.replace(/\s+$/, "");
  return head ? `${head}\n\n${block}` : block;
}

/** Plans install/upgrade of `desired` into the project `snap`. */
export function planInstall(desired: Desired, snap: Snapshot, ctx: PlanContext): Plan {
  const changes: Change[] = [];
  const conflicts: string[] = [];
  const notes: string[] = [];
  const old = snap.manifest;
  const files: Record<string, ManifestFile> = {};
  const cur = (path: string) => snap.files.get(path) ?? null;

  // --- migrations ------------------------------------------------------------------------
  const writtenMigration = new Map<string, string>(); // source → project path
  for (const [path, f] of Object.entries(old?.files ?? {})) {
    if (path.startsWith("supabase/migrations/")) writtenMigration.set(f.source, path);
  }
  const fresh = desired.migrations.filter((m) => !writtenMigration.has(m.source));
  const versions = nextVersions(
    [...versionsOf(snap.migrationNames), ...(ctx.applied ?? [])],
    fresh.length,
    ctx.now,
  );
  let next = 0;
  for (const m of desired.migrations) {
    const path = writtenMigration.get(m.source);
    if (!path) {
      const target = migrationTarget(versions[next++]!, m.source);
      changes.push({ path: target, action: "add", source: m.source, content: m.content });
      files[target] = { source: m.source, sha256: m.sha256 };
      continue;
    }
    const was = old!.files[path]!;
    const now = cur(path);
    if (m.sha256 === was.sha256) {
      files[path] = was;
      if (now === null) {
        changes.push({ path, action: "restore", source: m.source, content: m.content });
      } else if (now !== was.sha256) {
        notes.push(`${path} was changed since Conveyor wrote it; left as it is`);
      }
      continue;
    }
    // Conveyor's copy of an already written migration changed.
    const version = versionOf(path)!;
    if (now !== null && now !== was.sha256) {
      conflicts.push(
        `${path} was changed since Conveyor wrote it, and Conveyor's ${m.source} changed too`,
      );
    } else if (ctx.applied === null) {
      conflicts.push(
        `Conveyor's ${m.source} changed since it was written to ${path}; a migration the ` +
          `database may have applied is never rewritten: give --db-url <database> so the ` +
          `CLI's history shows whether it was`,
      );
    } else if (ctx.applied.has(version)) {
      conflicts.push(
        `Conveyor's ${m.source} changed, but ${path} is already applied to the database: ` +
          `an applied migration is never rewritten (Conveyor ships changes as new migrations; ` +
          `this checkout rewrote an old one)`,
      );
    } else {
      changes.push({ path, action: "update", source: m.source, content: m.content });
      files[path] = { source: m.source, sha256: m.sha256 };
    }
  }
  const shipped = new Set(desired.migrations.map((m) => m.source));
  for (const [source, path] of writtenMigration) {
    if (shipped.has(source)) continue;
    // History stays: the database applied it (or will), and Conveyor no longer needs it.
    files[path] = old!.files[path]!;
    notes.push(
      `Conveyor no longer ships ${source}; ${path} stays (applied migrations are history)`,
    );
  }

  // --- functions and shared code --------------------------------------------------------
  const wanted = new Map(desired.functions.map((f) => [f.path, f]));
  for (const f of desired.functions) {
    const was = old?.files[f.path];
    const now = cur(f.path);
    if (now === f.sha256) {
      files[f.path] = { source: f.source, sha256: f.sha256 };
    } else if (now === null) {
      changes.push({
        path: f.path,
        action: was ? "restore" : "add",
        source: f.source,
        content: f.content,
      });
      files[f.path] = { source: f.source, sha256: f.sha256 };
    } else if (!was) {
      conflicts.push(`${f.path} exists and was not written by Conveyor`);
    } else if (now === was.sha256) {
      changes.push({ path: f.path, action: "update", source: f.source, content: f.content });
      files[f.path] = { source: f.source, sha256: f.sha256 };
    } else if (f.sha256 === was.sha256) {
      files[f.path] = was;
      notes.push(`${f.path} was changed since Conveyor wrote it; left as it is`);
    } else {
      conflicts.push(
        `${f.path} was changed since Conveyor wrote it, and Conveyor's ${f.source} changed too`,
      );
    }
  }
  // Files Conveyor wrote and no longer ships.
  for (const [path, was] of Object.entries(old?.files ?? {})) {
    if (path.startsWith("supabase/migrations/") || wanted.has(path)) continue;
    const now = cur(path);
    if (now === was.sha256) changes.push({ path, action: "remove", source: was.source });
    else if (now !== null) {
      // Still listed, so a later run does not take it for a stranger's file.
      files[path] = was;
      notes.push(`${path}: Conveyor no longer ships it, but you changed it; left as it is`);
    }
  }
  // Anything else in Conveyor's folders is someone else's: a folder of that name is taken.
  for (const path of snap.files.keys()) {
    const folder = desired.folders.find((d) => path.startsWith(`${d}/`));
    if (folder && !wanted.has(path) && !old?.files[path]) {
      conflicts.push(
        `${path} exists and was not written by Conveyor: ${folder}/ is Conveyor's folder`,
      );
    }
  }

  // --- config.toml ----------------------------------------------------------------------
  const block = configBlock(desired.functionConfig);
  let config: Plan["config"] = null;
  if (snap.config === null) {
    conflicts.push("supabase/config.toml is missing (supabase init makes it)");
  } else {
    const { before, block: present, after } = splitConfig(snap.config);
    type Parsed = { functions?: Record<string, unknown> };
    let parsed: Parsed | null = null;
    try {
      parsed = parseToml(before + after) as Parsed;
    } catch (e) {
      conflicts.push(`supabase/config.toml does not parse: ${(e as Error).message.split("\n")[0]}`);
    }
    for (const slug of Object.keys(desired.functionConfig).sort()) {
      if (parsed?.functions?.[slug] !== undefined) {
        conflicts.push(
          `supabase/config.toml already has [functions.${slug}]: a function of yours has ` +
            `the name of one of Conveyor's`,
        );
      }
    }
    if (present === null) config = { text: withBlock(snap.config, block), action: "add" };
    else if (present !== block) {
      if (old && ctx.sha256(present) !== old.config.sha256) {
        conflicts.push(
          `Conveyor's block in supabase/config.toml (between "${CONFIG_BEGIN.slice(0, 14)}…" ` +
            `and "${CONFIG_END}") was edited; move your settings out of it`,
        );
      }
      config = { text: withBlock(snap.config, block), action: "update" };
    }
  }

  const manifest: Manifest = {
    conveyor: desired.conveyor,
    files: Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))),
    config: { sha256: ctx.sha256(block), functions: Object.keys(desired.functionConfig).sort() },
    kinds: old?.kinds ?? {},
  };
  return {
    changes,
    conflicts,
    notes,
    config,
    manifest,
    manifestChanged: JSON.stringify(manifest) !== JSON.stringify(old),
  };
}
