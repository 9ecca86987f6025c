import { assertEquals, assertNotEquals } from "../../../../tools/test/assert.ts";
import { jobNumber, shortId } from "./format.ts";

Deno.test("shortId() is a uuid's last 8 hex digits: jobs of the same millisecond differ", () => {
  // Two time-ordered job ids (conveyor.new_job_id) of the same millisecond: the same first
  // 13 hex digits, random after.
  const a = "019a5c3e-7d21-7b4c-8f3a-3c1d9c2e41d0";
  const b = "019a5c3e-7d21-74aa-a1b2-77e0500c8a1f";
  assertEquals([shortId(a), shortId(b)], ["9c2e41d0", "500c8a1f"]);
  assertNotEquals(shortId(a), shortId(b));
});

Deno.test("jobNumber() shows a queue job as #1234", () => {
  assertEquals([jobNumber(1234), jobNumber("7"), jobNumber(null)], ["#1234", "#7", "#?"]);
});
