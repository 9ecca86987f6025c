/**
 * Debian packages the stack needs beside the PostgreSQL 15 server: pg_cron (the scheduler
 * hosted projects have), pgTAP + pg_prove (SQL tests) and plpgsql_check (our SQL linter).
 * Installed with apt when missing and we are root; otherwise the exact command is shown.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { StackError } from "./errors.ts";
import { isRoot, run } from "./proc.ts";
import { PG_MAJOR } from "./pg_binaries.ts";

/** A package and the file whose presence shows it is installed. */
interface Need {
  pkg: string;
  file: (share: string) => string;
}

const NEEDS: Need[] = [
  { pkg: `postgresql-${PG_MAJOR}-cron`, file: (s) => `${s}/extension/pg_cron.control` },
  { pkg: `postgresql-${PG_MAJOR}-pgtap`, file: (s) => `${s}/extension/pgtap.control` },
  { pkg: "libtap-parser-sourcehandler-pgtap-perl", file: () => "/usr/bin/pg_prove" },
  {
    pkg: `postgresql-${PG_MAJOR}-plpgsql-check`,
    file: (s) => `${s}/extension/plpgsql_check.control`,
  },
];

/** Packages from {@link NEEDS} that are not installed. */
export function missingPackages(share: string): string[] {
  return NEEDS.filter((n) => !existsSync(n.file(share))).map((n) => n.pkg);
}

/** Installs what is missing (as root), or throws with the command to run. */
export async function ensurePackages(share: string, log: (l: string) => void): Promise<void> {
  const missing = missingPackages(share);
  if (missing.length === 0) return;
  const cmd = `apt-get install -y ${missing.join(" ")}`;
  if (!isRoot()) {
    throw new StackError(`missing Debian packages: ${missing.join(", ")}`, `sudo ${cmd}`);
  }
  log(`installing ${missing.join(", ")} with apt (first start only, about a minute)`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  let res = await run("apt-get", ["install", "-y", ...missing], { env });
  if (res.code !== 0) {
    // A fresh machine may have no package lists yet.
    log("apt-get install failed; refreshing the package lists (apt-get update) and trying again");
    await run("apt-get", ["update"], { env });
    res = await run("apt-get", ["install", "-y", ...missing], { env });
  }
  const still = missingPackages(share);
  if (res.code !== 0 || still.length > 0) {
    throw new StackError(
      `apt could not install ${still.join(", ")}:\n${
        res.stderr.trim().split("\n").slice(-5).join("\n")
      }`,
      cmd,
    );
  }
}
