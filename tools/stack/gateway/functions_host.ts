/**
 * The local edge-functions host behind `/functions/v1/<slug>[/sub/path]`.
 *
 * Hosted Supabase runs each function in the edge runtime; locally every function runs
 * UNCHANGED in its own Deno process: `deno run --allow-all --preload edge_runtime_shim.ts
 * <functionsDir>/<slug>/index.ts` with `DENO_SERVE_ADDRESS=tcp:127.0.0.1:<free port>`, so the
 * function's own `Deno.serve(handler)` listens on a port we pick, and requests are proxied
 * to it. Behaviour, following the Supabase CLI / hosted conventions (reference/supabase.md §4):
 *
 * - Discovery: slug must match `^[A-Za-z][A-Za-z0-9_-]*$` and `<functionsDir>/<slug>/index.ts`
 *   (or the `entrypoint` from config.toml, relative to config.toml's folder) must exist;
 *   `[functions.<slug>] enabled = false` counts as missing. Missing → 404
 *   `{"code":"NOT_FOUND","message":"Function not found"}`.
 * - `verify_jwt` (default true, also when the block omits it), skipped for OPTIONS: 401
 *   `{"msg":"Missing authorization header"}` / `{"msg":"Auth header is not 'Bearer {token}'"}`
 *   / `{"msg":"Invalid JWT"}`; any HS256 token valid for `jwtSecret` passes (role not checked).
 *   config.toml is re-read whenever its mtime/size changes (checked on every request).
 * - The function sees the slug-prefixed path, as behind the hosted gateway (which strips only
 *   `/functions/v1`): `/functions/v1/hello/a/b?x=1` → `http://127.0.0.1:<port>/hello/a/b?x=1`.
 *   Method, headers and body are forwarded (body streamed), the response is streamed back
 *   unbuffered (SSE works). Hop-by-hop headers and `host` are dropped, `accept-encoding` is
 *   forced to `identity` (Deno's fetch would otherwise decode a compressed body but keep its
 *   `content-encoding` header); `x-forwarded-host`/`x-forwarded-proto` are added when absent.
 *   A client that goes away before the response does NOT abort the call: the function runs
 *   to completion (pg_net callers time out early by design); the unread body is then dropped.
 * - Processes start lazily on the first call and stay warm (so `EdgeRuntime.waitUntil` work
 *   keeps running). Boot = the port accepts connections within `bootTimeoutMs` (60 s); else,
 *   or if the process exits first, 503 `{"code":"BOOT_ERROR","message":"Function failed to
 *   start (please check logs)"}` and the stderr tail is logged. A transport failure while
 *   handling (process crashed/exited) → 500 `{"code":"WORKER_ERROR","message":"Function exited
 *   due to an error (please check logs)"}`; that process is retired and the next call starts
 *   a fresh one. An uncaught error inside the handler is the function's own 500 (Deno.serve).
 * - No response headers within `requestTimeoutMs` (150 s, the hosted request idle timeout
 *   enforced locally by Kong's read_timeout) → 504 `{"message":"The upstream server is timing
 *   out"}`; the function is not interrupted. CPU/memory/wall-clock worker limits (546) are not
 *   enforced locally.
 * - Any change under `<functionsDir>/<slug>/` restarts that function; a change anywhere else
 *   under functionsDir (`_shared/`, `.env`, …) restarts all of them; a change of a function's
 *   entrypoint/import_map in config.toml or `enabled = false` restarts/retires it. Restart =
 *   the next call starts a new process; the old one finishes its in-flight requests (bounded
 *   by `requestTimeoutMs`) and is then stopped.
 * - Stopping a process: SIGTERM, on which the shim dispatches `beforeunload`
 *   (`detail.reason = "termination"`) and lets pending `waitUntil` work settle; SIGKILL if it
 *   has not exited after `shutdownGraceMs` (5 s).
 * - Environment: only a few process variables pass through (PATH, HOME, DENO_DIR, proxies,
 *   npm/Deno registry settings, TLS CA settings, locale) as the hosted runtime gives none,
 *   then `<functionsDir>/.env` (names starting with `SUPABASE_` are skipped, as the CLI does),
 *   then `opts.env` (wins), then `DENO_SERVE_ADDRESS`, `SB_EXECUTION_ID` (one per process),
 *   `NO_COLOR=1`. `.env` is read at each process start. cwd = `opts.cwd`, default the parent
 *   of functionsDir's parent (the repo root for `supabase/functions`).
 * - Every stdout/stderr line of a function process goes to `log` as `[<slug>] <line>`.
 * - Dispatcher slots follow the process (issue 17): the `invocation_id` of each JSON POST
 *   body (one declared at most 64 KiB long, or with no length) is remembered for the process that received it, until the
 *   gateway sees that invocation's `finish_invocation` succeed. When a process exits (crash,
 *   `kill -9`, out of memory, or a stop that outlived the grace period) with invocations
 *   still open, `onInvocationsLost` gets them with the summary
 *   `{"stopped_by":"crashed","exit_code":N[,"signal":"SIGKILL"]}`, so the dispatcher's slots
 *   come back at once instead of at `invocation_run_sec`.
 *
 * POSIX paths only (Linux/macOS). WebSocket upgrades are not proxied.
 *
 * @module
 */
