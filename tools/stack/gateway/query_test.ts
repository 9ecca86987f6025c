import { assert, assertEquals, assertThrows } from "../../test/assert.ts";
import type { ApiError } from "./errors.ts";
import { parseLogic, parseOrder, parseQuery, parseSelect, splitTopLevel } from "./query.ts";
import { Params, selectSql, tableScope, whereSql } from "./sql.ts";

const cols = new Map([
  ["id", { type: "bigint" }],
  ["name", { type: "text" }],
  ["data", { type: "jsonb" }],
  ["doc", { type: "tsvector" }],
]);
const scope = tableScope(`"public"."t"`, "t", cols);

function sqlOf(qs: string): { where: string; params: (string | null)[] } {
  const q = parseQuery(new URLSearchParams(qs), false);
  const params = new Params();
  return { where: whereSql(q.filters, scope, params), params: params.values };
}

Deno.test("splitTopLevel respects parentheses and quotes", () => {
  assertEquals(splitTopLevel('a,b(c,d),"e,f",g'), ["a", "b(c,d)", '"e,f"', "g"]);
});

Deno.test("filters become bind parameters, names are quoted", () => {
  const { where, params } = sqlOf("name=eq.x&id=gt.5&name=like.*a*");
  assertEquals(
    where,
    ` where "public"."t"."name" = $1 and "public"."t"."id" > $2 and "public"."t"."name" like $3`,
  );
  assertEquals(params, ["x", "5", "%a%"]);
});

Deno.test("in, is, not, modifiers and full-text search", () => {
  const { where, params } = sqlOf(
    'id=in.(1,2,"3,4")&name=is.null&name=not.eq.a&name=like(any).{a*,b*}&doc=fts(english).cat',
  );
  assertEquals(
    where,
    ` where "public"."t"."id" = any($1) and "public"."t"."name" is null and ` +
      `not ("public"."t"."name" = $2) and "public"."t"."name" like any($3) and ` +
      `"public"."t"."doc" @@ to_tsquery($4::regconfig, $5)`,
  );
  assertEquals(params, ['{"1","2","3,4"}', "a", "{a%,b%}", "english", "cat"]);
});

Deno.test("nested logic trees", () => {
  const { where, params } = sqlOf("or=(id.eq.1,and(name.eq.x,not.or(id.gt.5,id.lt.0)))");
  assertEquals(
    where,
    ` where (("public"."t"."id" = $1) or ((("public"."t"."name" = $2) and ` +
      `(not (("public"."t"."id" > $3) or ("public"."t"."id" < $4))))))`,
  );
  assertEquals(params, ["1", "x", "5", "0"]);
});

Deno.test("quoted values inside logic trees", () => {
  const l = parseLogic("or", false, '(name.eq."a,b",name.eq.c)');
  assertEquals(l.children.map((c) => c.type === "filter" ? c.value : ""), ["a,b", "c"]);
});

Deno.test("JSON paths: keys are parameters, indexes integer literals", () => {
  const { where, params } = sqlOf("data->a->>b=eq.1&data->0->>c=eq.2");
  assertEquals(
    where,
    ` where ("public"."t"."data"->$1::text->>$2::text) = $3 and ` +
      `("public"."t"."data"->0->>$4::text) = $5`,
  );
  assertEquals(params, ["a", "b", "1", "c", "2"]);
});

Deno.test("select with aliases, casts and JSON paths", () => {
  const params = new Params();
  const s = selectSql(parseSelect("id,label:name,id::text,data->>k,*"), scope, params);
  assertEquals(
    s,
    `"public"."t"."id" as "id", "public"."t"."name" as "label", ` +
      `"public"."t"."id"::text as "id", ("public"."t"."data"->>$1::text) as "k", "public"."t".*`,
  );
});

Deno.test("order terms", () => {
  assertEquals(parseOrder("a.desc.nullslast,b,c.asc"), [
    { field: { name: "a", path: [] }, dir: "desc", nulls: "last" },
    { field: { name: "b", path: [] }, dir: undefined, nulls: undefined },
    { field: { name: "c", path: [] }, dir: "asc", nulls: undefined },
  ]);
});

Deno.test("unknown columns are 42703, bad filters PGRST100, casts validated", () => {
  const e1 = assertThrows(() => sqlOf("nope=eq.1")) as ApiError;
  assertEquals([e1.status, e1.code, e1.message], [400, "42703", "column t.nope does not exist"]);
  const e2 = assertThrows(() => sqlOf("id=bogus.1")) as ApiError;
  assertEquals([e2.status, e2.code], [400, "PGRST100"]);
  const e3 = assertThrows(() => parseSelect("id::text;drop table t")) as ApiError;
  assertEquals(e3.code, "PGRST100");
  const e4 = assertThrows(() => parseSelect("id,rel(name)")) as ApiError;
  assertEquals(e4.code, "PGRST100");
});

Deno.test("injection attempts stay data or names", () => {
  // A hostile column name is refused (not in the cache); a hostile value is a parameter.
  const e = assertThrows(() => sqlOf(`name"; drop table t; --=eq.1`)) as ApiError;
  assertEquals(e.code, "42703");
  const { where, params } = sqlOf(`name=eq.'); drop table t; --`);
  assertEquals(where, ` where "public"."t"."name" = $1`);
  assertEquals(params, ["'); drop table t; --"]);
});

Deno.test("GET /rpc: non-filter parameters are arguments, filter-shaped ones filters", () => {
  const q = parseQuery(new URLSearchParams("id=5&id=gt.2&name=x&select=a&limit=3"), true);
  assertEquals(q.args, [["id", "5"], ["name", "x"]]);
  assertEquals(q.filters.length, 1);
  assertEquals(q.limit, 3);
});

Deno.test("deep nesting is refused, not a stack overflow", () => {
  const deep = "(" + "and(".repeat(200) + "id.eq.1" + ")".repeat(200) + ")";
  const e = assertThrows(() => parseLogic("or", false, deep)) as ApiError;
  assertEquals(e.status, 400);
  assert(e.message.includes("logic tree"));
});
