/**
 * `deno task conveyor <command>`: the ops CLI (status, enqueue, dlq, stage, tail,
 * dashboard; the code is in `tools/ops/`) and Conveyor in a project of your own (install,
 * upgrade, add kind, types; `tools/install/`). Run `deno task conveyor help`.
 *
 * @module
 */
import { main } from "./ops/cli.ts";
import { COMMANDS as PROJECT_COMMANDS, main as projectMain } from "./install/cli.ts";

if (import.meta.main) {
  if (PROJECT_COMMANDS.includes(Deno.args[0] ?? "")) Deno.exit(await projectMain(Deno.args));
  const ac = new AbortController();
  // Ctrl-C stops `tail` and `dashboard` cleanly; a second one exits at once.
  Deno.addSignalListener("SIGINT", () => {
    if (ac.signal.aborted) Deno.exit(130);
    ac.abort();
  });
  Deno.exit(await main(Deno.args, undefined, { signal: ac.signal }));
}
