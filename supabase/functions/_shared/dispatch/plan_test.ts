import { assertEquals } from "../../../../tools/test/assert.ts";
import { readConcurrencyOverrides } from "./overrides.ts";
import { type BacklogRow, effectiveMax, isIdle, planDispatch } from "./plan.ts";
import { assertThrows } from "../../../../tools/test/assert.ts";

function row(target: string, o: Partial<BacklogRow> = {}): BacklogRow {
  return {
    source: "content",
    target,
    queue: "content",
    enabled: true,
    max_concurrency: 2,
    trigger_batch_size: 1,
    ready_count: 0,
    in_flight_count: 0,
    ...o,
  };
}

Deno.test("planDispatch() starts min(slots, trigger_batch_size, ready) workers per target", () => {
  const plan = planDispatch([
    row("research", {
      ready_count: 10,
      max_concurrency: 4,
      trigger_batch_size: 3,
      in_flight_count: 2,
    }),
    row("outline", { ready_count: 1, trigger_batch_size: 5 }),
    row("draft", { ready_count: 5, in_flight_count: 2 }),
    row("qa"),
    row("enrich", { source: "queue", queue: "q_enrich", ready_count: 7, trigger_batch_size: 2 }),
  ], {});
  assertEquals(plan.map((p) => [p.target, p.count, p.maxOverride]), [
    ["research", 2, null],
    ["outline", 1, null],
    ["enrich", 2, null],
  ]);
});

Deno.test("planDispatch() applies env overrides to content stages: a number replaces the table, 0 disables", () => {
  const rows = [
    row("research", { ready_count: 9, max_concurrency: 1, trigger_batch_size: 9 }),
    row("draft", { ready_count: 9, max_concurrency: 5, trigger_batch_size: 9 }),
    row("enrich", { source: "queue", ready_count: 9, max_concurrency: 1, trigger_batch_size: 9 }),
  ];
  const plan = planDispatch(rows, { research: 6, draft: 0, enrich: 9 });
  assertEquals(plan.map((p) => [p.target, p.count, p.maxOverride]), [
    ["research", 6, 6],
    ["enrich", 1, null], // overrides are for content stages only
  ]);
});

Deno.test("planDispatch() skips disabled targets; effectiveMax() is 0 for them", () => {
  const r = row("draft", { ready_count: 3, enabled: false });
  assertEquals(planDispatch([r], { draft: 4 }), []);
  assertEquals(effectiveMax(r, { draft: 4 }), 0);
});

Deno.test("isIdle() is true only with nothing in flight and nothing dispatchable ready", () => {
  assertEquals(isIdle([row("research"), row("qa")], {}), true);
  assertEquals(isIdle([row("research", { in_flight_count: 1 })], {}), false);
  assertEquals(isIdle([row("research", { ready_count: 1 })], {}), false);
  assertEquals(isIdle([row("research", { ready_count: 1, enabled: false })], {}), true);
  assertEquals(isIdle([row("research", { ready_count: 1 })], { research: 0 }), true);
});

Deno.test("readConcurrencyOverrides() reads CONTENT_STAGE_<STAGE>_MAX_CONCURRENCY and names a bad one", () => {
  assertEquals(
    readConcurrencyOverrides({
      CONTENT_STAGE_RESEARCH_MAX_CONCURRENCY: "10",
      CONTENT_STAGE_DRAFT_MAX_CONCURRENCY: "0",
      CONTENT_STAGE_QA_MAX_CONCURRENCY: "",
      OTHER: "x",
    }),
    { research: 10, draft: 0 },
  );
  assertThrows(
    () => readConcurrencyOverrides({ CONTENT_STAGE_OUTLINE_MAX_CONCURRENCY: "two" }),
    "CONTENT_STAGE_OUTLINE_MAX_CONCURRENCY must be a whole number",
  );
  assertThrows(
    () => readConcurrencyOverrides({ CONTENT_STAGE_OUTLINE_MAX_CONCURRENCY: "-1" }),
    "CONTENT_STAGE_OUTLINE_MAX_CONCURRENCY",
  );
});
