/**
 * Fair share across tenants (issue 21, docs/fairness.md) with racing claimers: four workers on
 * their own connections claim a kind two tenants share; each tenant's share of what was
 * claimed follows its weight, although one tenant's jobs are all older. (Which tenant each
 * single claim picks, deterministically, is in supabase/tests/fair_share.test.sql.)
 */
import { assert, assertEquals } from "../tools/test/assert.ts";
import { connect, freshDb } from "../tools/test/db.ts";
import { createTenant } from "./tenant_fixtures.ts";

async function shares(weightA: number): Promise<{ a: number; b: number }> {
  await using db = await freshDb();
  const sql = db.sql;
  const kind = "f_race";
  await sql`insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, enabled)
            values (${kind}, ${"q_" + kind}, 'test', 'racing fair share', false)`;
  await sql`select conveyor.ensure_kind_queues(${kind})`;
  await sql`update conveyor.settings set value = 'false' where key = 'push_kicks'`;
  const a = await createTenant(sql, "fair-a");
  const b = await createTenant(sql, "fair-b");
  if (weightA !== 1) await sql`select public.operator_set_tenant_weight(${a}, ${weightA})`;
  // A's 400 jobs first: with oldest-first claims B would get nothing until A's were done.
  for (const t of [a, b]) {
    await sql`select count(*) from public.queue_jobs((
      select jsonb_agg(jsonb_build_object('idempotency_key', 'r-' || g, 'kind', ${kind}::text,
                                          'tenant_id', ${t}::text) order by g)
      from generate_series(1, 400) g))`;
  }
  const counts = { a: 0, b: 0 };
  let left = 400;
  await Promise.all(Array.from({ length: 4 }, async (_, w) => {
    const c = connect(db.url, 1);
    try {
      while (left > 0) {
        const rows = await c<{ tenant_id: string }[]>`
          select tenant_id from public.claim_jobs(${kind}, ${"w" + w}, 10, 300)`;
        for (const r of rows) {
          if (left <= 0) break;
          left--;
          if (r.tenant_id === a) counts.a++;
          else if (r.tenant_id === b) counts.b++;
        }
      }
    } finally {
      await c.end();
    }
  }));
  assertEquals(counts.a + counts.b, 400);
  return counts;
}

Deno.test("fair share: four racing claimers give two tenants of equal weight half each", async () => {
  const { a, b } = await shares(1);
  assert(a >= 160 && a <= 240, `A got ${a} of the first 400, B ${b}`);
});

Deno.test("fair share: weight 3 gives a tenant three quarters while both have ready work", async () => {
  const { a, b } = await shares(3);
  assert(a >= 260 && a <= 340, `A (weight 3) got ${a} of the first 400, B ${b}`);
});
