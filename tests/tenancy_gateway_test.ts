/**
 * Multi-tenancy through the gateway with real JWTs (issue 7, seed 004): a tenant's token
 * sees and changes only its own rows in every one of the ten tables; another tenant's id
 * in a filter, a header or a body changes nothing; set_config cannot be reached; anon sees
 * nothing; service_role sees all; queue_job is bound to the token's tenant; idempotency
 * keys and enqueue limits are per tenant; a tenant with rows cannot be deleted.
 *
 * Every test makes its own tenants (unique names) in the stack's `postgres` database,
 * which the gateway serves.
 */
import type { Sql } from "postgres";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { testEnv } from "../tools/test/env.ts";
import { signJwt } from "../tools/stack/keys.ts";
import {
  createTenant,
  enqueue,
  rest,
  type RestOptions,
  type RestResult,
  tenantToken,
} from "./tenant_fixtures.ts";

/** Seed 004's ten tables. */
const TEN_TABLES = [
  "queues",
  "jobs",
  "schedules",
  "rate_limits",
  "critical_jobs",
  "queue_metrics",
  "idempotency_keys",
  "rate_limiters",
  "alert_history",
  "dead_letter_jobs",
] as const;

/** Gives `tenant` at least one row in each of the ten tables; returns its critical job's id. */
async function seedTenantRows(sql: Sql, tenant: string): Promise<string> {
  const { jobId } = await enqueue(sql, tenant, "enrich", { critical: true });
  // A healthy enqueue writes no event (audit 'lean'): one the ledger cannot say.
  await sql`insert into public.job_events (job_id, tenant_id, type, payload)
            values (${jobId}, ${tenant}, 'retry_scheduled', '{"error": "seeded"}')`;
  await sql`insert into public.queues (tenant_id, kind) values (${tenant}, 'enrich')`;
  await sql`
    insert into public.schedules (tenant_id, name, cron, kind)
    values (${tenant}, 'hourly', '0 * * * *', 'enrich')`;
  await sql`
    insert into public.rate_limits (tenant_id, scope, max_requests, window_seconds)
    values (${tenant}, 'enqueue', 1000, 60)`;
  await sql`
    insert into public.queue_metrics (tenant_id, queue_name, depth, in_flight, processed, failed,
                                      interval_sec)
    values (${tenant}, 'q_enrich', 1, 0, 0, 0, 60)`;
  await sql`
    insert into public.alert_history (tenant_id, rule, subject, message)
    values (${tenant}, 'queue_depth', 'q_enrich', 'seeded')`;
  await sql`
    insert into public.dead_letter_jobs (tenant_id, job_id, kind, queue_name, payload, reason,
                                         attempts)
    values (${tenant}, ${jobId}, 'enrich', 'q_enrich', '{}', 'seeded', 3)`;
  return jobId;
}

/** Two tenants with rows everywhere, their tokens, and the gateway client. */
async function setup() {
  const env = testEnv();
  const sql = connect(env.dbUrl);
  const a = await createTenant(sql, "gw-a");
  const b = await createTenant(sql, "gw-b");
  await seedTenantRows(sql, a);
  await seedTenantRows(sql, b);
  const tokenA = await tenantToken(a, env.jwtSecret);
  const tokenB = await tenantToken(b, env.jwtSecret);
  const call = (path: string, opts: RestOptions = {}): Promise<RestResult> =>
    rest(env.apiUrl, env.anonKey, path, opts);
  /** Rows per tenant in a table, as the database owner counts them. */
  const counts = async (table: string) => {
    const rows = await sql.unsafe(
      `select tenant_id::text as t, count(*)::int as n from public.${table}
       where tenant_id = any($1::uuid[]) group by 1`,
      [[a, b]],
    );
    return Object.fromEntries(rows.map((r) => [r.t, r.n]));
  };
  return {
    env,
    sql,
    a,
    b,
    tokenA,
    tokenB,
    call,
    counts,
    async [Symbol.asyncDispose]() {
      await sql.end();
    },
  };
}

/** The tenant ids of the rows a read returned (throws if it was not a list). */
function tenantsOf(res: RestResult): string[] {
  assert(Array.isArray(res.body), `expected rows, got ${res.status} ${JSON.stringify(res.body)}`);
  return [...new Set((res.body as { tenant_id: string }[]).map((r) => r.tenant_id))];
}

Deno.test("tenancy (gateway): tenant A's token sees exactly A's rows in each of the ten tables", async () => {
  await using s = await setup();
  for (const table of TEN_TABLES) {
    const res = await s.call(`${table}?select=tenant_id`, { token: s.tokenA });
    assertEquals(res.status, 200, `${table}: ${JSON.stringify(res.body)}`);
    assertEquals(tenantsOf(res), [s.a], `${table}: only A's rows, and A has some`);
  }
  const tenants = await s.call("tenants?select=id", { token: s.tokenA });
  assertEquals(tenants.body, [{ id: s.a }], "tenants: only its own row");
});

