import { assertEquals, assertRejects } from "../../../tools/test/assert.ts";
import { readJsonObject } from "./http.ts";

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
