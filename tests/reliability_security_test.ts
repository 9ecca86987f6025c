/**
 * Who can reach what, through the gateway (issue 10; DESIGN.md §6 "Anon cannot enqueue; a
 * tenant never sees another tenant's rows"). Every function and every table or view in the
 * exposed schemas is read from the catalog, so what is added later is covered too, and
 * called as `anon`, as `authenticated` with a tenant and as `authenticated` without one:
 * every RPC with all its parameters, every relation with GET, POST, PATCH and DELETE. The
 * answer must be a refusal (401/403, SQLSTATE 42501) except where the allow-lists below say
 * otherwise; a GET that is allowed returns only the caller tenant's rows; and no call
 * changes anything.
 *
 * The catalog side (every SECURITY DEFINER function with search_path = '' and no PUBLIC
 * execute) is `supabase/tests/security_lints.test.sql`, Supabase's lints are `deno task
 * lint:db` (tools/lint/); tenant isolation
 * in depth (filters, headers, forged claims, enqueue limits) is `tenancy_gateway_test.ts`; the
 * queues with "Expose Queues via PostgREST" switched on (pgmq_public, not served by Conveyor)
 * are `supabase/tests/expose_queues.test.sql`.
 */
import { parse as parseToml } from "smol-toml";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { REPO_ROOT } from "../tools/stack/state.ts";
import { createTenant, enqueue, rest, tenantToken } from "./tenant_fixtures.ts";
import { loadKinds, resilientSql } from "./load/fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };

/** RPCs each API role is meant to reach (anything else must be refused). */
const RPC_ALLOW: Record<string, string[]> = {
  anon: [],
  tenant: ["public.queue_job", "public.fn_pgqueuer_enqueue"],
  "no-tenant": ["public.queue_job", "public.fn_pgqueuer_enqueue"],
};

/** Relations `authenticated` may read (rows of its own tenant only); no role writes any. */
const TENANT_READABLE = [
  "public.alert_history",
  "public.critical_jobs",
  "public.dead_letter_jobs",
  "public.enforcement_decisions",
  "public.idempotency_keys",
  "public.job_events",
  "public.jobs",
  "public.outbox_messages",
  "public.queue_metrics",
  "public.queues",
  "public.rate_limiters",
  "public.rate_limits",
  "public.schedules",
  "public.tenants",
];
const READ_ALLOW: Record<string, string[]> = {
  anon: [],
  tenant: TENANT_READABLE,
  "no-tenant": TENANT_READABLE,
};

/** The schemas PostgREST exposes, from supabase/config.toml. */
async function exposedSchemas(): Promise<string[]> {
  const toml = parseToml(await Deno.readTextFile(`${REPO_ROOT}/supabase/config.toml`)) as {
    api?: { schemas?: string[] };
  };
  return toml.api?.schemas ?? ["public"];
}

/** A refusal: the role may not do this at all. */
function refused(r: { status: number; body: unknown }): boolean {
  const code = (r.body as { code?: string } | null)?.code;
  return (r.status === 401 || r.status === 403) && code === "42501";
}

/** The three callers, with their bearer tokens. */
async function callers(tenant: string): Promise<Record<string, string>> {
  return {
    anon: env.anonKey,
    tenant: await tenantToken(tenant, env.jwtSecret),
    "no-tenant": await tenantToken(null, env.jwtSecret),
  };
}

/** Row counts of the tables a wrongly allowed call would change. */
async function snapshot(sql: ReturnType<typeof resilientSql>) {
  const [r] = await sql`
    select (select count(*) from public.jobs)::int as jobs,
           (select count(*) from public.job_events)::int as job_events,
           (select count(*) from public.content_jobs)::int as content_jobs,
           (select count(*) from public.tenants)::int as tenants,
           (select count(*) from public.schedules)::int as schedules,
           (select count(*) from public.dead_letter_jobs)::int as dead_letters,
           (select sum(tokens_available)::float8 from public.rate_limiters) as tokens,
           (select count(*) from public.content_stage_config where enabled)::int as stages`;
  return r!;
}