Deno.test("tenancy (gateway): B's id in a filter, a header or the claims' neighbours changes nothing", async () => {
  await using s = await setup();
  const spoof = {
    "x-tenant-id": s.b,
    "tenant-id": s.b,
    "x-app-current-tenant": s.b,
    "x-forwarded-for": "127.0.0.1",
    "x-client-info": `tenant_id=${s.b}`,
  };
  for (const table of TEN_TABLES) {
    const filtered = await s.call(`${table}?select=tenant_id&tenant_id=eq.${s.b}`, {
      token: s.tokenA,
    });
    assertEquals(filtered.body, [], `${table}: a filter on B's id finds nothing`);
    const headed = await s.call(`${table}?select=tenant_id`, { token: s.tokenA, headers: spoof });
    assertEquals(tenantsOf(headed), [s.a], `${table}: headers naming B change nothing`);
  }
  // A token whose other claims name B (user_metadata is user-editable on Supabase).
  const sneaky = await tenantToken(s.a, s.env.jwtSecret, {
    extra: { user_metadata: { tenant_id: s.b }, app_metadata: { tenant_id: s.b } },
  });
  const res = await s.call("jobs?select=tenant_id", { token: sneaky });
  assertEquals(tenantsOf(res), [s.a], "the top-level tenant_id claim decides");
});

Deno.test("tenancy (gateway): tenant A cannot insert, update or delete in any of the ten tables", async () => {
  await using s = await setup();
  const before = new Map<string, Record<string, number>>();
  for (const table of TEN_TABLES) before.set(table, await s.counts(table));
  for (const table of TEN_TABLES) {
    for (const target of [s.a, s.b]) {
      const ins = await s.call(table, {
        method: "POST",
        token: s.tokenA,
        body: { tenant_id: target },
        headers: { Prefer: "return=minimal" },
      });
      assertEquals(ins.status, 403, `${table}: insert for ${target === s.a ? "A" : "B"}`);
      const upd = await s.call(`${table}?tenant_id=eq.${target}`, {
        method: "PATCH",
        token: s.tokenA,
        body: { tenant_id: s.a },
      });
      assertEquals(upd.status, 403, `${table}: update`);
      const del = await s.call(`${table}?tenant_id=eq.${target}`, {
        method: "DELETE",
        token: s.tokenA,
      });
      assertEquals(del.status, 403, `${table}: delete`);
    }
    assertEquals(await s.counts(table), before.get(table), `${table}: no row changed`);
  }
});

Deno.test("tenancy (gateway): anon sees nothing, service_role sees every tenant", async () => {
  await using s = await setup();
  for (const table of [...TEN_TABLES, "tenants"]) {
    const anon = await s.call(`${table}?select=*`);
    assertEquals(anon.status, 401, `${table}: anon is refused`);
    assert(!Array.isArray(anon.body), `${table}: anon got no rows`);
  }
  for (const table of TEN_TABLES) {
    const res = await s.call(`${table}?select=tenant_id&tenant_id=in.(${s.a},${s.b})`, {
      token: s.env.serviceRoleKey,
    });
    assertEquals(tenantsOf(res).sort(), [s.a, s.b].sort(), `${table}: service_role sees both`);
  }
});

Deno.test("tenancy (gateway): tokens without a usable tenant see nothing; forged tokens are refused", async () => {
  await using s = await setup();
  const none = await tenantToken(null, s.env.jwtSecret);
  const garbage = await tenantToken(`${s.a}' or '1'='1`, s.env.jwtSecret);
  for (const token of [none, garbage]) {
    for (const table of TEN_TABLES) {
      const res = await s.call(`${table}?select=tenant_id`, { token });
      assertEquals(res.body, [], `${table}: no tenant, no rows`);
    }
  }
  const inMetadata = await tenantToken(s.b, s.env.jwtSecret, { placement: "app_metadata" });
  assertEquals(tenantsOf(await s.call("jobs?select=tenant_id", { token: inMetadata })), [s.b]);
  const forged = await tenantToken(s.b, "not-the-secret-not-the-secret-not-the-secret");
  const res = await s.call("jobs?select=tenant_id", { token: forged });
  assertEquals(res.status, 401, "a token not signed with the project secret is refused");
  const expired = await signJwt(
    { role: "authenticated", sub: "x", tenant_id: s.b, aud: "authenticated", exp: 1_000_000 },
    s.env.jwtSecret,
  );
  assertEquals((await s.call("jobs", { token: expired })).status, 401, "an expired token too");
});

