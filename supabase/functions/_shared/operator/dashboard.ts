/**
 * The dashboard page: one self-contained HTML document (inline CSS, inline SVG charts, one
 * small inline script for auto-refresh; no fonts, scripts or images from anywhere else).
 * {@link renderMain} is the part the script re-fetches (`?fragment=1`) and swaps in.
 *
 * Everything shown comes from `operator_dashboard()` and goes through `html`, which escapes
 * it. The page carries no `style` attributes, so its Content-Security-Policy needs no
 * `unsafe-inline`: the one style and script element carry a per-response nonce.
 *
 * Numbers carry `data-field` / `data-value` attributes (rows carry `data-queue` /
 * `data-stage`), so tests and scrapers read values without parsing formatted text.
 *
 * @module
 */
import { capacityBar, COLORS, meter, throughputChart } from "./charts.ts";
import {
  type AlertRow,
  type ConcurrencyKeyRow,
  contentRedriveCommand,
  type DashboardData,
  type DeadLetters,
  type FailedContentJobs,
  type QueueRow,
  type RateLimiterRow,
  type StageErrorRow,
  type StageRow,
  type TenantRow,
  TENANTS_COMMAND,
} from "./data.ts";
import { ago, clockTime, formatAge, formatCount, jobNumber, oneLine, shortId } from "./format.ts";
import { html, type HtmlValue, type SafeHtml, trusted } from "./html.ts";

/** How the page is rendered. */
export interface PageOptions {
  /** Nonce of the inline style and script (also in the CSP header). */
  nonce: string;
  /** Auto-refresh period in seconds (0 = off). */
  refreshSec: number;
  /** Shown in the header: where this dashboard runs (e.g. the project host). */
  site: string;
}

function num(field: string, value: number, text?: HtmlValue): SafeHtml {
  return html`<td class="num" data-field="${field}" data-value="${value}">${
    text ?? formatCount(value)
  }</td>`;
}

function tile(field: string, label: string, value: number, note: HtmlValue, tone = ""): SafeHtml {
  return html`
    <div class="tile ${tone}">
      <div class="tile-label">${label}</div>
      <div class="tile-value" data-field="${field}" data-value="${value}">${formatCount(
        value,
      )}</div>
      <div class="tile-note">${note}</div>
    </div>
  `;
}

function sumSeries(rows: readonly QueueRow[], key: "processed_series" | "failed_series"): number[] {
  const out: number[] = [];
  for (const r of rows) {
    r[key].forEach((v, i) => (out[i] = (out[i] ?? 0) + Number(v)));
  }
  return out;
}

function tiles(d: DashboardData): SafeHtml {
  const sum = (rows: readonly QueueRow[], k: keyof QueueRow) =>
    rows.reduce((a, r) => a + Number(r[k]), 0);
  const stageFlight = d.stages.reduce((a, s) => a + s.in_flight, 0);
  const stageMax = d.stages.reduce((a, s) => a + (s.enabled ? s.max_concurrency : 0), 0);
  const open = d.alerts.filter((a) => a.status === "open").length;
  const failed = sum(d.queues, "failed");
  return html`<section class="tiles" aria-label="Summary">
${
    tile(
      "ready_total",
      "Ready",
      sum(d.queues, "ready"),
      html`${formatCount(sum(d.queues, "delayed"))} delayed`,
    )
  }
${tile("in_flight_total", "In flight", sum(d.queues, "in_flight"), "claimed by workers")}
${
    tile(
      "processed_total",
      "Processed",
      sum(d.queues, "processed"),
      html`last ${d.window_minutes} min`,
      sum(d.queues, "processed") > 0 ? "good" : "",
    )
  }
${
    tile(
      "failed_total",
      "Failed",
      failed,
      html`last ${d.window_minutes} min`,
      failed > 0 ? "bad" : "",
    )
  }
${
    tile(
      "dlq_size",
      "Dead letters",
      d.dead_letters.size,
      "not redriven",
      d.dead_letters.size > 0 ? "bad" : "",
    )
  }
${tile("stage_in_flight", "Stage workers", stageFlight, html`of ${formatCount(stageMax)} slots`)}
${tile("alerts_open", "Open alerts", open, "across tenants", open > 0 ? "warn" : "")}
</section>`;
}

