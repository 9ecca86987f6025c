/**
 * Bad input, property-based (issue 10; DESIGN.md §6 "Bad input ⇒ a clear 4xx and no rows
 * written. No 5xx for any client input"): fast-check generates bodies that are each wrong in
 * at least one way and sends them through the gateway, exactly as clients do, to
 * `queue_job`, `queue_content_job` and the `content-queue-dispatcher` function: wrong types,
 * missing and extra keys, huge and deeply nested JSON, invalid JSON, invalid UTF-8, NUL
 * (`\u0000` escapes and raw bytes), numbers out of range. Every answer must be a 4xx with a
 * JSON body carrying a message, never a 5xx, and nothing may be written: no ledger row, no
 * content job, no dispatch cycle.
 *
 * 1,050 bodies in all; the seed is fixed so a failure reproduces (set FUZZ_SEED to explore
 * others; fast-check prints the shrunk counterexample). 100 concurrent identical queue_job
 * calls making one job is `queue_api_test.ts`'s.
 */
import fc from "fast-check";
import { assert, assertEquals } from "../tools/test/assert.ts";
import { testEnv } from "../tools/test/env.ts";
import { resilientSql } from "./load/fixtures.ts";

const env = testEnv();
const opts = { sanitizeOps: false, sanitizeResources: false };
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261123);
const RUN = `fuzz:${crypto.randomUUID().slice(0, 8)}`;
const enc = new TextEncoder();

/** A body: JSON text, or raw bytes (invalid UTF-8 and the like), and what is wrong with it. */
interface Body {
  why: string;
  data: string | Uint8Array<ArrayBuffer>;
}

let counter = 0;
/** A fresh idempotency key under this run's prefix (so a wrongly accepted body is found). */
const key = () => `${RUN}:${counter++}`;

const json = (why: string, v: unknown): Body => ({ why, data: JSON.stringify(v) });

// ---------------------------------------------------------------------------------------
// building blocks

/** Any JSON value except a string. */
const notString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
);
/** Any JSON value except an object. */
const notObject = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 20 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
);
/** Any JSON value except a boolean. */
const notBoolean = fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(null));

/** Numbers as JSON text that no field accepts: out of range, fractional, beyond float64. */
const badNumberText = fc.constantFrom(
  "-1",
  "-0.5",
  "0.5",
  "1e400",
  "-1e400",
  "1e-400",
  "1e1000000",
  "99999999999999999999999999999",
  "2592001",
  "1.0000000000000002",
);

/** Invalid UTF-8 sequences: stray continuation, truncated, overlong, surrogate, 5-byte. */
const badUtf8 = fc.constantFrom(
  [0xff],
  [0xfe, 0xff],
  [0x80],
  [0xc3, 0x28],
  [0xe2, 0x82],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
);

/** JSON text that does not parse. */
const brokenJson = fc.oneof(
  fc.constantFrom(
    "{",
    "{]",
    '{"kind": }',
    '{"kind": "enrich",}',
    "{'kind': 'enrich'}",
    '{"kind": NaN}',
    '{"kind": Infinity}',
    '{"a": 1} trailing',
    '{"a": 01}',
    '{"a": "\\x41"}',
    '{"a": "unterminated}',
    "/* comment */ {}",
    '{"a":\n1,\n}',
    "[1, 2",
    "tru",
    '{"a": "\\ud800"',
  ),
  fc.string({ minLength: 1, maxLength: 40 }).map((s) => `{${s}`).filter((t) => {
    try {
      JSON.parse(t);
      return false; // "{" + "}" is JSON after all
    } catch {
      return true;
    }
  }),
);

/** Splices `bytes` into the JSON text of `v` right after the first occurrence of `marker`. */
function splice(v: unknown, marker: string, bytes: readonly number[]): Uint8Array<ArrayBuffer> {
  const text = JSON.stringify(v);
  const at = text.indexOf(marker) + marker.length;
  const head = enc.encode(text.slice(0, at));
  const tail = enc.encode(text.slice(at));
  return new Uint8Array([...head, ...bytes, ...tail]);
}

