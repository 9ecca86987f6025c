/**
 * Keeps the benchmark from rotting: runs `deno task bench --quick` (every case, system and
 * code path: cluster, gateway, pg-boss, graphile-worker, every workload, the delivery checks
 * and the report, with small sizes; ~1.5 minutes here). It asserts correctness only (every
 * job processed once, a report written), never a timing. (`--smoke`, the same with a few
 * jobs per case, is there for a faster local check.)
 *
 * The bench starts its own cluster (in `.stack/bench-test`), so this test does not touch
 * the test stack.
 */
import { assert, assertEquals } from "../test/assert.ts";
import { REPO_ROOT } from "../stack/state.ts";
import { runBench } from "./main.ts";

Deno.test({
  name: "bench --quick: every case runs, processes each job exactly once and writes the report",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "conveyor-bench-" });
    try {
      const lines: string[] = [];
      const outcome = await runBench({
        mode: "quick",
        out,
        dir: `${REPO_ROOT}/.stack/bench-test`,
        log: (l) => lines.push(l),
      });
      const broken = outcome.summaries.filter((s) => s.failures.length > 0)
        .map((s) => `${s.case.id}: ${s.failures.join("; ")}`);
      assertEquals(broken, [], lines.join("\n"));
      for (const s of outcome.summaries) {
        assert(s.skipped !== undefined || s.runs.length > 0, `${s.case.id} did not run`);
        for (const r of s.runs) {
          assertEquals(r.delivery.lost, 0, `${s.case.id} lost jobs`);
          assert(Number.isFinite(r.value) && r.value > 0, `${s.case.id} measured nothing`);
          // Issue 16: every case reports its CPU (cluster, API, client) and WAL per job.
          const c = r.cost;
          assert(
            c && [c.pgUs, c.apiUs, c.clientUs, c.walB].every(Number.isFinite) && c.pgUs > 0,
            `${s.case.id} has no CPU/WAL figures: ${JSON.stringify(c)}`,
          );
        }
      }
      const md = await Deno.readTextFile(outcome.markdownPath);
      assert(md.includes("## Ratios") && md.includes("pg-boss") && md.includes("graphile-worker"));
      assert(md.includes("Postgres CPU µs/job") && md.includes("## The HTTP path's own cost"));
      const svg = await Deno.readTextFile(outcome.svgPath);
      assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
    } finally {
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
