/**
 * The brief as the shipped handlers use it: defaults filled in, keywords cleaned, the
 * length turned into a number of words.
 *
 * @module
 */
import type { ContentBrief } from "./types.ts";

/** Words per named length. */
export const LENGTH_WORDS = { short: 300, medium: 600, long: 1200 } as const;

/** A brief with every field the handlers need. */
export interface NormalizedBrief {
  topic: string;
  audience: string;
  keywords: string[];
  bannedWords: string[];
  targetWords: number;
  title: string | null;
}

function cleanList(xs: unknown): string[] {
  if (!Array.isArray(xs)) return [];
  const seen = new Set<string>();
  const out: string[] = [];
  for (const x of xs) {
    if (typeof x !== "string") continue;
    const v = x.trim().replace(/\s+/g, " ");
    const key = v.toLowerCase();
    if (v === "" || seen.has(key)) continue;
    seen.add(key);
    out.push(v);
  }
  return out;
}

/** Fills defaults: audience "general readers", medium length (600 words). */
export function normalizeBrief(brief: ContentBrief): NormalizedBrief {
  const len = brief.length;
  const targetWords = typeof len === "number"
    ? len
    : typeof len === "string" && len in LENGTH_WORDS
    ? LENGTH_WORDS[len as keyof typeof LENGTH_WORDS]
    : LENGTH_WORDS.medium;
  return {
    topic: String(brief.topic ?? "").trim().replace(/\s+/g, " "),
    audience: typeof brief.audience === "string" && brief.audience.trim() !== ""
      ? brief.audience.trim()
      : "general readers",
    keywords: cleanList(brief.keywords),
    bannedWords: cleanList(brief.banned_words),
    targetWords,
    title: typeof brief.title === "string" && brief.title.trim() !== "" ? brief.title.trim() : null,
  };
}

/** "rust tooling" → "Rust tooling". */
export function capitalize(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1);
}

/** Words of a text (anything between whitespace), ignoring Markdown markers alone. */
export function countWords(text: string): number {
  return text.split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
}