/** `[[[…]]]` nested `depth` deep. */
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

/** Deep nesting: shallow enough to parse, or deeper than Postgres' parser can go. */
const depth = fc.oneof(
  fc.integer({ min: 100, max: 3_000 }),
  fc.integer({ min: 20_000, max: 60_000 }),
);

// ---------------------------------------------------------------------------------------
// queue_job

const QUEUE_FIELDS = [
  "idempotency_key",
  "kind",
  "payload",
  "priority",
  "delay_seconds",
  "execute_after",
  "headers",
  "critical",
  "tenant_id",
];

const validJob = () => ({
  idempotency_key: key(),
  kind: "enrich",
  payload: { email: "ada@example.com", name: "ada" },
});

/** Text of a valid job with one more field given as raw JSON text. */
const withRawField = (field: string, raw: string) => {
  const text = JSON.stringify(validJob());
  return `${text.slice(0, -1)},"${field}":${raw}}`;
};

const badQueueJob: fc.Arbitrary<Body> = fc.oneof(
  notString.map((v) => json("kind of the wrong type", { ...validJob(), kind: v })),
  fc.string({ maxLength: 40 }).filter((s) => !["enrich", "outreach", "enforce"].includes(s))
    .map((s) => json("unknown kind", { ...validJob(), kind: s })),
  fc.constantFrom("kind", "idempotency_key").map((f) => {
    const b: Record<string, unknown> = validJob();
    delete b[f];
    return json(`missing ${f}`, b);
  }),
  fc.oneof(
    notString,
    fc.constantFrom("", " ", "\t\n"),
    fc.integer({ min: 256, max: 2_000 }).map((n) => "k".repeat(n)),
  ).map((v) => json("bad idempotency_key", { ...validJob(), idempotency_key: v })),
  notObject.map((v) => json("payload not an object", { ...validJob(), payload: v })),
  fc.oneof(notString, fc.string().filter((s) => !["fast", "normal", "bulk"].includes(s)))
    .map((v) => json("bad priority", { ...validJob(), priority: v })),
  fc.oneof(
    badNumberText.map((t) => ({
      why: "delay_seconds out of range",
      data: withRawField("delay_seconds", t),
    })),
    fc.oneof(fc.string({ maxLength: 8 }), fc.boolean(), fc.array(fc.integer(), { maxLength: 2 }))
      .map((v) => json("delay_seconds not a number", { ...validJob(), delay_seconds: v })),
  ),
  fc.oneof(
    fc.constantFrom(
      "tomorrow",
      "2026-13-45T00:00:00Z",
      "2026-02-30",
      "",
      "  ",
      "10 lightyears",
      "9999-12-31T00:00:00Z",
      "1000 years",
      "infinity",
      "epoch",
    ),
    fc.integer(),
    fc.boolean(),
  ).map((v) => json("bad execute_after", { ...validJob(), execute_after: v })),
  fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.boolean(), fc.array(fc.integer()))
    .map((v) => json("headers not an object", { ...validJob(), headers: v })),
  notBoolean.map((v) => json("critical not a boolean", { ...validJob(), critical: v })),
  fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.uuid().map((u) => u))
    .map((v) => json("bad or unknown tenant_id", { ...validJob(), tenant_id: v })),
  fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !QUEUE_FIELDS.includes(s))
    .map((k) => json("unknown field", { ...validJob(), [k]: 1 })),
  fc.constant(0).map(() =>
    json("delay_seconds and execute_after", {
      ...validJob(),
      delay_seconds: 1,
      execute_after: "1 second",
    })
  ),
  fc.integer({ min: 270_000, max: 1_200_000 }).map((n) =>
    json("payload too large", { ...validJob(), payload: { blob: "x".repeat(n) } })
  ),
  fc.constantFrom("idempotency_key", "kind", "payload-value", "payload-key").map((where) => {
    const b: Record<string, unknown> = validJob();
    if (where === "idempotency_key") b.idempotency_key = `${b.idempotency_key}\u0000`;
    if (where === "kind") b.kind = "enrich\u0000";
    if (where === "payload-value") b.payload = { note: "a\u0000b" };
    if (where === "payload-key") b.payload = { "a\u0000": 1 };
    return json(`NUL escape in ${where}`, b);
  }),
  fc.tuple(badUtf8, fc.constantFrom('"idempotency_key":"', '"name":"', '"kind":"en')).map((
    [bytes, marker],
  ) => ({ why: `invalid UTF-8 after ${marker}`, data: splice(validJob(), marker, bytes) })),
  fc.constantFrom(0x00, 0x01, 0x1f).map((b) => ({
    why: `raw control byte ${b} in a string`,
    data: splice(validJob(), '"name":"', [b]),
  })),
  brokenJson.map((t) => ({ why: "invalid JSON", data: t })),
  notObject.map((v) => json("body not an object", [v])),
  depth.map((d) => ({ why: `top-level array nested ${d} deep`, data: nested(d) })),
  depth.map((d) => ({
    why: `payload nested ${d} deep, and an unknown field`,
    data: `${JSON.stringify(validJob()).slice(0, -2)},"deep":${nested(d)}},"x":1}`,
  })),
  fc.integer({ min: 20_000, max: 60_000 }).map((d) => ({
    why: `payload nested ${d} deep (beyond what Postgres parses)`,
    data: `${JSON.stringify(validJob()).slice(0, -2)},"deep":${nested(d)}}}`,
  })),
);

