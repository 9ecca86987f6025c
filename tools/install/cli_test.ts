/**
 * The install commands in-process on a hand-made project (no stack): --dry-run writes
 * nothing, a file in the way stops everything, and the kind `add kind` makes type-checks,
 * lints and passes its own test as generated. tests/install_e2e_test.ts runs the whole story.
 */
import { createHash } from "node:crypto";
import { assertEquals, assertMatch } from "../test/assert.ts";
import { projectDenoConfig } from "../stack/state.ts";
import { main } from "./cli.ts";

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else out[p] = createHash("sha256").update(await Deno.readFile(p)).digest("hex");
    }
  };
  await walk(dir);
  return out;
}

/** A project as `supabase init` leaves it, with one migration of its own. */
async function project(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "conveyor-cli-" });
  await Deno.mkdir(`${dir}/supabase/migrations`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/supabase/config.toml`,
    'project_id = "app"\n\n[api]\nschemas = ["public"]\n',
  );
  await Deno.writeTextFile(`${dir}/supabase/migrations/20260101000000_mine.sql`, "select 1;\n");
  return dir;
}

Deno.test("install --dry-run lists what it would write and writes nothing", async () => {
  const dir = await project();
  try {
    const before = await tree(dir);
    const r = await cli("install", "--project", dir, "--dry-run");
    assertEquals(r.code, 0, r.err);
    assertMatch(r.out, /^Would write Conveyor .* into /);
    assertMatch(r.out, /add {6}supabase\/migrations\/\d{14}_conveyor_0051_queue_job_expose\.sql/);
    assertMatch(r.out, /\(dry run: nothing written\)$/);
    assertEquals(await tree(dir), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install refuses, writing nothing, when a file of someone else's is in the way", async () => {
  const dir = await project();
  try {
    await Deno.mkdir(`${dir}/supabase/functions/enrich-worker`, { recursive: true });
    await Deno.writeTextFile(`${dir}/supabase/functions/enrich-worker/index.ts`, "// mine\n");
    const before = await tree(dir);
    const r = await cli("install", "--project", dir);
    assertEquals([r.code, r.out], [1, ""]);
    assertEquals(r.err.split("\n"), [
      `error: nothing was written to ${dir}:`,
      "  supabase/functions/enrich-worker/index.ts exists and was not written by Conveyor",
    ]);
    assertEquals(await tree(dir), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add kind: the generated kind type-checks, lints and passes its own test", async () => {
  const dir = await project();
  try {
    assertEquals((await cli("install", "--project", dir)).code, 0);
    const r = await cli("add", "kind", "send_invoice", "--project", dir);
    assertEquals(r.code, 0, r.err);
    const fn = `${dir}/supabase/functions/send-invoice-worker`;
    const config = await projectDenoConfig(dir);
    const deno = async (...args: string[]) => {
      const res = await new Deno.Command(Deno.execPath(), {
        args,
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
      assertEquals(res.code, 0, text);
      return text;
    };
    await deno("lint", fn);
    await deno("check", `${fn}/index.ts`);
    const test = await deno("test", "-A", "--config", config!, `${fn}/handler_test.ts`);
    assertMatch(test, /ok \| 1 passed \| 0 failed/);
    const migration = [...Deno.readDirSync(`${dir}/supabase/migrations`)].map((e) => e.name)
      .filter((n) => n.includes("_conveyor_kind_send_invoice.sql"));
    assertEquals(migration.length, 1);
    const lock = JSON.parse(await Deno.readTextFile(`${dir}/supabase/conveyor.lock.json`));
    assertEquals(lock.kinds.send_invoice, {
      migration: `supabase/migrations/${migration[0]}`,
      function: "supabase/functions/send-invoice-worker",
    });
    assertMatch(
      await Deno.readTextFile(`${dir}/supabase/config.toml`),
      /# <<< Conveyor\n\n# Job kind send_invoice[^\n]*\n[^\n]*\n\[functions\.send-invoice-worker\]\nverify_jwt = true\n$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
