/**
 * The local pg_net worker: performs the HTTP requests our compatible pg_net extension
 * (`tools/stack/extensions/pg_net`) queues, the way pg_net's background worker does.
 *
 * How it works (pg_net 0.20 "asynchronous semantics"):
 * - `net.http_get/post/delete` INSERT into `net.http_request_queue` in the caller's
 *   transaction and `pg_notify('conveyor_pg_net', '')`, which Postgres delivers at COMMIT and
 *   discards on ROLLBACK. This worker LISTENs on that channel.
 * - On a wake it loops: in ONE transaction it deletes up to `batch_size` responses older than
 *   `ttl`, `DELETE … RETURNING` up to `batch_size` queued requests ordered by id (`SKIP
 *   LOCKED`, so two workers never take the same row), performs them all concurrently with
 *   `fetch` (redirects followed, each bounded by its `timeout_milliseconds` over the whole
 *   transfer), inserts one `net._http_response` row per request and commits. It repeats while
 *   a pass found work. So responses of a batch appear together, at the commit that follows
 *   the slowest request (bounded by its timeout), and `created` is the batch's start time,
 *   as in pg_net. If the batch transaction fails, its DELETE rolls back and the requests are
 *   sent again later (at-least-once, as in pg_net).
 * - It connects as given by the URL (a superuser, like pg_net's default) with
 *   `application_name = 'pg_net worker'` once it listens, so `net.check_worker_is_up()`,
 *   `net.wait_until_running()` and `net.worker_restart()` work. If Postgres goes away
 *   (restart, `pg_ctl restart -m immediate`, `net.worker_restart()`), it reconnects with
 *   backoff (250 ms doubling to 1 s), LISTENs again and processes whatever is queued.
 * - `batch_size` and `ttl`: the options, else the settings `pg_net.batch_size` and `pg_net.ttl`
 *   (read at each batch, e.g. from postgresql.conf), else 200 and '6 hours'.
 *
 * Deviations from pg_net, and why:
 * - Safety-net poll: besides wakes, a pass also runs every `pollIntervalMs` (5 s) and after
 *   every (re)connect. pg_net ≥ 0.19 never polls (a row INSERTed directly into the queue waits
 *   for the next wake); the poll covers wakes lost while this process was disconnected. When
 *   a poll finds requests nobody woke us for, a warning is logged: on hosted pg_net they
 *   would wait for the next wake. `pollIntervalMs: 0` turns the poll off.
 * - No 1 s pause between iterations of a drain: the next batch starts right away.
 * - Response header names are lower-case (fetch normalises them; pg_net keeps the server's
 *   spelling) and repeated headers are joined with ", ". `User-Agent: pg_net/<version>` is
 *   appended to the request headers, as pg_net does; fetch also sends `Accept-Encoding` and
 *   decodes compressed bodies.
 * - Timeout messages keep pg_net's shape, `Timeout of N ms reached. Total time: T ms (…)`,
 *   but fetch cannot split the time into DNS / handshake / transfer, so those read "n/a".
 * - Transport errors are reported with curl's message for the common cases (e.g. "Couldn't
 *   connect to server", "Couldn't resolve host name", "Server returned nothing (no headers,
 *   no data)"), otherwise with fetch's message. NUL characters in a response body are
 *   replaced by U+FFFD (Postgres text cannot hold them); invalid UTF-8 likewise.
 * - fetch refuses the "bad ports" of the Fetch standard (e.g. 1, 6000, 6666): requests to
 *   them fail with fetch's message, where curl would connect.
 * - Stopping aborts the requests in flight after a grace period and rolls their batch back,
 *   so they stay queued (pg_net's worker also dies mid-batch on shutdown).
 *
 * Run: `deno run -A tools/stack/net_worker.ts --db-url postgresql://postgres:postgres@127.0.0.1:54322/postgres`
 * (or env `CONVEYOR_DB_URL`); optional `--batch-size N`, `--ttl '6 hours'`,
 * `--poll-interval-ms N`, `--verbose` (a line per batch, not only per failure). Stops on
 * SIGINT/SIGTERM.
 *
 * @module
 */
import postgres, { type Sql } from "postgres";

