/**
 * The `/rest/v1` query-string grammar (reference/postgrest.md §4): `select`, filters
 * (`col=[not.]op[(mod)].value`), logic trees (`or=(…)`, `and=(…)`, nested), `order`,
 * `limit`/`offset`, `columns`, `on_conflict`. Parsing only: no SQL here (see sql.ts).
 *
 * @module
 */
import { pgrstError } from "./errors.ts";

/** One `->` / `->>` step of a JSON path. */
export interface JsonStep {
  arrow: "->" | "->>";
  key: string;
}

/** A column, optionally followed by a JSON path (`data->a->>b`). */
export interface Field {
  name: string;
  path: JsonStep[];
}

export const OPERATORS = [
  "eq",
  "neq",
  "gt",
  "gte",
  "lt",
  "lte",
  "like",
  "ilike",
  "match",
  "imatch",
  "is",
  "isdistinct",
  "in",
  "cs",
  "cd",
  "ov",
  "sl",
  "sr",
  "nxr",
  "nxl",
  "adj",
  "fts",
  "plfts",
  "phfts",
  "wfts",
] as const;
export type Operator = typeof OPERATORS[number];

const FTS_OPS = new Set<string>(["fts", "plfts", "phfts", "wfts"]);
const QUANTIFIABLE = new Set<string>([
  "eq",
  "neq",
  "gt",
  "gte",
  "lt",
  "lte",
  "like",
  "ilike",
  "match",
  "imatch",
]);
const IS_VALUES = new Set(["null", "not_null", "true", "false", "unknown"]);

/** `field [not.]op[(modifier)].value`. */
export interface FilterExpr {
  type: "filter";
  field: Field;
  negate: boolean;
  op: Operator;
  /** `like(any).{a,b}` / `eq(all).{…}`. */
  modifier?: "any" | "all";
  /** `fts(english).word`. */
  lang?: string;
  /** The value as text (for `in`, see `list`). */
  value: string;
  /** The items of `in.(…)`. */
  list?: string[];
}

/** `and(…)` / `or(…)`, possibly negated. */
export interface LogicExpr {
  type: "logic";
  op: "and" | "or";
  negate: boolean;
  children: Condition[];
}

export type Condition = FilterExpr | LogicExpr;

export type SelectItem =
  | { type: "star" }
  | { type: "field"; field: Field; alias?: string; cast?: string };

export interface OrderTerm {
  field: Field;
  dir?: "asc" | "desc";
  nulls?: "first" | "last";
}

/** A parsed query string. */
export interface ParsedQuery {
  /** null: `select` absent (all columns). */
  select: SelectItem[] | null;
  /** ANDed conditions (filters and logic trees). */
  filters: Condition[];
  order: OrderTerm[];
  limit?: number;
  offset?: number;
  columns?: string[];
  onConflict?: string[];
  /** Parameters that are neither reserved nor filters, in order (GET /rpc arguments). */
  args: [string, string][];
}

/** 400 PGRST100, PostgREST's query-string parse error. */
export function parseError(message: string, details: string | null = null) {
  return pgrstError(400, "PGRST100", message, details);
}

const MAX_DEPTH = 64;
const RESERVED = new Set([
  "select",
  "order",
  "limit",
  "offset",
  "columns",
  "on_conflict",
  "and",
  "or",
  "not.and",
  "not.or",
  "apikey",
]);

/** Is `name` a reserved query parameter (not a filter or argument)? */
export function isReserved(name: string): boolean {
  return RESERVED.has(name);
}

/** Parses a column with an optional JSON path: `name`, `"quoted name"`, `data->a->>b`. */
export function parseField(s: string): Field {
  let rest = s;
  let name: string;
  if (rest.startsWith('"')) {
    const end = rest.indexOf('"', 1);
    if (end < 0) throw parseError(`failed to parse field (${s})`, "unterminated quoted name");
    name = rest.slice(1, end);
    rest = rest.slice(end + 1);
  } else {
    const i = rest.indexOf("->");
    name = i < 0 ? rest : rest.slice(0, i);
    rest = i < 0 ? "" : rest.slice(i);
  }
  if (name === "") throw parseError(`failed to parse field (${s})`, "empty column name");
  const path: JsonStep[] = [];
  while (rest.length > 0) {
    const arrow = rest.startsWith("->>") ? "->>" : rest.startsWith("->") ? "->" : null;
    if (!arrow) throw parseError(`failed to parse field (${s})`, `unexpected "${rest}"`);
    rest = rest.slice(arrow.length);
    const next = rest.indexOf("->");
    let key = next < 0 ? rest : rest.slice(0, next);
    rest = next < 0 ? "" : rest.slice(next);
    if (key.startsWith("'") && key.endsWith("'") && key.length >= 2) key = key.slice(1, -1);
    if (key === "") throw parseError(`failed to parse field (${s})`, "empty JSON key");
    path.push({ arrow, key });
  }
  checkText(name);
  return { name, path };
}

