/**
 * Tables and views under `/rest/v1/<name>` (reference/postgrest.md §4, §5): the subset
 * supabase-js v2 uses. GET/HEAD read with select/filters/order/paging/count; POST inserts
 * (object or array, `columns=`, upsert with `on_conflict` and `resolution=`); PATCH and
 * DELETE need a filter (pg-safeupdate's 21000 otherwise); `return=minimal|representation`
 * and `.single()`.
 *
 * Values only ever travel as bind parameters (the body as one JSON text,
 * `json_populate_recordset(null::t, $1)`); names are checked against the schema cache and
 * quoted.
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
  preferenceApplied,
  type RestContext,
  singularError,
} from "./context.ts";
import { type ApiError, pgrstError } from "./errors.ts";
import { pageOf } from "./rpc.ts";
import type { TableInfo } from "./schema_cache.ts";
import { ident, orderSql, Params, qualified, selectSql, tableScope, whereSql } from "./sql.ts";
import type { TxResult } from "./tx.ts";

/** 404 PGRST205 with a "Perhaps you meant the table…" hint. */
export function tableNotFound(ctx: RestContext, name: string): ApiError {
  const other = closest(name, ctx.cache.tableNames(ctx.schema));
  return pgrstError(
    404,
    "PGRST205",
    `Could not find the table '${ctx.schema}.${name}' in the schema cache`,
    null,
    other ? `Perhaps you meant the table '${ctx.schema}.${other}'` : null,
  );
}

/** Plans a request on a table or view. */
export function planTable(ctx: RestContext, name: string): Plan {
  const table = ctx.cache.table(ctx.schema, name);
  if (!table) throw tableNotFound(ctx, name);
  switch (ctx.method) {
    case "GET":
    case "HEAD":
      return planRead(ctx, table);
    case "POST":
      return planInsert(ctx, table);
    case "PATCH":
      return planUpdate(ctx, table);
    case "DELETE":
      return planDelete(ctx, table);
    default:
      throw pgrstError(405, "PGRST117", `Unsupported HTTP method: ${ctx.method}`);
  }
}

const GUCS = `current_setting('response.headers', true) as rh, ` +
  `current_setting('response.status', true) as rs`;

function scopeOf(t: TableInfo, qual?: string) {
  return tableScope(qual ?? qualified(t.schema, t.name), t.name, t.columns);
}

function bodyExpr(ctx: RestContext): string {
  if (ctx.method === "HEAD") return "null::text";
  return ctx.accept === "object"
    ? `coalesce((json_agg(_p)->0)::text, 'null')`
    : `coalesce(json_agg(_p), '[]')::text`;
}

function singleCheck(ctx: RestContext, n: (res: TxResult) => number) {
  return ctx.accept === "object"
    ? (res: TxResult) => {
      const k = n(res);
      return k === 1 ? null : singularError(k);
    }
    : undefined;
}

function planRead(ctx: RestContext, t: TableInfo): Plan {
  const params = new Params();
  const T = qualified(t.schema, t.name);
  const scope = scopeOf(t);
  const sel = selectSql(ctx.query.select, scope, params);
  const where = whereSql(ctx.query.filters, scope, params);
  const order = orderSql(ctx.query.order, scope, params);
  const { offset, limit } = pageOf(ctx);
  const paging = (limit !== null ? ` limit ${Math.floor(limit)}` : "") +
    (offset > 0 ? ` offset ${Math.floor(offset)}` : "");
  const total = ctx.prefer.count ? `(select count(*) from ${T}${where})` : "null::int8";
  const sql = `select ${bodyExpr(ctx)} as body, count(*) as n, ${total} as total, ${GUCS} ` +
    `from (select ${sel} from ${T}${where}${order}${paging}) _p`;
  return {
    tx: {
      readOnly: true,
      sql,
      params: params.values,
      prepare: false,
      check: singleCheck(ctx, (res) => Number(res.rows[0]?.n ?? 0)),
    },
    respond: (res) => {
      const row = res?.rows[0];
      const n = Number(row?.n ?? 0);
      const totalN = row?.total == null ? null : Number(row.total);
      if (totalN !== null && n === 0 && offset > 0 && offset >= totalN) {
        throw pgrstError(
          416,
          "PGRST103",
          "Requested range not satisfiable",
          `An offset of ${offset} was requested, but there are only ${totalN} rows.`,
        );
      }
      const headers = new Headers({
        "Content-Type": ctx.accept === "object" ? OBJECT_TYPE : JSON_TYPE,
        "Content-Range": contentRange(offset, n, totalN),
      });
      const pa = preferenceApplied([ctx.prefer.count && `count=${ctx.prefer.count}`]);
      if (pa) headers.set("Preference-Applied", pa);
      let status = totalN !== null && (offset > 0 || offset + n < totalN) ? 206 : 200;
      status = applyGucs(row, headers, status);
      return makeResponse(status, row?.body ?? "[]", headers, ctx.method === "HEAD");
    },
  };
}

