/**
 * Types of the content pipeline: its stages, the brief, and the handler contract users
 * implement to replace a stage (e.g. with an LLM call).
 *
 * @module
 */

/** The pipeline, in order (seed 001's stage names). */
export const CONTENT_STAGES = ["research", "outline", "draft", "qa", "export", "complete"] as const;

/** A content stage. */
export type ContentStage = typeof CONTENT_STAGES[number];

/** True when `s` names a content stage. */
export function isContentStage(s: string): s is ContentStage {
  return (CONTENT_STAGES as readonly string[]).includes(s);
}

/** JSON values, as stored in jsonb. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A JSON object. */
export type JsonObject = { [key: string]: Json };

/** What `queue_content_job` accepted (validated in SQL); unknown fields are kept. */
export interface ContentBrief {
  topic: string;
  audience?: string;
  keywords?: string[];
  /** "short" | "medium" | "long" or a number of words (100..5000). */
  length?: "short" | "medium" | "long" | number;
  title?: string;
  banned_words?: string[];
  [key: string]: unknown;
}

/** What a stage handler gets. */
export interface StageContext {
  jobId: string;
  stage: ContentStage;
  /** 1-based attempt of this stage. */
  attempt: number;
  maxAttempts: number;
  brief: ContentBrief;
  /** Outputs of the stages already completed, by stage name. */
  outputs: Partial<Record<ContentStage, JsonObject>>;
  /** Aborted at the handler's deadline or when the function shuts down. */
  signal: AbortSignal;
}

/**
 * Does one stage of one job and returns its output (stored as the stage's output and given
 * to later stages). Throw to fail the attempt (retried with backoff); throw JobCancelError
 * to fail the job at once; JobSnoozeError to run it later without spending an attempt.
 */
export type StageHandler = (ctx: StageContext) => Promise<JsonObject>;

/** One handler per stage. */
export type StageRegistry = Record<ContentStage, StageHandler>;
