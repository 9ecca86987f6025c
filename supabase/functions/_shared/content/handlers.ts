/**
 * The shipped stage handlers. They do real, checkable work on the brief without any
 * external service, so the pipeline runs end to end out of the box; replace any of them in
 * `registry.ts` (e.g. with an LLM call) and keep the output shapes later stages read:
 *
 * - research → `{topic, audience, keywords, target_words, questions, angles, facts_to_cover}`
 * - outline  → `{title, sections: [{heading, points, target_words}]}`
 * - draft    → `{title, markdown, word_count}`
 * - qa       → `{passed: true, word_count, checks}` or throws with every failed check
 * - export   → `{title, markdown, html, word_count}` (written to content_exports)
 * - complete → a summary; completing it completes the job
 *
 * @module
 */
import { capitalize, countWords, normalizeBrief, type NormalizedBrief } from "./brief.ts";
import { escapeHtml, renderMarkdown } from "./markdown.ts";
import type { JsonObject, StageContext, StageHandler, StageRegistry } from "./types.ts";

/** research: structures the brief into questions, angles and facts the piece must cover. */
export const research: StageHandler = (ctx) => {
  const b = normalizeBrief(ctx.brief);
  const { topic, audience } = b;
  const questions = [
    `What is ${topic}, and why does it matter to ${audience}?`,
    `How do ${audience} get started with ${topic}?`,
    ...b.keywords.map((k) => `How does ${k} fit into ${topic}?`),
    `What mistakes do ${audience} commonly make with ${topic}?`,
  ];
  const angles = [
    `a practical introduction to ${topic} for ${audience}`,
    ...b.keywords.map((k) => `the role of ${k} in ${topic}`),
    `common pitfalls with ${topic} and how to avoid them`,
  ];
  const facts = [
    `define ${topic} in one or two plain sentences`,
    ...b.keywords.map((k) => `explain ${k} in the context of ${topic}`),
    `give ${audience} one concrete first step`,
  ];
  return Promise.resolve({
    topic,
    audience,
    keywords: b.keywords,
    banned_words: b.bannedWords,
    target_words: b.targetWords,
    title: b.title,
    questions,
    angles,
    facts_to_cover: facts,
  });
};

interface Section {
  heading: string;
  points: string[];
  target_words: number;
}

/** outline: turns the research into titled sections with a word budget each. */
export const outline: StageHandler = (ctx) => {
  const b = normalizeBrief(ctx.brief);
  const r = ctx.outputs.research ?? {};
  const questions = Array.isArray(r.questions) ? r.questions.map(String) : [];
  const facts = Array.isArray(r.facts_to_cover) ? r.facts_to_cover.map(String) : [];
  const title = b.title ?? `${capitalize(b.topic)}: a guide for ${b.audience}`;
  const body: Array<{ heading: string; points: string[] }> = b.keywords.length > 0
    ? b.keywords.map((k, i) => ({
      heading: `Understanding ${k}`,
      points: [facts[i + 1] ?? `explain ${k}`, questions[i + 2] ?? `How does ${k} fit in?`],
    }))
    : [
      { heading: "Getting started", points: [questions[1] ?? `How to start with ${b.topic}`] },
      { heading: "Key practices", points: [facts[0] ?? `define ${b.topic}`] },
    ];
  const all = [
    { heading: "Introduction", points: [questions[0] ?? `What is ${b.topic}?`] },
    ...body,
    {
      heading: "Common mistakes",
      points: [questions.at(-1) ?? `What goes wrong with ${b.topic}?`],
    },
    { heading: "Conclusion", points: [facts.at(-1) ?? "one concrete first step"] },
  ];
  // Word budget: 15 % introduction, 10 % conclusion, the rest shared by the others.
  const intro = Math.round(b.targetWords * 0.15);
  const outro = Math.round(b.targetWords * 0.10);
  const middle = Math.max(1, Math.round((b.targetWords - intro - outro) / (all.length - 2)));
  const sections: Section[] = all.map((s, i) => ({
    ...s,
    target_words: i === 0 ? intro : i === all.length - 1 ? outro : middle,
  }));
  return Promise.resolve({ title, sections: sections as unknown as JsonObject[] });
};

const SENTENCES = [
  "{S} is one of the first things {a} meet when they look at {t}.",
  "It pays to understand how {s} works before moving on, because later steps build on it.",
  "A useful habit is to try {s} on a small example first and to write down what happens.",
  "Most problems with {s} come from skipping the basics, not from the hard parts.",
  "When in doubt, compare your result with a known good example of {s}.",
  "Keep short notes on what worked with {s}, what did not, and why.",
  "{T} rewards steady practice more than occasional bursts of effort.",
  "Ask for feedback early: {a} who share their work improve faster.",
  "Small, regular steps with {s} beat one big rewrite at the end.",
  "Check each step before the next one, so a mistake with {s} stays small and easy to fix.",
];

function fill(template: string, subject: string, b: NormalizedBrief): string {
  return template
    .replaceAll("{S}", capitalize(subject))
    .replaceAll("{s}", subject)
    .replaceAll("{T}", capitalize(b.topic))
    .replaceAll("{t}", b.topic)
    .replaceAll("{a}", b.audience);
}

function subjectOf(heading: string, b: NormalizedBrief): string {
  const kw = b.keywords.find((k) => heading.toLowerCase().includes(k.toLowerCase()));
  return kw ?? b.topic;
}

