/**
 * Finds the PostgreSQL 15 server binaries: `$CONVEYOR_PG_BIN`/`$PGBIN`, then
 * `pg_config --bindir`, then PATH, then Debian's layout (/usr/lib/postgresql/15/bin).
 *
 * @module
 */
import { StackError } from "./errors.ts";
import { run } from "./proc.ts";

/** The major version the stack runs, as hosted projects created with `major_version = 15`. */
export const PG_MAJOR = 15;

async function versionOf(bin: string): Promise<number | null> {
  try {
    const res = await run(`${bin}/postgres`, ["--version"]);
    const m = res.stdout.match(/\(PostgreSQL\) (\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function candidates(): Promise<string[]> {
  const out: string[] = [];
  for (const name of ["CONVEYOR_PG_BIN", "PGBIN"]) {
    const v = Deno.env.get(name);
    if (v) out.push(v);
  }
  try {
    const res = await run("pg_config", ["--bindir"]);
    if (res.code === 0) out.push(res.stdout.trim());
  } catch { /* no pg_config on PATH */ }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir) out.push(dir);
  }
  out.push(`/usr/lib/postgresql/${PG_MAJOR}/bin`);
  return out;
}

/** Returns the directory holding `postgres`, `initdb` and `pg_ctl` of PostgreSQL 15. */
export async function findPgBin(): Promise<string> {
  const seen = new Set<string>();
  for (const dir of await candidates()) {
    if (seen.has(dir)) continue;
    seen.add(dir);
    if (await versionOf(dir) === PG_MAJOR) return dir;
  }
  throw new StackError(
    `PostgreSQL ${PG_MAJOR} server binaries not found (looked in ${[...seen].join(", ")})`,
    `apt-get install -y postgresql-${PG_MAJOR}   (or set CONVEYOR_PG_BIN to the bin directory)`,
  );
}

/** The server's share directory (extension control files live in `<sharedir>/extension`). */
export async function shareDir(pgBin: string): Promise<string> {
  const res = await run(`${pgBin}/pg_config`, ["--sharedir"]);
  if (res.code === 0) return res.stdout.trim();
  return `/usr/share/postgresql/${PG_MAJOR}`;
}
