/**
 * Where the outreach handler delivers rendered messages. Users plug in their own provider
 * (SendGrid, Twilio, …); the shipped `LocalOutboxProvider` delivers by writing the message
 * into `public.outbox_messages` through the `outbox_write` RPC. Delivery must be idempotent
 * per job (handlers run at least once): the outbox is unique per (tenant, job).
 *
 * @module
 */
import type { SupabaseClient } from "../../deps.ts";
import { rpc } from "../../supabase.ts";

/** A rendered message. */
export interface OutboundMessage {
  tenantId: string;
  /** The job that produced it: the idempotency key of the delivery. */
  jobId: string;
  channel: "email" | "sms" | "webhook";
  recipient: string;
  subject: string | null;
  body: string;
  template: string;
  metadata?: Record<string, unknown>;
}

/** What a delivery returns. */
export interface DeliveryReceipt {
  /** The provider's id of the message (the outbox row id locally). */
  messageId: string;
  /** False when an earlier attempt of the same job had already delivered it. */
  created: boolean;
  provider: string;
}

/** Delivers messages. */
export interface MessageProvider {
  readonly name: string;
  send(message: OutboundMessage, signal?: AbortSignal): Promise<DeliveryReceipt>;
}

/** Delivers into `public.outbox_messages` (the local provider). */
export class LocalOutboxProvider implements MessageProvider {
  readonly name = "local";
  constructor(readonly client: SupabaseClient) {}

  async send(m: OutboundMessage): Promise<DeliveryReceipt> {
    const rows = await rpc<Array<{ id: string; created: boolean }>>(this.client, "outbox_write", {
      p_tenant_id: m.tenantId,
      p_job_id: m.jobId,
      p_channel: m.channel,
      p_recipient: m.recipient,
      p_subject: m.subject,
      p_body: m.body,
      p_template: m.template,
      p_provider: this.name,
      p_metadata: m.metadata ?? {},
    });
    const row = rows?.[0];
    if (!row) throw new Error("outbox_write returned no row");
    return { messageId: row.id, created: row.created, provider: this.name };
  }
}