function throughputPanel(d: DashboardData): SafeHtml {
  const start = d.queues[0]?.series_start ?? d.generated_at;
  return html`
    <section class="card"
      id="throughput"><h2>Throughput <span class="sub">jobs finished per minute, all queues, last ${d
        .window_minutes} min</span></h2>
    ${throughputChart(
      sumSeries(d.queues, "processed_series"),
      sumSeries(d.queues, "failed_series"),
      {
        width: 1320,
        height: 130,
        className: "wide",
        start,
        label: "All queues: jobs per minute",
        axes: true,
      },
    )}
    <p class="legend"><span class="swatch ok"></span>completed <span class="swatch err"></span>failed (dead-lettered or cancelled)</p>
    </section>
  `;
}

function queueRow(q: QueueRow, window: number): SafeHtml {
  const state = q.kind_enabled
    ? html`<span class="pill ok">dispatching</span>`
    : html`<span class="pill warn">paused</span>`;
  const age = q.ready > 0 ? formatAge(q.oldest_ready_age_sec) : "—";
  return html`<tr data-queue="${q.queue}" data-kind="${q.kind}" data-tier="${q.tier}">
<td><span class="name">${q.queue}</span><div class="muted">${q.kind} · ${q.tier}</div></td>
<td>${state}<div class="muted">${q.workers} of ${q.max_concurrency} workers</div></td>
${num("ready", q.ready)}${num("delayed", q.delayed)}${num("in_flight", q.in_flight)}
${num("oldest_ready_age_sec", q.oldest_ready_age_sec, age)}
${num("processed", q.processed)}${num("failed", q.failed)}
<td class="chart-cell">${
    throughputChart(q.processed_series, q.failed_series, {
      width: 200,
      height: 30,
      start: q.series_start,
      label: `${q.queue}: jobs per minute, last ${window} min`,
    })
  }</td>
</tr>`;
}

function queuesPanel(d: DashboardData): SafeHtml {
  const busy = (q: QueueRow) =>
    q.ready + q.delayed + q.in_flight + q.processed + q.failed > 0 || !q.kind_enabled;
  const shown = d.queues.filter((q) => q.tier === "normal" || busy(q));
  const hidden = d.queues.length - shown.length;
  return html`
    <section class="card"
      id="queues"><h2>Queues <span class="sub">pgmq, one per kind and priority tier</span></h2>
    <table>
    <thead><tr><th>Queue</th><th>Dispatch</th><th class="num">Ready</th><th class="num">Delayed</th><th class="num">In flight</th><th class="num">Oldest ready</th><th class="num">Processed</th><th class="num">Failed</th><th>Per minute, last ${d
      .window_minutes} min</th></tr></thead>
    <tbody>${shown.map((q) => queueRow(q, d.window_minutes))}</tbody>
    </table>
    ${hidden > 0
      ? html`<p class="muted">${hidden} idle fast/bulk ${
        hidden === 1 ? "queue" : "queues"
      } not shown.</p>`
      : null}
    </section>
  `;
}

function stageCard(s: StageRow, readyPeak: number, window: number): SafeHtml {
  const state = s.enabled
    ? html`<span class="pill ok">enabled</span>`
    : html`<span class="pill warn">paused</span>`;
  return html`<div class="stage" data-stage="${s.stage}">
<div class="stage-head"><span class="name">${s.stage}</span> ${state}</div>
<div class="stage-ready"><span class="stage-big" data-field="ready" data-value="${s.ready}">${
    formatCount(s.ready)
  }</span> <span class="muted">ready</span></div>
${meter(s.ready, readyPeak, COLORS.ready, `${s.ready} ready`)}
<div class="stage-cap">${capacityBar(s.leased, s.triggered, s.max_concurrency)}</div>
<div class="muted"><span data-field="in_flight" data-value="${s.in_flight}">${s.in_flight}</span> of <span data-field="max_concurrency" data-value="${s.max_concurrency}">${s.max_concurrency}</span> in flight · batch ${s.trigger_batch_size}</div>
<div class="stage-stats muted">last ${window} min: <span data-field="completed" data-value="${s.completed}">${
    formatCount(s.completed)
  }</span> done · <span class="${
    s.errors > 0 ? "err-count" : ""
  }" data-field="errors" data-value="${s.errors}">${
    formatCount(s.errors)
  }</span> errors · <span data-field="waiting_retry" data-value="${s.waiting_retry}">${
    formatCount(s.waiting_retry)
  }</span> retrying</div>
<div class="stage-url muted" data-field="worker_url" title="worker_endpoint: ${s.worker_endpoint}">workers at <code>${
    s.worker_url ?? s.worker_endpoint
  }</code></div>
</div>`;
}

