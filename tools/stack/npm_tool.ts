/**
 * Pinned command-line tools that come from npm (the Supabase CLI, Supabase's type generator
 * postgres-meta): installed once into a versioned folder of the user's cache,
 * `<cache>/conveyor/<name>-<version>` (`XDG_CACHE_HOME` honoured, like `npx -y deno@2.9.6`
 * caches Deno), then used offline.
 *
 * @module
 */
import { StackError } from "./errors.ts";
import { run, type RunResult } from "./proc.ts";

/** A pinned npm package providing a tool. */
export interface NpmTool {
  /** npm package name, e.g. `supabase`. */
  pkg: string;
  version: string;
  /** Folder name prefix in the cache, e.g. `supabase-cli`. */
  folder: string;
  /** How messages name it, e.g. `the Supabase CLI`. */
  label: string;
  /** Added to the fix of a failed install, e.g. how to use one's own binary instead. */
  alternative?: string;
  /** The path the caller needs inside an install folder (a binary, a script), or null. */
  find: (dir: string) => Promise<string | null>;
}

/** `<cache>/conveyor`: where pinned tools are installed. */
export function conveyorCacheDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${cache}/conveyor`;
}

/** The install folder of `tool`. */
export function toolDir(tool: NpmTool): string {
  return `${conveyorCacheDir()}/${tool.folder}-${tool.version}`;
}

/**
 * The path `tool.find` gives inside the tool's install folder, installing the package with
 * npm first when missing. Concurrent first installs (two stacks starting) each install into
 * their own temporary folder and the first rename wins. When npm fails, throws StackError
 * with npm's last lines and the command to run; nothing half-installed is left behind.
 */
export async function npmToolPath(
  tool: NpmTool,
  log: (l: string) => void = () => {},
): Promise<string> {
  const dir = toolDir(tool);
  const found = await tool.find(dir);
  if (found) return found;
  const spec = `${tool.pkg}@${tool.version}`;
  log(`installing ${tool.label} ${tool.version} from npm into ${dir} (first use only)`);
  const tmp = `${dir}.tmp-${Deno.pid}`;
  await Deno.mkdir(tmp, { recursive: true });
  const cmd = `npm install --prefix ${dir} ${spec}`;
  let res: RunResult;
  try {
    res = await run("npm", [
      "install",
      "--prefix",
      tmp,
      "--no-save",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel=error",
      spec,
    ]);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw new StackError(
      `cannot install ${tool.label}: ${(e as Error).message} (npm comes with Node.js)`,
      cmd,
      { cause: e },
    );
  }
  if (res.code !== 0 || !(await tool.find(tmp))) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    const tail = (res.stderr || res.stdout).trim().split("\n").slice(-5).join("\n");
    throw new StackError(
      `npm could not install ${tool.label} ${tool.version} (it needs the npm registry once):\n${tail}`,
      `${cmd}${tool.alternative ? `   (${tool.alternative})` : ""}`,
    );
  }
  try {
    await Deno.rename(tmp, dir);
  } catch {
    // Another process installed it first: use theirs.
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  const path = await tool.find(dir);
  if (!path) throw new StackError(`${tool.label} is missing from ${dir}`, `rm -rf ${dir}`);
  return path;
}
