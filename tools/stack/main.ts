/**
 * `deno task start | stack:up | stack:down | stack:status | db:reset`: the local stack's CLI.
 *
 *   start   run everything in the foreground; Ctrl-C stops it all
 *   up      the same in the background (idempotent: up twice = one stack)
 *   down    stop a background stack (no error when none runs)
 *   status  show what runs and where, and whether each service is healthy
 *   reset   drop and re-create the database, re-apply migrations and supabase/seed.sql
 *
 * Flags: --dir <folder>  --api-port <n>  --db-port <n>  --project <folder>  (env:
 * CONVEYOR_STACK_DIR, CONVEYOR_API_PORT, CONVEYOR_DB_PORT, CONVEYOR_PROJECT); start/up:
 * --debug (env CONVEYOR_LOG_LEVEL=debug) adds a log line per request. `<command> --help` shows
 * a command's usage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { flagError, StackError, toError } from "./errors.ts";
import { pidAlive } from "./proc.ts";
import {
  checkPorts,
  clusterFor,
  kickDispatcher,
  resetDatabase,
  Stack,
  type StackInfo,
  stackInfo,
} from "./supervisor.ts";
import {
  clearState,
  liveState,
  projectRoot,
  readState,
  resolveOptions,
  type StackOptions,
  writeState,
} from "./state.ts";

const USAGE = `usage: deno task <start|stack:up|stack:down|stack:status|db:reset> [flags]
       deno run -A tools/stack/main.ts <start|up|down|status|reset> [flags]
       deno task <command> --help   (a command's flags)`;

const PROJECT =
  `  --project P    the Supabase project to serve: a folder with supabase/ (default: this
                 checkout; env CONVEYOR_PROJECT), e.g. one Conveyor was installed into`;
const DIR =
  `  --dir D        the stack's folder (default .stack/local, or .stack/<project>-<hash> with
                 --project; env CONVEYOR_STACK_DIR)`;
const PLACE = `${PROJECT}
${DIR}
  --api-port N   API port (default 54321; env CONVEYOR_API_PORT)
  --db-port N    database port (default 54322; env CONVEYOR_DB_PORT)`;
const DEBUG = `  --debug        log a line per request (gateway, PostgREST, pg_net worker);
                 env CONVEYOR_LOG_LEVEL=debug`;

/** Per command: what it does and its flags (`<command> --help`). */
const HELP: Record<string, string> = {
  start: `usage: deno task start [--project P] [--dir D] [--api-port N] [--db-port N] [--debug]

Runs the whole local stack in the foreground (PostgreSQL, PostgREST, the gateway, the
pg_net worker); Ctrl-C stops it. Idempotent: on a running stack it shows that stack.

${PLACE}
${DEBUG}`,
  up: `usage: deno task stack:up [--project P] [--dir D] [--api-port N] [--db-port N] [--debug]

Starts the stack in the background (log: <dir>/logs/stack.log) and prints its URLs and keys.

${PLACE}
${DEBUG}`,
  down: `usage: deno task stack:down [--project P] [--dir D]

Stops a background stack (no error when none runs), and PostgreSQL with it.

${PROJECT}
${DIR}`,
  status: `usage: deno task stack:status [--project P] [--dir D]

Shows what runs and where, with each service's health; exit status 1 when no stack runs.

${PROJECT}
${DIR}`,
  reset: `usage: deno task db:reset [--project P] [--dir D] [--api-port N] [--db-port N]

Drops and re-creates the database, re-applies the migrations and supabase/seed.sql (the
project's). On a running stack its services stay up (requests answer 503 meanwhile).

${PLACE}`,
};

/** Which flags each command takes. */
const FLAGS: Record<string, string[]> = {
  start: ["project", "dir", "api-port", "db-port", "debug"],
  up: ["project", "dir", "api-port", "db-port", "debug"],
  down: ["project", "dir"],
  status: ["project", "dir"],
  reset: ["project", "dir", "api-port", "db-port"],
};

function makeLogger(file?: string): (line: string) => void {
  const enc = new TextEncoder();
  return (line: string) => {
    const ts = new Date().toISOString().slice(11, 19);
    const text = `${ts}  ${line}\n`;
    if (file) Deno.writeFileSync(file, enc.encode(text), { append: true });
    else Deno.stdout.writeSync(enc.encode(text));
  };
}