function stageErrorItem(e: StageErrorRow, now: string): SafeHtml {
  return html`
    <li data-event="${e.id}">
      <div
        class="row-head"><span class="pill err">${e.stage}</span> <span class="muted" title="${e
          .created_at}">${ago(e.created_at, now)}</span>${e.attempt !== null
          ? html`
            <span class="muted">attempt ${e.attempt} of ${e.max_attempts}</span>
          `
          : null} <span class="muted">job <code>${shortId(e.job_id)}</code>${e.topic
          ? html`
            · ${oneLine(e.topic, 60)}
          `
          : null}</span></div>
      <div class="error-text">${oneLine(e.message, 400)}</div>
    </li>
  `;
}

/**
 * The failed content jobs with the exact command that retries each from its failed stage.
 * A command, not a button: the dashboard is read-only by design (GET only, its CSP has
 * `form-action 'none'`, and a DASHBOARD_SECRET opened on a shared screen must not be able
 * to change anything), so a retry goes through the CLI or the service_role RPC.
 */
function failedContentJobs(fc: FailedContentJobs, now: string): SafeHtml {
  if (fc.latest.length === 0) {
    return html`<p class="muted" id="failed-content-jobs">No failed content jobs.</p>`;
  }
  return html`
    <table id="failed-content-jobs">
      <thead>
        <tr>
          <th>Failed</th>
          <th>Stage</th>
          <th>Job</th>
          <th class="num">Attempts</th>
          <th>Last error</th>
          <th>Retry from the failed stage</th>
        </tr>
      </thead>
      <tbody>${fc.latest.map((r) =>
        html`
          <tr data-content-job="${r.job_id}" data-stage="${r.stage ?? ""}">
            <td title="${r.failed_at}">${ago(r.failed_at, now)}</td>
            <td>${r.stage ?? "?"}</td>
            <td><code title="${r.job_id}">${shortId(r.job_id)}</code>${r.topic
              ? html`
                <div class="muted">${oneLine(r.topic, 60)}</div>
              `
              : null}</td>
            <td class="num">${r.attempts ?? "?"} of ${r.max_attempts ?? "?"}</td>
            <td class="error-text">${oneLine(r.last_error, 300)}</td>
            <td>${r.stage
              ? html`<code data-field="redrive_command">${contentRedriveCommand(r.job_id)}</code>`
              : html`<span class="muted">no failed stage to retry from</span>`}</td>
          </tr>
        `
      )}</tbody>
    </table>
    <p
      class="muted">${fc
        .size} failed in all. Each runs again from the stage that failed, with its attempts reset; the stages before keep their outputs. Over the API (service_role): <code>POST /rest/v1/rpc/redrive_content_job {"p_job_id": "&lt;job id&gt;"}</code>; every job failed at a stage: <code>deno task conveyor dlq redrive --stage &lt;stage&gt;</code> (see docs/content.md).</p>
  `;
}

function stagesPanel(d: DashboardData): SafeHtml {
  const readyPeak = Math.max(1, ...d.stages.map((s) => s.ready));
  return html`
    <section class="card"
      id="stages"><h2>Content pipeline <span class="sub">per stage: ready vs in flight vs max_concurrency</span></h2>
    <div class="pipeline">${d.stages.map((s) => stageCard(s, readyPeak, d.window_minutes))}</div>
    <p class="legend"><span class="swatch ready"></span>ready <span class="swatch lease"></span>leased <span class="swatch trig"></span>triggered, starting <span class="swatch free"></span>free slot</p>
    <h3>Recent errors</h3>
    ${d.stage_errors.length
      ? html`<ul class="events" id="stage-errors">${
        d.stage_errors.map((e) => stageErrorItem(e, d.generated_at))
      }</ul>`
      : html`<p class="muted" id="stage-errors">No error events.</p>`}
    <h3>Failed jobs <span data-field="failed_content_jobs" data-value="${d.failed_content_jobs
      .size}">${formatCount(d.failed_content_jobs.size)}</span></h3>
    ${failedContentJobs(d.failed_content_jobs, d.generated_at)}
    </section>
  `;
}

