/**
 * The `outreach` handler: renders a message from a template and the job's payload and
 * delivers it through a {@link MessageProvider} (locally: a row in `outbox_messages`).
 *
 * Payload: `{ "to": "ada@example.com", "template": "welcome", "vars": {...},
 * "channel"?: "email"|"sms"|"webhook" }`, or an inline `"subject"` / `"body"` instead of a
 * named template. `{{name}}` placeholders are filled from `vars` (dotted paths allowed);
 * a missing variable, an unknown template or no recipient cancels the job with the reason.
 *
 * @module
 */
import { JobCancelError } from "../../errors.ts";
import type { JobHandler } from "../adapter.ts";
import type { MessageProvider } from "./message_provider.ts";

/** A message template. */
export interface MessageTemplate {
  subject: string | null;
  body: string;
}

/** The shipped templates; pass your own map to {@link makeOutreachHandler}. */
export const DEFAULT_TEMPLATES: Readonly<Record<string, MessageTemplate>> = {
  welcome: {
    subject: "Welcome to {{company}}, {{first_name}}",
    body: "Hi {{first_name}},\n\nthanks for signing up with {{company}}. " +
      "Reply to this message if you have any questions.\n\n— The {{company}} team",
  },
  follow_up: {
    subject: "Following up on {{topic}}",
    body: "Hi {{first_name}},\n\njust following up on {{topic}}. " +
      "Would {{day}} work for a short call?",
  },
  reminder_sms: {
    subject: null,
    body: "Reminder: {{event}} on {{date}}. Reply STOP to opt out.",
  },
};

const PLACEHOLDER = /\{\{\s*([A-Za-z_][\w.]*)\s*\}\}/g;

function lookup(vars: Record<string, unknown>, path: string): unknown {
  let cur: unknown = vars;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * Fills `{{var}}` placeholders. Throws JobCancelError listing every missing variable
 * (a value that is null, an object or absent is missing).
 */
export function renderTemplate(template: string, vars: Record<string, unknown>): string {
  const missing = new Set<string>();
  const out = template.replace(PLACEHOLDER, (_, name: string) => {
    const v = lookup(vars, name);
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") {
      return String(v);
    }
    missing.add(name);
    return "";
  });
  if (missing.size > 0) {
    throw new JobCancelError(`outreach: missing template variable(s): ${[...missing].join(", ")}`);
  }
  return out;
}

/** Payload of an outreach job. */
export interface OutreachInput {
  to?: unknown;
  email?: unknown;
  channel?: unknown;
  template?: unknown;
  subject?: unknown;
  body?: unknown;
  vars?: unknown;
}

/** Output of an outreach job. */
export interface OutreachOutput {
  message_id: string;
  created: boolean;
  provider: string;
  channel: string;
  recipient: string;
  subject: string | null;
  template: string;
}

/** Builds the outreach handler over a provider and a template set. */
export function makeOutreachHandler(
  provider: MessageProvider,
  templates: Readonly<Record<string, MessageTemplate>> = DEFAULT_TEMPLATES,
): JobHandler<OutreachInput, OutreachOutput> {
  return async (job, ctx) => {
    const p = job.payload ?? {};
    const channel = p.channel ?? "email";
    if (channel !== "email" && channel !== "sms" && channel !== "webhook") {
      throw new JobCancelError(`outreach: unsupported channel ${JSON.stringify(channel)}`);
    }
    const to = typeof p.to === "string"
      ? p.to.trim()
      : typeof p.email === "string"
      ? p.email.trim()
      : "";
    if (!to) throw new JobCancelError("outreach: payload.to (the recipient) is required");
    if (channel === "email" && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(to)) {
      throw new JobCancelError(`outreach: "${to}" is not an email address`);
    }
    let tpl: MessageTemplate;
    let name: string;
    if (typeof p.template === "string") {
      const found = Object.hasOwn(templates, p.template) ? templates[p.template] : undefined;
      if (!found) throw new JobCancelError(`outreach: unknown template "${p.template}"`);
      tpl = found;
      name = p.template;
    } else if (typeof p.body === "string") {
      tpl = { subject: typeof p.subject === "string" ? p.subject : null, body: p.body };
      name = "inline";
    } else {
      throw new JobCancelError("outreach: give payload.template (a name) or payload.body");
    }
    const vars = p.vars && typeof p.vars === "object" && !Array.isArray(p.vars)
      ? p.vars as Record<string, unknown>
      : {};
    const subject = tpl.subject === null ? null : renderTemplate(tpl.subject, vars);
    const body = renderTemplate(tpl.body, vars);
    const receipt = await provider.send({
      tenantId: job.tenantId,
      jobId: job.id,
      channel,
      recipient: channel === "email" ? to.toLowerCase() : to,
      subject,
      body,
      template: name,
      metadata: { kind: job.kind, attempt: job.attempt },
    }, ctx.signal);
    ctx.log(
      receipt.created ? "message delivered" : "message already delivered by an earlier attempt",
      {
        message_id: receipt.messageId,
      },
    );
    return {
      message_id: receipt.messageId,
      created: receipt.created,
      provider: receipt.provider,
      channel,
      recipient: channel === "email" ? to.toLowerCase() : to,
      subject,
      template: name,
    };
  };
}
