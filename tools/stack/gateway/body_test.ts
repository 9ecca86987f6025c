import { assertEquals, assertThrows } from "../../test/assert.ts";
import { bodyText, checkJsonDepth, jsonDepth, MAX_JSON_DEPTH } from "./body.ts";

const enc = new TextEncoder();

Deno.test("bodyText() decodes UTF-8 and refuses invalid bytes with PGRST102", () => {
  assertEquals(bodyText(enc.encode('{"a":"é€😀"}')), '{"a":"é€😀"}');
  assertEquals(bodyText(null), "");
  for (const bad of [[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
    const body = new Uint8Array([...enc.encode('{"a":"'), ...bad, ...enc.encode('"}')]);
    const err = assertThrows(() => bodyText(body));
    assertEquals(
      [(err as unknown as { status: number }).status, (err as unknown as { code: string }).code],
      [400, "PGRST102"],
    );
  }
});

Deno.test("jsonDepth() counts nesting outside strings only", () => {
  assertEquals(jsonDepth("1"), 0);
  assertEquals(jsonDepth('{"a":[1,{"b":[]}]}'), 4);
  assertEquals(jsonDepth('{"a":"[[[{{{\\"[["}'), 1);
  assertEquals(jsonDepth('["\\\\", [[]]]'), 3);
});

Deno.test("checkJsonDepth() accepts MAX_JSON_DEPTH levels and refuses one more", () => {
  const nested = (d: number) => "[".repeat(d) + "]".repeat(d);
  checkJsonDepth(nested(MAX_JSON_DEPTH));
  assertThrows(() => checkJsonDepth(nested(MAX_JSON_DEPTH + 1)), "Empty or invalid json");
  assertThrows(() => checkJsonDepth(nested(60_000)), "Empty or invalid json");
});
