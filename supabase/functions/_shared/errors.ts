/**
 * Error types shared by Conveyor's runtime. Handlers throw {@link JobCancelError} to fail a
 * job for good (straight to the dead-letter queue) and {@link JobSnoozeError} to run it
 * later without spending an attempt; anything else thrown is a retryable failure.
 *
 * @module
 */

/** Codes of {@link QueueError}. */
export type QueueErrorCode =
  | "config_invalid"
  | "rpc_failed"
  | "bad_request"
  | "unauthorized"
  | "not_found"
  | "conflict"
  | "shutting_down"
  | "deadline_exceeded";

/** An error from the queue runtime, with a stable code for mapping to HTTP. */
export class QueueError extends Error {
  override readonly name = "QueueError";
  constructor(readonly code: QueueErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }

  /**
   * True when the same request can succeed later because something upstream was away (the
   * API restarting, Postgres without a connection): answered 503, which callers retry,
   * instead of the code's status.
   */
  get unavailable(): boolean {
    return false;
  }
}

/** Thrown by a handler: the job fails permanently (dead-lettered, no more attempts). */
export class JobCancelError extends Error {
  override readonly name = "JobCancelError";
}

/** Thrown by a handler: run the job again after `seconds`, without spending an attempt. */
export class JobSnoozeError extends Error {
  override readonly name = "JobSnoozeError";
  constructor(readonly seconds: number, message = `snoozed for ${seconds} s`) {
    super(message);
  }
}

/** Normalises anything thrown (catch variables are `unknown`) into an Error. */
export function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === "string") return new Error(e);
  try {
    return new Error(JSON.stringify(e));
  } catch {
    return new Error(String(e));
  }
}

/** HTTP status for a QueueError: 503 when it is {@link QueueError.unavailable}, else its code's. */
export function httpStatusOfError(err: QueueError): number {
  return err.unavailable ? 503 : httpStatusOf(err.code);
}

/** HTTP status for a QueueError code. */
export function httpStatusOf(code: QueueErrorCode): number {
  switch (code) {
    case "bad_request":
    case "config_invalid":
      return 400;
    case "unauthorized":
      return 401;
    case "not_found":
      return 404;
    case "conflict":
      return 409;
    case "shutting_down":
      return 503;
    case "deadline_exceeded":
      return 504;
    case "rpc_failed":
      return 502;
  }
}
