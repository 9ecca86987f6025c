/**
 * The schema cache: functions, tables, views and columns of the exposed schemas, the API
 * roles' `ALTER ROLE … SET` values and the authenticator's `pgrst.db_pre_request`. Requests
 * only read it; it is reloaded as a whole on `NOTIFY pgrst, 'reload schema'` (or
 * `'reload config'`), on demand, and when a request finds something missing.
 *
 * @module
 */
import type postgres from "postgres";

/** One parameter of a function, as declared. */
export interface FnParam {
  /** "" for an unnamed parameter. */
  name: string;
  /** `format_type()` of the type: valid SQL for a cast or a column definition. */
  type: string;
  /** `pg_type.typname` (short name, e.g. `int4`, `varchar`), for messages. */
  typname: string;
  /** i (in), b (inout), v (variadic). */
  mode: "i" | "b" | "v";
  hasDefault: boolean;
}

/** How a function's result is shaped in the response. */
export type ReturnKind = "void" | "scalar" | "composite" | "record";

/** A function the gateway may call through `/rpc`. */
export interface FnInfo {
  oid: number;
  schema: string;
  name: string;
  /** Input parameters in declaration order. */
  params: FnParam[];
  /** i (immutable), s (stable), v (volatile). */
  volatility: "i" | "s" | "v";
  retset: boolean;
  returns: ReturnKind;
  /** Column names of a composite result (table type, OUT/TABLE parameters). */
  columns: string[] | null;
}

/** A column of a table or view. */
export interface ColumnInfo {
  name: string;
  type: string;
}

/** A table, view, materialized view or foreign table. */
export interface TableInfo {
  schema: string;
  name: string;
  kind: string;
  columns: Map<string, ColumnInfo>;
  /** Primary key columns (empty for views and tables without one). */
  pk: string[];
}

/** One loaded snapshot. Never mutated after load. */
export class SchemaCache {
  constructor(
    readonly schemas: string[],
    readonly functions: Map<string, FnInfo[]>,
    readonly tables: Map<string, TableInfo>,
    /** Settings to apply per impersonated role, in order. */
    readonly roleSettings: Map<string, [string, string][]>,
    /** `pgrst.db_pre_request` of the authenticator role, if set. */
    readonly preRequest: string | undefined,
    readonly loadedAt: number,
    readonly generation: number,
  ) {}

  /** The overloads of `schema.name` (empty if none). */
  fns(schema: string, name: string): FnInfo[] {
    return this.functions.get(`${schema}.${name}`) ?? [];
  }

  table(schema: string, name: string): TableInfo | undefined {
    return this.tables.get(`${schema}.${name}`);
  }

  /** Names of all functions in `schema`. */
  fnNames(schema: string): string[] {
    return [...this.functions.values()].flat().filter((f) => f.schema === schema).map((f) =>
      f.name
    );
  }

  tableNames(schema: string): string[] {
    return [...this.tables.values()].filter((t) => t.schema === schema).map((t) => t.name);
  }

  static empty(schemas: string[]): SchemaCache {
    return new SchemaCache(schemas, new Map(), new Map(), new Map(), undefined, 0, 0);
  }
}

const FUNCTIONS_SQL = `
select p.oid::int8::text as oid, n.nspname as schema, p.proname as name,
  p.provolatile::text as volatility, p.proretset as retset, t.typtype::text as typtype,
  p.prorettype::int8::text as rettype, p.pronargdefaults::int as ndefaults,
  coalesce((
    select json_agg(json_build_object(
      'name', coalesce(a.name, ''), 'type', format_type(a.typ, null), 'typname', ty.typname,
      'mode', coalesce(a.mode, 'i')) order by a.ord)
    from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes::text[],
                p.proargnames) with ordinality as a(typ, mode, name, ord)
    left join pg_type ty on ty.oid = a.typ
  ), '[]')::text as args,
  case when t.typtype = 'c' then (
    select json_agg(att.attname order by att.attnum) from pg_attribute att
    where att.attrelid = t.typrelid and att.attnum > 0 and not att.attisdropped
  )::text end as retcols
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_type t on t.oid = p.prorettype
where n.nspname in (select json_array_elements_text(($1::text)::json)) and p.prokind = 'f'
`;

const TABLES_SQL = `
select n.nspname as schema, c.relname as name, c.relkind::text as kind,
  coalesce((
    select json_agg(json_build_object('name', a.attname,
      'type', format_type(a.atttypid, a.atttypmod)) order by a.attnum)
    from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  ), '[]')::text as columns,
  coalesce((
    select json_agg(a.attname order by array_position(i.indkey::int2[], a.attnum))
    from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
    where i.indrelid = c.oid and i.indisprimary
  ), '[]')::text as pk
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname in (select json_array_elements_text(($1::text)::json))
  and c.relkind in ('r', 'v', 'm', 'f', 'p')
`;

