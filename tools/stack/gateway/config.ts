/**
 * The gateway's settings from `supabase/config.toml`, the file the Supabase CLI reads:
 * `[api] schemas / extra_search_path / max_rows` and `[functions.<slug>] verify_jwt`.
 *
 * The pre-request function is normally set the way hosted projects set it,
 * `alter role authenticator set pgrst.db_pre_request = 'schema.fn'` (read by the schema
 * cache). `[api] db_pre_request` is also read, but note that the Supabase CLI decodes
 * config.toml strictly and rejects unknown keys, so a shared config.toml should not carry it.
 *
 * @module
 */
import { parse } from "smol-toml";

/** What the gateway takes from config.toml. */
export interface GatewayConfig {
  /** Exposed schemas; the first is the default profile. */
  schemas: string[];
  /** Appended to the request schema in each request's search_path. */
  extraSearchPath: string[];
  /** Cap on the rows a read returns (PostgREST `db-max-rows`); null: no cap. */
  maxRows: number | null;
  /** `[api] db_pre_request`, when present. */
  dbPreRequest?: string;
  /** `[functions.<slug>]` settings. */
  functions: Record<string, { verifyJwt: boolean }>;
}

/** The Supabase CLI defaults, used for keys (or a whole file) that are absent. */
export const DEFAULT_CONFIG: GatewayConfig = {
  schemas: ["public", "graphql_public"],
  extraSearchPath: ["public", "extensions"],
  maxRows: 1000,
  functions: {},
};

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === "string") ? v as string[] : undefined;
}

/** Parses config.toml text. Throws on invalid TOML. */
export function parseGatewayConfig(text: string): GatewayConfig {
  const doc = parse(text) as Record<string, unknown>;
  const api = (doc.api ?? {}) as Record<string, unknown>;
  const fns = (doc.functions ?? {}) as Record<string, unknown>;
  const functions: GatewayConfig["functions"] = {};
  for (const [slug, v] of Object.entries(fns)) {
    const f = (v ?? {}) as Record<string, unknown>;
    functions[slug] = { verifyJwt: f.verify_jwt !== false };
  }
  const maxRows = typeof api.max_rows === "number" && api.max_rows > 0
    ? Math.floor(api.max_rows)
    : api.max_rows === undefined
    ? DEFAULT_CONFIG.maxRows
    : null;
  const schemas = strings(api.schemas)?.filter((s) => s.length > 0);
  return {
    schemas: schemas && schemas.length > 0 ? schemas : DEFAULT_CONFIG.schemas,
    extraSearchPath: strings(api.extra_search_path) ?? DEFAULT_CONFIG.extraSearchPath,
    maxRows,
    dbPreRequest: typeof api.db_pre_request === "string" && api.db_pre_request
      ? api.db_pre_request
      : undefined,
    functions,
  };
}

/** Reads config.toml; a missing file gives the CLI defaults. */
export async function readGatewayConfig(path: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return structuredClone(DEFAULT_CONFIG);
    throw e;
  }
  return parseGatewayConfig(text);
}
