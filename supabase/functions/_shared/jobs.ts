/**
 * The typed API for a job kind of your own: one {@link JobKind} value names the kind and the
 * type of its payload, and both ends use it, so a payload that does not fit is a type error
 * where the job is enqueued AND where it is handled.
 *
 * ```ts
 * // supabase/functions/send-invoice-worker/kind.ts (made by `deno task conveyor add kind`)
 * export interface SendInvoicePayload { invoice_id: string; amount_cents: number }
 * export const sendInvoice = jobKind<SendInvoicePayload>("send_invoice");
 *
 * // the producer (an edge function, a Deno server, a script)
 * const n = await enqueue(supabase, sendInvoice, { invoice_id: "inv-1", amount_cents: 1200 },
 *   { idempotencyKey: "invoice:inv-1" });   // the job's number
 *
 * // handler.ts: job.payload is a SendInvoicePayload
 * export const handler = defineHandler(sendInvoice, async (job, { log }) => { … });
 *
 * // index.ts: the worker function the dispatcher starts
 * Deno.serve(serveKind(handler));
 * ```
 *
 * `enqueue` calls the `queue_job` RPC through supabase-js, checked against the `Database`
 * types Supabase's generator makes of Conveyor's migrations (database.types.ts).
 *
 * @module
 */
import type { SupabaseClient } from "./deps.ts";
import type { Database } from "./database.types.ts";
import { QueueError } from "./errors.ts";
import {
  type HandlerContext,
  type Job,
  type JobHandler,
  type Priority,
  queueJobBody,
} from "./queue/adapter.ts";
import { makeWorkerHandler, type WorkerHandlerOptions } from "./queue/worker_function.ts";

export { JobCancelError, JobSnoozeError } from "./errors.ts";
export { serviceClient } from "./supabase.ts";
export type { HandlerContext, Job } from "./queue/adapter.ts";

/** A job kind and the type of its payload (a JSON object): the contract both ends share. */
export interface JobKind<P extends object> {
  /** The kind's name, as `queue_job` takes it and `conveyor.job_kinds` lists it. */
  readonly name: string;
  /** Type only: the payload type (never set at run time). */
  readonly payload?: P;
}

/** Declares kind `name` whose jobs carry payloads of type `P`. */
export function jobKind<P extends object>(name: string): JobKind<P> {
  return { name };
}

/** How to enqueue: everything of `queue_job`'s body but the kind and the payload. */
export interface EnqueueOptions {
  /** Required; the same key returns the same job and enqueues nothing new. */
  idempotencyKey: string;
  /** Default "normal". */
  priority?: Priority;
  /** Not run before this many seconds (give this or executeAfter). */
  delaySeconds?: number;
  /** Not run before this time. */
  executeAfter?: string | Date;
  headers?: Record<string, unknown>;
  /** More attempts (5) before the dead-letter queue. */
  critical?: boolean;
  /** Trusted callers (service role) only; default: the caller's or the default tenant. */
  tenantId?: string;
}

// deno-lint-ignore no-explicit-any -- any schema: a project's own generated Database types too
type AnyClient = SupabaseClient<any, any, any>;

/**
 * Enqueues a job of `kind` with `payload` through `queue_job`; returns the job's number (its
 * pgmq message id; `GET /rest/v1/jobs?msg_id=eq.<n>` finds it). A refusal (unknown kind,
 * bad field, idempotency key reused with another request …) throws QueueError
 * ("bad_request", or "conflict" for 409s) with queue_job's own message.
 */
export async function enqueue<P extends object>(
  client: AnyClient,
  kind: JobKind<P>,
  payload: P,
  opts: EnqueueOptions,
): Promise<number> {
  const body = queueJobBody({
    ...opts,
    kind: kind.name,
    payload: payload as Record<string, unknown>,
  });
  // queue_job takes one unnamed jsonb parameter, which the generated types call "": the body
  // is the whole request, so it goes as the args object itself.
  type QueueJob = Database["public"]["Functions"]["queue_job"];
  const typed = client as unknown as SupabaseClient<Database>;
  const { data, error } = await typed.rpc("queue_job", body as unknown as QueueJob["Args"]);
  if (error) {
    const conflict = error.code === "23505";
    throw new QueueError(conflict ? "conflict" : "bad_request", error.message, { cause: error });
  }
  return data satisfies QueueJob["Returns"];
}

/** A kind's handler: what {@link serveKind} runs and {@link runHandler} tests. */
export interface KindHandler<P extends object, R = unknown> {
  readonly kind: JobKind<P>;
  readonly run: JobHandler<P, R>;
}

/**
 * The handler of `kind`'s jobs. `fn` gets the job (its payload typed `P`, its attempt, its
 * tenant) and a context (an AbortSignal for the job's deadline, a log function). Return the
 * job's output (stored in `jobs.output`); throw to fail the attempt (retried with backoff,
 * dead-lettered after the last one); throw JobCancelError to dead-letter it at once,
 * JobSnoozeError(seconds) to run it later without spending an attempt. A job runs at least
 * once: make its effects idempotent (e.g. keyed on `job.id`).
 */
export function defineHandler<P extends object, R>(
  kind: JobKind<P>,
  fn: (job: Job<P>, ctx: HandlerContext) => R | Promise<R>,
): KindHandler<P, R> {
  // A synchronous handler (or one that throws before its first await) still gives a promise.
  return { kind, run: (job, ctx) => Promise.resolve().then(() => fn(job, ctx)) };
}

/**
 * The worker function of a kind: `Deno.serve(serveKind(handler))` in
 * `supabase/functions/<kind>-worker/index.ts`. It is Conveyor's queue worker
 * (`_shared/queue/worker_function.ts`: drains the kind's queues when the dispatcher calls it,
 * service role only, `GET …/health`) with this one handler registered; `opts` as
 * makeWorkerHandler's (the environment by default).
 */
export function serveKind<P extends object>(
  handler: KindHandler<P>,
  opts: Omit<WorkerHandlerOptions, "registry"> = {},
): (req: Request) => Promise<Response> {
  return makeWorkerHandler(handler.kind.name, {
    ...opts,
    registry: new Map([[handler.kind.name, handler.run]]),
  });
}

/**
 * Runs `handler` once on `payload`, outside any queue: for a handler's unit test. The job
 * is attempt 1 of 3 of the default tenant unless `job` says otherwise; log lines are
 * collected in `logs`.
 */
export async function runHandler<P extends object, R>(
  handler: KindHandler<P, R>,
  payload: P,
  job: Partial<Omit<Job<P>, "payload">> = {},
): Promise<{ output: R; logs: { message: string; extra?: Record<string, unknown> }[] }> {
  const logs: { message: string; extra?: Record<string, unknown> }[] = [];
  const output = await handler.run({
    id: crypto.randomUUID(),
    kind: handler.kind.name,
    tenantId: "00000000-0000-0000-0000-000000000000",
    priority: "normal",
    attempt: 1,
    maxAttempts: 3,
    headers: null,
    enqueuedAt: new Date(),
    ...job,
    payload,
  }, {
    signal: new AbortController().signal,
    log: (message, extra) => logs.push({ message, extra }),
  });
  return { output, logs };
}