// Settings of the roles the authenticator can switch to, that a non-superuser can set with
// set_config (user-context settings and custom placeholders).
const ROLE_SETTINGS_SQL = `
select r.rolname as role, s.setdatabase <> 0 as dbspecific, s.setconfig as config
from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
where s.setdatabase in (0, (select oid from pg_database where datname = current_database()))
order by dbspecific
`;

const USER_SETTINGS_SQL = `select name from pg_settings where context = 'user'`;

interface FnRow {
  oid: string;
  schema: string;
  name: string;
  volatility: string;
  retset: boolean;
  typtype: string;
  rettype: string;
  ndefaults: number;
  args: string;
  retcols: string | null;
}

const VOID_OID = "2278";
const RECORD_OID = "2249";

function toFnInfo(r: FnRow): FnInfo {
  const all = JSON.parse(r.args) as { name: string; type: string; typname: string; mode: string }[];
  const inputs = all.filter((a) => a.mode === "i" || a.mode === "b" || a.mode === "v");
  const outs = all.filter((a) => a.mode === "o" || a.mode === "b" || a.mode === "t");
  const firstDefault = inputs.length - r.ndefaults;
  const params: FnParam[] = inputs.map((a, i) => ({
    name: a.name,
    type: a.type,
    typname: a.typname,
    mode: a.mode as FnParam["mode"],
    hasDefault: i >= firstDefault,
  }));
  let returns: ReturnKind;
  let columns: string[] | null = null;
  if (r.rettype === VOID_OID) returns = "void";
  else if (outs.length > 0) {
    returns = "composite";
    columns = outs.map((a) => a.name);
  } else if (r.typtype === "c") {
    returns = "composite";
    columns = r.retcols ? JSON.parse(r.retcols) : [];
  } else if (r.rettype === RECORD_OID) returns = "record";
  else returns = "scalar";
  return {
    oid: Number(r.oid),
    schema: r.schema,
    name: r.name,
    params,
    volatility: r.volatility as FnInfo["volatility"],
    retset: r.retset,
    returns,
    columns,
  };
}

/** Reads the catalog for `schemas` over `sql` (a superuser or the authenticator). */
export async function introspect(
  sql: postgres.Sql,
  schemas: string[],
  generation: number,
): Promise<SchemaCache> {
  const [fnRows, tableRows, roleRows, userSettings] = await Promise.all([
    sql.unsafe<FnRow[]>(FUNCTIONS_SQL, [JSON.stringify(schemas)]),
    sql.unsafe<{ schema: string; name: string; kind: string; columns: string; pk: string }[]>(
      TABLES_SQL,
      [JSON.stringify(schemas)],
    ),
    sql.unsafe<{ role: string; config: string | string[] | null }[]>(ROLE_SETTINGS_SQL),
    sql.unsafe<{ name: string }[]>(USER_SETTINGS_SQL),
  ]);
  const functions = new Map<string, FnInfo[]>();
  for (const r of fnRows) {
    const f = toFnInfo(r);
    const key = `${f.schema}.${f.name}`;
    const list = functions.get(key);
    if (list) list.push(f);
    else functions.set(key, [f]);
  }
  const tables = new Map<string, TableInfo>();
  for (const r of tableRows) {
    const cols = JSON.parse(r.columns) as ColumnInfo[];
    tables.set(`${r.schema}.${r.name}`, {
      schema: r.schema,
      name: r.name,
      kind: r.kind,
      columns: new Map(cols.map((c) => [c.name, c])),
      pk: JSON.parse(r.pk),
    });
  }
  const settable = new Set(userSettings.map((s) => s.name));
  const perRole = new Map<string, Map<string, string>>();
  for (const r of roleRows) {
    const entries = parseSetconfig(r.config);
    const m = perRole.get(r.role) ?? new Map<string, string>();
    for (const [k, v] of entries) m.set(k, v);
    perRole.set(r.role, m);
  }
  const preRequest = perRole.get("authenticator")?.get("pgrst.db_pre_request") || undefined;
  const roleSettings = new Map<string, [string, string][]>();
  for (const [role, m] of perRole) {
    const list = [...m].filter(([k]) =>
      settable.has(k) || (k.includes(".") && !k.startsWith("pgrst."))
    );
    if (list.length > 0) roleSettings.set(role, list);
  }
  return new SchemaCache(
    schemas,
    functions,
    tables,
    roleSettings,
    preRequest,
    Date.now(),
    generation,
  );
}

