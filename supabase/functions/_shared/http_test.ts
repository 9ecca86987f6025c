import { assertEquals, assertRejects } from "../../../tools/test/assert.ts";
import { QueueError } from "./errors.ts";
import { errorResponse, readJsonObject } from "./http.ts";
import { RpcError } from "./supabase.ts";

const post = (body: BodyInit) => new Request("http://x/fn", { method: "POST", body });

Deno.test("readJsonObject() reads an object, and {} for an empty body", async () => {
  assertEquals(await readJsonObject(post('{"source":"manual","n":"é"}')), {
    source: "manual",
    n: "é",
  });
  assertEquals(await readJsonObject(post("  ")), {});
});

Deno.test("readJsonObject() refuses invalid UTF-8, invalid JSON and non-objects as bad_request", async () => {
  const enc = new TextEncoder();
  const badUtf8 = new Uint8Array([...enc.encode('{"target":"'), 0xff, ...enc.encode('"}')]);
  await assertRejects(() => readJsonObject(post(badUtf8)), "not valid UTF-8");
  await assertRejects(() => readJsonObject(post("{nope")), "not valid JSON");
  await assertRejects(() => readJsonObject(post("[1]")), "must be a JSON object");
});

Deno.test("errorResponse(): an RPC that met the API away is 503 with Retry-After; other RPC failures 502; codes keep their statuses", async () => {
  const rpcError = (status: number, cause: unknown) =>
    new RpcError(status, "get_dispatch_backlog: x", { cause });
  const cases: [Error, number, string][] = [
    [rpcError(503, { code: "PGRST001", message: "Database client error." }), 503, "rpc_failed"],
    [rpcError(502, { message: "bad gateway" }), 503, "rpc_failed"],
    [rpcError(0, { message: "TypeError: fetch failed" }), 503, "rpc_failed"],
    [rpcError(400, { code: "", message: "" }), 503, "rpc_failed"],
    [rpcError(400, { code: "22023", message: "bad argument" }), 502, "rpc_failed"],
    [rpcError(404, { code: "PGRST202", message: "no such function" }), 502, "rpc_failed"],
    [new QueueError("bad_request", "x"), 400, "bad_request"],
    [new QueueError("shutting_down", "x"), 503, "shutting_down"],
    [new Error("x"), 500, "internal"],
  ];
  const seen = [];
  for (const [err] of cases) {
    const res = errorResponse(err);
    seen.push([res.status, (await res.json()).error, res.headers.get("retry-after")]);
  }
  assertEquals(
    seen,
    cases.map(([, status, code]) => [status, code, status === 503 ? "1" : null]),
  );
});
