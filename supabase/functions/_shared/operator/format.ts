/**
 * Number, duration and time formatting shared by the dashboard and the ops CLI.
 *
 * @module
 */

/** 12345 → "12,345" (en-US grouping, so output does not depend on the server's locale). */
export function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : String(n);
}

/** Seconds → "42 s", "12 min", "1 h 5 min", "2 d 3 h". */
export function formatAge(totalSec: number): string {
  const s = Math.max(0, Math.floor(totalSec));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 24) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** ISO time → "HH:MM:SS" (UTC); "" when not a time. */
export function clockTime(iso: string | null | undefined): string {
  if (!iso) return "";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString().slice(11, 19);
}

/** How long before `nowIso` the time `iso` was: "5 s ago", "3 min ago". */
export function ago(iso: string | null | undefined, nowIso: string): string {
  if (!iso) return "never";
  const d = (Date.parse(nowIso) - Date.parse(iso)) / 1000;
  if (!Number.isFinite(d)) return "";
  return d < 1 ? "just now" : `${formatAge(d)} ago`;
}

/**
 * A uuid shown short: its last 8 hex digits. A queue job's id begins with its creation time,
 * the same first digits for every job created within about a minute; the tail is random in
 * every id Conveyor makes. `deno task conveyor` finds an id by its start or its end
 * (`operator_find_jobs`). A queue job is shown by its {@link jobNumber} instead.
 */
export function shortId(id: string): string {
  return id.replaceAll("-", "").slice(-8);
}

/** A queue job as operators see it: its number (what queue_job returned), "#1234". */
export function jobNumber(n: number | string | null | undefined): string {
  return n === null || n === undefined ? "#?" : `#${n}`;
}

/** Cuts text to `max` characters with an ellipsis, on one line. */
export function oneLine(text: string | null | undefined, max = 160): string {
  const t = (text ?? "").replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}