Deno.test({
  name:
    "security (gateway): anon and authenticated reach only the allow-listed RPCs of the exposed schemas",
  ...opts,
  async fn() {
    await using k = await loadKinds(1);
    const sql = resilientSql();
    try {
      const tenant = await createTenant(sql, "sec");
      await enqueue(sql, tenant, k.kinds[0]!);
      const fns = await sql<
        Array<{ schema: string; name: string; sig: string; args: string[]; unnamed: boolean }>
      >`
        select n.nspname as schema, p.proname as name, p.oid::regprocedure::text as sig,
               coalesce((select array_agg(a.name order by a.ord)
                         from unnest(p.proargnames, coalesce(p.proargmodes,
                                       array_fill('i'::"char", array[p.pronargs])))
                              with ordinality a(name, mode, ord)
                         where a.mode in ('i', 'b', 'v')), '{}') as args,
               p.pronargs = 1 and coalesce(p.proargnames[1], '') = '' as unnamed
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any(${await exposedSchemas()}) and p.prokind = 'f'
          and p.prorettype <> 'trigger'::regtype
          and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass
                          and d.objid = p.oid and d.deptype = 'e')
        order by 1, 2`;
      assert(fns.length > 40, `${fns.length} functions found`);
      const before = await snapshot(sql);
      const reached: Record<string, string[]> = {};
      const who = await callers(tenant);
      for (const [role, token] of Object.entries(who)) {
        reached[role] = [];
        for (const f of fns) {
          const r = await rest(env.apiUrl, env.anonKey, `rpc/${f.name}`, {
            method: "POST",
            token,
            body: f.unnamed ? {} : Object.fromEntries(f.args.map((a) => [a, null])),
            headers: f.schema === "public" ? {} : { "Content-Profile": f.schema },
          });
          assert(r.status !== 404, `${role} ${f.sig}: not found (${JSON.stringify(r.body)})`);
          if (!refused(r)) reached[role]!.push(`${f.schema}.${f.name}`);
        }
      }
      for (const role of Object.keys(who)) {
        assertEquals(
          reached[role]!.sort(),
          [...RPC_ALLOW[role]!].sort(),
          `${role} reaches only its allow-list`,
        );
      }
      assertEquals(await snapshot(sql), before, "no call changed anything");
    } finally {
      await sql.end();
    }
  },
});

Deno.test({
  name:
    "security (gateway): every table and view: anon nothing; authenticated reads its tenant's rows, writes nothing",
  ...opts,
  async fn() {
    await using k = await loadKinds(1);
    const sql = resilientSql();
    try {
      const a = await createTenant(sql, "sec-a");
      const b = await createTenant(sql, "sec-b");
      await enqueue(sql, a, k.kinds[0]!);
      await enqueue(sql, b, k.kinds[0]!);
      const rels = await sql<
        Array<{ schema: string; name: string; col: string; tenant_col: string | null }>
      >`
        select n.nspname as schema, c.relname as name,
               (select a.attname from pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                  and a.attidentity = '' and a.attgenerated = ''
                order by a.attnotnull desc, a.attnum limit 1) as col,
               (select a.attname from pg_attribute a
                where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
                 as tenant_col
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any(${await exposedSchemas()}) and c.relkind in ('r', 'p', 'v', 'm', 'f')
          and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                          and d.objid = c.oid and d.deptype = 'e')
        order by 1, 2`;
      assert(rels.length >= 15, `${rels.length} relations found`);
      const before = await snapshot(sql);
      const who = await callers(a);
      const readable: Record<string, string[]> = {};
      const writable: string[] = [];
      const leaks: string[] = [];
      for (const [role, token] of Object.entries(who)) {
        readable[role] = [];
        for (const r of rels) {
          const rel = `${r.schema}.${r.name}`;
          const profile: Record<string, string> = r.schema === "public"
            ? {}
            : { "Accept-Profile": r.schema, "Content-Profile": r.schema };
          const filter = `${encodeURIComponent(r.col)}=is.null`;
          const get = await rest(env.apiUrl, env.anonKey, `${r.name}?limit=1000`, {
            token,
            headers: profile,
          });
          if (!refused(get)) {
            readable[role]!.push(rel);
            assertEquals(get.status, 200, `${role} GET ${rel}: ${JSON.stringify(get.body)}`);
            const rows = get.body as Array<Record<string, unknown>>;
            const owner = (row: Record<string, unknown>) =>
              r.name === "tenants" ? row.id : r.tenant_col ? row[r.tenant_col] : a;
            for (const row of rows) if (owner(row) !== a) leaks.push(`${role} ${rel}`);
            if (role === "tenant" && r.tenant_col) {
              assert(rows.length > 0 || r.name !== "jobs", `${role} sees its own job`);
            }
          }
          const writes = [
            { method: "POST", path: r.name, body: {} },
            { method: "PATCH", path: `${r.name}?${filter}`, body: { [r.col]: null } },
            { method: "DELETE", path: `${r.name}?${filter}`, body: undefined },
          ];
          for (const w of writes) {
            const res = await rest(env.apiUrl, env.anonKey, w.path, {
              method: w.method,
              token,
              body: w.body,
              headers: { ...profile, Prefer: "return=minimal" },
            });
            if (!refused(res)) writable.push(`${role} ${w.method} ${rel} → ${res.status}`);
          }
        }
      }
      for (const role of Object.keys(who)) {
        assertEquals(readable[role], READ_ALLOW[role], `${role} reads only its allow-list`);
      }
      assertEquals(writable, [], "no API role writes any table directly");
      assertEquals([...new Set(leaks)], [], "a tenant's reads return only its own rows");
      assertEquals(await snapshot(sql), before, "no call changed anything");
    } finally {
      await sql.end();
    }
  },
});
