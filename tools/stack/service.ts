/**
 * A supervised child process (PostgREST, the gateway, the pg_net worker): output forwarded
 * line by line with a prefix, restarted with backoff when it exits unexpectedly, stopped with
 * SIGTERM and then SIGKILL after a grace period, and an optional health probe (an URL that
 * answers 2xx when the service can serve).
 *
 * Backoff: 1 s after the first unexpected exit, doubling up to 10 s for a process that keeps
 * dying; a process that ran for `stableMs` (10 s) before it exited counts as healthy, so its
 * next restart starts from 1 s again (a database restart once a day must not leave the
 * stack restarting its gateway 10 s late forever).
 *
 * @module
 */

/** How to run one service. */
export interface ServiceDef {
  name: string;
  cmd: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Answers 2xx when the service is healthy (e.g. PostgREST's admin `/ready`). */
  health?: string;
  /** Uptime after which an exit no longer counts toward the backoff. Default 10000. */
  stableMs?: number;
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  emit: (line: string) => void,
): Promise<void> {
  let buf = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        emit(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  } catch {
    // the pipe broke with the process: nothing more to read
  }
  if (buf) emit(buf);
}

/** The delay before restart number `n` (1-based) of a process that keeps failing. */
export function restartDelay(n: number): number {
  return Math.min(10_000, 500 * 2 ** Math.min(n, 5));
}

/** Runs a {@link ServiceDef} and keeps it running until {@link Service.stop}. */
export class Service {
  #child: Deno.ChildProcess | null = null;
  #stopping = false;
  /** Unexpected exits in a row, each after less than `stableMs` of uptime. */
  #restarts = 0;
  #startedAt = 0;
  #exited: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly def: ServiceDef,
    readonly log: (line: string) => void,
    /** Called with the new pid after every (re)start, e.g. to keep state.json current. */
    readonly onSpawn: (pid: number) => void = () => {},
  ) {}

  /** pid of the current process, if one runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process (and keeps restarting it after crashes). */
  start(): void {
    this.#stopping = false;
    this.#spawn();
  }

  /** Does the health probe answer 2xx now? (true when the service has none and runs.) */
  async healthy(timeoutMs = 2_000): Promise<boolean> {
    if (!this.def.health) return this.#child !== null;
    try {
      const res = await fetch(this.def.health, { signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  #spawn(): void {
    const { name, cmd, args, env, cwd } = this.def;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd, {
        args,
        env,
        cwd,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      this.log(`[${name}] cannot start ${cmd}: ${(e as Error).message}`);
      this.#scheduleRestart(name, "could not start");
      return;
    }
    this.#child = child;
    this.#startedAt = Date.now();
    this.onSpawn(child.pid);
    const out = pump(child.stdout, (l) => this.log(`[${name}] ${l}`));
    const err = pump(child.stderr, (l) => this.log(`[${name}] ${l}`));
    this.#exited = (async () => {
      const status = await child.status;
      await Promise.allSettled([out, err]);
      if (this.#child === child) this.#child = null;
      if (this.#stopping) return;
      if (Date.now() - this.#startedAt >= (this.def.stableMs ?? 10_000)) this.#restarts = 0;
      this.#scheduleRestart(
        name,
        `exited (code ${status.code}${status.signal ? `, ${status.signal}` : ""})`,
      );
    })();
  }

  #scheduleRestart(name: string, what: string): void {
    const delay = restartDelay(++this.#restarts);
    this.log(`[${name}] ${what}; restarting in ${delay} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#stopping) this.#spawn();
    }, delay);
  }

  /** Stops the process: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 8_000): Promise<void> {
    this.#stopping = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const child = this.#child;
    if (!child) return;
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, graceMs);
    await this.#exited;
    clearTimeout(killer);
  }
}