/** The NOTIFY channel the extension's request functions (and `net.wake()`) signal. */
export const WAKE_CHANNEL = "conveyor_pg_net";
/** `application_name` of the worker's connection once it listens. */
export const WORKER_APPLICATION_NAME = "pg_net worker";
const STARTING_APPLICATION_NAME = "pg_net worker (starting)";
const DEFAULT_PG_NET_VERSION = "0.20.4";

/** Options of {@link startNetWorker}. */
export interface NetWorkerOptions {
  /** Postgres URL of the database to serve (pg_net's worker serves one database). */
  dbUrl: string;
  /** Max requests (and expired responses) per batch. Default: `pg_net.batch_size` or 200. */
  batchSize?: number;
  /** Responses older than this interval are deleted. Default: `pg_net.ttl` or '6 hours'. */
  ttl?: string;
  /** One line per event (connects, batches, failed requests). Default: console.log. */
  log?: (line: string) => void;
  /**
   * Log every batch; false: only batches with failed requests (connects, losses and errors
   * are always logged). Default true; the stack's CLI passes --verbose at debug level only.
   */
  verbose?: boolean;
  /** Safety-net pass interval in ms; 0 disables it. Default 5000. */
  pollIntervalMs?: number;
  /** On stop, how long requests in flight may still finish before being aborted. Default 5000. */
  stopGraceMs?: number;
}

/** A running worker. */
export interface NetWorker {
  /** Stops: no new batches, the current one finishes (or is rolled back), connection closed. */
  stop(): Promise<void>;
}

/** A queued request as the worker reads it. */
interface QueuedRequest {
  id: string;
  method: string;
  url: string;
  /** [name, value] pairs from `jsonb_each_text(headers)`, JSON-null values left out. */
  headers: [string, string][] | null;
  body: Uint8Array | null;
  timeout_milliseconds: number;
}

/** One `net._http_response` row. */
interface ResponseRow {
  id: string;
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean;
  error_msg: string | null;
}

type WakeReason = "notify" | "connect" | "poll";

const TAKE_REQUESTS = `
  with picked as (
    select id from net.http_request_queue
    order by id
    limit $1
    for update skip locked
  )
  delete from net.http_request_queue as q
  using picked
  where q.id = picked.id
  returning
    q.id::text as id,
    upper(q.method::text) as method,
    q.url,
    (select jsonb_agg(jsonb_build_array(h.key, h.value))
     from jsonb_each_text(case when jsonb_typeof(q.headers) = 'object' then q.headers end) as h
     where h.value is not null) as headers,
    q.body,
    q.timeout_milliseconds`;

const DELETE_EXPIRED = `
  with expired as (
    select ctid from net._http_response
    where created < now() - $1::interval
    limit $2
    for update skip locked
  )
  delete from net._http_response as r
  using expired
  where r.ctid = expired.ctid`;

const INSERT_RESPONSES = `
  insert into net._http_response
    (id, status_code, content_type, headers, content, timed_out, error_msg)
  select id, status_code, content_type, headers, content, timed_out, error_msg
  from jsonb_to_recordset($1::text::jsonb) as x(
    id bigint, status_code integer, content_type text, headers jsonb, content text,
    timed_out boolean, error_msg text)`;

const SETTINGS = `
  select
    coalesce($1::int, nullif(current_setting('pg_net.batch_size', true), '')::int, 200)
      as batch_size,
    coalesce($2::text, nullif(current_setting('pg_net.ttl', true), ''), '6 hours')::interval::text
      as ttl`;

/** Where a URL points, without credentials or query (which may hold secrets), for logs. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? ` (${e.cause.message})` : "";
    return `${e.message}${cause}`;
  }
  return String(e);
}

/** curl's wording for the transport failures fetch reports in its own words. */
export function curlMessage(detail: string): string {
  const d = detail.toLowerCase();
  if (d.includes("dns error") || d.includes("failed to lookup") || d.includes("name or service")) {
    return "Couldn't resolve host name";
  }
  if (
    d.includes("connection refused") || d.includes("tcp connect error") ||
    d.includes("network is unreachable") || d.includes("no route to host")
  ) {
    return "Couldn't connect to server";
  }
  if (d.includes("certificate")) return "SSL peer certificate or SSH remote key was not OK";
  if (
    d.includes("tls") || d.includes("ssl") || d.includes("handshake") ||
    d.includes("corrupt message")
  ) {
    return "SSL connect error";
  }
  if (
    d.includes("connection closed before message completed") ||
    d.includes("empty reply") || d.includes("unexpected eof")
  ) {
    return "Server returned nothing (no headers, no data)";
  }
  if (d.includes("redirect")) return "Number of redirects hit maximum amount";
  if (
    d.includes("connection reset") || d.includes("error reading a body") ||
    d.includes("broken pipe")
  ) {
    return "Failure when receiving data from the peer";
  }
  return detail;
}

