import {
  assert,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../../../../tools/test/assert.ts";
import { JobCancelError } from "../../errors.ts";
import type { Job } from "../adapter.ts";
import {
  companyFromDomain,
  enrich,
  enrichHandler,
  type EnrichInput,
  type EnrichOutput,
  splitName,
  TransientFailure,
} from "./enrich.ts";
import { evaluate, makeEnforceHandler } from "./enforce.ts";
import type { MessageProvider, OutboundMessage } from "./message_provider.ts";
import { makeOutreachHandler, renderTemplate } from "./outreach.ts";

function enrichFull(input: EnrichInput): EnrichOutput {
  const out = enrich(input);
  if ("skipped" in out) throw new Error("unexpectedly skipped");
  return out;
}

function job<P>(payload: P, kind = "x", attempt = 1): Job<P> {
  return {
    id: "11111111-1111-4111-8111-111111111111",
    kind,
    tenantId: "00000000-0000-0000-0000-000000000000",
    priority: "normal",
    attempt,
    maxAttempts: 3,
    payload,
    headers: null,
    enqueuedAt: new Date(),
  };
}
const ctx = { signal: new AbortController().signal, log: () => {} };

Deno.test("enrich() normalises the email, splits the name and derives domain and company", () => {
  const out = enrichFull({ email: "  Ada.Lovelace@Mail.Acme-Corp.CO.UK ", name: "ada   LOVELACE" });
  assertEquals(out.contact.email, "ada.lovelace@mail.acme-corp.co.uk");
  assertEquals([out.contact.first_name, out.contact.last_name], ["Ada", "Lovelace"]);
  assertEquals(out.contact.domain, "mail.acme-corp.co.uk");
  assertEquals([out.contact.company, out.contact.company_source], ["Acme Corp", "domain"]);
  assertEquals(out.completeness, 0.67);
  assertEquals(out.missing, ["title", "phone"]);
});

Deno.test("enrich() keeps a given company, skips free-mail domains and scores a full record 1", () => {
  const out = enrichFull({
    email: "bob@gmail.com",
    first_name: "bob",
    last_name: "o'neil",
    company: "Initech",
    phone: "+1 (555) 010-9999",
    title: "CTO",
  });
  assertEquals([out.contact.company, out.contact.company_source], ["Initech", "payload"]);
  assertEquals(out.contact.free_email, true);
  assertEquals(out.contact.last_name, "O'Neil");
  assertEquals(out.contact.phone, "+15550109999");
  assertEquals(out.completeness, 1);
  assertEquals(enrichFull({ email: "x@gmail.com" }).contact.company, null);
});

Deno.test("enrich() skips an empty payload (a ping) instead of dead-lettering it", () => {
  assertEquals(enrich({}), { skipped: true, reason: "empty payload: nothing to enrich" });
});

Deno.test("enrich() cancels a record without a usable email", () => {
  const e = assertThrows(() => enrich({ name: "No Email" }), "payload.email is required");
  assert(e instanceof JobCancelError);
  assert(assertThrows(() => enrich({ email: "not-an-email" })) instanceof JobCancelError);
});

Deno.test("enrich handler: fail_attempts N fails attempts 1..N transiently, then enriches", async () => {
  const payload = { email: "Ada@Example.com", fail_attempts: 2 };
  for (const attempt of [1, 2]) {
    const e = await assertRejects(() => enrichHandler(job(payload, "enrich", attempt), ctx));
    assert(e instanceof TransientFailure && !(e instanceof JobCancelError), e.name);
    assertEquals(
      e.message,
      `enrich: transient failure on attempt ${attempt}, as payload.fail_attempts = 2 asks`,
    );
  }
  const out = await enrichHandler(job(payload, "enrich", 3), ctx);
  assert(!("skipped" in out));
  assertEquals(out.contact.email, "ada@example.com");
  // The option is not part of the record: alone, the payload is as empty as a ping.
  assertEquals(await enrichHandler(job({ fail_attempts: 1 }, "enrich", 2), ctx), {
    skipped: true,
    reason: "empty payload: nothing to enrich",
  });
});

Deno.test("enrich handler: a fail_attempts that is not a whole number in 0..10 is cancelled", async () => {
  for (const bad of [-1, 1.5, 11, "2", null]) {
    const e = await assertRejects(() =>
      enrichHandler(job({ email: "a@b.co", fail_attempts: bad }, "enrich"), ctx)
    );
    assert(e instanceof JobCancelError, String(bad));
    assertEquals(
      e.message,
      `enrich: payload.fail_attempts must be a whole number from 0 to 10, got ${
        JSON.stringify(bad)
      }`,
    );
  }
});

Deno.test("splitName() and companyFromDomain() handle the usual shapes", () => {
  assertEquals(splitName("Lovelace, Ada"), ["Ada", "Lovelace"]);
  assertEquals(splitName("Mary Ann Smith"), ["Mary Ann", "Smith"]);
  assertEquals(companyFromDomain("globex.com"), "Globex");
});

Deno.test("renderTemplate() fills placeholders and cancels on missing variables", () => {
  assertEquals(
    renderTemplate("Hi {{ name }} from {{co.name}}", { name: "Ada", co: { name: "X" } }),
    "Hi Ada from X",
  );
  const e = assertThrows(
    () => renderTemplate("{{a}} {{b}}", { a: 1 }),
    "missing template variable(s): b",
  );
  assert(e instanceof JobCancelError);
});

Deno.test("outreach handler renders a named template and delivers it through the provider", async () => {
  const sent: OutboundMessage[] = [];
  const provider: MessageProvider = {
    name: "memory",
    send(m) {
      sent.push(m);
      return Promise.resolve({ messageId: "m1", created: true, provider: "memory" });
    },
  };
  const h = makeOutreachHandler(provider);
  const out = await h(
    job({
      to: "Ada@Example.com",
      template: "welcome",
      vars: { first_name: "Ada", company: "Acme" },
    }),
    ctx,
  );
  assertEquals(out.subject, "Welcome to Acme, Ada");
  assertEquals(sent[0]!.recipient, "ada@example.com");
  assert(sent[0]!.body.startsWith("Hi Ada,"));
  assertEquals(sent[0]!.jobId, "11111111-1111-4111-8111-111111111111");
  let err: unknown;
  await h(job({ to: "a@b.co", template: "nope" }), ctx).catch((e) => err = e);
  assert(err instanceof JobCancelError);
});

Deno.test("evaluate() lets the strongest matching rule win and lists every match", () => {
  assertEquals(evaluate([], {}).decision, "allow");
  const d = evaluate(
    [
      { id: "big", effect: "review", when: { field: "amount", op: "gt", value: 100 } },
      { id: "cc", effect: "deny", when: { field: "country", op: "in", value: ["KP"] } },
      {
        id: "young",
        effect: "review",
        when: {
          all: [{ field: "a.age", op: "lt", value: 7 }, {
            not: { field: "vip", op: "eq", value: true },
          }],
        },
      },
    ],
    { amount: 500, country: "kp", a: { age: 3 } },
  );
  assertEquals(d.decision, "deny");
  assertEquals(d.matched.map((m) => m.id), ["big", "cc", "young"]);
});

Deno.test("enforce handler records one decision with the matched rules", async () => {
  const recorded: unknown[] = [];
  const h = makeEnforceHandler((d) => {
    recorded.push(d);
    return Promise.resolve({ id: "d1", created: true });
  });
  const out = await h(job({ subject: "acct-1", amount: 20_000, country: "FR" }), ctx);
  assertEquals([out.decision, out.subject, out.decision_id], ["review", "acct-1", "d1"]);
  assertEquals(out.matched_rules.map((m) => m.id), ["large_amount"]);
  assertEquals(recorded.length, 1);
});
