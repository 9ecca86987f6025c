import { assertEquals, assertThrows } from "../../../../tools/test/assert.ts";
import { parseExposition, sampleValue } from "../../../../tools/test/prometheus.ts";
import { escapeLabelValue, FAMILIES, formatExposition, formatValue } from "./prometheus.ts";

Deno.test("formatExposition() writes HELP and TYPE before each family's samples, in catalogue order", () => {
  const text = formatExposition([
    { metric: "conveyor_queue_failed_jobs_total", labels: { queue: "q_a" }, value: 2 },
    { metric: "conveyor_queue_ready_jobs", labels: { queue: "q_a" }, value: 3 },
    { metric: "conveyor_queue_ready_jobs", labels: { queue: "q_b" }, value: 0 },
  ]);
  assertEquals(
    text,
    [
      `# HELP conveyor_queue_ready_jobs ${FAMILIES.conveyor_queue_ready_jobs!.help}`,
      "# TYPE conveyor_queue_ready_jobs gauge",
      'conveyor_queue_ready_jobs{queue="q_a"} 3',
      'conveyor_queue_ready_jobs{queue="q_b"} 0',
      `# HELP conveyor_queue_failed_jobs_total ${FAMILIES.conveyor_queue_failed_jobs_total!.help}`,
      "# TYPE conveyor_queue_failed_jobs_total counter",
      'conveyor_queue_failed_jobs_total{queue="q_a"} 2',
      "",
    ].join("\n"),
  );
});

Deno.test("formatExposition() escapes label values so any tenant name round-trips", () => {
  const nasty = 'acme "quoted" \\ back\nslash';
  const text = formatExposition([
    { metric: "conveyor_dead_letter_jobs", labels: { tenant: nasty, kind: "enrich" }, value: 1 },
  ]);
  assertEquals(escapeLabelValue(nasty), 'acme \\"quoted\\" \\\\ back\\nslash');
  const fams = parseExposition(text);
  assertEquals(sampleValue(fams, "conveyor_dead_letter_jobs", { tenant: nasty }), 1);
});

Deno.test("formatExposition() types unknown families as untyped and drops invalid names", () => {
  const fams = parseExposition(formatExposition([
    { metric: "conveyor_new_thing", labels: {}, value: 1.5 },
    { metric: "bad name", labels: {}, value: 1 },
  ]));
  assertEquals(fams.map((f) => [f.name, f.type, f.samples[0]!.value]), [[
    "conveyor_new_thing",
    "untyped",
    1.5,
  ]]);
});

Deno.test("every counter in the catalogue ends in _total and every name has the conveyor_ prefix", () => {
  for (const [name, fam] of Object.entries(FAMILIES)) {
    assertEquals(name.startsWith("conveyor_"), true, name);
    assertEquals(fam.type === "counter", name.endsWith("_total"), name);
  }
});

Deno.test("formatValue() writes NaN and infinities the Prometheus way", () => {
  assertEquals([NaN, Infinity, -Infinity, 0.25, 3].map(formatValue), [
    "NaN",
    "+Inf",
    "-Inf",
    "0.25",
    "3",
  ]);
});

Deno.test("parseExposition() rejects samples outside their family and bad escapes", () => {
  assertThrows(() => parseExposition("x_total 1\n"), "outside its family");
  assertThrows(() => parseExposition('# TYPE a gauge\na{l="\\q"} 1\n'), "bad escape");
  assertThrows(
    () => parseExposition("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n"),
    "outside its family",
  );
});
