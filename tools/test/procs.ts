/**
 * The processes of a running stack, read from `/proc` (Linux): the supervisor (`state.json`),
 * PostgREST, the gateway and the pg_net worker it runs, the edge-function processes the gateway runs,
 * and their resident memory. `state.json` records the services' FIRST pids; after the
 * supervisor restarted a killed service only its children tell the live one, so services
 * are found here by parent pid and command line, never trusted from the file.
 *
 * @module
 */
import { readState } from "../stack/state.ts";

/** One process. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** The command line, arguments joined with spaces. */
  cmdline: string;
  /** Resident set size (VmRSS) in KiB; 0 when the process is gone. */
  rssKb: number;
}

/** A function process of the gateway's functions host. */
export interface FunctionProc extends ProcInfo {
  slug: string;
}

/** The live processes of a stack. */
export interface StackProcs {
  supervisor: ProcInfo | null;
  postgrest: ProcInfo | null;
  gateway: ProcInfo | null;
  netWorker: ProcInfo | null;
  functions: FunctionProc[];
}

/** Reads one process, or null when it does not exist (or is a zombie). */
export function procInfo(pid: number): ProcInfo | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may contain anything.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z") return null;
    const ppid = Number(rest[1]);
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ").trim();
    return { pid, ppid, cmdline, rssKb: rssKb(pid) };
  } catch {
    return null;
  }
}

/** VmRSS of a process in KiB (0 when it is gone). */
export function rssKb(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Every live process whose parent is `ppid`. */
export function childrenOf(ppid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const p = procInfo(Number(e.name));
    if (p && p.ppid === ppid) out.push(p);
  }
  return out;
}

const FUNCTION_RE = /edge_runtime_shim\.ts .*\/functions\/([^/\s]+)\/[^/\s]+\.ts/;

/** The slug of a function process from its command line, or null. */
export function functionSlug(cmdline: string): string | null {
  return FUNCTION_RE.exec(cmdline)?.[1] ?? null;
}

/** The live processes of the stack in `stackDir`. */
export async function stackProcs(stackDir: string): Promise<StackProcs> {
  const state = await readState(stackDir);
  const supervisor = state ? procInfo(state.pid) : null;
  const kids = supervisor ? childrenOf(supervisor.pid) : [];
  const postgrest = kids.find((p) => /\/postgrest$/.test(p.cmdline)) ?? null;
  const gateway = kids.find((p) => /gateway\/main\.ts/.test(p.cmdline)) ?? null;
  const netWorker = kids.find((p) => /net_worker\.ts/.test(p.cmdline)) ?? null;
  const functions: FunctionProc[] = [];
  for (const p of gateway ? childrenOf(gateway.pid) : []) {
    const slug = functionSlug(p.cmdline);
    if (slug) functions.push({ ...p, slug });
  }
  return { supervisor, postgrest, gateway, netWorker, functions };
}