import { parse as parseToml } from "smol-toml";
import { verifyJwt } from "../keys.ts";
import { freePort } from "../proc.ts";
import { HOP_BY_HOP } from "./rest_proxy.ts";

export interface FunctionsHostOptions {
  /** Folder holding `<slug>/index.ts`, `_shared/`, `.env` (e.g. `<repo>/supabase/functions`). */
  functionsDir: string;
  /** `supabase/config.toml` (may be absent: every function enabled, verify_jwt on). */
  configPath: string;
  /** Platform variables: SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_DB_URL… */
  env: Record<string, string>;
  /** HS256 secret for verify_jwt. */
  jwtSecret: string;
  /** Receives function output (`[<slug>] …`) and host messages. Default: console.log. */
  log?: (line: string) => void;
  /** Working directory of function processes. Default: parent of functionsDir's parent. */
  cwd?: string;
  /** A Deno config for function processes (`--config`); default: what Deno finds from cwd. */
  denoConfig?: string;
  /** Max wait for a new process to accept connections. Default 60000. */
  bootTimeoutMs?: number;
  /** Max wait for response headers before 504. Default 150000. */
  requestTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when stopping a process. Default 5000. */
  shutdownGraceMs?: number;
  /** Restart functions when their files change (Deno.watchFs). Default true. */
  watch?: boolean;
  /** Called when a process exits with invocations not seen finished (see the module doc). */
  onInvocationsLost?: (lost: InvocationsLost) => Promise<void>;
}

/** Invocations a function process received and did not finish before it exited. */
export interface InvocationsLost {
  slug: string;
  /** `invocation_id`s, lower-case uuids. */
  ids: string[];
  /** What to record as their summary. */
  summary: { stopped_by: "crashed"; exit_code: number; signal?: string };
}

const SLUG_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Request bodies up to this size are read to find their `invocation_id`. */
const INVOCATION_BODY_MAX = 64 * 1024;
/** Open invocations remembered per process at most (the oldest are forgotten first). */
const MAX_OPEN_INVOCATIONS = 10_000;
const SHIM_PATH = decodeURIComponent(new URL("./edge_runtime_shim.ts", import.meta.url).pathname);
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const WATCH_DEBOUNCE_MS = 150;
const TAIL_LINES = 40;

/** Process variables a function process inherits from the host (everything else is dropped). */
const PASS_ENV_RE =
  /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TMP|TEMP|XDG_CACHE_HOME|DENO_DIR|DENO_CERT|DENO_TLS_CA_STORE|DENO_AUTH_TOKENS|DENO_NO_UPDATE_CHECK|NPM_CONFIG_[A-Z_]+|npm_config_[a-z_]+|HTTPS?_PROXY|https?_proxy|NO_PROXY|no_proxy|ALL_PROXY|all_proxy|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS)$/;

// ---------------------------------------------------------------------------------------------
// small helpers

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

const notFound = () => json(404, { code: "NOT_FOUND", message: "Function not found" });
const bootError = () =>
  json(503, { code: "BOOT_ERROR", message: "Function failed to start (please check logs)" });
