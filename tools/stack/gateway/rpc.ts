/**
 * `/rest/v1/rpc/<fn>` (reference/postgrest.md §1, §9): arguments from a JSON (or form)
 * body or the query string, overload choice by exact key set, the POST-only single unnamed
 * json/jsonb (text, xml, bytea) parameter that receives the whole body, result shapes,
 * filters/select/order/limit on set results, `count=exact` and `.single()`.
 *
 * The call is `with _src as (select … from json_to_record($1) _b(…), lateral f(a := _b.a …))
 * select <json body>, <row count>, <total>, response GUCs …`: one bind parameter carries
 * all arguments, so the SQL text depends only on (function, key set, result shaping) and is
 * cached and prepared.
 *
 * @module
 */
import { bodyText, checkJsonDepth } from "./body.ts";
import { closest } from "./fuzzy.ts";
import {
  applyGucs,
  contentRange,
  JSON_TYPE,
  makeResponse,
  OBJECT_TYPE,
  type Plan,
  type RestContext,
  singularError,
} from "./context.ts";
import { ApiError, pgrstError } from "./errors.ts";
import { hasShaping } from "./query.ts";
import { contentType } from "./request.ts";
import type { FnInfo, FnParam, SchemaCache } from "./schema_cache.ts";
import {
  ident,
  orderSql,
  Params,
  qualified,
  type Scope,
  selectSql,
  tableScope,
  whereSql,
} from "./sql.ts";
import type { TxResult } from "./tx.ts";

/** The parsed arguments of a call. */
interface CallArgs {
  /** Names the caller supplied (the key set K). */
  keys: string[];
  /** GET: every value per name (repeats, for VARIADIC). POST: a JSON object text. */
  values: Map<string, string[]> | null;
  /** POST JSON: the text passed to json_to_record (an object). */
  jsonText: string;
  /** The whole body, for the single-unnamed-parameter fallback. */
  raw: string | null;
  /** POST: the content type that selects the fallback parameter type. */
  fallbackType: string | null;
}

const FALLBACK_TYPES: Record<string, string[]> = {
  "application/json": ["json", "jsonb"],
  "text/plain": ["text"],
  "text/xml": ["xml"],
  "application/octet-stream": ["bytea"],
};

function invalidJson(details: string | null = null): ApiError {
  return pgrstError(400, "PGRST102", "Empty or invalid json", details);
}

function sameKeys(a: object, b: object): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i]);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function hex(bytes: Uint8Array): string {
  let s = "\\x";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Reads the arguments of a call from the body (POST) or the query string (GET/HEAD). */
function readArgs(ctx: RestContext): CallArgs {
  const post = ctx.method === "POST";
  if (!post) {
    const values = new Map<string, string[]>();
    for (const [k, v] of ctx.query.args) {
      const list = values.get(k);
      if (list) list.push(v);
      else values.set(k, [v]);
    }
    return { keys: [...values.keys()], values, jsonText: "{}", raw: null, fallbackType: null };
  }
  const ct = contentType(ctx.headers);
  const body = ctx.body ?? new Uint8Array();
  if (ct === "application/x-www-form-urlencoded") {
    const obj: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(bodyText(body))) obj[k] = v;
    const keys = ctx.query.columns ?? Object.keys(obj);
    return { keys, values: null, jsonText: JSON.stringify(obj), raw: null, fallbackType: null };
  }
  if (ct === "text/plain" || ct === "text/xml") {
    return { keys: [], values: null, jsonText: "{}", raw: bodyText(body), fallbackType: ct };
  }
  if (ct === "application/octet-stream") {
    return { keys: [], values: null, jsonText: "{}", raw: hex(body), fallbackType: ct };
  }
  // JSON (also for unknown content types, which PostgREST would refuse).
  const text = bodyText(body);
  checkJsonDepth(text);
  let parsed: unknown;
  if (text.trim() === "") parsed = {};
  else {
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw invalidJson(e instanceof Error ? e.message : null);
    }
  }
  let args: Record<string, unknown> = {};
  let jsonText = "{}";
  if (Array.isArray(parsed)) {
    const first = parsed[0];
    if (isObject(first)) {
      if (!parsed.every((x) => isObject(x) && sameKeys(x, first))) {
        throw pgrstError(400, "PGRST102", "All object keys must match");
      }
      args = first;
      jsonText = JSON.stringify(first);
    }
  } else if (isObject(parsed)) {
    args = parsed;
    jsonText = text.trim() === "" ? "{}" : text;
  }
  const keys = ctx.query.columns ?? Object.keys(args);
  return {
    keys,
    values: null,
    jsonText,
    raw: text.trim() === "" ? "{}" : text,
    fallbackType: ct === "application/json" || !FALLBACK_TYPES[ct] ? "application/json" : ct,
  };
}

