/**
 * Deno is pinned to one exact version (what CI runs): every place that says how to run it
 * through npx names that version, so a newcomer, an agent and CI run the same Deno.
 */
import { assert, assertEquals } from "./test/assert.ts";
import { REPO_ROOT } from "./stack/state.ts";

/** The pinned version (README.md's two commands, AGENTS.md, .ci/run). */
const PIN = "2.9.6";

Deno.test("every `npx … deno@` in the docs and CI names the pinned version", async () => {
  const files = ["README.md", "AGENTS.md", ".ci/run"];
  for await (const e of Deno.readDir(`${REPO_ROOT}/docs`)) {
    if (e.isFile && e.name.endsWith(".md")) files.push(`docs/${e.name}`);
  }
  const seen: string[] = [];
  for (const f of files) {
    const text = await Deno.readTextFile(`${REPO_ROOT}/${f}`);
    for (const m of text.matchAll(/npx -y deno@([^\s`'")]+)/g)) seen.push(`${f}: deno@${m[1]}`);
  }
  for (const f of ["README.md", "AGENTS.md", ".ci/run"]) {
    assert(seen.some((s) => s.startsWith(`${f}:`)), `${f} says how to run Deno`);
  }
  assertEquals(seen.filter((s) => !s.endsWith(`deno@${PIN}`)), []);
});
