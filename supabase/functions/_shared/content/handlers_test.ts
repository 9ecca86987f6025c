import { assert, assertEquals, assertMatch, assertRejects } from "../../../../tools/test/assert.ts";
import { countWords, normalizeBrief } from "./brief.ts";
import { defaultStageHandlers, qaChecks } from "./handlers.ts";
import { CONTENT_STAGES, type ContentBrief, type JsonObject, type StageContext } from "./types.ts";

/** Runs the shipped handlers in order, as the workers would, feeding outputs forward. */
async function runPipeline(brief: ContentBrief, upTo: number = CONTENT_STAGES.length) {
  const outputs: Record<string, JsonObject> = {};
  for (const stage of CONTENT_STAGES.slice(0, upTo)) {
    const ctx: StageContext = {
      jobId: "00000000-0000-0000-0000-000000000001",
      stage,
      attempt: 1,
      maxAttempts: 3,
      brief,
      outputs,
      signal: new AbortController().signal,
    };
    outputs[stage] = await defaultStageHandlers[stage](ctx);
  }
  return outputs;
}

const brief: ContentBrief = {
  topic: "container security",
  audience: "platform engineers",
  keywords: ["image scanning", "least privilege", "Image Scanning"],
  length: "short",
};

Deno.test("normalizeBrief() fills defaults and de-duplicates keywords", () => {
  const b = normalizeBrief(brief);
  assertEquals(b.keywords, ["image scanning", "least privilege"]);
  assertEquals(b.targetWords, 300);
  assertEquals(normalizeBrief({ topic: "x" }).audience, "general readers");
  assertEquals(normalizeBrief({ topic: "x", length: 1500 }).targetWords, 1500);
});

Deno.test("research → complete: the shipped handlers produce a checked document", async () => {
  const out = await runPipeline(brief);
  assertEquals((out.research!.questions as string[]).length, 5);
  const sections = out.outline!.sections as Array<{ heading: string }>;
  assertEquals(sections.map((s) => s.heading), [
    "Introduction",
    "Understanding image scanning",
    "Understanding least privilege",
    "Common mistakes",
    "Conclusion",
  ]);
  const md = out.draft!.markdown as string;
  assertMatch(md, /^# Container security: a guide for platform engineers\n/);
  assert(md.includes("## Understanding least privilege"));
  assertEquals(out.qa!.passed, true);
  assert((out.draft!.word_count as number) >= 150 && (out.draft!.word_count as number) <= 600);
  const html = out.export!.html as string;
  assert(html.includes("<h2>Understanding image scanning</h2>"));
  assert(html.includes("<title>Container security: a guide for platform engineers</title>"));
  assertEquals(out.complete!.sections, 5);
  assertEquals(out.complete!.stages, ["research", "outline", "draft", "qa", "export"]);
});

Deno.test("draft meets each length's word budget and qa accepts it", async () => {
  for (const length of ["short", "medium", "long", 2000] as const) {
    const out = await runPipeline({ topic: "sourdough", length }, 4);
    const words = countWords(out.draft!.markdown as string);
    const target = normalizeBrief({ topic: "x", length }).targetWords;
    assert(words >= target && words <= target * 1.5, `${length}: ${words} words`);
  }
});

Deno.test("qa fails with a clear reason for banned words and missing keywords", async () => {
  const out = await runPipeline({ ...brief, banned_words: ["security"] }, 3);
  const err = await assertRejects(() =>
    defaultStageHandlers.qa({
      jobId: "j",
      stage: "qa",
      attempt: 1,
      maxAttempts: 3,
      brief: { ...brief, banned_words: ["security"] },
      outputs: out,
      signal: new AbortController().signal,
    })
  );
  assertMatch(
    err.message,
    /^qa failed: banned_words: banned word "security" appears \d+ time\(s\)$/,
  );
  const checks = qaChecks(
    "# T\n\n## A\n\n## B\n\nshort text",
    normalizeBrief({
      topic: "t",
      keywords: ["kubernetes"],
    }),
  );
  assertEquals(checks.filter((c) => !c.passed).map((c) => c.check), ["length", "keywords"]);
  assertEquals(checks[2]!.detail, "missing required keyword(s): kubernetes");
});

Deno.test("export escapes a hostile title and body", async () => {
  const out = await runPipeline({ topic: '<b>tags</b> & "quotes"', keywords: ["<i>"] });
  const html = out.export!.html as string;
  assertEquals(html.includes("<b>"), false);
  assertEquals(html.includes("<i>"), false);
  assert(html.includes("&lt;b&gt;tags&lt;/b&gt; &amp; &quot;quotes&quot;"));
});