// ---------------------------------------------------------------------------------------
// queue_content_job

const validContent = () => ({
  idempotency_key: key(),
  brief: { topic: "fuzzing", audience: "SREs", keywords: ["ledger"], length: "short" },
});
const brief = (patch: Record<string, unknown>) => {
  const b = validContent();
  return { ...b, brief: { ...b.brief, ...patch } };
};
const dropBrief = (field: string) => {
  const b = validContent();
  const br: Record<string, unknown> = { ...b.brief };
  delete br[field];
  return { ...b, brief: br };
};

const badContentJob: fc.Arbitrary<Body> = fc.oneof(
  fc.constantFrom("idempotency_key", "brief").map((f) => {
    const b: Record<string, unknown> = validContent();
    delete b[f];
    return json(`missing ${f}`, b);
  }),
  fc.string({ minLength: 1, maxLength: 20 })
    .filter((s) => !["idempotency_key", "brief", "max_attempts"].includes(s))
    .map((k) => json("unknown field", { ...validContent(), [k]: true })),
  fc.oneof(notString, fc.constantFrom("", "   ", "\r\n"), fc.constant("k".repeat(300)))
    .map((v) => json("bad idempotency_key", { ...validContent(), idempotency_key: v })),
  notObject.map((v) => json("brief not an object", { ...validContent(), brief: v })),
  fc.constant(0).map(() => json("brief without topic", dropBrief("topic"))),
  fc.oneof(
    notString,
    fc.constantFrom("", "  ", "\t\n"),
    fc.integer({ min: 301, max: 1000 }).map((n) => "t".repeat(n)),
  )
    .map((v) => json("bad topic", brief({ topic: v }))),
  fc.constantFrom("audience", "title").chain((f) =>
    fc.oneof(
      fc.integer(),
      fc.boolean(),
      fc.array(fc.string(), { maxLength: 2 }),
      fc.constantFrom("", " ", "\n\t"),
      fc.integer({ min: 201, max: 500 }).map((n) => "a".repeat(n)),
    ).map((v) => json(`bad ${f}`, brief({ [f]: v })))
  ),
  fc.constantFrom("keywords", "banned_words").chain((f) =>
    fc.oneof(
      notObject.filter((v) => !Array.isArray(v) && v !== null),
      fc.array(fc.oneof(fc.integer(), fc.constantFrom("", "\t"), fc.constant(null)), {
        minLength: 1,
        maxLength: 3,
      }),
      fc.constant(Array.from({ length: 101 }, (_, i) => `w${i}`)),
      fc.constant(["x".repeat(101)]),
    ).map((v) => json(`bad ${f}`, brief({ [f]: v })))
  ),
  fc.oneof(
    fc.string({ maxLength: 10 }).filter((s) => !["short", "medium", "long"].includes(s)),
    fc.oneof(fc.integer({ max: 99 }), fc.integer({ min: 5_001 }), fc.constant(150.5)),
    fc.boolean(),
  ).map((v) => json("bad length", brief({ length: v }))),
  badNumberText.map((t) => ({
    why: "brief.length out of range",
    // A repeated key: the last one counts (as in jsonb), so this length is the one checked.
    data: `${JSON.stringify(validContent()).slice(0, -2)},"length":${t}}}`,
  })),
  fc.oneof(badNumberText, fc.constantFrom("0", "11", '"3"', "true", "null")).map((t) => ({
    why: "bad max_attempts",
    data: `${JSON.stringify(validContent()).slice(0, -1)},"max_attempts":${t}}`,
  })),
  fc.integer({ min: 70_000, max: 300_000 }).map((n) =>
    json("brief too large", brief({ notes: "n".repeat(n) }))
  ),
  fc.constantFrom("topic", "key", "extra").map((where) => {
    if (where === "topic") return json("NUL escape in topic", brief({ topic: "nul\u0000" }));
    if (where === "key") {
      return json("NUL escape in the key", {
        ...validContent(),
        idempotency_key: `${key()}\u0000`,
      });
    }
    return json("NUL escape in an extra brief field", brief({ extra: "\u0000" }));
  }),
  fc.tuple(badUtf8, fc.constantFrom('"idempotency_key":"', '"topic":"', '"audience":"'))
    .map(([bytes, marker]) => ({
      why: `invalid UTF-8 after ${marker}`,
      data: splice(validContent(), marker, bytes),
    })),
  brokenJson.map((t) => ({ why: "invalid JSON", data: t })),
  notObject.map((v) => json("body not an object", v)),
  depth.map((d) => ({ why: `top-level array nested ${d} deep`, data: nested(d) })),
  depth.map((d) => ({
    why: `brief field nested ${d} deep, and an unknown field`,
    data: `${JSON.stringify(validContent()).slice(0, -2)},"deep":${nested(d)}},"x":1}`,
  })),
  fc.integer({ min: 20_000, max: 60_000 }).map((d) => ({
    why: `brief field nested ${d} deep (beyond what Postgres parses)`,
    data: `${JSON.stringify(validContent()).slice(0, -2)},"deep":${nested(d)}}}`,
  })),
);