/** Identifiers and aliases end up in SQL text (quoted): refuse NUL, which would cut it. */
function checkText(s: string): void {
  if (s.includes("\0")) throw parseError("failed to parse query", "NUL character in a name");
}

/** Splits on `sep` at depth 0, outside double quotes (backslash escapes inside quotes). */
export function splitTopLevel(s: string, sep = ","): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      cur += c;
      if (c === "\\" && i + 1 < s.length) cur += s[++i];
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    if (c === sep && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Removes surrounding double quotes and backslash escapes: `"a,\"b"` → `a,"b`. */
function unquote(s: string): string {
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) {
    return s.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  return s;
}

/** Parses `in.(…)` items. */
function parseList(v: string, whole: string): string[] {
  if (!v.startsWith("(") || !v.endsWith(")")) {
    throw parseError(`failed to parse filter (${whole})`, 'expecting "(" list ")"');
  }
  const inner = v.slice(1, -1);
  if (inner === "") return [];
  return splitTopLevel(inner).map(unquote);
}

/**
 * Parses a filter value `[not.]op[(mod)].value` for `field`. Returns null when the text is
 * not shaped like a filter (used to tell GET /rpc arguments from result filters).
 */
export function tryParseFilter(
  field: Field,
  text: string,
  inLogic = false,
): FilterExpr | null | Error {
  let s = text;
  let negate = false;
  if (s.startsWith("not.")) {
    negate = true;
    s = s.slice(4);
  }
  const m = /^([a-z]+)(?:\(([^)]*)\))?\.([\s\S]*)$/.exec(s);
  if (!m || !(OPERATORS as readonly string[]).includes(m[1]!)) return null;
  const op = m[1] as Operator;
  const arg = m[2];
  let value = m[3]!;
  const f: FilterExpr = { type: "filter", field, negate, op, value };
  if (arg !== undefined) {
    if (FTS_OPS.has(op)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) {
        return parseError(`failed to parse filter (${text})`, "invalid text search language");
      }
      f.lang = arg;
    } else if ((arg === "any" || arg === "all") && QUANTIFIABLE.has(op)) f.modifier = arg;
    else return parseError(`failed to parse filter (${text})`, `unexpected "(${arg})"`);
  }
  if (op === "in") {
    try {
      f.list = parseList(value, text);
    } catch (e) {
      return e as Error;
    }
  } else if (op === "is") {
    value = value.toLowerCase();
    if (!IS_VALUES.has(value)) {
      return parseError(
        `failed to parse filter (${text})`,
        'expecting "null", "not_null", "true", "false" or "unknown"',
      );
    }
    f.value = value;
  } else if (inLogic) f.value = unquote(value);
  return f;
}

function parseFilter(field: Field, text: string, inLogic = false): FilterExpr {
  const f = tryParseFilter(field, text, inLogic);
  if (f instanceof Error) throw f;
  if (!f) {
    throw parseError(
      `failed to parse filter (${text})`,
      `unknown operator or missing "." in "${text}"`,
    );
  }
  return f;
}

/** Parses a logic tree body `(a.eq.1,or(b.gt.2,c.is.null))`. */
export function parseLogic(op: "and" | "or", negate: boolean, text: string, depth = 0): LogicExpr {
  if (depth > MAX_DEPTH) throw parseError("failed to parse logic tree", "nesting is too deep");
  if (!text.startsWith("(") || !text.endsWith(")")) {
    throw parseError(`failed to parse logic tree (${text})`, 'expecting "(" … ")"');
  }
  const inner = text.slice(1, -1);
  const children: Condition[] = [];
  for (const raw of splitTopLevel(inner)) {
    const item = raw;
    if (item === "") throw parseError(`failed to parse logic tree (${text})`, "empty condition");
    const lm = /^(not\.)?(and|or)(\([\s\S]*\))$/.exec(item);
    if (lm) {
      children.push(parseLogic(lm[2] as "and" | "or", !!lm[1], lm[3]!, depth + 1));
      continue;
    }
    // field.filter: the field ends at the first "." outside quotes.
    let end: number;
    if (item.startsWith('"')) {
      const q = item.indexOf('"', 1);
      end = q < 0 ? -1 : item.indexOf(".", q);
    } else end = item.indexOf(".");
    if (end <= 0) {
      throw parseError(`failed to parse logic tree (${text})`, `unexpected "${item}"`);
    }
    children.push(parseFilter(parseField(item.slice(0, end)), item.slice(end + 1), true));
  }
  return { type: "logic", op, negate, children };
}