/** The banner printed once the stack is up. */
export function banner(info: StackInfo): string {
  const curl = [
    `curl -X POST "${info.apiUrl}/rest/v1/rpc/queue_job" \\`,
    `  -H "apikey: ${info.serviceRoleKey}" \\`,
    `  -H "Authorization: Bearer ${info.serviceRoleKey}" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '{"idempotency_key":"hello:1","kind":"enrich","payload":{"email":"Ada@Example.com"}}'`,
  ].join("\n");
  return [
    "",
    "Conveyor local stack is running.",
    "",
    `         API URL: ${info.apiUrl}`,
    `        REST URL: ${info.apiUrl}/rest/v1`,
    `   Functions URL: ${info.apiUrl}/functions/v1`,
    `       Dashboard: ${info.apiUrl}/functions/v1/conveyor-dashboard?key=${info.serviceRoleKey}`,
    `         Metrics: ${info.apiUrl}/functions/v1/conveyor-metrics  (Prometheus; Authorization: Bearer <service_role key>)`,
    `         Ops CLI: deno task conveyor status   (help: deno task conveyor help)`,
    `          DB URL: ${info.dbUrl}`,
    `      JWT secret: ${info.jwtSecret}`,
    `        anon key: ${info.anonKey}`,
    `service_role key: ${info.serviceRoleKey}`,
    ` Publishable key: ${info.publishableKey}`,
    `      Secret key: ${info.secretKey}`,
    "",
    "Enqueue a job:",
    curl,
    "",
  ].join("\n");
}

/** `start` or `up` on a running stack: say so, then show that stack's banner. */
async function showRunning(
  live: { pid: number; apiPort: number; dbPort: number },
  what: string,
): Promise<void> {
  console.log(`Stack already running (pid ${live.pid}), ${what}`);
  console.log(banner(await stackInfo(live.apiPort, live.dbPort)));
}