// ---------------------------------------------------------------------------------------
// content-queue-dispatcher

const badDispatch: fc.Arbitrary<Body> = fc.oneof(
  fc.oneof(
    notString,
    fc.string({ maxLength: 12 }).filter((s) => !["manual", "cron", "kick", "script"].includes(s)),
    fc.constant("manual\u0000"),
  ).map((v) => json("bad source", { source: v })),
  fc.string({ minLength: 1, maxLength: 12 })
    .filter((s) => !["source", "target", "recheck_ms", "sweep_ms", "window"].includes(s))
    .map((k) => json("unknown field", { source: "manual", [k]: 1 })),
  fc.oneof(notString.filter((v) => v !== null), fc.constant("t".repeat(101)))
    .map((v) => json("bad target", { source: "manual", target: v })),
  fc.constantFrom("recheck_ms", "sweep_ms").chain((f) =>
    fc.oneof(
      fc.constantFrom("-1", "0.5", "1e400", "-1e400", '"100"', "true", "[1]", "{}"),
      fc.constant(f === "recheck_ms" ? "10001" : "120001"),
    ).map((t) => ({ why: `bad ${f}`, data: `{"source":"kick","${f}":${t}}` }))
  ),
  fc.constantFrom("0", "-1", "0.5", "1e400", '"7"', "true", "[1]", "{}").map((t) => ({
    why: "bad window",
    data: `{"source":"kick","target":"queue:enrich","window":${t}}`,
  })),
  fc.tuple(badUtf8, fc.constantFrom('"source":"man', '"target":"')).map(([bytes, marker]) => ({
    why: `invalid UTF-8 after ${marker}`,
    data: splice({ source: "manual", target: "research" }, marker, bytes),
  })),
  brokenJson.map((t) => ({ why: "invalid JSON", data: t })),
  fc.oneof(
    fc.integer(),
    fc.string({ minLength: 1, maxLength: 10 }),
    fc.boolean(),
    fc.array(fc.integer()),
  )
    .map((v) => json("body not an object", v)),
  depth.map((d) => ({ why: `top-level array nested ${d} deep`, data: nested(d) })),
  depth.map((d) => ({
    why: `unknown field nested ${d} deep`,
    data: `{"source":"manual","x":${nested(d)}}`,
  })),
);