const workerError = () =>
  json(500, {
    code: "WORKER_ERROR",
    message: "Function exited due to an error (please check logs)",
  });
const idleTimeout = () => json(504, { message: "The upstream server is timing out" });

function normalizePath(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

function absolute(p: string, base = Deno.cwd()): string {
  return normalizePath(p.startsWith("/") ? p : `${base}/${p}`);
}

function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function errText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Resolves to true if `promise` settles within `ms`, false otherwise (timer always cleared). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise.then(() => true, () => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The `invocation_id` of a JSON object body, if it is a uuid. */
function invocationIdIn(body: ArrayBuffer): string | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(body))?.invocation_id;
    return typeof v === "string" && UUID_RE.test(v) ? v : null;
  } catch {
    return null;
  }
}

/** Parses a `.env` file: `KEY=VALUE`, optional `export `, `#` comments, quoted values. */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!;
    let value = m[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.indexOf(quote, 1) > 0) {
      value = value.slice(1, value.indexOf(quote, 1));
      if (quote === '"') {
        value = value.replace(/\\n/g, "\n").replace(/\\r/g, "\r").replace(/\\t/g, "\t");
      }
    } else {
      value = value.replace(/\s+#.*$/, "").trim();
    }
    out[key] = value;
  }
  return out;
}

/** Splits a byte stream into lines and hands each to `onLine`. */
async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buf = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, i).replace(/\r$/, ""));
        buf = buf.slice(i + 1);
      }
    }
  } catch {
    // the pipe broke (process killed): nothing more to read
  }
  if (buf !== "") onLine(buf);
}

// ---------------------------------------------------------------------------------------------
// config.toml

interface FunctionConfig {
  enabled: boolean;
  verifyJwt: boolean;
  entrypoint?: string;
  importMap?: string;
}

interface ResolvedFunction {
  slug: string;
  entry: string;
  importMap?: string;
  verifyJwt: boolean;
  /** Changes when the process must be re-spawned (entrypoint or import map moved). */
  spawnKey: string;
}

