import { assertEquals } from "../test/assert.ts";
import { restartDelay, Service } from "./service.ts";

/** Waits until `logs` holds `n` "restarting in" lines; returns their delays. */
async function restarts(logs: string[], n: number): Promise<number[]> {
  const delays = () =>
    logs.flatMap((l) => {
      const m = /restarting in (\d+) ms/.exec(l);
      return m ? [Number(m[1])] : [];
    });
  const deadline = Date.now() + 30_000;
  while (delays().length < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return delays().slice(0, n);
}

Deno.test("restartDelay: 1 s, doubling, at most 10 s", () => {
  assertEquals([1, 2, 3, 4, 5, 6, 9].map(restartDelay), [
    1_000,
    2_000,
    4_000,
    8_000,
    10_000,
    10_000,
    10_000,
  ]);
});

Deno.test("Service: a process that keeps dying at once backs off 1 s, 2 s …", async () => {
  const logs: string[] = [];
  const svc = new Service(
    { name: "flaky", cmd: "sh", args: ["-c", "echo up; exit 3"], stableMs: 60_000 },
    (l) => logs.push(l),
  );
  svc.start();
  try {
    assertEquals(await restarts(logs, 2), [1_000, 2_000]);
    assertEquals(logs.includes("[flaky] exited (code 3); restarting in 1000 ms"), true);
    assertEquals(logs.includes("[flaky] up"), true);
  } finally {
    await svc.stop();
  }
});

Deno.test("Service: after a healthy period (stableMs of uptime) the backoff starts again at 1 s", async () => {
  const logs: string[] = [];
  // Each run lasts 0.4 s, longer than stableMs: every exit is the first of a new streak.
  const svc = new Service(
    { name: "stable", cmd: "sh", args: ["-c", "sleep 0.4; exit 1"], stableMs: 200 },
    (l) => logs.push(l),
  );
  svc.start();
  try {
    assertEquals(await restarts(logs, 3), [1_000, 1_000, 1_000]);
  } finally {
    await svc.stop();
  }
});

Deno.test("Service: health probe answers from the given URL", async () => {
  const ok = Deno.serve({ port: 0, onListen: () => {} }, () => new Response("ok"));
  const port = (ok.addr as Deno.NetAddr).port;
  const svc = new Service(
    { name: "probe", cmd: "sleep", args: ["30"], health: `http://127.0.0.1:${port}/` },
    () => {},
  );
  svc.start();
  try {
    assertEquals(await svc.healthy(), true);
    await ok.shutdown();
    assertEquals(await svc.healthy(500), false);
  } finally {
    await svc.stop();
  }
});