function deadLetterPanel(dl: DeadLetters, now: string): SafeHtml {
  return html`
    <section class="card"
      id="dead-letters"><h2>Dead-letter queue <span class="sub">jobs out of attempts or cancelled, not yet redriven</span></h2>
    <p class="big"><span data-field="dlq_size" data-value="${dl.size}">${formatCount(
      dl.size,
    )}</span> <span class="muted">dead ${dl.size === 1 ? "job" : "jobs"}</span> ${dl.by_kind.map((
      k,
    ) =>
      html`
        <span class="chip" data-kind="${k.kind}" data-value="${k.size}">${k.kind} ${formatCount(
          k.size,
        )}</span>
      `
    )}</p>
    ${dl.latest.length
      ? html`
        <table>
          <thead>
            <tr>
              <th>When</th>
              <th>Kind</th>
              <th>Tenant</th>
              <th>Job</th>
              <th class="num">Attempts</th>
              <th>Last error</th>
            </tr>
          </thead>
          <tbody>${dl.latest.map((r) =>
            html`
              <tr data-dead-letter="${r.id}" data-job="${r.job_id}">
                <td title="${r.created_at}">${ago(r.created_at, now)}</td>
                <td>${r.kind}</td>
                <td>${r.tenant}</td>
                <td><code title="${r.job_id}">${jobNumber(r.job_number)}</code></td>
                <td class="num">${r.attempts}</td>
                <td class="error-text">${oneLine(r.reason, 300)}</td>
              </tr>
            `
          )}</tbody>
        </table>
        <p
          class="muted">Redrive: <code>deno task conveyor dlq redrive &lt;job number&gt;</code>, e.g. <code>dlq redrive ${dl
            .latest[0]!.job_number}</code> (see docs/operations.md).</p>
      `
      : html`<p class="muted">The dead-letter queue is empty.</p>`}
    </section>
  `;
}

function limiterRow(r: RateLimiterRow): SafeHtml {
  const low = r.tokens / r.capacity < 0.2;
  return html`
    <tr data-limiter="${r.service_name}"
      data-tenant="${r.tenant}"><td><span class="name">${r.service_name}</span></td><td>${r
        .tenant}</td>
    <td>${meter(
      r.tokens,
      r.capacity,
      low ? COLORS.failed : COLORS.processed,
      `${r.tokens} of ${r.capacity} tokens`,
    )}</td>
    ${num(
      "tokens",
      Number(r.tokens),
      `${formatCount(Math.floor(Number(r.tokens)))} / ${formatCount(Number(r.capacity))}`,
    )}
    <td class="num">${r.refill_per_sec}/s</td>
    ${num("in_use", r.in_use, `${r.in_use} / ${r.max_concurrent}`)}
    </tr>
  `;
}

function limitersPanel(d: DashboardData): SafeHtml {
  return html`
    <section class="card"
      id="rate-limiters"><h2>Rate limiters <span class="sub">token buckets per external service, most depleted first</span></h2>
    ${d.rate_limiters.length
      ? html`
        <table>
          <thead>
            <tr>
              <th>Service</th>
              <th>Tenant</th>
              <th>Tokens</th>
              <th class="num">Now</th>
              <th class="num">Refill</th>
              <th class="num">Running</th>
            </tr>
          </thead>
          <tbody>${d.rate_limiters.map(limiterRow)}</tbody>
        </table>
      `
      : html`<p class="muted">No rate limiters.</p>`}
    </section>
  `;
}