/** Does `fn` accept exactly the key set `keys`? required ⊆ K ⊆ all parameters. */
function matches(fn: FnInfo, keys: Set<string>): boolean {
  const names = new Set(fn.params.map((p) => p.name));
  for (const k of keys) if (!names.has(k)) return false;
  for (const p of fn.params) if (!p.hasDefault && !keys.has(p.name)) return false;
  return true;
}

function signature(fn: FnInfo): string {
  return `${fn.schema}.${fn.name}(${fn.params.map((p) => `${p.name} => ${p.typname}`).join(", ")})`;
}

function ambiguous(fns: FnInfo[]): ApiError {
  return pgrstError(
    300,
    "PGRST203",
    `Could not choose the best candidate function between: ${fns.map(signature).join(", ")}`,
    null,
    "Try renaming the parameters or the function itself in the database so function overloading can be resolved",
  );
}

/** 404 PGRST202 with PostgREST's message, details and "Perhaps you meant…" hint. */
function notFound(
  cache: SchemaCache,
  schema: string,
  name: string,
  keys: string[],
  post: boolean,
  fallbackType: string | null,
): ApiError {
  const sorted = [...keys].sort();
  const func = `${schema}.${name}`;
  const rawBody = post && fallbackType !== null && fallbackType !== "application/json";
  const params = sorted.length === 0 ? " without parameters" : `(${sorted.join(", ")})`;
  const message = `Could not find the function ${func}${rawBody ? "" : params} in the schema cache`;
  const prms = sorted.length === 0
    ? " without parameters"
    : ` with parameter${sorted.length > 1 ? "s" : ""} ${sorted.join(", ")}`;
  let searched: string;
  if (post && fallbackType === "text/plain") searched = " with a single unnamed text parameter";
  else if (post && fallbackType === "text/xml") searched = " with a single unnamed xml parameter";
  else if (post && fallbackType === "application/octet-stream") {
    searched = " with a single unnamed bytea parameter";
  } else if (post && fallbackType === "application/json") {
    searched = `${prms} or with a single unnamed json/jsonb parameter`;
  } else searched = prms;
  const details =
    `Searched for the function ${func}${searched}, but no matches were found in the schema cache.`;
  let hint: string | null = null;
  const overloads = cache.fns(schema, name);
  if (overloads.length > 0) {
    const k = new Set(keys);
    const score = (f: FnInfo) => {
      const names = new Set(f.params.map((p) => p.name));
      let s = 0;
      for (const n of names) s += k.has(n) ? 0 : 1;
      for (const n of k) s += names.has(n) ? 0 : 1;
      return s;
    };
    const best = [...overloads].sort((a, b) => score(a) - score(b))[0]!;
    hint = `Perhaps you meant to call the function ${func}(${
      best.params.map((p) => p.name).sort().join(", ")
    })`;
  } else {
    const other = closest(name, cache.fnNames(schema));
    if (other) hint = `Perhaps you meant to call the function ${schema}.${other}`;
  }
  return pgrstError(404, "PGRST202", message, details, hint);
}

/** The chosen function and how it is called. */
interface Resolved {
  fn: FnInfo;
  /** The supplied parameters, in declaration order; null: the unnamed fallback. */
  used: FnParam[] | null;
}

function resolve(ctx: RestContext, name: string, args: CallArgs): Resolved {
  const { cache, schema } = ctx;
  const candidates = cache.fns(schema, name);
  const keys = new Set(args.keys);
  const found = candidates.filter((f) => matches(f, keys));
  if (found.length > 1) throw ambiguous(found);
  if (found.length === 1) {
    const fn = found[0]!;
    return { fn, used: fn.params.filter((p) => keys.has(p.name)) };
  }
  if (ctx.method === "POST" && args.fallbackType) {
    const types = FALLBACK_TYPES[args.fallbackType] ?? [];
    const single = candidates.filter((f) =>
      f.params.length === 1 && f.params[0]!.name === "" && types.includes(f.params[0]!.typname)
    );
    if (single.length > 1) throw ambiguous(single);
    if (single.length === 1) return { fn: single[0]!, used: null };
  }
  throw notFound(cache, schema, name, args.keys, ctx.method === "POST", args.fallbackType);
}