/** Makes text storable in a Postgres text column (no NUL characters). */
function storable(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "\uFFFD") : text;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

class Worker implements NetWorker {
  readonly #opts: NetWorkerOptions;
  readonly #log: (line: string) => void;
  /** Aborted by stop(): ends backoff sleeps and, after the grace period, requests in flight. */
  readonly #stopping = new AbortController();
  readonly #abortRequests = new AbortController();
  #stopped = false;
  #sql: Sql | null = null;
  #userAgent = `pg_net/${DEFAULT_PG_NET_VERSION}`;
  #pending: WakeReason | null = null;
  #draining: Promise<void> | null = null;
  #session: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastError = "";

  constructor(opts: NetWorkerOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? ((line) => console.log(line));
  }

  /** Starts the session loop; resolves once the first connection attempt has succeeded or failed. */
  start(): Promise<void> {
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    this.#session = this.#sessionLoop(firstAttempt);
    const every = this.#opts.pollIntervalMs ?? 5000;
    if (every > 0) this.#timer = setInterval(() => this.#wake("poll"), every);
    return attempted;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    // Let the batch in flight commit; abort its requests (and roll it back) after the grace.
    const grace = setTimeout(
      () => this.#abortRequests.abort(new Error("net worker stopping")),
      this.#opts.stopGraceMs ?? 5000,
    );
    try {
      await this.#draining;
    } finally {
      clearTimeout(grace);
    }
    // Then end the session (its loop closes the connection) and any backoff sleep.
    this.#stopping.abort();
    await this.#session;
    this.#log("stopped");
  }