function tenantRow(t: TenantRow): SafeHtml {
  return html`
    <tr data-tenant-row="${t.source}:${t.target}:${t.tenant_id}"
      data-starving="${t.starving ? "true" : "false"}"><td><span class="name">${t
        .target}</span>${t.source === "content"
        ? html`
          <span class="muted">stage</span>
        `
        : null}</td><td>${t.tenant}</td>
    ${num("weight", Number(t.weight), String(t.weight))}
    ${num("ready", t.ready)}
    ${num("waiting", t.waiting)}
    ${num("running", t.running)}
    ${num(
      "oldest_ready_age_sec",
      t.oldest_ready_age_sec ?? 0,
      t.oldest_ready_age_sec === null ? "–" : formatAge(t.oldest_ready_age_sec),
    )}
    ${num(
      "claimed_share",
      Number(t.claimed_share ?? 0),
      t.claimed_share === null ? "–" : `${Math.round(Number(t.claimed_share) * 100)}%`,
    )}
    <td>${t.starving ? html`<span class="pill err">starving</span>` : null}</td>
    </tr>
  `;
}

function tenantsPanel(d: DashboardData): SafeHtml {
  const rows = (d.tenants ?? []).filter((t) => t.ready + t.waiting + t.running > 0 || t.starving);
  return html`
    <section class="card"
      id="tenants"><h2>Tenants <span class="sub">per kind or stage: work waiting and running, share of claims over the window (fair share)</span></h2>
    ${rows.length
      ? html`
        <table>
          <thead>
            <tr>
              <th>Kind / stage</th>
              <th>Tenant</th>
              <th class="num">Weight</th>
              <th class="num">Ready</th>
              <th class="num">Waiting</th>
              <th class="num">Running</th>
              <th class="num">Oldest ready</th>
              <th class="num">Share</th>
              <th></th>
            </tr>
          </thead>
          <tbody>${rows.map(tenantRow)}</tbody>
        </table>
        ${rows.some((t) => t.starving)
          ? html`<p>A starving tenant's oldest ready job has waited far longer than the other tenants' and none of its jobs was claimed in the last minute: <code>${TENANTS_COMMAND}</code>, then its weight (<code>deno task conveyor tenant weight</code>) or its concurrency keys.</p>`
          : null}
      `
      : html`<p class="muted">No tenant has work waiting or running.</p>`}
    </section>
  `;
}

function keyRow(k: ConcurrencyKeyRow): SafeHtml {
  return html`
    <tr
      data-key="${k.kind}:${k.tenant_id}:${k.concurrency_key}"><td><span class="name">${k
        .kind}</span></td><td>${k.tenant}</td><td><code>${oneLine(
          k.concurrency_key,
          60,
        )}</code></td>
    ${num("running", k.running, `${k.running} / ${k.max_running}`)}
    ${num("waiting", k.waiting)}
    ${num(
      "oldest_waiting_age_sec",
      k.oldest_waiting_age_sec ?? 0,
      k.oldest_waiting_age_sec === null ? "–" : formatAge(k.oldest_waiting_age_sec),
    )}
    </tr>
  `;
}

function keysPanel(d: DashboardData): SafeHtml {
  const rows = d.concurrency_keys ?? [];
  return html`
    <section class="card"
      id="concurrency-keys"><h2>Concurrency keys <span class="sub">keys with parked jobs or at their limit</span></h2>
    ${rows.length
      ? html`
        <table>
          <thead>
            <tr>
              <th>Kind</th>
              <th>Tenant</th>
              <th>Key</th>
              <th class="num">Running</th>
              <th class="num">Parked</th>
              <th class="num">Waiting since</th>
            </tr>
          </thead>
          <tbody>${rows.map(keyRow)}</tbody>
        </table>
      `
      : html`<p class="muted">No key is at its limit.</p>`}
    </section>
  `;
}

function alertItem(a: AlertRow, now: string): SafeHtml {
  const tone = a.status === "resolved" ? "muted-pill" : a.severity === "critical" ? "err" : "warn";
  return html`
    <li data-alert="${a.id}" data-status="${a.status}">
      <div
        class="row-head"><span class="pill ${tone}">${a.severity}</span> <strong>${a
          .rule}</strong> <span class="muted">${a.subject} · ${a.tenant} · ${a.status === "open"
          ? html`open since ${ago(a.raised_at, now).replace(" ago", "")}`
          : html`resolved ${ago(a.resolved_at, now)}`}</span></div>
      <div>${oneLine(a.message, 300)}</div>
    </li>
  `;
}

