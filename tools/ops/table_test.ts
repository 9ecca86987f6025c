import { assertEquals } from "../test/assert.ts";
import { renderTable } from "./table.ts";

Deno.test("renderTable() pads columns, right-aligns numbers and cuts long text", () => {
  const lines = renderTable<{ name: string; n: number; note: string }>([
    { header: "NAME", value: (r) => r.name },
    { header: "N", value: (r) => r.n },
    { header: "NOTE", value: (r) => r.note, max: 8 },
  ], [
    { name: "a", n: 1234, note: "short" },
    { name: "longer", n: 5, note: "much\nlonger text" },
  ]);
  assertEquals(lines, [
    "NAME        N  NOTE",
    "a       1,234  short",
    "longer      5  much lo…",
  ]);
});
