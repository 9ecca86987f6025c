/**
 * The `enforce` handler: evaluates declarative rules against the job's payload and records
 * one decision per job (`allow`, `deny` or `review`, with the rules that matched) in
 * `public.enforcement_decisions` through the `record_enforcement_decision` RPC.
 *
 * A rule is data, not code: `{ id, effect, when }` where `when` is a condition tree of
 * `{ field, op, value }` leaves (dotted field paths) combined with `all` / `any` / `not`.
 * The strongest matching effect wins: deny > review > allow; no match → allow.
 *
 * @module
 */
import { JobCancelError } from "../../errors.ts";
import type { JobHandler } from "../adapter.ts";

/** Comparison operators of a condition leaf. */
export type RuleOp =
  | "eq"
  | "neq"
  | "in"
  | "not_in"
  | "gt"
  | "gte"
  | "lt"
  | "lte"
  | "exists"
  | "missing"
  | "contains"
  | "ends_with"
  | "matches";

/** A condition: a leaf or a combination. */
export type Condition =
  | { field: string; op: RuleOp; value?: unknown }
  | { all: Condition[] }
  | { any: Condition[] }
  | { not: Condition };

/** A declarative rule. */
export interface Rule {
  id: string;
  description?: string;
  effect: "allow" | "deny" | "review";
  when: Condition;
}

/** The outcome of an evaluation. */
export interface Decision {
  decision: "allow" | "deny" | "review";
  matched: Array<{ id: string; effect: Rule["effect"]; description?: string }>;
}

/** The shipped rule set (a compliance screen for outbound work); replace it with your own. */
export const DEFAULT_RULES: readonly Rule[] = [
  {
    id: "sanctioned_country",
    description: "country is under a comprehensive embargo",
    effect: "deny",
    when: { field: "country", op: "in", value: ["CU", "IR", "KP", "SY"] },
  },
  {
    id: "disposable_email",
    description: "email domain is a disposable mailbox",
    effect: "deny",
    when: {
      any: [
        { field: "email", op: "ends_with", value: "@mailinator.com" },
        { field: "email", op: "ends_with", value: "@guerrillamail.com" },
        { field: "email", op: "ends_with", value: "@10minutemail.com" },
      ],
    },
  },
  {
    id: "opted_out",
    description: "the contact opted out of messages",
    effect: "deny",
    when: { field: "opted_out", op: "eq", value: true },
  },
  {
    id: "large_amount",
    description: "amount above 10000 needs a human",
    effect: "review",
    when: { field: "amount", op: "gt", value: 10_000 },
  },
  {
    id: "new_account_high_volume",
    description: "an account younger than 7 days sending more than 500 messages",
    effect: "review",
    when: {
      all: [
        { field: "account.age_days", op: "lt", value: 7 },
        { field: "volume", op: "gt", value: 500 },
      ],
    },
  },
];

function get(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function same(a: unknown, b: unknown): boolean {
  if (typeof a === "string" && typeof b === "string") return a.toLowerCase() === b.toLowerCase();
  return a === b;
}

/** True if `cond` holds for `subject`. Throws on a malformed condition. */
export function holds(cond: Condition, subject: unknown): boolean {
  if ("all" in cond) return cond.all.every((c) => holds(c, subject));
  if ("any" in cond) return cond.any.some((c) => holds(c, subject));
  if ("not" in cond) return !holds(cond.not, subject);
  const v = get(subject, cond.field);
  const x = cond.value;
  switch (cond.op) {
    case "exists":
      return v !== undefined && v !== null;
    case "missing":
      return v === undefined || v === null;
    case "eq":
      return same(v, x);
    case "neq":
      return !same(v, x);
    case "in":
      return Array.isArray(x) && x.some((e) => same(v, e));
    case "not_in":
      return Array.isArray(x) && !x.some((e) => same(v, e));
    case "gt":
    case "gte":
    case "lt":
    case "lte": {
      const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
      if (typeof n !== "number" || !Number.isFinite(n) || typeof x !== "number") return false;
      return cond.op === "gt"
        ? n > x
        : cond.op === "gte"
        ? n >= x
        : cond.op === "lt"
        ? n < x
        : n <= x;
    }
    case "contains":
      if (Array.isArray(v)) return v.some((e) => same(e, x));
      return typeof v === "string" && typeof x === "string" &&
        v.toLowerCase().includes(x.toLowerCase());
    case "ends_with":
      return typeof v === "string" && typeof x === "string" &&
        v.toLowerCase().endsWith(x.toLowerCase());
    case "matches":
      return typeof v === "string" && typeof x === "string" && new RegExp(x, "i").test(v);
    default:
      throw new Error(`unknown rule operator ${JSON.stringify((cond as { op: unknown }).op)}`);
  }
}

const RANK = { allow: 0, review: 1, deny: 2 } as const;

/** Evaluates every rule; the strongest matching effect wins (deny > review > allow). */
export function evaluate(rules: readonly Rule[], subject: unknown): Decision {
  const matched = rules.filter((r) => holds(r.when, subject)).map((r) => ({
    id: r.id,
    effect: r.effect,
    ...(r.description ? { description: r.description } : {}),
  }));
  const decision = matched.reduce<Decision["decision"]>(
    (d, r) => (RANK[r.effect] > RANK[d] ? r.effect : d),
    "allow",
  );
  return { decision, matched };
}

/** Records a decision (the effect of an enforce job); returns the row id. */
export type DecisionRecorder = (d: {
  tenantId: string;
  jobId: string;
  subject: string;
  decision: Decision;
  input: Record<string, unknown>;
}) => Promise<{ id: string; created: boolean }>;

/** Output of an enforce job. */
export interface EnforceOutput {
  decision: Decision["decision"];
  matched_rules: Decision["matched"];
  decision_id: string;
  created: boolean;
  subject: string;
}

/** Builds the enforce handler over a rule set and a recorder. */
export function makeEnforceHandler(
  record: DecisionRecorder,
  rules: readonly Rule[] = DEFAULT_RULES,
): JobHandler<Record<string, unknown>, EnforceOutput> {
  return async (job) => {
    const p = job.payload;
    if (p === null || typeof p !== "object" || Array.isArray(p)) {
      throw new JobCancelError("enforce: the payload must be a JSON object");
    }
    const subjectValue = p.subject ?? p.id ?? p.email;
    const subject = typeof subjectValue === "string" || typeof subjectValue === "number"
      ? String(subjectValue)
      : `job:${job.id}`;
    let decision: Decision;
    try {
      decision = evaluate(rules, p);
    } catch (e) {
      throw new JobCancelError(`enforce: ${(e as Error).message}`);
    }
    const row = await record({
      tenantId: job.tenantId,
      jobId: job.id,
      subject,
      decision,
      input: p,
    });
    return {
      decision: decision.decision,
      matched_rules: decision.matched,
      decision_id: row.id,
      created: row.created,
      subject,
    };
  };
}