function alertsPanel(d: DashboardData): SafeHtml {
  return html`
    <section class="card"
      id="alerts"><h2>Alerts <span class="sub">open first, then the latest resolved</span></h2>
    ${d.alerts.length
      ? html`<ul class="events">${d.alerts.map((a) => alertItem(a, d.generated_at))}</ul>`
      : html`<p class="muted">No alerts.</p>`}
    </section>
  `;
}

function footer(d: DashboardData): SafeHtml {
  const stale = d.last_snapshot_at === null ||
    Date.parse(d.generated_at) - Date.parse(d.last_snapshot_at) > 180_000;
  return html`
    <footer>
      <p>Data as of <time datetime="${d.generated_at}">${clockTime(
        d.generated_at,
      )} UTC</time>. Metrics snapshot: ${d.last_snapshot_at
        ? html`<time datetime="${d.last_snapshot_at}">${
          ago(d.last_snapshot_at, d.generated_at)
        }</time>`
        : "none yet"}${stale
        ? html`
          <span
            class="pill warn">stale</span> — per-minute history comes from the pg_cron job <code>conveyor-queue-metrics</code>; is pg_cron running?
        `
        : null}</p>
      <p
        class="muted">Prometheus: <code>/functions/v1/conveyor-metrics</code> · CLI: <code>deno task conveyor status</code></p>
    </footer>
  `;
}

/** The part of the page the auto-refresh replaces. */
export function renderMain(d: DashboardData): SafeHtml {
  return html`${tiles(d)}
${throughputPanel(d)}
${queuesPanel(d)}
${stagesPanel(d)}
${deadLetterPanel(d.dead_letters, d.generated_at)}
<div class="grid">${tenantsPanel(d)}${keysPanel(d)}</div>
<div class="grid">${limitersPanel(d)}${alertsPanel(d)}</div>
${footer(d)}`;
}

const CSS = `
:root{--bg:#f4f6f9;--card:#fff;--ink:#1d2430;--muted:#6b7585;--line:#e3e7ee;
--ok:${COLORS.processed};--err:${COLORS.failed};--warn:${COLORS.ready};--lease:${COLORS.leased};--trig:${COLORS.triggered};--free:${COLORS.track}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:center;gap:12px;padding:12px 24px;background:#1d2430;color:#fff}
header h1{font-size:18px;margin:0;font-weight:650;letter-spacing:.2px}
header .site{color:#b8c1d1}
header .spacer{flex:1}
header label,header button{color:#fff;font:inherit}
header button{background:#34405a;border:1px solid #4a5878;border-radius:6px;padding:3px 10px;cursor:pointer}
#refresh-status{color:#b8c1d1;min-width:150px}
main{padding:20px 24px;max-width:1400px;margin:0 auto}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:16px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px}
.tile-label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.6px}
.tile-value{font-size:26px;font-weight:650;font-variant-numeric:tabular-nums}
.tile-note{color:var(--muted);font-size:12px}
.tile.good .tile-value{color:var(--ok)}.tile.bad .tile-value{color:var(--err)}.tile.warn .tile-value{color:#b7791f}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:16px;overflow-x:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
.grid .card{margin-bottom:0}.grid{margin-bottom:16px}
h2{font-size:15px;margin:0 0 10px}h2 .sub{font-weight:400;color:var(--muted);font-size:13px;margin-left:6px}
h3{font-size:13px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.5px}
table{border-collapse:collapse;width:100%}
th{font-size:12px;color:var(--muted);font-weight:600;text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
tbody tr:last-child td{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.name{font-weight:600}
.muted{color:var(--muted);font-size:12px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f0f2f6;border-radius:4px;padding:1px 4px}
.pill{display:inline-block;border-radius:999px;padding:0 8px;font-size:12px;font-weight:600}
.pill.ok{background:#e3f4ec;color:#1f7a52}.pill.warn{background:#fbf0d9;color:#8a5a00}.pill.err{background:#fbe4e4;color:#a12d2d}.pill.muted-pill{background:#eceff3;color:var(--muted)}
.chip{display:inline-block;border:1px solid var(--line);border-radius:6px;padding:0 6px;font-size:12px;margin-left:4px}
.big{font-size:22px;font-weight:650;margin:0 0 8px}
.error-text{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#8f2424;word-break:break-word}
.events{list-style:none;margin:0;padding:0}.events li{padding:6px 0;border-bottom:1px solid var(--line)}.events li:last-child{border-bottom:0}
.legend{color:var(--muted);font-size:12px;margin:6px 0 0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.swatch.ok{background:var(--ok)}.swatch.err{background:var(--err)}.swatch.lease{background:var(--lease)}.swatch.trig{background:var(--trig)}.swatch.free{background:var(--free)}
svg{display:block}svg .axis{font-size:10px;fill:${COLORS.axis}}
.chart-cell{width:210px}
svg.wide{width:100%;height:auto}
.pipeline{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:14px}
.stage{position:relative;border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fbfcfd}
.stage:not(:last-child)::after{content:"→";position:absolute;right:-13px;top:38%;color:var(--muted);font-size:14px}
.stage-head{display:flex;justify-content:space-between;align-items:center;margin-bottom:4px}
.stage-big{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.stage-ready{margin-bottom:2px}.stage-cap{margin:8px 0 2px}
.stage-stats{margin-top:6px}.stage-url{margin-top:6px;font-size:12px;overflow-wrap:anywhere}.stage-url code{font-size:11px}.err-count{color:var(--err);font-weight:600}
.swatch.ready{background:var(--warn)}
footer{color:var(--muted);font-size:13px;padding:4px 2px 24px}
`;