Deno.test("tenancy (gateway): set_config and the pre-request function cannot be reached", async () => {
  await using s = await setup();
  const body = { setting_name: "app.current_tenant", new_value: s.b, is_local: true };
  const direct = await s.call("rpc/set_config", { method: "POST", token: s.tokenA, body });
  assertEquals(direct.status, 404, "pg_catalog.set_config is not an RPC");
  for (const schema of ["pg_catalog", "conveyor"]) {
    const res = await s.call("rpc/set_config", {
      method: "POST",
      token: s.tokenA,
      body,
      headers: { "Content-Profile": schema },
    });
    assertEquals(res.status, 406, `schema ${schema} is not exposed`);
  }
  const pre = await s.call("rpc/pre_request", {
    method: "POST",
    token: s.tokenA,
    body: {},
    headers: { "Content-Profile": "conveyor" },
  });
  assertEquals(pre.status, 406);
  // Every RPC the tenant may call, with B named every way the body can: nothing of B's.
  const rpcs: [string, Record<string, unknown>][] = [
    ["queue_job", {
      kind: "enrich",
      idempotency_key: crypto.randomUUID(),
      payload: { tenant_id: s.b, "app.current_tenant": s.b },
      headers: { "x-tenant-id": s.b },
    }],
    ["fn_pgqueuer_enqueue", { entrypoint: "enrich", headers: { tenant_id: s.b } }],
  ];
  for (const [fn, args] of rpcs) {
    const res = await s.call(`rpc/${fn}`, { method: "POST", token: s.tokenA, body: args });
    assertEquals(res.status, 200, `${fn}: ${JSON.stringify(res.body)}`);
    const [job] = await s.sql`select tenant_id::text from public.jobs where msg_id = ${res
      .body as number} and tenant_id = any(${[s.a, s.b]}::uuid[])`;
    assertEquals(job?.tenant_id, s.a, `${fn}: the job belongs to A`);
  }
  assertEquals(tenantsOf(await s.call("jobs?select=tenant_id", { token: s.tokenA })), [s.a]);
});

Deno.test("queue_job (gateway): bound to the token's tenant; service_role may name one; keys are per tenant", async () => {
  await using s = await setup();
  const enq = (token: string, body: Record<string, unknown>) =>
    s.call("rpc/queue_job", { method: "POST", token, body });
  const key = `k-${crypto.randomUUID()}`;

  const own = await enq(s.tokenA, { kind: "enrich", idempotency_key: key, payload: { n: 1 } });
  assertEquals(own.status, 200);
  const [ownJob] = await s.sql`
    select tenant_id::text from public.jobs where msg_id = ${own.body as number}
      and idempotency_key = ${key}`;
  assertEquals(ownJob?.tenant_id, s.a, "an authenticated enqueue lands in its own tenant");

  const other = await enq(s.tokenA, {
    kind: "enrich",
    idempotency_key: `k-${crypto.randomUUID()}`,
    tenant_id: s.b,
  });
  assertEquals(other.status, 403, "B's id in the body is refused");
  assertEquals((other.body as { code: string }).code, "42501");
  const explicit = await enq(s.tokenA, {
    kind: "enrich",
    idempotency_key: `k-${crypto.randomUUID()}`,
    tenant_id: s.a,
  });
  assertEquals(explicit.status, 200, "its own id in the body is fine");

  const again = await enq(s.tokenA, { kind: "enrich", idempotency_key: key, payload: { n: 1 } });
  assertEquals(again.body, own.body, "the same key in the same tenant returns the same id");
  const other2 = await enq(s.tokenA, { kind: "enrich", idempotency_key: key, payload: { n: 2 } });
  assertEquals(other2.status, 409, "the same key with another payload is refused");
  assertEquals(
    (other2.body as { message: string }).message,
    `queue_job: idempotency_key ${key} is already used by job ${own.body} with another request`,
  );
  const inB = await enq(s.tokenB, { kind: "enrich", idempotency_key: key });
  assertEquals(inB.status, 200);
  assert(inB.body !== own.body, "the same key in another tenant is another job");
  const [{ n }] = await s.sql`
    select count(*)::int as n from public.jobs where idempotency_key = ${key}` as unknown as [
    { n: number },
  ];
  assertEquals(n, 2, "two tenants, one key, two jobs");

  const svc = await enq(s.env.serviceRoleKey, {
    kind: "enrich",
    idempotency_key: `k-${crypto.randomUUID()}`,
    tenant_id: s.b,
  });
  assertEquals(svc.status, 200);
  const [svcJob] = await s.sql`
    select tenant_id::text from public.jobs where msg_id = ${svc.body as number}
      and tenant_id = ${s.b}`;
  assertEquals(svcJob?.tenant_id, s.b, "service_role may name the tenant");

  const anon = await enq(s.env.anonKey, { kind: "enrich", idempotency_key: "anon" });
  assertEquals(anon.status, 401, "anon cannot enqueue");
  const noTenant = await enq(await tenantToken(null, s.env.jwtSecret), {
    kind: "enrich",
    idempotency_key: "x",
  });
  assertEquals(noTenant.status, 403, "a user without a tenant cannot enqueue");
});

