/**
 * The conveyor-dashboard function: a self-contained HTML page of queues, content stages,
 * dead letters, rate limiters and alerts, refreshed in place every DASHBOARD_REFRESH_SEC
 * (10) seconds. Needs the service-role key (`Authorization: Bearer …` or `?key=…`, traded
 * for a session cookie) or DASHBOARD_SECRET. `?format=json` answers the raw data,
 * `?minutes=N` sets the window (5–1440, default 60). See _shared/operator/.
 *
 * @module
 */
import { createDashboardHandler } from "../_shared/operator/handlers.ts";

/** The handler, configured from the environment. */
export const handler: (req: Request) => Promise<Response> = createDashboardHandler();
