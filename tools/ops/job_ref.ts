/**
 * Job references: how an operator names a job to the ops CLI. The tools show a queue job as
 * its number (`#1234`, what queue_job returned) and any other uuid short as its last 8 hex
 * digits (`shortId`); each command that takes a job takes any of
 *
 * - a job number: `1234` or `#1234` (quote it in a shell, where `#` starts a comment);
 * - a uuid, or 4 to 32 of its hex digits from its start or its end (dashes anywhere or
 *   none, any case): of a queue job, a dead letter or a content job.
 *
 * `operator_find_jobs` (migration 20261207110000_job_lookup.sql) resolves one; this module
 * checks the form before any call and words what came back. Pure: no I/O.
 *
 * @module
 */
import { clockTime, jobNumber } from "../../supabase/functions/_shared/operator/format.ts";
import { renderTable } from "./table.ts";

/** How many of the newest queue jobs a suffix is looked for in (operator_find_jobs). */
export const SUFFIX_SCAN = 100_000;

/** Candidates listed when a reference is ambiguous. */
export const CANDIDATES_SHOWN = 10;

/** One row of `operator_find_jobs`. */
export interface JobMatch {
  source: "job" | "dead_letter" | "content_job";
  id: string;
  /** The queue job's number (of a dead letter: its job's); null for a content job. */
  job_number: number | null;
  /** The queue job (a dead letter's job); null for a content job. */
  job_id: string | null;
  /** A queue job's newest dead letter, a dead letter's own id; null otherwise. */
  dead_letter_id: string | null;
  /** The job kind; "content" for a content job. */
  kind: string;
  /** The job's status; a dead letter's is "dead" or "redriven". */
  status: string;
  created_at: string;
  matched: "number" | "id" | "prefix" | "suffix";
  /** How many match in all (1001: more than 1000). */
  total: number;
}

/** What the usage and the errors say a reference may be. */
export const JOB_REF_FORMS =
  "a job number (1234), a uuid, or 4 to 32 of its hex digits (its start or its end)";

/** Null when `ref` has the form of a job reference, else why not (one line). */
export function jobRefProblem(ref: string): string | null {
  const t = ref.trim();
  if (/^#?[0-9]{1,18}$/.test(t)) return null;
  const hex = t.replaceAll("-", "");
  if (/^[0-9a-f-]+$/i.test(t) && hex.length >= 4 && hex.length <= 32) return null;
  return `"${ref}" is not a job reference: give ${JOB_REF_FORMS}`;
}

/** The error text when nothing matches `ref` (a reference of the right form). */
export function notFoundMessage(ref: string): string {
  const t = ref.trim();
  const number = /^#?([0-9]{1,18})$/.exec(t)?.[1];
  const hex = t.replace(/^#/, "").replaceAll("-", "").toLowerCase();
  const fragment = !t.startsWith("#") && hex.length >= 4;
  const uuid = hex.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, "$1-$2-$3-$4-$5");
  const whose = hex.length === 32
    ? `no queue job, dead letter or content job has the id ${uuid}`
    : `no id of a queue job, dead letter or content job starts or ends with ${hex} ` +
      `(ends: among the newest ${SUFFIX_SCAN.toLocaleString("en-US")} queue jobs)`;
  if (number !== undefined) {
    return fragment
      ? `no queue job is numbered ${number}, and ${whose}`
      : `no queue job is numbered ${number}`;
  }
  return whose;
}

/** What a match is, in a word or two: "job #12", "dead letter of #12", "content job". */
function label(m: JobMatch): string {
  if (m.source === "job") return `job ${jobNumber(m.job_number)}`;
  if (m.source === "dead_letter") return `dead letter of ${jobNumber(m.job_number)}`;
  return "content job";
}

/** The error text when `ref` matches several: the first candidates, then "and N more". */
export function ambiguousMessage(ref: string, matches: readonly JobMatch[]): string {
  const total = matches[0]?.total ?? matches.length;
  const shown = matches.slice(0, CANDIDATES_SHOWN);
  const lines = renderTable<JobMatch>([
    { header: "WHAT", value: label },
    { header: "ID", value: (m) => m.id },
    { header: "KIND", value: (m) => m.kind },
    { header: "STATUS", value: (m) => m.status },
    {
      header: "CREATED (UTC)",
      value: (m) => `${m.created_at.slice(0, 10)} ${clockTime(m.created_at)}`,
    },
  ], shown).map((l) => `  ${l}`);
  const rest = total - shown.length;
  if (rest > 0) {
    lines.push(
      total > 1000 ? `  … and more than ${1000 - shown.length} more` : `  … and ${rest} more`,
    );
  }
  const count = total > 1000 ? "more than 1,000" : String(total);
  return `"${ref}" is ambiguous, ${count} match:\n${lines.join("\n")}`;
}
