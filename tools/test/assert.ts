/**
 * Assertions for tests, on top of `node:assert/strict` (Deno std from JSR is not reachable
 * here). Names follow @std/assert so tests read the same.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Deep, strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  assert.deepStrictEqual(actual, expected, msg);
}

/** Deep, strict inequality. */
export function assertNotEquals(actual: unknown, expected: unknown, msg?: string): void {
  assert.notDeepStrictEqual(actual, expected, msg);
}

/** A truthy value. */
export function assert_(value: unknown, msg?: string): asserts value {
  assert.ok(value, msg);
}
export { assert_ as assert };

/** A string matching a pattern. */
export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  assert.match(actual, expected, msg);
}

/** A promise that rejects (optionally with an error whose message includes `includes`). */
export async function assertRejects(
  fn: () => Promise<unknown>,
  includes?: string,
): Promise<Error> {
  let thrown: unknown;
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) throw new assert.AssertionError({ message: "expected a rejection" });
  const err = thrown instanceof Error ? thrown : new Error(String(thrown));
  if (includes !== undefined && !err.message.includes(includes)) {
    throw new assert.AssertionError({
      message: `expected an error including "${includes}", got "${err.message}"`,
    });
  }
  return err;
}

/** A function that throws. */
export function assertThrows(fn: () => unknown, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    if (includes !== undefined && !err.message.includes(includes)) {
      throw new assert.AssertionError({
        message: `expected an error including "${includes}", got "${err.message}"`,
      });
    }
    return err;
  }
  throw new assert.AssertionError({ message: "expected a throw" });
}
