/**
 * The handler registry: a typed `Map<kind, JobHandler>` the worker functions look handlers
 * up in. {@link defaultHandlers} returns the shipped ones (enrich, fetch, outreach, enforce);
 * replace or add entries to run your own code:
 *
 * ```ts
 * const handlers = defaultHandlers(serviceClient());
 * handlers.set("enrich", async (job) => ({ ...myEnrichment(job.payload) }));
 * ```
 *
 * @module
 */
import type { SupabaseClient } from "../../deps.ts";
import { rpc } from "../../supabase.ts";
import type { JobHandler } from "../adapter.ts";
import { enrichHandler } from "./enrich.ts";
import { fetchHandler } from "./fetch.ts";
import { type DecisionRecorder, DEFAULT_RULES, makeEnforceHandler, type Rule } from "./enforce.ts";
import { LocalOutboxProvider, type MessageProvider } from "./message_provider.ts";
import { DEFAULT_TEMPLATES, makeOutreachHandler, type MessageTemplate } from "./outreach.ts";

export { enrich, enrichHandler } from "./enrich.ts";
export { fetchHandler } from "./fetch.ts";
export type { FetchInput, FetchOutput } from "./fetch.ts";
export { DEFAULT_RULES, evaluate, holds, makeEnforceHandler } from "./enforce.ts";
export type { Condition, Decision, DecisionRecorder, Rule } from "./enforce.ts";
export { LocalOutboxProvider } from "./message_provider.ts";
export type { DeliveryReceipt, MessageProvider, OutboundMessage } from "./message_provider.ts";
export { DEFAULT_TEMPLATES, makeOutreachHandler, renderTemplate } from "./outreach.ts";

/** Kind → handler. Any handler may be registered; payload types are the handler's business. */
// deno-lint-ignore no-explicit-any -- each entry has its own payload and result types
export type HandlerRegistry = Map<string, JobHandler<any, unknown>>;

/** Records decisions through the `record_enforcement_decision` RPC. */
export function rpcDecisionRecorder(client: SupabaseClient): DecisionRecorder {
  return async ({ tenantId, jobId, subject, decision, input }) => {
    const rows = await rpc<Array<{ id: string; created: boolean }>>(
      client,
      "record_enforcement_decision",
      {
        p_tenant_id: tenantId,
        p_job_id: jobId,
        p_subject: subject,
        p_decision: decision.decision,
        p_matched_rules: decision.matched,
        p_input: input,
      },
    );
    const row = rows?.[0];
    if (!row) throw new Error("record_enforcement_decision returned no row");
    return row;
  };
}

/** What the shipped handlers can be configured with. */
export interface DefaultHandlerOptions {
  provider?: MessageProvider;
  templates?: Readonly<Record<string, MessageTemplate>>;
  rules?: readonly Rule[];
  recorder?: DecisionRecorder;
}

/** The shipped handlers, wired to the database through `client` (service role). */
export function defaultHandlers(
  client: SupabaseClient,
  opts: DefaultHandlerOptions = {},
): HandlerRegistry {
  const registry: HandlerRegistry = new Map();
  registry.set("enrich", enrichHandler);
  registry.set("fetch", fetchHandler);
  registry.set(
    "outreach",
    makeOutreachHandler(
      opts.provider ?? new LocalOutboxProvider(client),
      opts.templates ?? DEFAULT_TEMPLATES,
    ),
  );
  registry.set(
    "enforce",
    makeEnforceHandler(opts.recorder ?? rpcDecisionRecorder(client), opts.rules ?? DEFAULT_RULES),
  );
  return registry;
}
