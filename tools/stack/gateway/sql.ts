/**
 * SQL text from parsed queries. Identifiers are checked by the caller against the schema
 * cache and always double-quoted here; every value is a bind parameter (`$n`). The only
 * other things written into SQL text are fixed keywords, validated cast type names
 * (`[A-Za-z_][A-Za-z0-9_]*`), integer JSON indexes and `format_type()` output read from
 * the catalog.
 *
 * @module
 */
import { pgrstError } from "./errors.ts";
import type { Condition, Field, FilterExpr, OrderTerm, SelectItem } from "./query.ts";
import { arrayElem } from "./schema_cache.ts";

/** `"name"` with embedded quotes doubled. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `"schema"."name"`. */
export function qualified(schema: string, name: string): string {
  return `${ident(schema)}.${ident(name)}`;
}

/** Collects bind parameters; all values are sent as text. */
export class Params {
  readonly values: (string | null)[] = [];
  constructor(first: (string | null)[] = []) {
    this.values.push(...first);
  }
  add(v: string | null): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

/** Where field names are checked and how they are qualified. */
export interface Scope {
  /** SQL qualifier for columns, e.g. `"public"."t"` or `_src`. */
  qual: string;
  /** Throws when `name` is not a column of the source; null: accept any. */
  check: ((name: string) => void) | null;
  /** The SQL type of a column, if known (full-text search needs it). */
  typeOf?: (name: string) => string | undefined;
}

/** `qual."col"->$1->>$2` for a field. */
export function fieldSql(f: Field, scope: Scope, params: Params): string {
  scope.check?.(f.name);
  let s = `${scope.qual}.${ident(f.name)}`;
  for (const step of f.path) {
    s += step.arrow + (/^-?\d{1,9}$/.test(step.key) ? step.key : `${params.add(step.key)}::text`);
  }
  return f.path.length > 0 ? `(${s})` : s;
}

const CMP: Record<string, string> = {
  eq: "=",
  neq: "<>",
  gt: ">",
  gte: ">=",
  lt: "<",
  lte: "<=",
  like: "like",
  ilike: "ilike",
  match: "~",
  imatch: "~*",
  cs: "@>",
  cd: "<@",
  ov: "&&",
  sl: "<<",
  sr: ">>",
  nxr: "&<",
  nxl: "&>",
  adj: "-|-",
};

const FTS_FN: Record<string, string> = {
  fts: "to_tsquery",
  plfts: "plainto_tsquery",
  phfts: "phraseto_tsquery",
  wfts: "websearch_to_tsquery",
};

function filterSql(f: FilterExpr, scope: Scope, params: Params): string {
  const lhs = fieldSql(f.field, scope, params);
  let expr: string;
  const likeValue = (v: string) =>
    (f.op === "like" || f.op === "ilike") ? v.replace(/\*/g, "%") : v;
  switch (f.op) {
    case "is":
      expr = f.value === "not_null" ? `${lhs} is not null` : `${lhs} is ${f.value}`;
      break;
    case "isdistinct":
      expr = `${lhs} is distinct from ${params.add(f.value)}`;
      break;
    case "in":
      expr = `${lhs} = any(${params.add(`{${(f.list ?? []).map(arrayElem).join(",")}}`)})`;
      break;
    case "fts":
    case "plfts":
    case "phfts":
    case "wfts": {
      const lang = f.lang ? `${params.add(f.lang)}::regconfig, ` : "";
      const isTsv = f.field.path.length === 0 && scope.typeOf?.(f.field.name) === "tsvector";
      const doc = isTsv ? lhs : `to_tsvector(${lang}${lhs})`;
      expr = `${doc} @@ ${FTS_FN[f.op]}(${lang}${params.add(f.value)})`;
      break;
    }
    default: {
      const op = CMP[f.op];
      if (!op) throw pgrstError(400, "PGRST100", `unknown operator ${f.op}`);
      expr = f.modifier
        ? `${lhs} ${op} ${f.modifier}(${params.add(likeValue(f.value))})`
        : `${lhs} ${op} ${params.add(likeValue(f.value))}`;
    }
  }
  return f.negate ? `not (${expr})` : expr;
}

/** SQL for one condition (filter or logic tree). */
export function conditionSql(c: Condition, scope: Scope, params: Params): string {
  if (c.type === "filter") return filterSql(c, scope, params);
  if (c.children.length === 0) return c.negate ? "false" : "true";
  const inner = c.children.map((x) => `(${conditionSql(x, scope, params)})`).join(
    c.op === "and" ? " and " : " or ",
  );
  return c.negate ? `not (${inner})` : `(${inner})`;
}

/** `where …` for ANDed conditions, or "". */
export function whereSql(conds: Condition[], scope: Scope, params: Params): string {
  if (conds.length === 0) return "";
  return " where " + conds.map((c) => conditionSql(c, scope, params)).join(" and ");
}

/** The output name of a select item (alias, last JSON key, or column). */
function outputName(item: Extract<SelectItem, { type: "field" }>): string {
  if (item.alias !== undefined) return item.alias;
  const last = item.field.path[item.field.path.length - 1];
  return last ? last.key : item.field.name;
}

/** The select list; null items means `*`. */
export function selectSql(items: SelectItem[] | null, scope: Scope, params: Params): string {
  if (items === null || items.length === 0) return `${scope.qual}.*`;
  return items.map((item) => {
    if (item.type === "star") return `${scope.qual}.*`;
    let expr = fieldSql(item.field, scope, params);
    if (item.cast) expr = `${expr}::${item.cast}`;
    return `${expr} as ${ident(outputName(item))}`;
  }).join(", ");
}

/** ` order by …` or "". */
export function orderSql(terms: OrderTerm[], scope: Scope, params: Params): string {
  if (terms.length === 0) return "";
  return " order by " +
    terms.map((t) =>
      fieldSql(t.field, scope, params) + (t.dir ? ` ${t.dir}` : "") +
      (t.nulls ? ` nulls ${t.nulls}` : "")
    ).join(", ");
}

/** A scope over a table's known columns; unknown ones are 400 42703 as in PostgreSQL. */
export function tableScope(
  qual: string,
  displayName: string,
  columns: Map<string, { type: string }> | null,
): Scope {
  return {
    qual,
    check: columns
      ? (name) => {
        if (!columns.has(name)) {
          throw pgrstError(400, "42703", `column ${displayName}.${name} does not exist`);
        }
      }
      : null,
    typeOf: (name) => columns?.get(name)?.type,
  };
}
