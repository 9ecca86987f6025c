/**
 * meter(): CPU is counted per process tree, exited children included (what a pool's
 * backends that end during a drain leave in the postmaster's cutime), and only for the
 * trees the environment names. Stand-ins: `sh` processes play the postmaster and the
 * gateway; no database is needed (WAL is a counter here).
 */
import { assert, assertEquals } from "../test/assert.ts";
import type { BenchEnv } from "./env.ts";
import { meter } from "./meter.ts";

/** Fields of /proc/<pid>/stat from field 3 on. */
async function stat(pid: number): Promise<number[]> {
  const s = await Deno.readTextFile(`/proc/${pid}/stat`);
  return s.slice(s.lastIndexOf(") ") + 2).split(" ").map(Number);
}

/** A shell that runs a CPU-bound child `loops` times (each exits and is reaped), then waits. */
function busyParent(loops: number): Deno.ChildProcess {
  const burn = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done";
  return new Deno.Command("sh", {
    args: [
      "-c",
      `read go; for k in $(seq ${loops}); do sh -c '${burn}'; done; echo done; exec sleep 60`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
}

Deno.test("meter() counts a tree's exited children and leaves other trees out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "conveyor-meter-" });
  const pg = busyParent(2);
  const gw = busyParent(2);
  const stranger = busyParent(1);
  try {
    await Deno.mkdir(`${dir}/pg`);
    await Deno.writeTextFile(`${dir}/pg/postmaster.pid`, `${pg.pid}\n${dir}/pg\n`);
    let lsn = 1000;
    const env = {
      dir,
      pids: { gateway: gw.pid },
      otherPids: () => ({}),
      wal: () => Promise.resolve(lsn),
    } as unknown as BenchEnv;
    const before = await Promise.all([pg.pid, gw.pid].map(stat));
    const done = await meter(env);
    const go = new TextEncoder().encode("go\n");
    const readers = [pg, gw, stranger].map(async (p) => {
      const w = p.stdin.getWriter();
      await w.write(go);
      w.releaseLock();
      // "done" means every child has exited and been waited for.
      for await (const chunk of p.stdout) {
        if (new TextDecoder().decode(chunk).includes("done")) break;
      }
    });
    await Promise.all(readers);
    lsn += 4000;
    const cost = await done(2);
    const after = await Promise.all([pg.pid, gw.pid].map(stat));
    // What /proc says the trees used: own + reaped children, in ticks.
    const ticks = (b: number[], a: number[]) =>
      (a[11]! + a[12]! + a[13]! + a[14]! - b[11]! - b[12]! - b[13]! - b[14]!) / 100;
    const pgSecs = ticks(before[0]!, after[0]!);
    const gwSecs = ticks(before[1]!, after[1]!);
    assert(pgSecs > 0 && gwSecs > 0, `the children burnt no CPU: ${pgSecs} ${gwSecs}`);
    // Per job (2 jobs), µs; within the ticks' rounding of the two readings.
    const near = (us: number, secs: number) => Math.abs(us * 2 / 1e6 - secs) <= 0.05;
    assert(near(cost.pgUs, pgSecs), `postgres ${cost.pgUs} µs/job vs ${pgSecs} s`);
    assert(near(cost.apiParts.gateway!, gwSecs), `gateway ${cost.apiParts.gateway} vs ${gwSecs}`);
    assertEquals(Object.keys(cost.apiParts), ["gateway"]);
    assertEquals(cost.apiUs, cost.apiParts.gateway);
    assertEquals(cost.walB, 2000);
    assert(cost.clientUs >= 0);
  } finally {
    for (const p of [pg, gw, stranger]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
      await p.stdout.cancel().catch(() => {});
      await p.stdin.close().catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
});
