/**
 * A supervised child process (the gateway, the pg_net worker): output forwarded line by line
 * with a prefix, restarted with backoff when it exits unexpectedly, stopped with SIGTERM and
 * then SIGKILL after a grace period.
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
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  emit: (line: string) => void,
): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      emit(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) emit(buf);
}

/** Runs a {@link ServiceDef} and keeps it running until {@link Service.stop}. */
export class Service {
  #child: Deno.ChildProcess | null = null;
  #stopping = false;
  #restarts = 0;
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

  #spawn(): void {
    const { name, cmd, args, env, cwd } = this.def;
    const child = new Deno.Command(cmd, {
      args,
      env,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.onSpawn(child.pid);
    const out = pump(child.stdout, (l) => this.log(`[${name}] ${l}`));
    const err = pump(child.stderr, (l) => this.log(`[${name}] ${l}`));
    this.#exited = (async () => {
      const status = await child.status;
      await Promise.allSettled([out, err]);
      if (this.#child === child) this.#child = null;
      if (this.#stopping) return;
      this.#restarts++;
      const delay = Math.min(10_000, 500 * 2 ** Math.min(this.#restarts, 5));
      this.log(
        `[${name}] exited (code ${status.code}${status.signal ? `, ${status.signal}` : ""}); ` +
          `restarting in ${delay} ms`,
      );
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (!this.#stopping) this.#spawn();
      }, delay);
    })();
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