  /** Connect, LISTEN, serve until the connection closes; again with backoff until stopped. */
  async #sessionLoop(firstAttempt: () => void): Promise<void> {
    let backoff = 250;
    while (!this.#stopped) {
      let closed!: () => void;
      const whenClosed = new Promise<void>((resolve) => (closed = resolve));
      // postgres.js passes `onnotify` to its connections (undocumented in its types; its own
      // listen() is built on it). One connection carries LISTEN and the batch transactions:
      // notifications arriving during a batch are delivered after its commit.
      const options: postgres.Options<Record<string, postgres.PostgresType>> & {
        onnotify: (channel: string, payload: string) => void;
      } = {
        max: 1,
        idle_timeout: 0,
        max_lifetime: null,
        connect_timeout: 10,
        fetch_types: false,
        connection: { application_name: STARTING_APPLICATION_NAME },
        onnotice: () => {},
        onclose: () => closed(),
        onnotify: (channel) => {
          if (channel === WAKE_CHANNEL) this.#wake("notify");
        },
      };
      let sql: Sql | null = null;
      try {
        sql = postgres(this.#opts.dbUrl, options);
        await sql.unsafe(`listen ${WAKE_CHANNEL}`);
        await sql.unsafe(`set application_name = '${WORKER_APPLICATION_NAME}'`);
        const [ext] = await sql.unsafe<{ version: string }[]>(
          `select extversion as version from pg_extension where extname = 'pg_net'`,
        );
        this.#userAgent = `pg_net/${ext?.version ?? DEFAULT_PG_NET_VERSION}`;
        const [who] = await sql.unsafe<{ db: string; pid: number }[]>(
          `select current_database() as db, pg_backend_pid() as pid`,
        );
        this.#sql = sql;
        this.#lastError = "";
        backoff = 250;
        this.#log(
          `listening on ${WAKE_CHANNEL} in database ${who?.db} (backend pid ${who?.pid})` +
            (ext ? "" : "; pg_net is not installed there yet"),
        );
        firstAttempt();
        this.#wake("connect");
        await Promise.race([whenClosed, sleep(2 ** 31 - 1, this.#stopping.signal)]);
        if (!this.#stopped) this.#log("connection to Postgres lost; reconnecting");
      } catch (e) {
        firstAttempt();
        const msg = errorText(e);
        if (!this.#stopped && msg !== this.#lastError) {
          this.#log(`cannot connect to Postgres: ${msg}; retrying with backoff`);
          this.#lastError = msg;
        }
      } finally {
        if (this.#sql === sql) this.#sql = null;
        await sql?.end({ timeout: 0 }).catch(() => {});
      }
      if (this.#stopped) break;
      await sleep(backoff, this.#stopping.signal);
      // At most 1 s apart: a database that is back (a restart, db:reset) is served within a
      // second; a refused connection attempt costs next to nothing meanwhile.
      backoff = Math.min(backoff * 2, 1_000);
    }
  }

  #wake(reason: WakeReason): void {
    if (this.#stopped) return;
    // A wake by notify or connect outranks a poll (decides whether a find is reported).
    if (this.#pending === null || this.#pending === "poll") this.#pending = reason;
    this.#draining ??= this.#drain().finally(() => (this.#draining = null));
  }

  /** Runs batches while wakes are pending and batches find work. */
  async #drain(): Promise<void> {
    while (this.#pending !== null && !this.#stopped) {
      const reason = this.#pending;
      this.#pending = null;
      const sql = this.#sql;
      if (!sql) return; // the session loop wakes us again once connected
      try {
        const found = await this.#batch(sql, reason);
        this.#lastError = "";
        if (found) this.#pending ??= reason === "poll" ? "poll" : "notify";
      } catch (e) {
        const msg = errorText(e);
        if (this.#stopped) {
          this.#log(`batch rolled back on stop (its requests stay queued): ${msg}`);
        } else if (msg !== this.#lastError) {
          this.#log(`batch failed, its requests stay queued: ${msg}`);
          this.#lastError = msg;
        }
        return;
      }
    }
  }

  /** One batch transaction. Returns whether it consumed requests or deleted expired rows. */
  async #batch(sql: Sql, reason: WakeReason): Promise<boolean> {
    const started = performance.now();
    const outcome = await sql.begin(async (tx) => {
      const [settings] = await tx.unsafe<{ batch_size: number; ttl: string }[]>(SETTINGS, [
        this.#opts.batchSize ?? null,
        this.#opts.ttl ?? null,
      ]);
      const batchSize = settings?.batch_size ?? 200;
      const expired = await tx.unsafe(DELETE_EXPIRED, [settings?.ttl ?? "6 hours", batchSize]);
      const requests = await tx.unsafe<QueuedRequest[]>(TAKE_REQUESTS, [batchSize]);
      requests.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
      const responses = await Promise.all(requests.map((r) => this.#perform(r)));
      if (responses.length > 0) {
        await tx.unsafe(INSERT_RESPONSES, [JSON.stringify(responses)]);
      }
      return { requests, responses, expired: expired.count };
    });
    const { requests, responses, expired } = outcome;
    if (requests.length === 0 && expired === 0) return false;
    // A wake that arrived with this batch's commit means the rows were announced after all
    // (their NOTIFY was still on its way when the poll took them).
    if (reason === "poll" && requests.length > 0 && this.#pending !== "notify") {
      this.#log(
        `warning: the safety-net poll found ${requests.length} queued request(s) no wake ` +
          `announced (e.g. a direct INSERT into net.http_request_queue, or a wake lost while ` +
          `disconnected); pg_net on Supabase would only send them at its next wake`,
      );
    }
    const failed = responses.filter((r) => r.error_msg !== null);
    if (failed.length === 0 && this.#opts.verbose === false) return true;
    const ms = Math.round(performance.now() - started);
    this.#log(
      `batch: ${requests.length} request(s) (${requests.length - failed.length} answered, ` +
        `${failed.length} failed), ${expired} expired response(s) deleted, ${ms} ms`,
    );
    for (const r of failed.slice(0, 5)) {
      const req = requests.find((q) => q.id === r.id);
      this.#log(
        `  request ${r.id} ${req?.method} ${describeUrl(req?.url ?? "")}: ${r.error_msg}`,
      );
    }
    if (failed.length > 5) this.#log(`  … and ${failed.length - 5} more failed request(s)`);
    return true;
  }

  /** Performs one request; transport failures become a response row, never an exception. */
  async #perform(req: QueuedRequest): Promise<ResponseRow> {
    const base = {
      id: req.id,
      status_code: null,
      content_type: null,
      headers: null,
      content: null,
    };
    const started = performance.now();
    const timeoutMs = req.timeout_milliseconds;
    const signals = [this.#abortRequests.signal];
    // curl: a timeout of 0 means none.
    if (timeoutMs > 0) signals.push(AbortSignal.timeout(timeoutMs));
    const signal = AbortSignal.any(signals);
    try {
      const protocol = new URL(req.url).protocol;
      if (protocol !== "http:" && protocol !== "https:") {
        return { ...base, timed_out: false, error_msg: "Unsupported protocol" };
      }
      const headers = new Headers();
      for (const [name, value] of req.headers ?? []) headers.append(name, value);
      headers.append("User-Agent", this.#userAgent);
      let body: Uint8Array | undefined = req.body ?? undefined;
      // pg_net sends an empty POST for a NULL body.
      if (body === undefined && req.method === "POST") body = new Uint8Array(0);
      const res = await fetch(req.url, {
        method: req.method,
        headers,
        body: body as BodyInit | undefined,
        redirect: "follow",
        signal,
      });
      // Reading the body is under the same signal: the timeout covers the whole transfer.
      const bytes = new Uint8Array(await res.arrayBuffer());
      const resHeaders: Record<string, string> = {};
      for (const [name, value] of res.headers) {
        resHeaders[name] = name in resHeaders ? `${resHeaders[name]}, ${value}` : value;
      }
      return {
        id: req.id,
        status_code: res.status,
        content_type: res.headers.get("content-type"),
        headers: resHeaders,
        content: bytes.length > 0 ? storable(new TextDecoder().decode(bytes)) : null,
        timed_out: false,
        error_msg: null,
      };
    } catch (e) {
      if (this.#abortRequests.signal.aborted) throw e; // stopping: roll the batch back
      const total = (performance.now() - started).toFixed(3);
      if (signal.aborted) {
        return {
          ...base,
          timed_out: true,
          error_msg: `Timeout of ${timeoutMs} ms reached. Total time: ${total} ms ` +
            `(DNS time: n/a, TCP/SSL handshake time: n/a, HTTP Request/Response time: n/a)`,
        };
      }
      return { ...base, timed_out: false, error_msg: storable(curlMessage(errorText(e))) };
    }
  }
}

/**
 * Starts a worker serving `opts.dbUrl`. Resolves once the first connection attempt is done
 * (if Postgres is not reachable yet, the worker keeps retrying in the background).
 */
export async function startNetWorker(opts: NetWorkerOptions): Promise<NetWorker> {
  const worker = new Worker(opts);
  await worker.start();
  return worker;
}

class HelpRequested extends Error {}

const CLI_USAGE = "usage: deno run -A tools/stack/net_worker.ts --db-url <url> " +
  "[--batch-size N] [--ttl '6 hours'] [--poll-interval-ms N] [--verbose]";

function parseCli(args: string[]): NetWorkerOptions {
  const opts: NetWorkerOptions = {
    dbUrl: Deno.env.get("CONVEYOR_DB_URL") ?? "",
    verbose: false,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1];
    const need = (): string => {
      if (value === undefined) throw new Error(`${flag} needs a value`);
      i++;
      return value;
    };
    const int = (): number => {
      const n = Number(need());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a non-negative integer`);
      return n;
    };
    if (flag === "--db-url") opts.dbUrl = need();
    else if (flag === "--batch-size") opts.batchSize = int();
    else if (flag === "--ttl") opts.ttl = need();
    else if (flag === "--poll-interval-ms") opts.pollIntervalMs = int();
    else if (flag === "--verbose") opts.verbose = true;
    else if (flag === "--help" || flag === "-h") throw new HelpRequested();
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!opts.dbUrl) {
    throw new Error("no database: pass --db-url <postgres URL> or set CONVEYOR_DB_URL");
  }
  return opts;
}

if (import.meta.main) {
  let opts: NetWorkerOptions;
  try {
    opts = parseCli(Deno.args);
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(CLI_USAGE);
      Deno.exit(0);
    }
    console.error(`error: ${errorText(e)}\n${CLI_USAGE}`);
    Deno.exit(2);
  }
  const worker = await startNetWorker(opts);
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    worker.stop().then(() => Deno.exit(0), (e) => {
      console.error(`stop failed: ${errorText(e)}`);
      Deno.exit(1);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}
