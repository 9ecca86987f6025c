import { assertEquals } from "../../test/assert.ts";
import { errorResponse, fromPgError, statusForSqlState } from "./errors.ts";

Deno.test("SQLSTATE → HTTP status as PostgREST maps it", () => {
  const cases: [string, string, boolean, number][] = [
    ["P0001", "boom", false, 400],
    ["P0004", "assert", false, 500],
    ["23505", "dup", false, 409],
    ["23503", "fk", false, 409],
    ["23502", "not null", false, 400],
    ["42501", "permission denied", true, 401],
    ["42501", "permission denied", false, 403],
    ["22P02", "bad input", false, 400],
    ["42883", "function x does not exist", false, 404],
    ["42P01", "relation x does not exist", false, 404],
    ["25006", "read-only", false, 405],
    ["25P02", "aborted", false, 500],
    ["57014", "statement timeout", false, 500],
    ["57P01", "admin shutdown", false, 503],
    ["08006", "connection failure", false, 503],
    ["53300", "too many connections", false, 503],
    ["53400", "configuration limit", false, 500],
    ["28P01", "auth failed", false, 403],
    ["21000", "UPDATE requires a WHERE clause", false, 400],
    ["21000", "more than one row returned by a subquery", false, 500],
    ["22023", 'role "x" does not exist', false, 401],
    ["22023", "invalid value", false, 400],
    ["PT402", "pay", false, 402],
    ["PT999", "bad", false, 500],
    ["PTabc", "bad", false, 500],
    ["42P17", "infinite recursion", false, 500],
    ["XX000", "internal", false, 500],
  ];
  for (const [code, msg, anon, status] of cases) {
    assertEquals(statusForSqlState(code, msg, anon), status, `${code} ${msg}`);
  }
});

Deno.test("a PG error keeps its code, message, details and hint; 401 adds WWW-Authenticate", async () => {
  const e = fromPgError({ code: "42501", message: "permission denied for table t" }, true);
  assertEquals(e.status, 401);
  assertEquals(e.headers["WWW-Authenticate"], "Bearer");
  const res = errorResponse(e);
  assertEquals(await res.json(), {
    code: "42501",
    details: null,
    hint: null,
    message: "permission denied for table t",
  });
  assertEquals(res.headers.get("content-type"), "application/json; charset=utf-8");
});

Deno.test("RAISE SQLSTATE 'PGRST' with JSON message and detail", async () => {
  const e = fromPgError({
    code: "PGRST",
    message: '{"code":"123","message":"Custom","details":"D","hint":"H"}',
    detail: '{"status":419,"status_text":"Custom","headers":{"X-Custom":"yes"}}',
  }, false);
  const res = errorResponse(e);
  assertEquals(res.status, 419);
  assertEquals(res.headers.get("x-custom"), "yes");
  assertEquals(await res.json(), { code: "123", details: "D", hint: "H", message: "Custom" });
  const bad = fromPgError({ code: "PGRST", message: "not json", detail: "{}" }, false);
  assertEquals([bad.status, bad.code], [500, "PGRST121"]);
});
