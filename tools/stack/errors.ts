/**
 * Errors the local stack reports to a person: a message saying what is wrong and, where one
 * exists, the command that fixes it. The CLI prints these without a stack trace.
 *
 * @module
 */

/** A problem with the local stack that the user can fix. */
export class StackError extends Error {
  override readonly name = "StackError";
  /** What to run or change to fix it. */
  readonly hint: string | undefined;
  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.hint = hint;
  }
}

/** Normalises anything thrown into an Error (catch variables are `unknown`). */
export function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** node:util parseArgs' complaint about a flag, as one short line ("Unknown option '--x'"). */
export function flagError(e: unknown): string {
  return toError(e).message.split("\n")[0]!.replace(/\. To specify a positional argument.*$/, "");
}