// Auto-refresh: re-fetch the main part every N seconds (same URL + fragment=1; the session
// cookie or ?key= authenticates it) and swap it in; a failure is shown, not thrown.
const SCRIPT = `
(() => {
  const every = Number(document.body.dataset.refresh) * 1000;
  const status = document.getElementById("refresh-status");
  const toggle = document.getElementById("auto-refresh");
  const main = document.querySelector("main");
  let timer = 0;
  async function refresh() {
    try {
      const url = new URL(location.href);
      url.searchParams.set("fragment", "1");
      const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      main.innerHTML = await res.text();
      status.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      status.textContent = "refresh failed (" + e.message + ")";
    }
  }
  function schedule() {
    clearInterval(timer);
    if (toggle.checked && every > 0) timer = setInterval(refresh, every);
  }
  toggle.addEventListener("change", schedule);
  document.getElementById("refresh-now").addEventListener("click", refresh);
  schedule();
})();
`;

/** The whole page. */
export function renderPage(d: DashboardData, opts: PageOptions): string {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <link rel="icon" href="data:,">
        <title>Conveyor · ${opts.site}</title>
        <style nonce="${opts.nonce}">${trusted(CSS)}</style>
      </head>
      <body data-refresh="${opts.refreshSec}">
        <header><h1>Conveyor</h1><span class="site">${opts.site}</span><span class="spacer"></span>
    <label><input type="checkbox" id="auto-refresh"${trusted(
      opts.refreshSec > 0 ? " checked" : "",
    )}> auto-refresh every ${opts.refreshSec} s</label>
    <button type="button" id="refresh-now">Refresh now</button>
    <span id="refresh-status">loaded ${clockTime(d.generated_at)} UTC</span></header>
        <main>${renderMain(d)}</main>
        <script nonce="${opts.nonce}">${trusted(SCRIPT)}</script>
      </body>
    </html>
  `.value;
}

/** The page shown instead of the dashboard without a valid credential (HTTP 401). */
export function renderUnauthorized(reason: string, nonce: string): string {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="referrer" content="no-referrer">
        <link rel="icon" href="data:,">
        <title>Conveyor · sign in</title>
        <style
          nonce="${nonce}">body{font:15px/1.5 system-ui,sans-serif;max-width:640px;margin:80px auto;padding:0 20px;color:#1d2430}code{background:#f0f2f6;padding:1px 4px;border-radius:4px}</style>
      </head>
      <body>
        <h1>Conveyor dashboard</h1>
        <p>This page needs the project's service-role key (${reason}).</p>
        <p>Open <code>…/functions/v1/conveyor-dashboard?key=&lt;service role key&gt;</code> (the local stack prints this URL at start), or send <code>Authorization: Bearer &lt;service role key&gt;</code>. A <code>DASHBOARD_SECRET</code> set on the function works too.</p>
      </body>
    </html>
  `.value;
}
