/**
 * Plain-text tables for the ops CLI: a header row, columns padded to their widest cell,
 * numbers right-aligned, long cells cut with an ellipsis.
 *
 * @module
 */

/** One column. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number;
  /** Right-align (default: numbers right, text left). */
  align?: "left" | "right";
  /** Longest cell; longer text is cut with "…". */
  max?: number;
}

function cut(text: string, max?: number): string {
  const one = text.replace(/\s+/g, " ");
  return max && one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** Renders rows under a header; returns the lines (no trailing newline). */
export function renderTable<T>(columns: readonly Column<T>[], rows: readonly T[]): string[] {
  const cells = rows.map((r) =>
    columns.map((c) => {
      const v = c.value(r);
      return {
        text: cut(typeof v === "number" ? v.toLocaleString("en-US") : v, c.max),
        num: typeof v === "number",
      };
    })
  );
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, ...cells.map((row) => row[i]!.text.length))
  );
  const line = (parts: Array<{ text: string; right: boolean }>) =>
    parts.map((p, i) => (p.right ? p.text.padStart(widths[i]!) : p.text.padEnd(widths[i]!)))
      .join("  ").trimEnd();
  const right = (c: Column<T>, num: boolean) => c.align ? c.align === "right" : num;
  return [
    line(columns.map((c, i) => ({ text: c.header, right: right(c, cells[0]?.[i]?.num ?? false) }))),
    ...cells.map((row) =>
      line(row.map((cell, i) => ({ text: cell.text, right: right(columns[i]!, cell.num) })))
    ),
  ];
}
