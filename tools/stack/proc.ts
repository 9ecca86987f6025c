/**
 * Running programs: as the `postgres` OS user when we are root (initdb and postgres refuse
 * to run as root), capturing output for error messages.
 *
 * @module
 */
import { StackError } from "./errors.ts";

/** True when this process runs as root. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** Result of {@link run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion and returns its exit code and output. */
export async function run(
  cmd: string,
  args: string[],
  opts: { asPostgres?: boolean; env?: Record<string, string>; cwd?: string } = {},
): Promise<RunResult> {
  const [program, argv] = opts.asPostgres && isRoot()
    ? ["runuser", ["-u", "postgres", "--", cmd, ...args]]
    : [cmd, args];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(program, {
      args: argv,
      env: opts.env,
      cwd: opts.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new StackError(`program not found: ${program}`, undefined, { cause: e });
    }
    throw e;
  }
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@link run} but throws a StackError carrying the output when the exit code is not 0. */
export async function runOk(
  cmd: string,
  args: string[],
  opts: { asPostgres?: boolean; env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) {
    const tail = (res.stderr || res.stdout).trim().split("\n").slice(-15).join("\n");
    throw new StackError(`${cmd} ${args.join(" ")} failed (exit ${res.code}):\n${tail}`);
  }
  return res.stdout;
}

/** True if a process with this pid exists (Linux: /proc). */
export function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** True if nothing listens on 127.0.0.1:port. */
export function portFree(port: number): boolean {
  try {
    const l = Deno.listen({ hostname: "127.0.0.1", port });
    l.close();
    return true;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 chosen by the kernel. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
