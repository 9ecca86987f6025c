/**
 * Server-rendered SVG charts for the dashboard: no script, no fonts, no external files.
 * Every text that reaches the markup goes through `html`, so it is escaped.
 *
 * @module
 */
import { html, type SafeHtml } from "./html.ts";

/** Colours shared by the charts and the page's CSS. */
export const COLORS = {
  processed: "#2f9e6e",
  failed: "#d64545",
  leased: "#3b6fd8",
  triggered: "#9db7ee",
  ready: "#d99a1e",
  track: "#e6e9ef",
  axis: "#8a93a3",
} as const;

const round = (n: number) => Math.round(n * 100) / 100;

/** "HH:MM" (UTC) of `startIso` plus `minutes`. */
export function minuteLabel(startIso: string, minutes: number): string {
  const t = new Date(Date.parse(startIso) + minutes * 60_000);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString().slice(11, 16);
}

/** Options of {@link throughputChart}. */
export interface ThroughputOptions {
  width: number;
  height: number;
  /** ISO time of the first bucket (one bucket per minute). */
  start: string;
  /** Accessible name, e.g. "q_enrich: jobs per minute". */
  label: string;
  /** Draw the y maximum and the time axis (the large chart). */
  axes?: boolean;
  /** Extra CSS class of the svg element. */
  className?: string;
}

/**
 * Stacked bars per minute: completed (green) with failed (red) on top, scaled to the
 * series' own peak. A minute with nothing finished shows only the baseline.
 */
export function throughputChart(
  processed: readonly number[],
  failed: readonly number[],
  opts: ThroughputOptions,
): SafeHtml {
  const n = Math.max(processed.length, failed.length, 1);
  const padLeft = opts.axes ? 34 : 0;
  const padBottom = opts.axes ? 16 : 0;
  const plotW = opts.width - padLeft;
  const plotH = opts.height - padBottom - 2;
  const peak = Math.max(
    1,
    ...Array.from({ length: n }, (_, i) => (processed[i] ?? 0) + (failed[i] ?? 0)),
  );
  const slot = plotW / n;
  const barW = Math.max(1, slot * 0.78);
  const totalP = processed.reduce((a, b) => a + b, 0);
  const totalF = failed.reduce((a, b) => a + b, 0);
  const bars: SafeHtml[] = [];
  for (let i = 0; i < n; i++) {
    const p = processed[i] ?? 0;
    const f = failed[i] ?? 0;
    if (p + f === 0) continue;
    const x = round(padLeft + i * slot + (slot - barW) / 2);
    const hp = (p / peak) * plotH;
    const hf = (f / peak) * plotH;
    const yBase = plotH + 1;
    const tip = `${minuteLabel(opts.start, i)} UTC: ${p} completed, ${f} failed`;
    bars.push(html`<g><title>${tip}</title>${
      p > 0
        ? html`
          <rect x="${x}" y="${round(yBase - hp)}" width="${round(barW)}" height="${round(
            Math.max(hp, 1),
          )}" fill="${COLORS.processed}" />
        `
        : null
    }${
      f > 0
        ? html`
          <rect x="${x}" y="${round(yBase - hp - hf)}" width="${round(barW)}" height="${round(
            Math.max(hf, 1),
          )}" fill="${COLORS.failed}" />
        `
        : null
    }</g>`);
  }
  const axes = opts.axes
    ? html`
      <text x="${padLeft - 4}" y="10" text-anchor="end" class="axis">${peak}</text>
      <text x="${padLeft - 4}" y="${plotH + 1}" text-anchor="end" class="axis">0</text>
      <text x="${padLeft}" y="${opts.height - 3}" class="axis">${minuteLabel(opts.start, 0)}</text>
      <text x="${padLeft + plotW / 2}" y="${opts.height -
        3}" text-anchor="middle" class="axis">${minuteLabel(opts.start, Math.floor(n / 2))}</text>
      <text x="${opts.width}" y="${opts.height - 3}" text-anchor="end" class="axis">${minuteLabel(
        opts.start,
        n - 1,
      )} UTC</text>
      <line x1="${padLeft}" y1="1" x2="${opts.width}" y2="1" stroke="${COLORS
        .track}" stroke-dasharray="3 3" />
    `
    : null;
  const summary = `${opts.label}: ${totalP} completed, ${totalF} failed in ${n} min, peak ${
    peak === 1 && totalP + totalF === 0 ? 0 : peak
  } per minute`;
  return html`
    <svg class="chart ${opts.className ?? ""}" width="${opts.width}" height="${opts.height}"
      viewBox="0 0 ${opts.width} ${opts.height}" role="img"
      aria-label="${summary}"><title>${summary}</title>
    <line x1="${padLeft}" y1="${plotH + 1.5}" x2="${opts.width}" y2="${plotH +
      1.5}" stroke="${COLORS.track}"/>${axes}${bars}</svg>
  `;
}

/**
 * A stage's capacity: one cell per max_concurrency slot, filled blue for live leases and
 * light blue for triggered workers not yet claiming. More in flight than slots (an env
 * override above the table value) shows the excess in red.
 */
export function capacityBar(leased: number, triggered: number, max: number): SafeHtml {
  const slots = Math.max(max, leased + triggered, 1);
  const width = 168;
  const height = 14;
  const gap = slots > 24 ? 0 : 2;
  const cell = (width - gap * (slots - 1)) / slots;
  const cells: SafeHtml[] = [];
  for (let i = 0; i < slots; i++) {
    const fill = i >= max
      ? COLORS.failed
      : i < leased
      ? COLORS.leased
      : i < leased + triggered
      ? COLORS.triggered
      : COLORS.track;
    cells.push(
      html`
        <rect x="${round(i * (cell + gap))}" y="0" width="${round(
          Math.max(cell, 0.5),
        )}" height="${height}" rx="2" fill="${fill}" />
      `,
    );
  }
  const label = `${
    leased + triggered
  } of ${max} in flight (${leased} leased, ${triggered} starting)`;
  return html`
    <svg class="capacity" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"
      role="img" aria-label="${label}"><title>${label}</title>${cells}</svg>
  `;
}

/** A horizontal meter of `value` out of `max` in `color`. */
export function meter(value: number, max: number, color: string, label: string): SafeHtml {
  const width = 120;
  const height = 10;
  const frac = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
  return html`
    <svg class="meter" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"
      role="img"
      aria-label="${label}"><title>${label}</title><rect x="0" y="0" width="${width}" height="${height}" rx="3" fill="${COLORS
        .track}"/>${frac > 0
        ? html`
          <rect x="0" y="0" width="${round(
            Math.max(2, frac * width),
          )}" height="${height}" rx="3" fill="${color}" />
        `
        : null}</svg>
  `;
}
