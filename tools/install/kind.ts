/**
 * `deno task conveyor add kind <name>`: the files of a new job kind in a project Conveyor is
 * installed in. A migration registers the kind (queue_job then accepts it, the dispatcher
 * starts its worker) and creates its three pgmq queues; the worker function serves a typed
 * handler (kind.ts: the payload type; handler.ts: the work; handler_test.ts: its test)
 * through Conveyor's typed API (supabase/functions/_conveyor/jobs.ts).
 *
 * @module
 */
/**
 * A kind name: what `conveyor.job_kinds.kind` accepts, short enough that its queue
 * (`q_<kind>`) does too.
 */
export const KIND_NAME = /^[a-z][a-z0-9_]{0,28}$/;

/** The message for a name that is not one. */
export function badKindName(name: string): string {
  return `"${name}" is not a valid kind name: a lower-case letter, then lower-case letters, ` +
    `digits or _ (29 characters at most), e.g. send_invoice`;
}

/** The worker function's name: `send_invoice` → `send-invoice-worker`. */
export function kindSlug(kind: string): string {
  return `${kind.replaceAll("_", "-")}-worker`;
}

/** `send_invoice` → `SendInvoice`. */
function pascal(kind: string): string {
  return kind.split("_").filter(Boolean).map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

/** `send_invoice` → `sendInvoice`. */
function camel(kind: string): string {
  const p = pascal(kind);
  return p[0]!.toLowerCase() + p.slice(1);
}

/**
 * Kinds the project's migrations register: every `('<kind>', 'q_…'` row of an
 * `insert into conveyor.job_kinds` (Conveyor's own and those `add kind` wrote), with the
 * file that registers it.
 */
export function kindsIn(migrations: { name: string; text: string }[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of migrations) {
    for (const stmt of m.text.matchAll(/insert\s+into\s+conveyor\.job_kinds\b[^;]*;/gi)) {
      for (const row of stmt[0].matchAll(/\(\s*'([a-z][a-z0-9_]*)'\s*,\s*'q_/g)) {
        if (!found.has(row[1]!)) found.set(row[1]!, m.name);
      }
    }
  }
  return found;
}

/** One file of a new kind, relative to the project. */
export interface KindFile {
  path: string;
  content: string;
}

/** The files of kind `kind`, its migration versioned `version`. */
export function kindFiles(kind: string, version: string): KindFile[] {
  const slug = kindSlug(kind);
  const type = `${pascal(kind)}Payload`;
  const value = camel(kind);
  const dir = `supabase/functions/${slug}`;
  const q = `q_${kind}`;
  return [
    {
      path: `supabase/migrations/${version}_conveyor_kind_${kind}.sql`,
      content:
        `-- Job kind ${kind}, made by \`deno task conveyor add kind ${kind}\`: queue_job accepts it,
-- its jobs go to three pgmq queues (${q}, ${q}_fast, ${q}_bulk), and the dispatcher
-- starts the worker function ${slug} (supabase/functions/${slug}) for them, at most
-- max_concurrency at a time. Edit it before you push it (the description, max_concurrency,
-- service_name to take a token of a rate limiter per job); once pushed, change the kind with
-- a new migration (update conveyor.job_kinds …).
insert into conveyor.job_kinds (kind, queue_name, worker_slug, description, max_concurrency)
values ('${kind}', '${q}', '${slug}', '${kind} jobs', 2);

select conveyor.ensure_kind_queues('${kind}');
`,
    },
    {
      path: `${dir}/index.ts`,
      content: `// ${slug}: runs the ${kind} jobs the dispatcher hands it (made by
// \`deno task conveyor add kind ${kind}\`). The work is in handler.ts.
import { serveKind } from "../_conveyor/jobs.ts";
import { handler } from "./handler.ts";

Deno.serve(serveKind(handler));
`,
    },
    {
      path: `${dir}/kind.ts`,
      content: `// The ${kind} job kind: its name and the payload its jobs carry. Whoever enqueues
// (\`enqueue(client, ${value}, payload, { idempotencyKey })\` from ../_conveyor/jobs.ts) and
// the handler (handler.ts) both use it, so a payload that does not fit is a type error at
// both ends.
import { jobKind } from "../_conveyor/jobs.ts";

/** What a ${kind} job carries (JSON). Describe your payload here. */
export interface ${type} {
  /** An example field: replace it with yours. */
  id: string;
}

export const ${value} = jobKind<${type}>("${kind}");
`,
    },
    {
      path: `${dir}/handler.ts`,
      content:
        `// The work of one ${kind} job. Return the job's output (stored in jobs.output); throw
// to fail this attempt (it is retried with backoff, and dead-lettered after the last one);
// throw JobCancelError to dead-letter it at once, JobSnoozeError(seconds) to run it later
// without spending an attempt. A job may run more than once (delivery is at least once):
// make its effects idempotent, e.g. keyed on job.id. serviceClient() (from
// ../_conveyor/jobs.ts) is a supabase-js client with the service role.
import { defineHandler } from "../_conveyor/jobs.ts";
import { ${value} } from "./kind.ts";

export const handler = defineHandler(${value}, (job, { log }) => {
  log("${kind}: nothing done yet (fill in handler.ts)", { id: job.payload.id });
  return { id: job.payload.id };
});
`,
    },
    {
      path: `${dir}/handler_test.ts`,
      content:
        `// The ${kind} handler's test. \`deno task test --project <this project>\` (from a Conveyor
// checkout) runs it with a local stack, so a handler that uses the database is tested
// against a real one (SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set).
import assert from "node:assert/strict";
import { runHandler } from "../_conveyor/jobs.ts";
import { handler } from "./handler.ts";

Deno.test("${kind} handler returns the job's output", async () => {
  const { output } = await runHandler(handler, { id: "example-1" });
  assert.deepEqual(output, { id: "example-1" });
});
`,
    },
  ];
}

/** The kind's entry for config.toml (appended after the user's entries). */
export function kindConfigEntry(kind: string): string {
  return `# Job kind ${kind} (deno task conveyor add kind): its worker function, which the
# dispatcher calls with the service-role key.
[functions.${kindSlug(kind)}]
verify_jwt = true
`;
}