// ---------------------------------------------------------------------------------------

/** Sends a body; the problem with the answer, or null for a 4xx JSON error with a message. */
async function problem(url: string, body: Body, headers: Record<string, string>) {
  const res = await fetch(url, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: body.data,
  });
  const text = await res.text();
  const answer = `HTTP ${res.status} ${text.slice(0, 200)}`;
  if (res.status < 400 || res.status >= 500) return answer;
  try {
    const err = JSON.parse(text);
    if (typeof err.message !== "string" || err.message.length === 0) return `no message: ${answer}`;
  } catch {
    return `not JSON: ${answer}`;
  }
  return null;
}

/**
 * Sends `numRuns` generated bodies and asserts they all were. Every body is sent (no stop
 * at the first failure), so one run reports each kind of bad answer once.
 */
async function fuzz(
  arb: fc.Arbitrary<Body>,
  url: string,
  headers: Record<string, string>,
  numRuns: number,
): Promise<void> {
  let sent = 0;
  const failures = new Map<string, string>();
  await fc.assert(
    fc.asyncProperty(arb, async (body) => {
      sent++;
      const p = await problem(url, body, headers);
      if (p && !failures.has(body.why)) failures.set(body.why, p);
    }),
    { numRuns, seed: SEED },
  );
  assertEquals(
    [...failures].map(([why, p]) => `${why} → ${p}`),
    [],
    "every bad body gets a 4xx JSON error with a message",
  );
  assert(sent >= numRuns, `${sent} bodies sent`);
}

/**
 * Runs `fn` with a connection and `since`, the database's clock (rows are stamped with it)
 * before `fn` sent anything, so `fn` can count the rows its bodies wrote.
 */
async function writtenSince(
  fn: (sql: ReturnType<typeof resilientSql>, since: Date) => Promise<void>,
): Promise<void> {
  const sql = resilientSql();
  try {
    const [r] = await sql`select clock_timestamp() as t`;
    await fn(sql, r!.t as Date);
  } finally {
    await sql.end();
  }
}

const rpcHeaders = { apikey: env.serviceRoleKey, Authorization: `Bearer ${env.serviceRoleKey}` };

Deno.test({
  name:
    "fuzz: 450 bad queue_job bodies through the gateway: each a 4xx with a message, no row written",
  ...opts,
  async fn() {
    await writtenSince(async (sql, since) => {
      await fuzz(badQueueJob, `${env.apiUrl}/rest/v1/rpc/queue_job`, rpcHeaders, 450);
      const [w] = await sql`
        select (select count(*) from public.jobs where idempotency_key like ${
        RUN + ":%"
      })::int as jobs,
               (select count(*) from public.idempotency_keys where key like ${
        RUN + ":%"
      })::int as keys,
               (select count(*) from public.job_events
                where type = 'enqueued' and created_at >= ${since}
                  and payload ->> 'source' = 'queue_job')::int as enqueued`;
      assertEquals(w, { jobs: 0, keys: 0, enqueued: 0 }, "no row written");
    });
  },
});

