/**
 * `CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY` environment overrides (seed 001): a whole number
 * replaces the stage's `content_stage_config.max_concurrency`, `0` disables the stage. The
 * env lives in the functions, so the dispatcher AND the stage workers read it and pass the
 * effective numbers to SQL (SQL never guesses a function's env).
 *
 * @module
 */
import { QueueError } from "../errors.ts";

const OVERRIDE_RE = /^CONTENT_STAGE_([A-Z][A-Z0-9_]*)_MAX_CONCURRENCY$/;

/** Overrides by stage name (lower case), e.g. `{ research: 10, draft: 0 }`. */
export type ConcurrencyOverrides = Record<string, number>;

/** The variable that overrides `stage`. */
export function overrideVariable(stage: string): string {
  return `CONTENT_STAGE_${stage.toUpperCase()}_MAX_CONCURRENCY`;
}

/**
 * Reads every `CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY` set in `env` (empty = unset). A value
 * that is not a whole number between 0 and 1000 throws QueueError("config_invalid") naming
 * the variable.
 */
export function readConcurrencyOverrides(
  env: Record<string, string | undefined>,
): ConcurrencyOverrides {
  const out: ConcurrencyOverrides = {};
  for (const [name, raw] of Object.entries(env)) {
    const m = name.match(OVERRIDE_RE);
    if (!m || raw === undefined || raw.trim() === "") continue;
    const n = Number(raw.trim());
    if (!Number.isInteger(n) || n < 0 || n > 1000) {
      throw new QueueError(
        "config_invalid",
        `${name} must be a whole number between 0 and 1000 (0 disables the stage), got "${raw}"`,
      );
    }
    out[m[1]!.toLowerCase()] = n;
  }
  return out;
}
