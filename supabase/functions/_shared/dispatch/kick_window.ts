/**
 * The recheck of a debounced kick, shared by its two callees: the dispatcher (targets
 * `content:<stage>`, `queue:<kind>`) and dlq-worker (target `dlq`). A winning kick's call
 * carries its window's number (`window`); before the recheck reads its backlog again it
 * closes that window, which waits for every kick the window suppressed to commit
 * (`close_kick_window`, 20261207170100_kick_recheck_handshake.sql), so it sees their work
 * however late they committed.
 *
 * @module
 */
import { z } from "../deps.ts";
import { toError } from "../errors.ts";
import type { DispatchStore } from "./store.ts";

const NOT_A_KICK = "window must be a kick number (1 or more)";

/** The `window` field of a kick's call: the winning kick's number (dispatch_kicks.kicks). */
export const KickWindow = z.number({ invalid_type_error: "window must be a number" })
  .int({ message: NOT_A_KICK })
  .min(1, { message: NOT_A_KICK });

/**
 * Closes the kick window `window` of `target` (default: its newest) before a recheck. Never
 * throws: a recheck runs whatever happens here, and sees every job committed by then. Logs
 * when it stopped waiting for a suppressed kick (its transaction outlived
 * `kick_close_wait_ms`; its work waits for the next kick, which now wins, or cron) and when
 * the call failed.
 */
export async function closeKickWindowForRecheck(
  store: Pick<DispatchStore, "closeKickWindow">,
  target: string,
  window: number | undefined,
): Promise<void> {
  try {
    if (!await store.closeKickWindow(target, window)) {
      console.log(JSON.stringify({
        level: "warn",
        msg: "kick window closed without waiting for every suppressed kick",
        target,
        window,
      }));
    }
  } catch (e) {
    console.log(JSON.stringify({
      level: "warn",
      msg: "close_kick_window failed",
      target,
      window,
      error: toError(e).message,
    }));
  }
}
