/**
 * Fixtures for the multi-tenant suites (issue 7): tenants, tenant tokens signed with the
 * stack's secret, a job kind that calls a rate-limited service, direct enqueue, and a
 * small client for the gateway's `/rest/v1`.
 *
 * @module
 */
import type { Sql } from "postgres";
import { signJwt } from "../tools/stack/keys.ts";

/** A new tenant (its rate limiters are seeded by the tenants trigger); returns its id. */
export async function createTenant(sql: Sql, label = "tenant"): Promise<string> {
  const [row] = await sql`
    insert into public.tenants (name) values (${`${label}-${crypto.randomUUID()}`})
    returning id`;
  return row!.id as string;
}

/** Where a token carries the tenant: top-level claim or `app_metadata.tenant_id`. */
export type TenantClaimPlacement = "top" | "app_metadata";

/**
 * A user token as Supabase Auth issues it, with the tenant claim a custom access token hook
 * adds: `{role:"authenticated", sub, tenant_id, exp, aud:"authenticated"}`.
 */
export function tenantToken(
  tenantId: string | null,
  secret: string,
  opts: { placement?: TenantClaimPlacement; sub?: string; extra?: Record<string, unknown> } = {},
): Promise<string> {
  const claims: Record<string, unknown> = {
    role: "authenticated",
    sub: opts.sub ?? crypto.randomUUID(),
    exp: Math.floor(Date.now() / 1000) + 3600,
    aud: "authenticated",
    ...opts.extra,
  };
  if (tenantId !== null) {
    if (opts.placement === "app_metadata") claims.app_metadata = { tenant_id: tenantId };
    else claims.tenant_id = tenantId;
  }
  return signJwt(claims, secret);
}

/** Registers a job kind whose handler calls `service` (a rate_limiters service) and creates its queues. */
export async function addServiceKind(sql: Sql, service: string | null): Promise<string> {
  const kind = `t_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await sql`
    insert into conveyor.job_kinds (kind, queue_name, service_name, worker_slug, description)
    values (${kind}, ${"q_" + kind}, ${service}, 'test-worker', 'test kind')`;
  await sql`select conveyor.ensure_kind_queues(${kind})`;
  return kind;
}

/** Options of {@link enqueue}. */
export interface EnqueueOptions {
  key?: string;
  payload?: Record<string, unknown>;
  priority?: "fast" | "normal" | "bulk";
  critical?: boolean;
}

/** Enqueues one job for a tenant through conveyor.enqueue (the path every way in uses). */
export async function enqueue(
  sql: Sql,
  tenantId: string,
  kind: string,
  opts: EnqueueOptions = {},
): Promise<{ jobId: string; msgId: number }> {
  const [row] = await sql`
    select job_id, msg_id from conveyor.enqueue(
      p_tenant_id => ${tenantId}, p_kind => ${kind},
      p_payload => ${sql.json((opts.payload ?? {}) as never)},
      p_idempotency_key => ${opts.key ?? crypto.randomUUID()},
      p_priority => ${opts.priority ?? "normal"},
      p_critical => ${opts.critical ?? false})`;
  return { jobId: row!.job_id as string, msgId: Number(row!.msg_id) };
}

/** A job as claim_jobs returns it (the columns the tests use). */
export interface Claimed {
  job_id: string;
  lease_id: string;
  tenant_id: string;
  attempt: number;
  max_attempts: number | null;
}

/** claim_jobs with named arguments (works with every version of its signature). */
export async function claim(
  sql: Sql,
  kind: string,
  worker: string,
  qty: number,
  now?: Date,
): Promise<Claimed[]> {
  const rows = now
    ? await sql`select * from public.claim_jobs(p_kind => ${kind}, p_worker => ${worker},
                                                 p_qty => ${qty}, p_now => ${now})`
    : await sql`select * from public.claim_jobs(p_kind => ${kind}, p_worker => ${worker},
                                                 p_qty => ${qty})`;
  return rows as unknown as Claimed[];
}

/** Settles claimed jobs as completed; returns how many were accepted. */
export async function complete(sql: Sql, worker: string, jobs: Claimed[]): Promise<number> {
  if (jobs.length === 0) return 0;
  const results = jobs.map((j) => ({
    job_id: j.job_id,
    lease_id: j.lease_id,
    status: "completed",
  }));
  const rows = await sql`
    select accepted from public.settle_jobs(${worker}, ${sql.json(results as never)})`;
  return rows.filter((r) => r.accepted).length;
}

/** What a `/rest/v1` call returned. */
export interface RestResult {
  status: number;
  body: unknown;
  headers: Headers;
}

/** Options of {@link rest}. */
export interface RestOptions {
  method?: string;
  /** The bearer token; the apikey is always the anon key, as supabase-js sends it. */
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Calls the gateway's `/rest/v1/<path>` and parses the JSON answer. */
export async function rest(
  apiUrl: string,
  anonKey: string,
  path: string,
  opts: RestOptions = {},
): Promise<RestResult> {
  const headers: Record<string, string> = {
    apikey: anonKey,
    Authorization: `Bearer ${opts.token ?? anonKey}`,
    "Content-Type": "application/json",
    Accept: "application/json",
    ...opts.headers,
  };
  const res = await fetch(`${apiUrl}/rest/v1/${path}`, {
    method: opts.method ?? "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, headers: res.headers };
}
