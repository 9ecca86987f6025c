/**
 * The `enrich` handler: normalises a contact/company record and derives what can be
 * derived (names from a full name, the domain from the email, a company name from a
 * business domain, a completeness score). Pure: the output is the job's result, stored in
 * `jobs.output` by the settle. A record without a usable email is cancelled (it can never
 * succeed, so retrying it would only waste attempts).
 *
 * `fail_attempts: N` in the payload makes the first N attempts fail with a transient error
 * before the record is enriched: a job that is retried with backoff and then succeeds (N
 * below the job's max attempts, 3 by default) or is dead-lettered (N at or above it), for the
 * tour and for drills, without breaking anything. The handler reads the attempt number the
 * worker gives it (`job.attempt`, 1-based, counted by the ledger across workers).
 *
 * @module
 */
import { JobCancelError } from "../../errors.ts";
import type { JobHandler } from "../adapter.ts";

/** What an enrich job's payload may carry (all optional except `email`). */
export interface EnrichInput {
  email?: unknown;
  name?: unknown;
  first_name?: unknown;
  last_name?: unknown;
  company?: unknown;
  domain?: unknown;
  phone?: unknown;
  title?: unknown;
  website?: unknown;
  /** Fail the first N attempts transiently (0..10); not part of the record. */
  fail_attempts?: unknown;
}

/** Most attempts `fail_attempts` may fail (a critical job has 5). */
export const MAX_FAIL_ATTEMPTS = 10;

/** The error of an attempt that `fail_attempts` fails: an ordinary error, so it is retried. */
export class TransientFailure extends Error {
  override readonly name = "TransientFailure";
}

/**
 * Throws {@link TransientFailure} while `attempt` ≤ `failAttempts`; JobCancelError when
 * `failAttempts` is not a whole number in 0..{@link MAX_FAIL_ATTEMPTS} (retrying cannot fix it).
 */
export function failAttempt(failAttempts: unknown, attempt: number): void {
  if (failAttempts === undefined) return;
  if (
    typeof failAttempts !== "number" || !Number.isInteger(failAttempts) || failAttempts < 0 ||
    failAttempts > MAX_FAIL_ATTEMPTS
  ) {
    throw new JobCancelError(
      `enrich: payload.fail_attempts must be a whole number from 0 to ${MAX_FAIL_ATTEMPTS}, got ${
        JSON.stringify(failAttempts)
      }`,
    );
  }
  if (attempt <= failAttempts) {
    throw new TransientFailure(
      `enrich: transient failure on attempt ${attempt}, as payload.fail_attempts = ${failAttempts} asks`,
    );
  }
}

/** The normalised record. */
export interface EnrichedContact {
  email: string;
  first_name: string | null;
  last_name: string | null;
  full_name: string | null;
  title: string | null;
  phone: string | null;
  domain: string;
  company: string | null;
  company_source: "payload" | "domain" | null;
  free_email: boolean;
}

/** The handler's output. */
export interface EnrichOutput {
  contact: EnrichedContact;
  completeness: number;
  missing: string[];
}

/** Mailbox providers: their domain says nothing about the person's company. */
export const FREE_EMAIL_DOMAINS: ReadonlySet<string> = new Set([
  "gmail.com",
  "googlemail.com",
  "yahoo.com",
  "hotmail.com",
  "outlook.com",
  "live.com",
  "icloud.com",
  "me.com",
  "aol.com",
  "proton.me",
  "protonmail.com",
  "gmx.com",
  "gmx.de",
  "web.de",
  "yandex.ru",
  "mail.ru",
]);

/** Second-level labels under which the registrable name is one label further left. */
const SECOND_LEVEL = new Set(["co", "com", "org", "net", "ac", "gov", "edu", "ltd", "plc"]);

const EMAIL_RE =
  /^[^\s@]+@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)$/;

function text(v: unknown): string | null {
  if (typeof v !== "string") return null;
  const t = v.replace(/\s+/g, " ").trim();
  return t === "" ? null : t;
}