async function start(opts: StackOptions): Promise<void> {
  const logFile = Deno.env.get("CONVEYOR_STACK_LOG") || undefined;
  const log = makeLogger(logFile);
  const live = await liveState(opts.dir);
  if (live && live.pid !== Deno.pid) {
    // Idempotent like `up`: the stack the user wants is already there; say where it is.
    return await showRunning(live, "nothing started; `deno task stack:down` stops it.");
  }
  const stale = await readState(opts.dir);
  if (stale) {
    log(`removing stale state of pid ${stale.pid} (not running)`);
    await clearState(opts.dir);
  }
  const stack = new Stack(opts, log);
  let stopping: Promise<void> | null = null;
  const shutdown = () => {
    stopping ??= (async () => {
      log("shutting down");
      await stack.stop();
      await clearState(opts.dir);
      log("stopped");
      Deno.exit(0);
    })();
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  await Deno.mkdir(opts.dir, { recursive: true });
  await writeState(stack.state(false));
  try {
    await stack.prepare();
    await stack.startServices();
  } catch (e) {
    await stack.stop().catch(() => {});
    await clearState(opts.dir);
    throw e;
  }
  await writeState(stack.state(true));
  // A restarted gateway or pg_net worker has a new pid: keep state.json telling the truth.
  stack.onServicesChanged = () => {
    writeState(stack.state(true)).catch((e) => log(`could not update state.json: ${e}`));
  };
  if (logFile) log("ready");
  else console.log(banner(stack.info!) + "\nPress Ctrl-C to stop.");
  // Keep running until a signal arrives.
  await new Promise(() => {});
}

async function up(opts: StackOptions): Promise<void> {
  const live = await liveState(opts.dir);
  if (live) {
    return await showRunning(live, "nothing to do.");
  }
  // Refuse a taken port here, before the log folder exists (the background start checks again).
  checkPorts(opts, await (await clusterFor(opts)).running());
  await Deno.mkdir(`${opts.dir}/logs`, { recursive: true });
  const logFile = `${opts.dir}/logs/stack.log`;
  await Deno.writeTextFile(logFile, "");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./main.ts", import.meta.url).pathname,
      "start",
      "--project",
      projectRoot(opts),
      "--dir",
      opts.dir,
      "--api-port",
      String(opts.apiPort),
      "--db-port",
      String(opts.dbPort),
    ],
    env: { CONVEYOR_STACK_LOG: logFile },
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  console.log(`starting the stack in the background (pid ${child.pid}, log ${logFile})`);
  let shown = 0;
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const lines = (await Deno.readTextFile(logFile).catch(() => "")).split("\n");
    for (; shown < lines.length - 1; shown++) console.log(lines[shown]);
    const state = await readState(opts.dir);
    if (state?.ready && state.pid === child.pid) {
      console.log(banner(await stackInfo(state.apiPort, state.dbPort)));
      return;
    }
    if (!pidAlive(child.pid)) {
      const rest = (await Deno.readTextFile(logFile).catch(() => "")).split("\n").slice(shown);
      for (const l of rest) if (l) console.log(l);
      throw new StackError(`the stack failed to start; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new StackError(`the stack did not become ready in 5 minutes; see ${logFile}`);
}

async function down(opts: StackOptions): Promise<void> {
  const state = await readState(opts.dir);
  if (state && pidAlive(state.pid)) {
    Deno.kill(state.pid, "SIGTERM");
    const deadline = Date.now() + 30_000;
    while (pidAlive(state.pid) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (pidAlive(state.pid)) Deno.kill(state.pid, "SIGKILL");
    console.log(`Stack stopped (pid ${state.pid}).`);
  } else if (state) {
    console.log(`Removed stale state of pid ${state.pid} (it was not running).`);
  } else {
    console.log("No stack running.");
  }
  await clearState(opts.dir);
  // A supervisor killed hard leaves PostgreSQL running: stop it too.
  const cluster = await clusterFor(opts);
  if (await cluster.running()) {
    await cluster.stop("fast");
    console.log("PostgreSQL stopped.");
  }
}

async function status(opts: StackOptions): Promise<void> {
  const state = await liveState(opts.dir);
  if (!state) {
    console.log(`No stack running from ${opts.dir}.`);
    Deno.exitCode = 1;
    return;
  }
  const info = await stackInfo(state.apiPort, state.dbPort);
  console.log(`Stack pid ${state.pid} since ${state.startedAt}.`);
  if (state.project && state.project !== state.root) console.log(`  project: ${state.project}`);
  for (const [name, pid] of Object.entries(state.services)) {
    const probe = state.health?.[name];
    let health = "";
    if (probe) {
      const ok = await fetch(probe, { signal: AbortSignal.timeout(2_000) })
        .then(async (r) => (await r.body?.cancel(), r.ok), () => false);
      health = ok ? ", healthy" : ", NOT healthy";
    }
    console.log(`  ${name}: pid ${pid}${health}`);
  }
  console.log(banner(info));
}

async function reset(opts: StackOptions): Promise<void> {
  const log = makeLogger();
  const live = await liveState(opts.dir);
  // A running stack's ports are in its state, not in the flags of this command.
  const cluster = await clusterFor(live ? { ...opts, dbPort: live.dbPort } : opts);
  if (!live) {
    // No stack: prepare (creates and starts the cluster), reset, and stop again.
    const stack = new Stack(opts, log);
    await stack.prepare();
    await resetDatabase(stack.cluster!, projectRoot(opts), log, stack.info!);
    await stack.cluster!.stop("fast");
  } else {
    // The running stack's project, whatever this command was told.
    const project = live.project ?? live.root;
    const info = await stackInfo(live.apiPort, live.dbPort);
    await resetDatabase(cluster, project, log, info);
    // The seed's kicks were held: start what it enqueued through the running stack.
    await kickDispatcher(project, info, log);
  }
  log("database reset");
}

/** The task name of each command, for the one-line pointer to its --help. */
const TASK: Record<string, string> = {
  start: "start",
  up: "stack:up",
  down: "stack:down",
  status: "stack:status",
  reset: "db:reset",
};

/** Bad command-line input: one line on stderr, exit status 2. */
function usageError(message: string, cmd?: string): never {
  const help = cmd ? `deno task ${TASK[cmd]} --help` : "deno task start --help";
  console.error(`error: ${message} (usage: ${help})`);
  Deno.exit(2);
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        project: { type: "string" },
        dir: { type: "string" },
        "api-port": { type: "string" },
        "db-port": { type: "string" },
        debug: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    // node:util's message names the flag: one line, no stack trace.
    const named = Deno.args.find((a) => a in TASK);
    usageError(flagError(e), named);
  }
  const { positionals, values } = parsed;
  const cmd = positionals[0];
  if (cmd !== undefined && !(cmd in HELP)) {
    usageError(`unknown command "${cmd}"; commands: ${Object.keys(TASK).join(", ")}`);
  }
  if (values.help || !cmd) {
    console.log(cmd ? HELP[cmd] : USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  if (positionals.length > 1) usageError(`unexpected argument "${positionals[1]}"`, cmd);
  for (const flag of ["project", "dir", "api-port", "db-port", "debug"] as const) {
    if (values[flag] !== undefined && !FLAGS[cmd]!.includes(flag)) {
      usageError(`${cmd} does not take --${flag}`, cmd);
    }
  }
  const port = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      usageError(`--${flag} must be a port number, got "${v}"`, cmd);
    }
    return n;
  };
  let opts: StackOptions;
  try {
    opts = resolveOptions({
      project: values.project,
      dir: values.dir,
      apiPort: port(values["api-port"], "api-port"),
      dbPort: port(values["db-port"], "db-port"),
    });
  } catch (e) {
    // A project folder that does not exist or is not a Supabase project: one line and the fix.
    const err = toError(e);
    console.error(`error: ${err.message}`);
    if (err instanceof StackError && err.hint) console.error(`  fix: ${err.hint}`);
    Deno.exit(1);
  }
  // Children (PostgREST, the gateway, the pg_net worker, a background `start`) read it too.
  if (values.debug) Deno.env.set("CONVEYOR_LOG_LEVEL", "debug");
  const commands: Record<string, (o: StackOptions) => Promise<void>> = {
    start,
    up,
    down,
    status,
    reset,
  };
  try {
    await commands[cmd]!(opts);
  } catch (e) {
    const err = toError(e);
    const lines = err instanceof StackError
      ? [`error: ${err.message}`, ...(err.hint ? [`  fix: ${err.hint}`] : [])]
      : [err.stack ?? err.message];
    for (const l of lines) console.error(l);
    // A background stack (up) has no terminal: its log file is where the error must go.
    const logFile = Deno.env.get("CONVEYOR_STACK_LOG");
    if (logFile) makeLogger(logFile)(lines.join("\n"));
    Deno.exit(1);
  }
}
