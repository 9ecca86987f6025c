/**
 * Safe HTML building for the dashboard: {@link html} is a tagged template that escapes
 * every interpolated value unless it is already {@link SafeHtml} (built by `html` itself or
 * marked with {@link trusted}). Job errors, payloads, tenant names and stage messages are
 * user data; with this, forgetting to escape one is not possible by accident.
 *
 * @module
 */

/** A fragment of markup that is already safe to insert as is. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Any value `html` accepts in a `${…}` slot. */
export type HtmlValue =
  | SafeHtml
  | string
  | number
  | bigint
  | boolean
  | null
  | undefined
  | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

/** Builds markup; interpolated values are escaped (arrays are joined, null/false vanish). */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** Marks a string of markup written by this code (never user data) as safe. */
export function trusted(markup: string): SafeHtml {
  return new SafeHtml(markup);
}
