/**
 * The arithmetic behind `deno task recovery` (issue 17's recovery figures): how the pre-fault
 * rate and the time until a kind is back are read from completions per second, and which
 * HTTP answers count as allowed. No stack needed.
 */
import { assertEquals } from "../../tools/test/assert.ts";
import {
  allowedAnswer,
  answerClass,
  type Completion,
  perSecond,
  recoveryOf,
} from "./recovery_analysis.ts";

/** `rate` completions per second of `kind` from `from` to `to` (ms), evenly spaced. */
function steady(kind: string, rate: number, from: number, to: number): Completion[] {
  const out: Completion[] = [];
  for (let t = from; t < to; t += 1000 / rate) out.push({ kind, at: t });
  return out;
}

const T0 = 1_000_000;
const window = { start: T0, end: T0 + 2_000, preMs: 10_000, postMs: 20_000 };

Deno.test("recoveryOf(): a kind that stalls after the fault is back with its first completion after the gap", () => {
  const done = [
    ...steady("a", 4, T0 - 10_000, T0),
    // Nothing during the fault and for 5.25 s after its end, then a burst and the steady rate.
    ...Array.from({ length: 20 }, () => ({ kind: "a", at: window.end + 5_250 })),
    ...steady("a", 4, window.end + 6_000, window.end + 20_000),
  ];
  const r = recoveryOf(done, "a", window);
  assertEquals(r.preRate, 4);
  assertEquals(r.duringRate, 0);
  assertEquals(r.perSecond.slice(0, 7), [0, 0, 0, 0, 0, 20, 4]);
  // The window from second 3 holds the burst (enough), but its first completion is at 5.25 s.
  assertEquals([r.firstBackS, r.backS], [5.3, 5.3]);
});

Deno.test("recoveryOf(): a kind that never slowed down is back at its first completion", () => {
  const done = steady("a", 2, T0 - 10_000, window.end + 20_000);
  const r = recoveryOf(done, "a", window);
  assertEquals([r.preRate, r.duringRate, r.postRate], [2, 2, 2]);
  assertEquals([r.firstBackS, r.backS], [0, 0]);
});

Deno.test("recoveryOf(): a few jobs finished right after the fault, then a stall, is not back until the stall ends", () => {
  const done = [
    ...steady("a", 4, T0 - 10_000, window.end + 3_000),
    ...steady("a", 4, window.end + 12_000, window.end + 20_000),
  ];
  const r = recoveryOf(done, "a", window);
  assertEquals(r.firstBackS, 0, "the first windows still held the jobs in hand");
  assertEquals(r.backS, 12, "back for good only once the stall ended");
});

Deno.test("recoveryOf(): below half the rate until the end is not back", () => {
  const done = [
    ...steady("a", 4, T0 - 10_000, T0),
    ...steady("a", 1, window.end, window.end + 20_000),
    ...steady("b", 4, T0 - 10_000, window.end + 20_000),
  ];
  assertEquals(recoveryOf(done, "a", window).backS, null);
  assertEquals(recoveryOf(done, "b", window).backS, 0, "each kind on its own");
});

Deno.test("perSecond(): bins from the given instant, other kinds and other times left out", () => {
  const done = [
    { kind: "a", at: 999 },
    { kind: "a", at: 1_000 },
    { kind: "a", at: 1_999 },
    { kind: "b", at: 1_500 },
    { kind: "a", at: 3_000 },
    { kind: "a", at: 4_000 },
  ];
  assertEquals(perSecond(done, "a", 1_000, 3), [2, 0, 1]);
});

Deno.test("answerClass() / allowedAnswer(): 2xx, 4xx and 503 allowed; the rest, and no answer, are not", () => {
  const cases: Array<[number | "network", string, string, boolean]> = [
    [200, "42", "200", true],
    [503, '{"message":"The upstream server is currently unavailable"}', "503", true],
    [400, '{"code":"","details":null,"hint":null,"message":""}', "400 (broken connection)", true],
    [404, '{"code":"PGRST202","message":"Could not find the function"}', "404 PGRST202", true],
    [500, '{"message":"An unexpected error occurred"}', "500", false],
    [502, "", "502", false],
    ["network", "TypeError: fetch failed", "no answer (connection failed)", false],
    ["network", "Connection refused (os error 111)", "no answer (connection refused)", false],
  ];
  for (const [status, text, cls, ok] of cases) {
    assertEquals(answerClass(status, text), cls);
    assertEquals(allowedAnswer(cls), ok, cls);
  }
});
