/**
 * The queue layer's entry point: {@link createQueueAdapter} picks the provider from the
 * validated config (`QUEUE_PROVIDER`: `pgmq`, the default, or `pgboss`). pg-boss is loaded
 * only when chosen, so pgmq workers never pay for it.
 *
 * @module
 */
import { loadQueueConfig, type QueueConfig } from "../config.ts";
import type { SupabaseClient } from "../deps.ts";
import { QueueError } from "../errors.ts";
import { serviceClient } from "../supabase.ts";
import { JOB_KINDS, type QueueAdapter } from "./adapter.ts";
import { PgmqQueueAdapter } from "./pgmq_adapter.ts";

export * from "./adapter.ts";
export { PgmqQueueAdapter } from "./pgmq_adapter.ts";

/** What a provider may need besides the config. */
export interface AdapterDeps {
  /** supabase-js client acting as service_role (pgmq). Default: {@link serviceClient}. */
  client?: SupabaseClient;
  /** Postgres URL (pg-boss). Default: env SUPABASE_DB_URL. */
  dbUrl?: string;
  /** Kinds pg-boss creates queues for. Default: the shipped kinds. */
  kinds?: readonly string[];
}

/** Creates the configured provider's adapter. */
export async function createQueueAdapter(
  config: QueueConfig = loadQueueConfig(),
  deps: AdapterDeps = {},
): Promise<QueueAdapter> {
  if (config.provider === "pgboss") {
    const dbUrl = deps.dbUrl ?? Deno.env.get("SUPABASE_DB_URL");
    if (!dbUrl) {
      throw new QueueError(
        "config_invalid",
        "QUEUE_PROVIDER=pgboss needs SUPABASE_DB_URL (the Postgres connection string)",
      );
    }
    const { PgBossQueueAdapter } = await import("./pgboss_adapter.ts");
    return await PgBossQueueAdapter.start(dbUrl, config, deps.kinds ?? JOB_KINDS);
  }
  return new PgmqQueueAdapter(deps.client ?? serviceClient(), config);
}
