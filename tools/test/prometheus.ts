/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for tests: it throws
 * on anything a Prometheus server would reject or that breaks the format's rules (a
 * sample before its family's TYPE, a family split in two, a repeated HELP/TYPE, a bad
 * name, label or value, an unterminated or badly escaped label value).
 *
 * @module
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family. */
export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: number): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new Error(`line ${line}: bad sample value "${text}"`);
  }
  return Number(text);
}

function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1; // after "{"
  while (true) {
    while (text[i] === " ") i++;
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: label without "="`);
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name "${name}"`);
    if (name in labels) throw new Error(`line ${line}: label ${name} repeated`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label ${name} value not quoted`);
    let j = eq + 2;
    let value = "";
    while (true) {
      const c = text[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated value of label ${name}`);
      if (c === "\\") {
        const n = text[j + 1];
        if (n === "\\") value += "\\";
        else if (n === '"') value += '"';
        else if (n === "n") value += "\n";
        else throw new Error(`line ${line}: bad escape \\${n} in label ${name}`);
        j += 2;
        continue;
      }
      if (c === '"') break;
      if (c === "\n") throw new Error(`line ${line}: raw line feed in label ${name}`);
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    while (text[i] === " ") i++;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") {
      throw new Error(`line ${line}: expected "," or "}" after label ${name}`);
    }
  }
}

/** Parses exposition text into families, in order. Throws with the line number on errors. */
export function parseExposition(text: string): MetricFamily[] {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a line feed");
  const families = new Map<string, MetricFamily>();
  const done = new Set<string>();
  let current: MetricFamily | null = null;
  const lines = text.split("\n").slice(0, -1);
  lines.forEach((raw, idx) => {
    const n = idx + 1;
    if (raw.trim() === "") return;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`line ${n}: bad metric name "${name}"`);
      if (done.has(name)) throw new Error(`line ${n}: family ${name} appears twice`);
      let fam = families.get(name);
      if (!fam) {
        if (current) done.add(current.name);
        fam = { name, type: "untyped", help: "", samples: [] };
        families.set(name, fam);
        current = fam;
      } else if (fam !== current) {
        throw new Error(`line ${n}: family ${name} is split`);
      }
      if (kind === "TYPE") {
        if (fam.samples.length) throw new Error(`line ${n}: TYPE of ${name} after its samples`);
        if (!TYPES.has(rest)) throw new Error(`line ${n}: unknown type "${rest}"`);
        fam.type = rest;
      } else {
        fam.help = rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
      }
      return;
    }
    if (raw.startsWith("#")) return; // a comment
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(raw);
    if (!m) throw new Error(`line ${n}: not a sample: ${raw}`);
    const name = m[1]!;
    let rest = m[2]!;
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, n));
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === "") {
      throw new Error(`line ${n}: expected a value (and an optional timestamp)`);
    }
    const value = parseValue(parts[0]!, n);
    const fam = families.get(name);
    if (!fam || fam !== current) {
      throw new Error(
        `line ${n}: sample of ${name} outside its family (no TYPE before it, or split)`,
      );
    }
    fam.samples.push({ name, labels, value });
  });
  return [...families.values()];
}

/** The value of the one sample of `family` whose labels include `match`; throws otherwise. */
export function sampleValue(
  families: readonly MetricFamily[],
  family: string,
  match: Record<string, string>,
): number {
  const fam = families.find((f) => f.name === family);
  if (!fam) throw new Error(`no family ${family}`);
  const hits = fam.samples.filter((s) =>
    Object.entries(match).every(([k, v]) => s.labels[k] === v)
  );
  if (hits.length !== 1) {
    throw new Error(`${hits.length} samples of ${family} match ${JSON.stringify(match)}`);
  }
  return hits[0]!.value;
}
