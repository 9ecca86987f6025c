import { assertEquals, assertRejects } from "../test/assert.ts";
import { serviceRoleKey } from "../stack/keys.ts";
import { resolveTarget } from "./target.ts";

Deno.test("resolveTarget(): SUPABASE_URL needs SUPABASE_SERVICE_ROLE_KEY", async () => {
  const env = (m: Record<string, string>) => (n: string) => m[n];
  await assertRejects(
    () => resolveTarget({}, env({ SUPABASE_URL: "https://abc.supabase.co" })),
    "SUPABASE_SERVICE_ROLE_KEY is not set",
  );
  const t = await resolveTarget(
    {},
    env({ SUPABASE_URL: "https://abc.supabase.co/", SUPABASE_SERVICE_ROLE_KEY: "k" }),
  );
  assertEquals([t.url, t.key, t.local], ["https://abc.supabase.co", "k", false]);
});

Deno.test("resolveTarget(): without SUPABASE_URL, the local stack's port from state.json, else 54321", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const none = await resolveTarget({ stackDir: dir }, () => undefined);
    assertEquals([none.url, none.key, none.local], [
      "http://127.0.0.1:54321",
      await serviceRoleKey(),
      true,
    ]);
    await Deno.writeTextFile(
      `${dir}/state.json`,
      JSON.stringify({ apiPort: 40001, dbPort: 40002, pid: 1 }),
    );
    const live = await resolveTarget({ stackDir: dir }, () => undefined);
    assertEquals(live.url, "http://127.0.0.1:40001");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveTarget(): without read access to state.json, CONVEYOR_API_PORT or 54321, and a note", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/state.json`, JSON.stringify({ apiPort: 40001, pid: 1 }));
    const noRead = () => Promise.resolve(false);
    const t = await resolveTarget({ stackDir: dir }, () => undefined, noRead);
    assertEquals([t.url, t.label], ["http://127.0.0.1:54321", "local stack (default port)"]);
    assertEquals(
      t.note,
      `no read access to ${dir}/state.json, so the port of a stack started with --api-port is unknown here (add --allow-read, or set SUPABASE_URL)`,
    );
    const env = (n: string) => n === "CONVEYOR_API_PORT" ? "40009" : undefined;
    const byEnv = await resolveTarget({ stackDir: dir }, env, noRead);
    assertEquals([byEnv.url, byEnv.label], [
      "http://127.0.0.1:40009",
      "local stack (CONVEYOR_API_PORT)",
    ]);
    const read = await resolveTarget({ stackDir: dir }, env);
    assertEquals([read.url, read.label, read.note], [
      "http://127.0.0.1:40001",
      `local stack (${dir})`,
      undefined,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