/** The JSON object text for json_to_record on GET: strings, arrays for VARIADIC. */
function getArgsJson(used: FnParam[], values: Map<string, string[]>): string {
  const obj: Record<string, unknown> = {};
  for (const p of used) {
    const list = values.get(p.name) ?? [];
    if (p.mode === "v") obj[p.name] = list;
    else {
      const v = list[list.length - 1] ?? null;
      if (v !== null && (p.typname === "json" || p.typname === "jsonb")) {
        try {
          obj[p.name] = JSON.parse(v);
        } catch {
          throw pgrstError(400, "22P02", `invalid input syntax for type ${p.typname}`);
        }
      } else obj[p.name] = v;
    }
  }
  return JSON.stringify(obj);
}

interface CallSql {
  sql: string;
  params: (string | null)[];
}

/** Builds the statement. `$1` is the argument object (or the raw body for the fallback). */
function buildSql(ctx: RestContext, r: Resolved, argText: string | null): CallSql {
  const { fn } = r;
  const q = ctx.query;
  const params = new Params();
  const fnSql = qualified(fn.schema, fn.name);
  let call: string;
  let from: string;
  if (r.used === null) {
    const p = fn.params[0]!;
    call = `${fnSql}((${params.add(argText)}::text)::${p.type})`;
    from = "";
  } else if (r.used.length === 0) {
    call = `${fnSql}()`;
    from = "";
  } else {
    const ph = params.add(argText);
    const cols = r.used.map((p) => `${ident(p.name)} ${p.type}`).join(", ");
    call = `${fnSql}(${
      r.used.map((p) =>
        `${p.mode === "v" ? "variadic " : ""}${ident(p.name)} := _b.${ident(p.name)}`
      )
        .join(", ")
    })`;
    from = `json_to_record((${ph}::text)::json) as _b(${cols})`;
  }
  const join = (src: string) => from ? `${from} cross join lateral ${src}` : src;

  let source: string;
  let item: string; // what json_agg aggregates, over _p
  if (fn.returns === "record") {
    source = `select ${call} as v${from ? ` from ${from}` : ""}`;
    item = "_p.v";
  } else if (fn.returns === "scalar") {
    source = `select _c.v from ${join(`${call} as _c(v)`)}`;
    item = "_p.v";
  } else if (fn.returns === "void") {
    source = `select 1 as v from ${join(`${call} as _c`)}`;
    item = "_p.v";
  } else {
    source = `select _c.* from ${join(`${call} as _c`)}`;
    item = "_p";
  }

  const composite = fn.returns === "composite";
  const scope: Scope = composite
    ? tableScope("_src", fn.name, new Map((fn.columns ?? []).map((c) => [c, { type: "" }])))
    : { qual: "_src", check: null };
  const sel = composite ? selectSql(q.select, scope, params) : `_src.v`;
  const where = composite ? whereSql(q.filters, scope, params) : "";
  const order = composite ? orderSql(q.order, scope, params) : "";
  let paging = "";
  if (fn.retset) {
    const { offset, limit } = pageOf(ctx);
    // Integers from the parser or config.toml: safe as literals, and they keep `$1` alone.
    if (limit !== null) paging += ` limit ${Math.floor(limit)}`;
    if (offset > 0) paging += ` offset ${Math.floor(offset)}`;
  }
  const single = ctx.accept === "object" && fn.retset;
  let body: string;
  if (fn.returns === "void") body = "null::text";
  else if (!fn.retset || single) body = `coalesce((json_agg(${item})->0)::text, 'null')`;
  else body = `coalesce(json_agg(${item}), '[]')::text`;
  const total = ctx.prefer.count ? `(select count(*) from _src${where})` : "null::int8";
  const sql =
    `with _src as (${source}) select ${body} as body, count(*) as n, ${total} as total, ` +
    `current_setting('response.headers', true) as rh, ` +
    `current_setting('response.status', true) as rs ` +
    `from (select ${sel} from _src${where}${order}${paging}) _p`;
  return { sql, params: params.values };
}