/** `setconfig` comes back as text[] (an array) or, depending on parsers, its literal. */
function parseSetconfig(v: string | string[] | null): [string, string][] {
  if (v === null) return [];
  const items = Array.isArray(v) ? v : parsePgTextArray(v);
  const out: [string, string][] = [];
  for (const item of items) {
    const i = item.indexOf("=");
    if (i > 0) out.push([item.slice(0, i), item.slice(i + 1)]);
  }
  return out;
}

/** Parses a one-dimensional text[] literal such as `{a=1,"b=x y"}`. */
export function parsePgTextArray(s: string): string[] {
  const out: string[] = [];
  if (!s.startsWith("{") || !s.endsWith("}")) return out;
  const body = s.slice(1, -1);
  let i = 0;
  while (i < body.length) {
    let item = "";
    if (body[i] === '"') {
      i++;
      while (i < body.length && body[i] !== '"') {
        if (body[i] === "\\") i++;
        item += body[i] ?? "";
        i++;
      }
      i++; // closing quote
    } else {
      while (i < body.length && body[i] !== ",") item += body[i++];
    }
    out.push(item);
    i++; // comma
  }
  return out;
}

/** Quotes a value as an element of a PostgreSQL array literal. */
export function arrayElem(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** Holds the current snapshot, reloads it, and listens for `NOTIFY pgrst`. */
export class SchemaCacheHolder {
  #current: SchemaCache;
  #reloading: Promise<SchemaCache> | undefined;
  #generation = 0;
  #reloadStartedAt = -Infinity;
  #unlisten: (() => Promise<void>) | undefined;
  #closed = false;

  constructor(
    readonly sql: postgres.Sql,
    readonly schemas: () => string[],
    readonly log: (line: string) => void,
    /** Called before each reload triggered by NOTIFY 'reload config'. */
    readonly onConfigReload?: () => Promise<void>,
  ) {
    this.#current = SchemaCache.empty(schemas());
  }

  get current(): SchemaCache {
    return this.#current;
  }

  /** Has a snapshot been loaded from the database yet? */
  get loaded(): boolean {
    return this.#current.generation > 0;
  }

  /** Re-reads the catalog; concurrent calls share one load. */
  reload(): Promise<SchemaCache> {
    if (this.#reloading) return this.#reloading;
    this.#reloadStartedAt = performance.now();
    const p = (async () => {
      try {
        const c = await introspect(this.sql, this.schemas(), ++this.#generation);
        if (!this.#closed) this.#current = c;
        return c;
      } finally {
        this.#reloading = undefined;
      }
    })();
    this.#reloading = p;
    return p;
  }

  /**
   * Reloads because a request found something missing (a function created without NOTIFY,
   * a migration since the last load). Waits for a load that started after this call, so
   * anything committed before the request is seen; loads start at most once per
   * `minIntervalMs`, concurrent misses share them. Returns whether a newer snapshot than
   * `since` is now current.
   */
  async reloadOnMiss(since: SchemaCache, minIntervalMs = 100): Promise<boolean> {
    const t = performance.now();
    try {
      while (!this.#closed) {
        const inflight = this.#reloading;
        if (inflight) {
          const startedAfter = this.#reloadStartedAt >= t;
          await inflight.catch(() => {});
          if (startedAfter) break;
          continue;
        }
        if (this.#reloadStartedAt >= t) break; // finished between our checks
        const wait = this.#reloadStartedAt + minIntervalMs - performance.now();
        if (wait > 0) {
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
        await this.reload();
        break;
      }
    } catch (e) {
      this.log(`schema cache reload failed: ${(e as Error).message}`);
      return false;
    }
    return this.#current.generation > since.generation;
  }

  /** LISTEN pgrst: 'reload schema' (or an empty payload) and 'reload config' reload. */
  async listen(): Promise<void> {
    let first = true;
    const { unlisten } = await this.sql.listen("pgrst", (payload) => {
      const p = payload.trim();
      if (p === "" || p === "reload schema" || p === "reload config") {
        const pre = p === "reload config" && this.onConfigReload
          ? this.onConfigReload()
          : Promise.resolve();
        pre.then(() => this.reload()).then(
          () => this.log(`schema cache reloaded (${p || "reload schema"})`),
          (e) => this.log(`schema cache reload failed: ${(e as Error).message}`),
        );
      }
    }, () => {
      // (Re)connected: anything may have changed while the listener was away.
      if (first) {
        first = false;
        return;
      }
      this.reload().catch((e) => this.log(`schema cache reload failed: ${e.message}`));
    });
    this.#unlisten = unlisten;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#unlisten?.().catch(() => {});
  }
}
