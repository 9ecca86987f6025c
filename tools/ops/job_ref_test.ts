import { assertEquals } from "../test/assert.ts";
import { ambiguousMessage, type JobMatch, jobRefProblem, notFoundMessage } from "./job_ref.ts";

const FORMS =
  "give a job number (1234), a uuid, or 4 to 32 of its hex digits (its start or its end)";

Deno.test("jobRefProblem() accepts numbers, uuids and 4 to 32 hex digits with or without dashes", () => {
  for (
    const ok of [
      "7",
      "#7",
      "1234",
      "#123456789012345678",
      "4b1f",
      "9C2E41D0",
      "019a5c3e-7d21-7b4c-8f3a-3c1d9c2e41d0",
      "019a5c3e7d217b4c8f3a3c1d9c2e41d0",
      "3c1d-9c2e41d0",
      " 9c2e41d0 ",
    ]
  ) assertEquals(jobRefProblem(ok), null, ok);
  for (
    const bad of ["", "#", "abc", "xyz", "#12a", "12-zz", "#1234567890123456789", "a".repeat(33)]
  ) {
    assertEquals(jobRefProblem(bad), `"${bad}" is not a job reference: ${FORMS}`, bad);
  }
});

Deno.test("notFoundMessage() says what was searched for each form", () => {
  assertEquals(notFoundMessage("#12"), "no queue job is numbered 12");
  assertEquals(notFoundMessage("12"), "no queue job is numbered 12");
  assertEquals(
    notFoundMessage("1234"),
    "no queue job is numbered 1234, and no id of a queue job, dead letter or content job starts or ends with 1234 (ends: among the newest 100,000 queue jobs)",
  );
  assertEquals(
    notFoundMessage("3C1D-9c2e41d0"),
    "no id of a queue job, dead letter or content job starts or ends with 3c1d9c2e41d0 (ends: among the newest 100,000 queue jobs)",
  );
  assertEquals(
    notFoundMessage("019A5C3E7D217B4C8F3A3C1D9C2E41D0"),
    "no queue job, dead letter or content job has the id 019a5c3e-7d21-7b4c-8f3a-3c1d9c2e41d0",
  );
});

const match = (i: number, total: number): JobMatch => ({
  source: i % 3 === 0 ? "job" : i % 3 === 1 ? "dead_letter" : "content_job",
  id: `019a5c3e-0000-7000-8000-${String(i).padStart(12, "0")}`,
  job_number: i % 3 === 2 ? null : 100 + i,
  job_id: null,
  dead_letter_id: null,
  kind: i % 3 === 2 ? "content" : "enrich",
  status: "failed",
  created_at: `2026-01-01T00:00:0${i}.5+00:00`,
  matched: "prefix",
  total,
});

Deno.test("ambiguousMessage() lists the candidates as a table and how many more there are", () => {
  assertEquals(ambiguousMessage("019a5c3e", [match(0, 3), match(1, 3), match(2, 3)]).split("\n"), [
    '"019a5c3e" is ambiguous, 3 match:',
    "  WHAT                 ID                                    KIND     STATUS  CREATED (UTC)",
    "  job #100             019a5c3e-0000-7000-8000-000000000000  enrich   failed  2026-01-01 00:00:00",
    "  dead letter of #101  019a5c3e-0000-7000-8000-000000000001  enrich   failed  2026-01-01 00:00:01",
    "  content job          019a5c3e-0000-7000-8000-000000000002  content  failed  2026-01-01 00:00:02",
  ]);
  const many = Array.from({ length: 10 }, (_, i) => match(i, 25));
  assertEquals(ambiguousMessage("019a", many).split("\n").at(-1), "  … and 15 more");
  const lots = Array.from({ length: 10 }, (_, i) => match(i, 1001));
  const text = ambiguousMessage("019a", lots).split("\n");
  assertEquals(text[0], '"019a" is ambiguous, more than 1,000 match:');
  assertEquals(text.at(-1), "  … and more than 990 more");
});
