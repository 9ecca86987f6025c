/**
 * The `fetch` handler: runs PGQueuer-style jobs sent to `fn_pgqueuer_enqueue` (seed 003's
 * example entrypoint is "fetch"). The payload arrives as bytes (base64 in the ledger); the
 * handler records what it was given: size, SHA-256 digest, the text when it is UTF-8, and
 * the headers the caller attached. Replace it in the registry to do your own work.
 *
 * @module
 */
import { JobCancelError } from "../../errors.ts";
import type { JobHandler } from "../adapter.ts";

/** The ledger payload fn_pgqueuer_enqueue writes. */
export interface FetchInput {
  entrypoint?: unknown;
  payload_base64?: unknown;
  size?: unknown;
}

/** What the handler returns (stored as the job's output). */
export interface FetchOutput {
  entrypoint: string;
  size: number;
  sha256: string;
  text: string | null;
  headers: Record<string, unknown> | null;
}

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64.replace(/\s+/g, ""));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Describes a PGQueuer payload. Malformed input is cancelled: retrying cannot fix it. */
export const fetchHandler: JobHandler<FetchInput, FetchOutput> = async (job) => {
  const { entrypoint, payload_base64: b64 } = job.payload;
  if (typeof entrypoint !== "string" || typeof b64 !== "string") {
    throw new JobCancelError("fetch: the payload lacks entrypoint or payload_base64");
  }
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = decodeBase64(b64);
  } catch {
    throw new JobCancelError("fetch: payload_base64 is not valid base64");
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let text: string | null;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    text = null;
  }
  return {
    entrypoint,
    size: bytes.length,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    text,
    headers: job.headers,
  };
};
