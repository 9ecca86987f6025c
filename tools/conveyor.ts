/**
 * `deno task conveyor <command>`: the ops CLI (status, enqueue, dlq, stage, tail,
 * dashboard). Run `deno task conveyor help`; the code is in `tools/ops/`.
 *
 * @module
 */
import { main } from "./ops/cli.ts";

if (import.meta.main) {
  const ac = new AbortController();
  // Ctrl-C stops `tail` and `dashboard` cleanly; a second one exits at once.
  Deno.addSignalListener("SIGINT", () => {
    if (ac.signal.aborted) Deno.exit(130);
    ac.abort();
  });
  Deno.exit(await main(Deno.args, undefined, { signal: ac.signal }));
}