function readFunctionsConfig(doc: Record<string, unknown>): Map<string, FunctionConfig> {
  const out = new Map<string, FunctionConfig>();
  const fns = doc.functions;
  if (!fns || typeof fns !== "object") return out;
  for (const [slug, raw] of Object.entries(fns as Record<string, unknown>)) {
    const block = raw && typeof raw === "object" ? raw as Record<string, unknown> : {};
    out.set(slug, {
      enabled: block.enabled !== false,
      verifyJwt: block.verify_jwt !== false,
      entrypoint: typeof block.entrypoint === "string" ? block.entrypoint : undefined,
      importMap: typeof block.import_map === "string" ? block.import_map : undefined,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// one function process

class Worker {
  readonly child: Deno.ChildProcess;
  readonly tail: string[] = [];
  readonly done: Promise<void>;
  exitStatus: Deno.CommandStatus | undefined;
  inflight = 0;
  /** Invocations this process received and has not been seen to finish. */
  readonly invocations = new Set<string>();
  stopping = false;
  retired = false;
  stopPromise: Promise<void> | undefined;
  #idleWaiters: (() => void)[] = [];

  constructor(
    readonly fn: ResolvedFunction,
    readonly generation: string,
    readonly port: number,
    cwd: string,
    env: Record<string, string>,
    log: (line: string) => void,
    denoConfig?: string,
  ) {
    const args = ["run", "--allow-all"];
    if (denoConfig) args.push("--config", denoConfig);
    if (fn.importMap) args.push("--import-map", fn.importMap);
    args.push("--preload", SHIM_PATH, fn.entry);
    this.child = new Deno.Command(Deno.execPath(), {
      args,
      cwd,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const onLine = (line: string) => {
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
      log(`[${fn.slug}] ${line}`);
    };
    const pipes = Promise.all([
      pumpLines(this.child.stdout, onLine),
      pumpLines(this.child.stderr, onLine),
    ]);
    this.done = Promise.all([this.child.status, pipes]).then(() => {});
  }

  get slug(): string {
    return this.fn.slug;
  }

  acquire(): void {
    this.inflight++;
  }

  release(): void {
    this.inflight--;
    if (this.inflight === 0) {
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }
}

class BootError extends Error {
  override readonly name = "BootError";
}

// ---------------------------------------------------------------------------------------------

/** Serves `/functions/v1/<slug>` by running each function's `index.ts` in its own process. */
export class FunctionsHost {
  readonly #functionsDir: string;
  readonly #configPath: string;
  readonly #configDir: string;
  readonly #cwd: string;
  readonly #denoConfig: string | undefined;
  readonly #env: Record<string, string>;
  readonly #jwtSecret: string;
  readonly #log: (line: string) => void;
  readonly #bootTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #graceMs: number;
  #watchEnabled: boolean;
  readonly #onInvocationsLost: FunctionsHostOptions["onInvocationsLost"];
  /** The process each open invocation was delivered to. */
  readonly #invocationOwner = new Map<string, Worker>();

  #config = new Map<string, FunctionConfig>();
  #configStamp: string | undefined;
  #configLoading: Promise<void> | undefined;

  /** The warm process per slug (ready, not retired). */
  readonly #current = new Map<string, Worker>();
  /** Boots in progress per slug. */
  readonly #starting = new Map<string, Promise<Worker>>();
  /** Every process not yet fully stopped. */
  readonly #live = new Set<Worker>();
  /** Background work close() waits for. */
  readonly #tasks = new Set<Promise<unknown>>();
  /** Bumped per slug (and globally) when files change; a worker of an older generation is stale. */
  readonly #generations = new Map<string, number>();
  #globalGeneration = 0;

  #watcher: Deno.FsWatcher | undefined;
  #watchLoop: Promise<void> | undefined;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  readonly #changedPaths = new Set<string>();

  #closed = false;
  #closing: Promise<void> | undefined;
  #signalClosed!: () => void;
  readonly #closedSignal = new Promise<void>((resolve) => this.#signalClosed = resolve);

  constructor(opts: FunctionsHostOptions) {
    this.#functionsDir = absolute(opts.functionsDir);
    this.#configPath = absolute(opts.configPath);
    this.#configDir = dirname(this.#configPath);
    this.#cwd = opts.cwd ? absolute(opts.cwd) : dirname(dirname(this.#functionsDir));
    this.#denoConfig = opts.denoConfig;
    this.#env = { ...opts.env };
    this.#jwtSecret = opts.jwtSecret;
    this.#log = opts.log ?? ((line) => console.log(line));
    this.#bootTimeoutMs = opts.bootTimeoutMs ?? 60_000;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? 150_000;
    this.#graceMs = opts.shutdownGraceMs ?? 5_000;
    this.#watchEnabled = opts.watch ?? true;
    this.#onInvocationsLost = opts.onInvocationsLost;
  }

  /** The gateway saw `finish_invocation` succeed for `id`: nothing to free if its process dies. */
  invocationFinished(id: string): void {
    const key = id.toLowerCase();
    this.#invocationOwner.get(key)?.invocations.delete(key);
    this.#invocationOwner.delete(key);
  }

  #invocationReceived(worker: Worker, id: string): void {
    if (worker.exitStatus !== undefined) return; // the request will fail; nothing started
    const key = id.toLowerCase();
    worker.invocations.add(key);
    this.#invocationOwner.set(key, worker);
    if (worker.invocations.size > MAX_OPEN_INVOCATIONS) {
      const oldest = worker.invocations.values().next().value!;
      worker.invocations.delete(oldest);
      this.#invocationOwner.delete(oldest);
    }
  }

  /** A process exited: hand its open invocations to `onInvocationsLost`. */
  #processExited(worker: Worker, status: Deno.CommandStatus): void {
    const ids = [...worker.invocations];
    worker.invocations.clear();
    for (const id of ids) {
      if (this.#invocationOwner.get(id) === worker) this.#invocationOwner.delete(id);
    }
    if (ids.length === 0 || !this.#onInvocationsLost) return;
    const summary: InvocationsLost["summary"] = { stopped_by: "crashed", exit_code: status.code };
    if (status.signal) summary.signal = status.signal;
    this.#track(this.#onInvocationsLost({ slug: worker.slug, ids, summary }));
  }

  /**
   * Handles one request for `/functions/v1/<slug><subPath>`. `subPath` is the rest of the
   * path after the slug ("" or "/a/b"); the query string is taken from `req.url`.
   */
  async handle(req: Request, slug: string, subPath: string): Promise<Response> {
    if (this.#closed) {
      return json(503, { code: "SHUTTING_DOWN", message: "Functions host is stopping" });
    }
    const fn = await this.#resolve(slug);
    if (!fn) return notFound();
    if (fn.verifyJwt && req.method !== "OPTIONS") {
      const denied = await this.#checkJwt(req);
      if (denied) return denied;
    }
    let worker: Worker;
    try {
      worker = await this.#acquire(fn);
    } catch (err) {
      if (!(err instanceof BootError)) this.#log(`[${slug}] boot failed: ${errText(err)}`);
      return bootError();
    }
    return await this.#forward(worker, req, subPath);
  }

  /** Stops every function process (beforeunload via SIGTERM, SIGKILL after the grace period). */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#signalClosed();
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    if (this.#watcher) {
      try {
        this.#watcher.close();
      } catch {
        // already closed
      }
    }
    await this.#watchLoop;
    clearTimeout(this.#debounce); // an event may have been buffered while closing
    this.#debounce = undefined;
    await Promise.allSettled([...this.#starting.values()]);
    await Promise.all([...this.#live].map((w) => this.#stop(w, "host closing")));
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  // -------------------------------------------------------------------------------------------
  // discovery, config, auth

  async #loadConfig(): Promise<void> {
    let stamp: string;
    try {
      const st = await Deno.stat(this.#configPath);
      stamp = `${st.mtime?.getTime()}:${st.size}:${st.ino ?? ""}`;
    } catch {
      stamp = "absent";
    }
    if (stamp === this.#configStamp) return;
    if (stamp === "absent") {
      this.#config = new Map();
      this.#configStamp = stamp;
      return;
    }
    try {
      const text = await Deno.readTextFile(this.#configPath);
      this.#config = readFunctionsConfig(parseToml(text) as Record<string, unknown>);
      if (this.#configStamp !== undefined) this.#log(`[functions] reloaded ${this.#configPath}`);
    } catch (err) {
      // keep the last good config; retry on the next change
      this.#log(`[functions] cannot read ${this.#configPath}: ${errText(err)}`);
    }
    this.#configStamp = stamp;
  }

  async #resolve(slug: string): Promise<ResolvedFunction | undefined> {
    if (!SLUG_RE.test(slug)) return undefined;
    this.#configLoading ??= this.#loadConfig().finally(() => this.#configLoading = undefined);
    await this.#configLoading;
    const cfg = this.#config.get(slug);
    if (cfg && !cfg.enabled) {
      const cur = this.#current.get(slug);
      if (cur) this.#retire(cur, "disabled in config.toml");
      return undefined;
    }
    const entry = cfg?.entrypoint
      ? absolute(cfg.entrypoint, this.#configDir)
      : `${this.#functionsDir}/${slug}/index.ts`;
    try {
      if (!(await Deno.stat(entry)).isFile) return undefined;
    } catch {
      return undefined;
    }
    const importMap = cfg?.importMap ? absolute(cfg.importMap, this.#configDir) : undefined;
    return {
      slug,
      entry,
      importMap,
      verifyJwt: cfg?.verifyJwt ?? true,
      spawnKey: `${entry}\n${importMap ?? ""}`,
    };
  }

  async #checkJwt(req: Request): Promise<Response | undefined> {
    const header = req.headers.get("authorization");
    if (!header) return json(401, { msg: "Missing authorization header" });
    const m = /^Bearer +(\S+)\s*$/.exec(header);
    if (!m) return json(401, { msg: "Auth header is not 'Bearer {token}'" });
    try {
      await verifyJwt(m[1]!, this.#jwtSecret);
      return undefined;
    } catch {
      return json(401, { msg: "Invalid JWT" });
    }
  }

  // -------------------------------------------------------------------------------------------
  // process lifecycle

  #generationOf(slug: string): string {
    return `${this.#globalGeneration}.${this.#generations.get(slug) ?? 0}`;
  }

  async #acquire(fn: ResolvedFunction): Promise<Worker> {
    this.#ensureWatcher();
    for (;;) {
      const cur = this.#current.get(fn.slug);
      if (cur) {
        if (
          cur.exitStatus === undefined && cur.fn.spawnKey === fn.spawnKey &&
          cur.generation === this.#generationOf(fn.slug)
        ) {
          cur.acquire();
          return cur;
        }
        this.#retire(
          cur,
          cur.exitStatus ? "process exited" : "files or config changed",
        );
      }
      let starting = this.#starting.get(fn.slug);
      if (!starting) {
        starting = this.#start(fn).finally(() => this.#starting.delete(fn.slug));
        this.#starting.set(fn.slug, starting);
      }
      const worker = await starting;
      if (this.#closed) throw new BootError("host closed");
      if (
        worker.exitStatus === undefined && !worker.retired && worker.fn.spawnKey === fn.spawnKey
      ) {
        worker.acquire();
        return worker;
      }
      // it died or went stale while we waited: go round again
    }
  }

  async #spawnEnv(): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(Deno.env.toObject())) {
      if (PASS_ENV_RE.test(k)) env[k] = v;
    }
    const dotEnvPath = `${this.#functionsDir}/.env`;
    let dotEnv: Record<string, string> = {};
    try {
      dotEnv = parseDotEnv(await Deno.readTextFile(dotEnvPath));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        this.#log(`[functions] cannot read ${dotEnvPath}: ${errText(err)}`);
      }
    }
    for (const [k, v] of Object.entries(dotEnv)) {
      if (k.startsWith("SUPABASE_")) {
        this.#log(
          `[functions] ${dotEnvPath}: names starting with SUPABASE_ are reserved, skipping ${k}`,
        );
        continue;
      }
      env[k] = v;
    }
    Object.assign(env, this.#env);
    env.NO_COLOR = "1";
    env.CONVEYOR_EDGE_SHUTDOWN_MS = String(Math.max(0, this.#graceMs - 500));
    return env;
  }

  async #start(fn: ResolvedFunction): Promise<Worker> {
    for (let attempt = 1;; attempt++) {
      if (this.#closed) throw new BootError("host closed");
      const generation = this.#generationOf(fn.slug);
      const port = freePort();
      const env = await this.#spawnEnv();
      env.DENO_SERVE_ADDRESS = `tcp:127.0.0.1:${port}`;
      env.SB_EXECUTION_ID = crypto.randomUUID();
      let worker: Worker;
      try {
        worker = new Worker(fn, generation, port, this.#cwd, env, this.#log, this.#denoConfig);
      } catch (err) {
        this.#log(`[${fn.slug}] cannot start ${Deno.execPath()}: ${errText(err)}`);
        throw new BootError(errText(err));
      }
      this.#live.add(worker);
      worker.child.status.then((status) => {
        worker.exitStatus = status;
        this.#processExited(worker, status);
        if (this.#current.get(fn.slug) === worker) this.#current.delete(fn.slug);
        if (!worker.stopping) {
          this.#log(
            `[${fn.slug}] process exited (code ${status.code}${
              status.signal ? `, signal ${status.signal}` : ""
            }); it will be restarted on the next call`,
          );
        }
      });
      this.#track(worker.done.then(() => this.#live.delete(worker)));

      const failure = await this.#waitReady(worker);
      if (failure === undefined) {
        if (this.#closed) {
          await this.#stop(worker, "host closed");
          throw new BootError("host closed");
        }
        this.#current.set(fn.slug, worker);
        this.#log(`[${fn.slug}] started (pid ${worker.child.pid}, port ${port})`);
        return worker;
      }
      await this.#stop(worker, "boot failed");
      const tail = worker.tail.join("\n");
      if (attempt < 3 && /AddrInUse|address already in use/i.test(tail)) continue;
      if (!this.#closed) {
        this.#log(
          `[${fn.slug}] BOOT_ERROR: ${failure}${tail ? `; last output:\n${tail}` : ""}`,
        );
      }
      throw new BootError(failure);
    }
  }

  /** undefined when the port accepts connections, else why not. */
  async #waitReady(worker: Worker): Promise<string | undefined> {
    const deadline = Date.now() + this.#bootTimeoutMs;
    for (let delay = 10;; delay = Math.min(delay * 2, 100)) {
      if (this.#closed) return "host closed";
      if (worker.exitStatus) {
        return `process exited with code ${worker.exitStatus.code} before listening`;
      }
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: worker.port });
        conn.close();
        // it may have been something else on that port if our process is already gone
        if (worker.exitStatus === undefined) return undefined;
      } catch {
        // not listening yet
      }
      if (Date.now() >= deadline) {
        return `did not listen on 127.0.0.1:${worker.port} within ${this.#bootTimeoutMs} ms`;
      }
      await within(Promise.race([worker.child.status, this.#closedSignal]), delay);
    }
  }

  /** Takes `worker` out of rotation; it is stopped once its in-flight requests are done. */
  #retire(worker: Worker, reason: string): void {
    if (this.#current.get(worker.slug) === worker) this.#current.delete(worker.slug);
    if (worker.retired) return;
    worker.retired = true;
    if (worker.exitStatus === undefined && !this.#closed) {
      this.#log(`[${worker.slug}] restarting on next call (${reason})`);
    }
    this.#track((async () => {
      if (worker.exitStatus === undefined) {
        await within(Promise.race([worker.idle(), this.#closedSignal]), this.#requestTimeoutMs);
      }
      await this.#stop(worker, reason);
    })());
  }

  #stop(worker: Worker, reason: string): Promise<void> {
    worker.stopPromise ??= (async () => {
      worker.stopping = true;
      worker.retired = true;
      if (this.#current.get(worker.slug) === worker) this.#current.delete(worker.slug);
      if (worker.exitStatus === undefined) {
        try {
          worker.child.kill("SIGTERM");
        } catch {
          // already gone
        }
        if (!(await within(worker.child.status, this.#graceMs))) {
          this.#log(
            `[${worker.slug}] still running ${this.#graceMs} ms after SIGTERM (${reason}); SIGKILL`,
          );
          try {
            worker.child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }
      }
      await worker.done;
    })();
    return worker.stopPromise;
  }

  #track(p: Promise<unknown>): void {
    const t = p.catch((err) => this.#log(`[functions] internal error: ${errText(err)}`));
    this.#tasks.add(t);
    t.finally(() => this.#tasks.delete(t));
  }

  // -------------------------------------------------------------------------------------------
  // file watching

  #ensureWatcher(): void {
    if (this.#watcher || !this.#watchEnabled || this.#closed) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(this.#functionsDir, { recursive: true });
    } catch (err) {
      this.#watchEnabled = false;
      this.#log(`[functions] not watching ${this.#functionsDir}: ${errText(err)}`);
      return;
    }
    this.#watcher = watcher;
    this.#watchLoop = (async () => {
      try {
        for await (const event of watcher) {
          if (this.#closed) break;
          if (event.kind === "access") continue;
          for (const path of event.paths) this.#changedPaths.add(path);
          clearTimeout(this.#debounce);
          this.#debounce = setTimeout(() => this.#applyChanges(), WATCH_DEBOUNCE_MS);
        }
      } catch (err) {
        if (!this.#closed) this.#log(`[functions] file watcher stopped: ${errText(err)}`);
      }
    })();
  }

  #applyChanges(): void {
    this.#debounce = undefined;
    if (this.#closed) return;
    const slugs = new Set<string>();
    let all = false;
    const prefix = this.#functionsDir + "/";
    for (const path of this.#changedPaths) {
      if (!path.startsWith(prefix)) continue;
      const top = path.slice(prefix.length).split("/")[0] ?? "";
      if (SLUG_RE.test(top)) slugs.add(top);
      else all = true;
    }
    this.#changedPaths.clear();
    if (all) this.#globalGeneration++;
    for (const slug of slugs) this.#generations.set(slug, (this.#generations.get(slug) ?? 0) + 1);
    for (const worker of [...this.#current.values()]) {
      if (all || slugs.has(worker.slug)) this.#retire(worker, "files changed");
    }
  }

  // -------------------------------------------------------------------------------------------
  // proxying

  async #forward(worker: Worker, req: Request, subPath: string): Promise<Response> {
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        worker.release();
      }
    };

    const incoming = new URL(req.url);
    const rest = subPath === "" || subPath.startsWith("/") ? subPath : `/${subPath}`;
    const target = `http://127.0.0.1:${worker.port}/${worker.slug}${rest}${incoming.search}`;

    const headers = new Headers();
    for (const [name, value] of req.headers) {
      if (HOP_BY_HOP.has(name) || name === "host" || name === "content-length") continue;
      headers.append(name, value);
    }
    headers.set("accept-encoding", "identity");
    if (!headers.has("x-forwarded-host")) headers.set("x-forwarded-host", incoming.host);
    if (!headers.has("x-forwarded-proto")) {
      headers.set("x-forwarded-proto", incoming.protocol.replace(/:$/, ""));
    }

    // Stream the request body through, remembering whether it was the client that failed.
    let clientFailed = false;
    let body: ReadableStream<Uint8Array> | ArrayBuffer | undefined;
    const declared = Number(req.headers.get("content-length") ?? 0);
    if (
      req.body && req.method === "POST" && declared <= INVOCATION_BODY_MAX &&
      /json/i.test(req.headers.get("content-type") ?? "")
    ) {
      // A small JSON body (what pg_net sends to workers; no length given counts as small):
      // read it to learn its invocation_id.
      try {
        body = await req.arrayBuffer();
      } catch {
        release();
        return json(400, { code: "BAD_REQUEST", message: "Request body could not be read" });
      }
      const id = invocationIdIn(body);
      if (id) this.#invocationReceived(worker, id);
    } else if (req.body && req.method !== "GET" && req.method !== "HEAD") {
      const reader = req.body.getReader();
      body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          } catch (err) {
            clientFailed = true;
            controller.error(err);
          }
        },
        cancel(reason) {
          return reader.cancel(reason);
        },
      }, { highWaterMark: 0 });
    }

    const upstream = fetch(target, { method: req.method, headers, body, redirect: "manual" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let res: Response | "timeout";
    try {
      res = await Promise.race([
        upstream,
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), this.#requestTimeoutMs);
        }),
      ]);
    } catch (err) {
      release();
      return await this.#transportFailure(worker, err, clientFailed);
    } finally {
      clearTimeout(timer);
    }

    if (res === "timeout") {
      this.#log(
        `[${worker.slug}] no response within ${this.#requestTimeoutMs} ms: 504 (the function keeps running)`,
      );
      this.#track(
        upstream.then((late) => late.body?.cancel(), () => {}).finally(release),
      );
      return idleTimeout();
    }

    const resHeaders = new Headers();
    for (const [name, value] of res.headers) {
      if (!HOP_BY_HOP.has(name)) resHeaders.append(name, value);
    }
    if (!res.body || NULL_BODY_STATUS.has(res.status)) {
      await res.body?.cancel().catch(() => {});
      release();
      return new Response(null, {
        status: res.status,
        statusText: res.statusText,
        headers: resHeaders,
      });
    }
    const reader = res.body.getReader();
    const log = this.#log;
    const out = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            release();
            controller.close();
          } else {
            controller.enqueue(value);
          }
        } catch (err) {
          release();
          log(`[${worker.slug}] response stream failed: ${errText(err)}`);
          controller.error(err);
        }
      },
      async cancel(reason) {
        release();
        await reader.cancel(reason).catch(() => {});
      },
    }, { highWaterMark: 0 });
    return new Response(out, {
      status: res.status,
      statusText: res.statusText,
      headers: resHeaders,
    });
  }

  async #transportFailure(worker: Worker, err: unknown, clientFailed: boolean): Promise<Response> {
    if (clientFailed) {
      // the caller's request body broke; the function process is fine
      return json(400, { code: "BAD_REQUEST", message: "Request body could not be read" });
    }
    // Give the exit status and the last output lines a moment to arrive, so the log says
    // what happened before we answer.
    await within(worker.done, 1000);
    const how = worker.exitStatus
      ? `process exited with code ${worker.exitStatus.code}${
        worker.exitStatus.signal ? ` (signal ${worker.exitStatus.signal})` : ""
      }`
      : "process still running";
    if (!worker.stopping) {
      this.#log(`[${worker.slug}] WORKER_ERROR: ${errText(err)}; ${how}`);
    }
    this.#retire(worker, "worker error");
    return workerError();
  }
}