/** Offset and limit from `offset`/`limit`, the Range header (GET) and max_rows. */
export function pageOf(ctx: RestContext): { offset: number; limit: number | null } {
  let offset = ctx.query.offset ?? 0;
  let limit: number | null = ctx.query.limit ?? null;
  if (ctx.method === "GET" || ctx.method === "HEAD") {
    const m = /^\s*(\d{1,15})-(\d{0,15})\s*$/.exec(ctx.headers.get("range") ?? "");
    if (m) {
      const from = Number(m[1]);
      const to = m[2] === "" ? null : Number(m[2]);
      // Intersect the header range with limit/offset.
      const qFrom = offset;
      const qTo = limit === null ? null : offset + limit - 1;
      const lo = Math.max(from, qFrom);
      const hiCandidates = [to, qTo].filter((x): x is number => x !== null);
      const hi = hiCandidates.length > 0 ? Math.min(...hiCandidates) : null;
      offset = lo;
      limit = hi === null ? null : Math.max(0, hi - lo + 1);
    }
  }
  const max = ctx.config.maxRows;
  if (max !== null) limit = limit === null ? max : Math.min(limit, max);
  return { offset, limit };
}

/** Per snapshot: the statement text per (function, method class, key set, media, count). */
const planCache = new WeakMap<SchemaCache, Map<string, { sql: string; resolved: Resolved }>>();

/** Plans an RPC call. Throws ApiError (404 PGRST202 when no function matches). */
export function planRpc(ctx: RestContext, name: string): Plan {
  const m = ctx.method;
  if (m !== "GET" && m !== "HEAD" && m !== "POST") {
    throw pgrstError(405, "PGRST101", `Cannot use the ${m} method on RPC`);
  }
  const args = readArgs(ctx);
  const cacheable = !hasShaping(ctx.query) && !ctx.headers.has("range");
  const key = `${ctx.schema}\0${name}\0${m === "POST" ? "P" : "G"}\0${args.fallbackType}\0${
    [...args.keys].sort().join("\0")
  }\0${ctx.accept}\0${ctx.prefer.count ?? ""}`;
  let perCache = planCache.get(ctx.cache);
  if (!perCache) planCache.set(ctx.cache, perCache = new Map());
  let cached = cacheable ? perCache.get(key) : undefined;
  const resolved = cached?.resolved ?? resolve(ctx, name, args);
  const argText = resolved.used === null
    ? args.raw
    : args.values
    ? getArgsJson(resolved.used, args.values)
    : args.jsonText;
  let sql: string;
  let params: (string | null)[];
  if (cached) {
    sql = cached.sql;
    params = resolved.used !== null && resolved.used.length === 0 ? [] : [argText];
  } else {
    ({ sql, params } = buildSql(ctx, resolved, argText));
    if (cacheable && perCache.size < 5000) {
      cached = { sql, resolved };
      perCache.set(key, cached);
    }
  }
  const fn = resolved.fn;
  const readOnly = m !== "POST" || fn.volatility !== "v";
  const single = ctx.accept === "object" && fn.retset;
  return {
    tx: {
      readOnly,
      sql,
      params,
      prepare: cacheable,
      check: single
        ? (res) => {
          const n = Number(res.rows[0]?.n ?? 0);
          return n === 1 ? null : singularError(n);
        }
        : undefined,
    },
    respond: (res) => respondRpc(ctx, fn, res),
  };
}

function respondRpc(ctx: RestContext, fn: FnInfo, res: TxResult | null): Response {
  const row = res?.rows[0];
  const headers = new Headers({
    "Content-Type": ctx.accept === "object" && fn.retset ? OBJECT_TYPE : JSON_TYPE,
  });
  const n = Number(row?.n ?? 0);
  const total = row?.total == null ? null : Number(row.total);
  let status = 200;
  if (fn.returns === "void") status = 204;
  else if (fn.retset) {
    const { offset } = pageOf(ctx);
    headers.set("Content-Range", contentRange(offset, n, total));
    if (total !== null && (offset > 0 || offset + n < total)) status = 206;
  } else headers.set("Content-Range", `0-0/${ctx.prefer.count ? 1 : "*"}`);
  status = applyGucs(row, headers, status);
  return makeResponse(
    status,
    fn.returns === "void" ? null : row?.body ?? "null",
    headers,
    ctx.method === "HEAD",
  );
}
