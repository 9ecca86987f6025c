/**
 * Installs our compatible pgmq, pg_net and supabase_vault into the server's extension
 * directory, but only where the real extension is absent: a control file without our
 * `# conveyor-compat` marker is someone else's (e.g. a real pgmq) and is left alone.
 *
 * @module
 */
import { StackError } from "./errors.ts";

/** Extensions we provide locally. */
export const COMPAT_EXTENSIONS = ["pgmq", "pg_net", "supabase_vault"] as const;

/** The marker our control files carry on their first line. */
export const COMPAT_MARKER = "# conveyor-compat";

const SOURCE = new URL("./extensions/", import.meta.url);

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** What happened to each extension. */
export type InstallOutcome = "installed" | "up to date" | "real extension present";

/**
 * Copies each compat extension's control and SQL files into `<share>/extension` when they
 * differ. Returns the outcome per extension.
 */
export async function installCompatExtensions(
  share: string,
): Promise<Record<string, InstallOutcome>> {
  const target = `${share}/extension`;
  const result: Record<string, InstallOutcome> = {};
  for (const name of COMPAT_EXTENSIONS) {
    const installed = await readOrNull(`${target}/${name}.control`);
    if (installed !== null && !installed.startsWith(COMPAT_MARKER)) {
      result[name] = "real extension present";
      continue;
    }
    let changed = false;
    for await (const entry of Deno.readDir(new URL(`${name}/`, SOURCE))) {
      if (!entry.isFile || !/\.(control|sql)$/.test(entry.name)) continue;
      const body = await Deno.readTextFile(new URL(`${name}/${entry.name}`, SOURCE));
      if (await readOrNull(`${target}/${entry.name}`) === body) continue;
      try {
        await Deno.writeTextFile(`${target}/${entry.name}`, body);
      } catch (e) {
        if (e instanceof Deno.errors.PermissionDenied) {
          throw new StackError(
            `cannot write ${target}/${entry.name} (installing our local ${name})`,
            `sudo cp tools/stack/extensions/${name}/* ${target}/`,
            { cause: e },
          );
        }
        throw e;
      }
      changed = true;
    }
    result[name] = changed ? "installed" : "up to date";
  }
  return result;
}