/** "mcDONALD-smith" → "Mcdonald-Smith": each word and hyphen part capitalised. */
export function titleCase(s: string): string {
  return s.toLowerCase().replace(/(^|[\s\-'])(\p{L})/gu, (_, sep, c) => sep + c.toUpperCase());
}

/** Splits "Ada  LOVELACE" into ["Ada", "Lovelace"]; "Last, First" is understood too. */
export function splitName(full: string): [string | null, string | null] {
  const t = full.replace(/\s+/g, " ").trim();
  if (t.includes(",")) {
    const [last, first] = t.split(",", 2).map((x) => x.trim());
    return [first ? titleCase(first) : null, last ? titleCase(last) : null];
  }
  const parts = t.split(" ");
  if (parts.length === 1) return [titleCase(parts[0]!), null];
  return [titleCase(parts.slice(0, -1).join(" ")), titleCase(parts[parts.length - 1]!)];
}

/** "mail.acme-corp.co.uk" → "Acme Corp": the registrable label, words capitalised. */
export function companyFromDomain(domain: string): string | null {
  const labels = domain.toLowerCase().split(".").filter(Boolean);
  if (labels.length < 2) return null;
  let i = labels.length - 2;
  if (
    labels.length >= 3 && SECOND_LEVEL.has(labels[i]!) && labels[labels.length - 1]!.length === 2
  ) {
    i -= 1;
  }
  const name = labels[i]!.replace(/[-_]+/g, " ").trim();
  return name ? titleCase(name) : null;
}

/** Digits and a leading +, nothing else; null when fewer than 7 digits remain. */
export function normalisePhone(v: string): string | null {
  const plus = v.trim().startsWith("+");
  const digits = v.replace(/\D/g, "");
  if (digits.length < 7 || digits.length > 15) return null;
  return (plus ? "+" : "") + digits;
}

const SCORED: Array<keyof EnrichedContact> = [
  "email",
  "first_name",
  "last_name",
  "title",
  "phone",
  "company",
];

/** The output for an empty record: nothing to enrich, nothing wrong. */
export interface EnrichSkipped {
  skipped: true;
  reason: string;
}

/**
 * Normalises one record; throws JobCancelError when it has data but no usable email. An
 * EMPTY payload (`{}`) is skipped, not cancelled: it is what pings send (seed 000's own
 * `doctor:ping` body), and a health check must not leave a dead letter and an alert behind.
 */
export function enrich(input: EnrichInput): EnrichOutput | EnrichSkipped {
  if (Object.keys(input).length === 0) {
    return { skipped: true, reason: "empty payload: nothing to enrich" };
  }
  const rawEmail = text(input.email);
  if (!rawEmail) throw new JobCancelError("enrich: payload.email is required");
  const email = rawEmail.toLowerCase().replace(/^mailto:/, "");
  const m = EMAIL_RE.exec(email);
  if (!m) throw new JobCancelError(`enrich: payload.email is not an email address: "${rawEmail}"`);
  const domain = m[1]!;
  const freeEmail = FREE_EMAIL_DOMAINS.has(domain);

  let first = text(input.first_name);
  let last = text(input.last_name);
  const full = text(input.name);
  if (full && (!first || !last)) {
    const [f, l] = splitName(full);
    first ??= f;
    last ??= l;
  }
  first = first ? titleCase(first) : null;
  last = last ? titleCase(last) : null;

  const givenCompany = text(input.company);
  const derived = freeEmail ? null : companyFromDomain(domain);
  const company = givenCompany ?? derived;
  const phoneText = text(input.phone);

  const contact: EnrichedContact = {
    email,
    first_name: first,
    last_name: last,
    full_name: [first, last].filter(Boolean).join(" ") || null,
    title: text(input.title),
    phone: phoneText ? normalisePhone(phoneText) : null,
    domain,
    company,
    company_source: givenCompany ? "payload" : derived ? "domain" : null,
    free_email: freeEmail,
  };
  const missing = SCORED.filter((k) => contact[k] === null || contact[k] === "");
  const completeness = Math.round(((SCORED.length - missing.length) / SCORED.length) * 100) / 100;
  return { contact, completeness, missing };
}

/** The registry entry: a pure transformation of the payload. */
export const enrichHandler: JobHandler<EnrichInput, EnrichOutput | EnrichSkipped> = (job) => {
  if (job.payload === null || typeof job.payload !== "object" || Array.isArray(job.payload)) {
    return Promise.reject(new JobCancelError("enrich: the payload must be a JSON object"));
  }
  try {
    const { fail_attempts: failAttempts, ...record } = job.payload;
    failAttempt(failAttempts, job.attempt);
    return Promise.resolve(enrich(record));
  } catch (e) {
    return Promise.reject(e);
  }
};