/** Parses `select=a,alias:b,c::text,data->>k,*`. */
export function parseSelect(text: string): SelectItem[] {
  const items: SelectItem[] = [];
  for (const raw of splitTopLevel(text)) {
    const item = raw.trim();
    if (item === "") continue;
    if (item === "*") {
      items.push({ type: "star" });
      continue;
    }
    if (item.includes("(") || item.startsWith("...")) {
      throw pgrstError(
        400,
        "PGRST100",
        `"failed to parse select parameter (${text})"`,
        "Resource embedding, spreads and aggregates are not supported by the local gateway",
        "Select plain columns, or call a function or view that returns the shape you need.",
      );
    }
    let rest = item;
    let alias: string | undefined;
    const am = /^("(?:[^"\\]|\\.)*"|[^":]+):(?!:)/.exec(rest);
    if (am) {
      alias = unquote(am[1]!);
      rest = rest.slice(am[0].length);
    }
    let cast: string | undefined;
    const ci = rest.lastIndexOf("::");
    if (ci > 0) {
      cast = rest.slice(ci + 2);
      rest = rest.slice(0, ci);
      if (!/^[A-Za-z_][A-Za-z0-9_]*(\[\])?$/.test(cast)) {
        throw parseError(`failed to parse select parameter (${text})`, `invalid cast "${cast}"`);
      }
    }
    if (alias !== undefined) {
      checkText(alias);
      if (alias === "") throw parseError(`failed to parse select parameter (${text})`);
    }
    items.push({ type: "field", field: parseField(rest), alias, cast });
  }
  return items;
}

/** Parses `order=a.desc.nullslast,b`. */
export function parseOrder(text: string): OrderTerm[] {
  const terms: OrderTerm[] = [];
  for (const raw of splitTopLevel(text)) {
    if (raw === "") continue;
    const parts = raw.split(".");
    const t: Partial<OrderTerm> = {};
    while (parts.length > 1) {
      const last = parts[parts.length - 1]!;
      if ((last === "asc" || last === "desc") && !t.dir) t.dir = last;
      else if ((last === "nullsfirst" || last === "nullslast") && !t.nulls) {
        t.nulls = last === "nullsfirst" ? "first" : "last";
      } else break;
      parts.pop();
    }
    terms.push({ field: parseField(parts.join(".")), dir: t.dir, nulls: t.nulls });
  }
  return terms;
}

/** Parses `columns=a,"b c"` / `on_conflict=a,b`. */
export function parseNameList(text: string): string[] {
  return splitTopLevel(text).map((s) => unquote(s.trim())).filter((s) => s !== "").map((s) => {
    checkText(s);
    return s;
  });
}

function parseCount(name: string, v: string): number {
  if (!/^\d{1,15}$/.test(v)) {
    throw parseError(
      `failed to parse ${name} parameter (${v})`,
      "expecting a non-negative integer",
    );
  }
  return Number(v);
}

/**
 * Parses a query string. `rpcArgs`: parameters that are not filters become `args`
 * (GET /rpc); otherwise they are errors.
 */
export function parseQuery(params: URLSearchParams, rpcArgs: boolean): ParsedQuery {
  const q: ParsedQuery = { select: null, filters: [], order: [], args: [] };
  for (const [key, value] of params) {
    switch (key) {
      case "apikey":
        continue;
      case "select":
        q.select = parseSelect(value);
        continue;
      case "order":
        q.order = parseOrder(value);
        continue;
      case "limit":
        q.limit = parseCount("limit", value);
        continue;
      case "offset":
        q.offset = parseCount("offset", value);
        continue;
      case "columns":
        q.columns = parseNameList(value);
        continue;
      case "on_conflict":
        q.onConflict = parseNameList(value);
        continue;
      case "and":
      case "or":
      case "not.and":
      case "not.or": {
        const negate = key.startsWith("not.");
        q.filters.push(
          parseLogic(key.replace("not.", "") as "and" | "or", negate, value),
        );
        continue;
      }
    }
    if (/^[^"]*\.(and|or|not\.and|not\.or|order|limit|offset|select)$/.test(key)) {
      throw pgrstError(
        400,
        "PGRST100",
        `"failed to parse filter (${key})"`,
        "Filters on embedded resources are not supported by the local gateway",
      );
    }
    let field: Field;
    try {
      field = parseField(key);
    } catch (e) {
      if (rpcArgs) {
        q.args.push([key, value]);
        continue;
      }
      throw e;
    }
    const f = tryParseFilter(field, value);
    if (f instanceof Error) {
      if (rpcArgs) q.args.push([key, value]);
      else throw f;
    } else if (f === null) {
      if (rpcArgs) q.args.push([key, value]);
      else {
        throw parseError(
          `"failed to parse filter (${value})" (line 1, column 1)`,
          `unknown operator or missing "." in "${value}"`,
        );
      }
    } else q.filters.push(f);
  }
  return q;
}

/** Does the query shape the result (select, filters, order, paging)? */
export function hasShaping(q: ParsedQuery): boolean {
  return q.select !== null || q.filters.length > 0 || q.order.length > 0 ||
    q.limit !== undefined || q.offset !== undefined;
}
