/**
 * Every `deno task` and script answers `--help` with its usage (exit 0) and a bad flag with
 * one line (exit 2), never a stack trace: the helper in-process, then each command as the
 * user runs it (a subprocess). None of them gets far enough to start anything.
 */
import { assertEquals, assertMatch, assertThrows } from "./test/assert.ts";
import { ArgsError, parseCli, usageLine } from "./args.ts";
import { REPO_ROOT } from "./stack/state.ts";

const config = {
  allowPositionals: false,
  options: { only: { type: "string" }, quick: { type: "boolean" } },
} as const;

Deno.test("parseCli() parses flags, answers help, and words each mistake in one line", () => {
  const ok = parseCli(["--only", "x", "--quick"], config);
  assertEquals([ok.help, ok.values.only, ok.values.quick], [false, "x", true]);
  assertEquals(parseCli(["--nope", "--help"], config).help, true);
  assertEquals(parseCli(["-h"], config).help, true);
  for (
    const [args, message] of [
      [["--x"], "unknown option --x"],
      [["-x"], "unknown option -x"],
      [["--only"], "option --only needs a value"],
      [["--quick=1"], "option --quick takes no value"],
      [
        ["--only", "-1"],
        'option --only needs a value (one that starts with "-" goes as --only=-…)',
      ],
      [["stray"], 'unexpected argument "stray"'],
    ] as const
  ) {
    const e = assertThrows(() => parseCli([...args], config));
    assertEquals([e instanceof ArgsError, e.message], [true, message], args.join(" "));
  }
  assertEquals(usageLine("unknown option --x"), "error: unknown option --x; see --help");
});

/** Runs `deno <args>` in the checkout; its exit code, stdout and stderr. */
async function deno(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

const COMMANDS: Array<{ name: string; run: string[]; usage: RegExp }> = [
  { name: "bench", run: ["task", "-q", "bench"], usage: /^usage: deno task bench / },
  { name: "soak", run: ["task", "-q", "soak"], usage: /^usage: deno task soak / },
  { name: "test", run: ["task", "-q", "test"], usage: /^usage: deno task test / },
  {
    name: "doctor",
    run: ["task", "-q", "doctor"],
    usage: /^usage: deno task doctor \[--project P\]\n/,
  },
  {
    name: "conveyor",
    run: ["task", "-q", "conveyor"],
    usage: /^Conveyor ops CLI: .*\n\nusage: deno task conveyor /,
  },
  {
    name: "trigger-content-dispatcher",
    run: ["run", "--allow-net", "--allow-env", "scripts/trigger-content-dispatcher.ts"],
    usage: /^usage: deno run --allow-net --allow-env \[--allow-read\] scripts\//,
  },
  {
    name: "bench profile",
    run: ["run", "-A", "tools/bench/profile.ts"],
    usage: /^usage: deno run -A tools\/bench\/profile\.ts /,
  },
];

for (const c of COMMANDS) {
  Deno.test({
    name: `${c.name}: --help prints the usage and exits 0; a bad flag is one line and exit 2`,
    sanitizeResources: false,
    async fn() {
      const [help, bad] = await Promise.all([
        deno([...c.run, "--help"]),
        deno([...c.run, "--no-such-flag"]),
      ]);
      assertEquals([help.code, help.err], [0, ""], help.out + help.err);
      assertMatch(help.out, c.usage);
      assertEquals([bad.code, bad.out, bad.err], [
        2,
        "",
        "error: unknown option --no-such-flag; see --help\n",
      ]);
    },
  });
}