Deno.test({
  name:
    "fuzz: 350 bad queue_content_job bodies through the gateway: each a 4xx with a message, no row written",
  ...opts,
  async fn() {
    await writtenSince(async (sql, since) => {
      await fuzz(badContentJob, `${env.apiUrl}/rest/v1/rpc/queue_content_job`, rpcHeaders, 350);
      const [w] = await sql`
        select (select count(*) from public.content_jobs where created_at >= ${since})::int as jobs,
               (select count(*) from public.content_job_events
                where created_at >= ${since} and status = 'queued')::int as events`;
      assertEquals(w, { jobs: 0, events: 0 }, "no row written");
    });
  },
});

Deno.test({
  name:
    "fuzz: 250 bad bodies to the content-queue-dispatcher function: each a 4xx with a message, no cycle run",
  ...opts,
  async fn() {
    await writtenSince(async (sql, since) => {
      await fuzz(
        badDispatch,
        `${env.apiUrl}/functions/v1/content-queue-dispatcher`,
        { Authorization: `Bearer ${env.serviceRoleKey}` },
        250,
      );
      // Only a manual (or script) call runs a cycle with these reasons: cron and kicks are
      // the system's own.
      const [w] = await sql`
        select count(*)::int as n from conveyor.worker_invocations
        where created_at >= ${since} and reason in ('dispatch:manual', 'dispatch:script')`;
      assertEquals(w!.n, 0, "no dispatch cycle ran for a bad body");
    });
  },
});

Deno.test({
  name: "bad input the fuzzer found stays refused: invalid UTF-8, 60,000-deep JSON, blank keys",
  ...opts,
  async fn() {
    await writtenSince(async (sql, since) => {
      const rpc = (fn: string) => `${env.apiUrl}/rest/v1/rpc/${fn}`;
      const cases: Array<[string, Body, Record<string, string>]> = [
        [rpc("queue_job"), {
          why: "invalid UTF-8 in a string of an otherwise valid body",
          data: splice(validJob(), '"name":"', [0xff]),
        }, rpcHeaders],
        [rpc("queue_job"), {
          why: "a valid body whose payload nests 60,000 deep",
          data: `${JSON.stringify(validJob()).slice(0, -2)},"deep":${nested(60_000)}}}`,
        }, rpcHeaders],
        [
          rpc("queue_job"),
          json("a key of tabs and newlines", { ...validJob(), idempotency_key: "\t\n" }),
          rpcHeaders,
        ],
        [rpc("queue_content_job"), {
          why: "invalid UTF-8 in the topic",
          data: splice(validContent(), '"topic":"', [0xc3, 0x28]),
        }, rpcHeaders],
        [rpc("queue_content_job"), json("a topic of tabs", brief({ topic: "\t\t" })), rpcHeaders],
        [
          rpc("queue_content_job"),
          json("a keyword of newlines", brief({ keywords: ["\n"] })),
          rpcHeaders,
        ],
        [`${env.apiUrl}/functions/v1/content-queue-dispatcher`, {
          why: "invalid UTF-8 in the target of an otherwise valid dispatch",
          data: splice({ source: "manual", target: "research" }, '"target":"', [0xff]),
        }, { Authorization: `Bearer ${env.serviceRoleKey}` }],
      ];
      for (const [url, body, headers] of cases) {
        assertEquals(await problem(url, body, headers), null, body.why);
      }
      const [w] = await sql`
        select (select count(*) from public.jobs where idempotency_key like ${
        RUN + ":%"
      })::int as jobs,
               (select count(*) from public.content_jobs where created_at >= ${since})::int as content,
               (select count(*) from conveyor.worker_invocations
                where created_at >= ${since} and reason = 'dispatch:manual')::int as cycles`;
      assertEquals(w, { jobs: 0, content: 0, cycles: 0 }, "no row written");
    });
  },
});