/** draft: writes Markdown from the outline, each section to its word budget. */
export const draft: StageHandler = (ctx) => {
  const b = normalizeBrief(ctx.brief);
  const o = ctx.outputs.outline ?? {};
  const title = typeof o.title === "string" ? o.title : capitalize(b.topic);
  const sections = (Array.isArray(o.sections) ? o.sections : []) as unknown as Section[];
  if (sections.length === 0) throw new Error("draft: the outline has no sections");
  const parts = [`# ${title}`, "", `_A guide for ${b.audience}._`, ""];
  sections.forEach((section, si) => {
    const subject = subjectOf(section.heading, b);
    const sentences: string[] = [];
    for (const point of section.points ?? []) {
      const p = String(point).trim().replace(/[.?!]*$/, "");
      sentences.push(
        /\?$/.test(String(point).trim())
          ? `This section answers a simple question: ${p}?`
          : `Here we ${p}.`,
      );
    }
    let words = countWords(sentences.join(" "));
    for (let k = 0; words < section.target_words && k < 200; k++) {
      const s = fill(SENTENCES[(si * 3 + k) % SENTENCES.length]!, subject, b);
      sentences.push(s);
      words += countWords(s);
    }
    // Paragraphs of four sentences read better than one block.
    parts.push(`## ${section.heading}`, "");
    for (let k = 0; k < sentences.length; k += 4) {
      parts.push(sentences.slice(k, k + 4).join(" "), "");
    }
  });
  const markdown = parts.join("\n").trimEnd() + "\n";
  return Promise.resolve({ title, markdown, word_count: countWords(markdown) });
};

function occurrences(text: string, word: string): number {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return text.match(new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, "giu"))
    ?.length ?? 0;
}

/** The checks qa runs on a draft, each with a clear reason when it fails. */
export function qaChecks(
  markdown: string,
  b: NormalizedBrief,
): Array<{ check: string; passed: boolean; detail: string }> {
  const words = countWords(markdown);
  const min = Math.floor(b.targetWords * 0.5);
  const max = Math.ceil(b.targetWords * 2);
  const h1 = markdown.match(/^# \S.*$/gm)?.length ?? 0;
  const h2 = markdown.match(/^## \S.*$/gm)?.length ?? 0;
  const missing = b.keywords.filter((k) => occurrences(markdown, k) === 0);
  const banned = b.bannedWords
    .map((w) => ({ w, n: occurrences(markdown, w) }))
    .filter((x) => x.n > 0);
  return [
    {
      check: "length",
      passed: words >= min && words <= max,
      detail: `${words} words (expected ${min} to ${max})`,
    },
    {
      check: "headings",
      passed: h1 === 1 && h2 >= 2,
      detail: `${h1} title heading(s) and ${h2} section heading(s) (expected 1 and at least 2)`,
    },
    {
      check: "keywords",
      passed: missing.length === 0,
      detail: missing.length === 0
        ? `all ${b.keywords.length} keyword(s) present`
        : `missing required keyword(s): ${missing.join(", ")}`,
    },
    {
      check: "banned_words",
      passed: banned.length === 0,
      detail: banned.length === 0
        ? "no banned words"
        : banned.map((x) => `banned word "${x.w}" appears ${x.n} time(s)`).join(", "),
    },
  ];
}

/** qa: checks the draft; fails the attempt with every failed check's reason. */
export const qa: StageHandler = (ctx) => {
  const b = normalizeBrief(ctx.brief);
  const markdown = ctx.outputs.draft?.markdown;
  if (typeof markdown !== "string") throw new Error("qa failed: the draft has no markdown");
  const checks = qaChecks(markdown, b);
  const failed = checks.filter((c) => !c.passed);
  if (failed.length > 0) {
    throw new Error(`qa failed: ${failed.map((c) => `${c.check}: ${c.detail}`).join("; ")}`);
  }
  return Promise.resolve({ passed: true, word_count: countWords(markdown), checks });
};

/** export: renders the checked draft to an HTML document. */
export const exportStage: StageHandler = (ctx) => {
  const d = ctx.outputs.draft ?? {};
  if (typeof d.markdown !== "string") throw new Error("export: the draft has no markdown");
  const title = typeof d.title === "string" ? d.title : normalizeBrief(ctx.brief).topic;
  const html = [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`,
    `<body><article>\n${renderMarkdown(d.markdown)}\n</article></body></html>`,
  ].join("\n");
  return Promise.resolve({
    title,
    markdown: d.markdown,
    html,
    word_count: countWords(d.markdown),
  });
};

/** complete: sums the job up; completing this stage completes the job. */
export const complete: StageHandler = (ctx: StageContext) => {
  const e = ctx.outputs.export ?? {};
  const o = ctx.outputs.outline ?? {};
  const sections = Array.isArray(o.sections) ? o.sections.length : 0;
  const words = typeof e.word_count === "number" ? e.word_count : 0;
  const title = typeof e.title === "string" ? e.title : "";
  return Promise.resolve({
    title,
    word_count: words,
    sections,
    html_bytes: typeof e.html === "string" ? new TextEncoder().encode(e.html).length : 0,
    stages: Object.keys(ctx.outputs),
    summary: `"${title}" is ready: ${words} words in ${sections} sections`,
  });
};

/** The shipped handlers, one per stage. */
export const defaultStageHandlers: StageRegistry = {
  research,
  outline,
  draft,
  qa,
  export: exportStage,
  complete,
};