Deno.test("queue_job (gateway): a tenant's enqueue limit holds for its users, not for service_role", async () => {
  await using s = await setup();
  await s.sql`
    update public.rate_limits set max_requests = 3, window_seconds = 3600, request_count = 0,
      window_started_at = now()
    where tenant_id = ${s.a} and scope = 'enqueue'`;
  const enq = (token: string, key: string, tenant?: string) =>
    s.call("rpc/queue_job", {
      method: "POST",
      token,
      body: { kind: "enrich", idempotency_key: key, ...(tenant ? { tenant_id: tenant } : {}) },
    });
  const first = await enq(s.tokenA, "lim-1");
  for (const k of ["lim-2", "lim-3"]) assertEquals((await enq(s.tokenA, k)).status, 200);
  const over = await enq(s.tokenA, "lim-4");
  assertEquals(over.status, 429, JSON.stringify(over.body));
  assertEquals((over.body as { code: string }).code, "PT429");
  const replay = await enq(s.tokenA, "lim-1");
  assertEquals([replay.status, replay.body], [200, first.body], "a replay is not a new job");
  assertEquals((await enq(s.tokenB, "lim-1")).status, 200, "tenant B has its own limit");
  assertEquals(
    (await enq(s.env.serviceRoleKey, "lim-svc", s.a)).status,
    200,
    "service_role is not limited",
  );
  const [{ n }] = await s.sql`
    select count(*)::int as n from public.jobs where tenant_id = ${s.a}
      and idempotency_key like 'lim-%'` as unknown as [{ n: number }];
  assertEquals(n, 4, "the refused call wrote nothing");
});

Deno.test("tenants (gateway): deleting a tenant that has rows is refused with 409 (RESTRICT)", async () => {
  await using s = await setup();
  const res = await s.call(`tenants?id=eq.${s.a}`, {
    method: "DELETE",
    token: s.env.serviceRoleKey,
  });
  assertEquals(res.status, 409);
  assertEquals((res.body as { code: string }).code, "23503");
  const [row] = await s.sql`select count(*)::int as n from public.tenants where id = ${s.a}`;
  assertEquals(row!.n, 1, "the tenant is still there");
  const byTenant = await s.call(`tenants?id=eq.${s.a}`, { method: "DELETE", token: s.tokenA });
  assertEquals(byTenant.status, 403, "a tenant cannot delete itself");
});

Deno.test("dead_letter_jobs (gateway): tenants read their own; list/inspect/redrive are service_role's", async () => {
  await using s = await setup();
  const mine = await s.call("dead_letter_jobs?select=tenant_id,reason", { token: s.tokenA });
  assertEquals(tenantsOf(mine), [s.a]);
  for (
    const [fn, body] of [
      ["list_dead_letter_jobs", { p_tenant_id: s.b }],
      ["inspect_dead_letter_job", { p_id: crypto.randomUUID() }],
      ["redrive_dead_letter_jobs", { p_tenant_id: s.b }],
      ["redrive_dead_job", { p_job_id: crypto.randomUUID() }],
    ] as const
  ) {
    const res = await s.call(`rpc/${fn}`, { method: "POST", token: s.tokenA, body });
    assertEquals(res.status, 403, `${fn} is refused to a tenant`);
  }
  const list = await s.call("rpc/list_dead_letter_jobs", {
    method: "POST",
    token: s.env.serviceRoleKey,
    body: { p_tenant_id: s.b },
  });
  assertEquals(list.status, 200);
  const rows = list.body as { id: string; tenant_id: string; job_id: string }[];
  assertEquals(rows.map((r) => r.tenant_id), [s.b]);
  const inspect = await s.call("rpc/inspect_dead_letter_job", {
    method: "POST",
    token: s.env.serviceRoleKey,
    body: { p_id: rows[0]!.id },
  });
  assertEquals(inspect.status, 200);
  const detail = inspect.body as { job: { id: string }; critical: boolean; events: unknown[] };
  assertEquals([detail.job.id, detail.critical], [rows[0]!.job_id, true]);
  assert(detail.events.length > 0, "the job's events come along");
});