/** Parses a JSON write body; 400 PGRST102 when it is not JSON. */
function parseBody(ctx: RestContext): { value: unknown; text: string } {
  const text = bodyText(ctx.body);
  if (text.trim() === "") return { value: {}, text: "{}" };
  checkJsonDepth(text);
  try {
    return { value: JSON.parse(text), text };
  } catch (e) {
    throw pgrstError(
      400,
      "PGRST102",
      "Empty or invalid json",
      e instanceof Error ? e.message : null,
    );
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkColumns(t: TableInfo, cols: string[]): void {
  for (const c of cols) {
    if (!t.columns.has(c)) {
      throw pgrstError(
        400,
        "PGRST204",
        `Could not find the '${c}' column of '${t.name}' in the schema cache`,
      );
    }
  }
}

/**
 * The shared tail of writes: a representation over `_w` (the union of the statements'
 * RETURNING rows), or the bare statement(s). Several statements (inserts grouped by key
 * set for `missing=default`) run as data-modifying CTEs of one statement.
 */
function writeSql(ctx: RestContext, t: TableInfo, stmts: string[], params: Params): {
  sql: string;
  representation: boolean;
} {
  const representation = ctx.prefer.return === "representation";
  const T = qualified(t.schema, t.name);
  if (!representation) {
    if (stmts.length === 1) return { sql: stmts[0]!, representation };
    return {
      sql: `with ${stmts.map((st, i) => `_w${i} as (${st})`).join(", ")} select`,
      representation,
    };
  }
  const sel = selectSql(ctx.query.select, scopeOf(t, "_w"), params);
  const ctes = stmts.length === 1
    ? `_w as (${stmts[0]} returning ${T}.*)`
    : stmts.map((st, i) => `_w${i} as (${st} returning ${T}.*)`).join(", ") +
      `, _w as (${stmts.map((_, i) => `select * from _w${i}`).join(" union all ")})`;
  return {
    sql: `with ${ctes} ` +
      `select ${bodyExpr(ctx)} as body, count(*) as n, null::int8 as total, ${GUCS} ` +
      `from (select ${sel} from _w) _p`,
    representation,
  };
}

function writePlan(
  ctx: RestContext,
  sql: string | null,
  params: Params,
  representation: boolean,
  status: { minimal: number; representation: number },
  applied: (string | undefined | false)[],
  /** Rows written when the statement cannot tell (several minimal inserts). */
  rowsHint?: number,
): Plan {
  const rowsOf = (res: TxResult) =>
    representation ? Number(res.rows[0]?.n ?? 0) : rowsHint ?? res.count;
  return {
    tx: sql === null ? null : {
      readOnly: false,
      sql,
      params: params.values,
      prepare: false,
      check: singleCheck(ctx, rowsOf),
    },
    respond: (res) => {
      const headers = new Headers({
        "Content-Type": ctx.accept === "object" ? OBJECT_TYPE : JSON_TYPE,
      });
      const pa = preferenceApplied(applied);
      if (pa) headers.set("Preference-Applied", pa);
      if (!representation) {
        headers.set("Content-Range", "*/*");
        return makeResponse(status.minimal, null, headers, false);
      }
      const row = res?.rows[0];
      const n = res ? rowsOf(res) : 0;
      headers.set("Content-Range", ctx.method === "POST" ? "*/*" : contentRange(0, n, null));
      const st = applyGucs(row, headers, status.representation);
      const empty = ctx.accept === "object" ? "null" : "[]";
      return makeResponse(st, row?.body ?? empty, headers, false);
    },
  };
}

function planInsert(ctx: RestContext, t: TableInfo): Plan {
  const { value } = parseBody(ctx);
  let rows: Record<string, unknown>[];
  if (Array.isArray(value)) {
    if (!value.every(isObject)) throw pgrstError(400, "PGRST102", "All object keys must match");
    rows = value;
  } else if (isObject(value)) rows = [value];
  else throw pgrstError(400, "PGRST102", "Empty or invalid json");
  let cols: string[];
  if (ctx.query.columns) cols = ctx.query.columns;
  else {
    const first = rows[0] ? Object.keys(rows[0]).sort() : [];
    for (const r of rows) {
      const k = Object.keys(r).sort();
      if (k.length !== first.length || k.some((x, i) => x !== first[i])) {
        throw pgrstError(400, "PGRST102", "All object keys must match");
      }
    }
    cols = rows[0] ? Object.keys(rows[0]) : [];
  }
  checkColumns(t, cols);
  const T = qualified(t.schema, t.name);
  const params = new Params();
  const resolution = ctx.prefer.resolution;
  const applied = [
    ctx.prefer.return && `return=${ctx.prefer.return}`,
    resolution && `resolution=${resolution}`,
    ctx.prefer.missing && `missing=${ctx.prefer.missing}`,
  ];
  const representation = ctx.prefer.return === "representation";
  if (rows.length === 0) {
    return writePlan(
      ctx,
      null,
      params,
      representation,
      { minimal: 201, representation: 201 },
      applied,
    );
  }
  // missing=default: rows are inserted per key set, so absent keys get column defaults.
  const groups = new Map<string, { cols: string[]; rows: Record<string, unknown>[] }>();
  for (const r of rows) {
    const present = ctx.prefer.missing === "default"
      ? cols.filter((c) => Object.hasOwn(r, c))
      : cols;
    const key = present.join("\0");
    const grp = groups.get(key);
    if (grp) grp.rows.push(r);
    else groups.set(key, { cols: present, rows: [r] });
  }
  const target = resolution ? ctx.query.onConflict ?? t.pk : [];
  checkColumns(t, target);
  const stmts = [...groups.values()].map((grp) => {
    const ph = params.add(JSON.stringify(grp.rows));
    const colList = grp.cols.map(ident).join(", ");
    let stmt = grp.cols.length > 0
      ? `insert into ${T} (${colList}) select ${colList} ` +
        `from json_populate_recordset(null::${T}, (${ph}::text)::json) _`
      : `insert into ${T} select from json_populate_recordset(null::${T}, (${ph}::text)::json) _`;
    if (resolution) {
      const targetSql = target.length > 0 ? ` (${target.map(ident).join(", ")})` : "";
      stmt += resolution === "ignore-duplicates" || grp.cols.length === 0
        ? ` on conflict${targetSql} do nothing`
        : ` on conflict${targetSql} do update set ${
          grp.cols.map((c) => `${ident(c)} = excluded.${ident(c)}`).join(", ")
        }`;
    }
    return stmt;
  });
  const w = writeSql(ctx, t, stmts, params);
  return writePlan(
    ctx,
    w.sql,
    params,
    w.representation,
    { minimal: 201, representation: 201 },
    applied,
    stmts.length > 1 ? rows.length : undefined,
  );
}

function requireFilter(ctx: RestContext, verb: "UPDATE" | "DELETE"): void {
  if (ctx.query.filters.length === 0) {
    throw pgrstError(400, "21000", `${verb} requires a WHERE clause`);
  }
}

function planUpdate(ctx: RestContext, t: TableInfo): Plan {
  const { value } = parseBody(ctx);
  let obj: Record<string, unknown>;
  if (isObject(value)) obj = value;
  else if (Array.isArray(value) && value.length === 1 && isObject(value[0])) obj = value[0];
  else {
    throw pgrstError(400, "PGRST102", "Empty or invalid json", "PATCH needs a JSON object");
  }
  const cols = ctx.query.columns ?? Object.keys(obj);
  checkColumns(t, cols);
  requireFilter(ctx, "UPDATE");
  const applied = [ctx.prefer.return && `return=${ctx.prefer.return}`];
  const params = new Params();
  const representation = ctx.prefer.return === "representation";
  if (cols.length === 0) {
    return writePlan(
      ctx,
      null,
      params,
      representation,
      { minimal: 204, representation: 200 },
      applied,
    );
  }
  const T = qualified(t.schema, t.name);
  const ph = params.add(JSON.stringify(obj));
  const where = whereSql(ctx.query.filters, scopeOf(t), params);
  const stmt = `update ${T} set ${cols.map((c) => `${ident(c)} = _b.${ident(c)}`).join(", ")} ` +
    `from json_populate_record(null::${T}, (${ph}::text)::json) _b${where}`;
  const w = writeSql(ctx, t, [stmt], params);
  return writePlan(
    ctx,
    w.sql,
    params,
    w.representation,
    { minimal: 204, representation: 200 },
    applied,
  );
}

function planDelete(ctx: RestContext, t: TableInfo): Plan {
  requireFilter(ctx, "DELETE");
  const T = qualified(t.schema, t.name);
  const params = new Params();
  const where = whereSql(ctx.query.filters, scopeOf(t), params);
  const applied = [ctx.prefer.return && `return=${ctx.prefer.return}`];
  const w = writeSql(ctx, t, [`delete from ${T}${where}`], params);
  return writePlan(
    ctx,
    w.sql,
    params,
    w.representation,
    { minimal: 204, representation: 200 },
    applied,
  );
}
