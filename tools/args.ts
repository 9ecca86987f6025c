/**
 * Command-line flags for the repository's tools (`deno task bench|soak|test|doctor|conveyor`
 * and `scripts/`): `node:util` parseArgs plus the two answers every command gives the same
 * way. `--help` (or `-h`) prints the usage on stdout and exits 0; a bad flag prints ONE line
 * on stderr, `error: unknown option --x; see --help`, and exits 2 — never a stack trace.
 *
 * ```ts
 * const { values } = cliArgs(USAGE, { options: { quick: { type: "boolean" } } });
 * ```
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A bad command line; the message is one line, without the "error:" prefix. */
export class ArgsError extends Error {
  override readonly name = "ArgsError";
}

/** parseArgs' config without `args` (they are passed separately). */
export type ArgsConfig = Omit<ParseArgsConfig, "args">;

/** What {@link parseCli} returns: parseArgs' result for `T`, and whether help was asked for. */
export type ParsedCli<T extends ArgsConfig> =
  & ReturnType<typeof parseArgs<T & { args: string[] }>>
  & {
    help: boolean;
  };

/** The one line a bad command line gets. */
export function usageLine(message: string): string {
  return `error: ${message}; see --help`;
}

/** Turns parseArgs' errors (codes ERR_PARSE_ARGS_*) into short messages. */
function describe(e: unknown): string {
  const { code, message } = e as { code?: string; message?: string };
  const quoted = /'([^' ]+)/.exec(message ?? "")?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument "${quoted}"`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(message ?? "")) return `option ${quoted} needs a value`;
      if (/ambiguous/.test(message ?? "")) {
        return `option ${quoted} needs a value (one that starts with "-" goes as ${quoted}=-…)`;
      }
      if (/does not take an argument/.test(message ?? "")) return `option ${quoted} takes no value`;
      return String(message).split("\n")[0]!;
    default:
      return String(message ?? e).split("\n")[0]!;
  }
}

/**
 * Parses `args` with `config` plus `--help`/`-h`. Throws {@link ArgsError} (one line) for a
 * bad command line. Pure: prints nothing, exits nothing (the tests call it).
 */
export function parseCli<const T extends ArgsConfig>(args: string[], config: T): ParsedCli<T> {
  // --help wins over everything else before a "--" (even an unknown option).
  const end = args.indexOf("--");
  const head = end === -1 ? args : args.slice(0, end);
  if (head.includes("--help") || head.includes("-h")) {
    return { values: {}, positionals: [], help: true } as unknown as ParsedCli<T>;
  }
  try {
    const parsed = parseArgs({ ...config, args });
    return { ...parsed, help: false } as ParsedCli<T>;
  } catch (e) {
    throw new ArgsError(describe(e));
  }
}

/**
 * Like {@link parseCli}, for a program's entry point: prints `usage` and exits 0 on `--help`,
 * prints {@link usageLine} and exits 2 on a bad command line.
 */
export function cliArgs<const T extends ArgsConfig>(
  usage: string,
  config: T,
  args: string[] = Deno.args,
): ParsedCli<T> {
  let parsed: ParsedCli<T>;
  try {
    parsed = parseCli(args, config);
  } catch (e) {
    if (e instanceof ArgsError) usageExit(e.message);
    throw e;
  }
  if (parsed.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return parsed;
}

/** Prints `error: <message>; see --help` on stderr and exits 2 (a bad value of a good flag). */
export function usageExit(message: string): never {
  console.error(usageLine(message));
  Deno.exit(2);
}
