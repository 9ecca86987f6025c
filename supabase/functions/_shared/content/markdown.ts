/**
 * A small Markdown → HTML renderer for the export stage. It covers what the draft stage
 * writes and common hand-written Markdown: ATX headings, paragraphs, bullet and numbered
 * lists, block quotes, fenced code, `code`, **bold**, *emphasis* and [links](url). All text
 * is HTML-escaped first; links keep only http(s), mailto and relative URLs, so no input can
 * inject markup or script.
 *
 * @module
 */

import { escapeHtml } from "../operator/html.ts";

export { escapeHtml };

function safeUrl(url: string): string | null {
  const u = url.trim();
  if (/^(https?:|mailto:)/i.test(u)) return u;
  // Relative URLs, but nothing with a scheme (javascript:, data:, …).
  if (!/^[a-z][a-z0-9+.-]*:/i.test(u) && !u.startsWith("//")) return u;
  return null;
}

/** Inline formatting of one escaped-on-the-way line of text. */
export function renderInline(text: string): string {
  // Code spans first: their content is escaped and never formatted.
  const parts = text.split(/(`[^`]+`)/);
  return parts.map((part) => {
    if (/^`[^`]+`$/.test(part)) return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
    let out = "";
    let last = 0;
    // Links on the raw text, so the URL can be checked before escaping.
    for (const m of part.matchAll(/\[([^\]]+)\]\(([^)\s]+)\)/g)) {
      out += formatText(part.slice(last, m.index));
      const url = safeUrl(m[2]!);
      out += url === null
        ? formatText(m[1]!)
        : `<a href="${escapeHtml(url)}">${formatText(m[1]!)}</a>`;
      last = m.index! + m[0].length;
    }
    return out + formatText(part.slice(last));
  }).join("");
}

function formatText(raw: string): string {
  return escapeHtml(raw)
    .replace(/\*\*(\S(?:.*?\S)?)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w*])\*(\S(?:.*?\S)?)\*(?!\w)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(\S(?:.*?\S)?)_(?!\w)/g, "$1<em>$2</em>");
}

/** Renders Markdown to an HTML fragment. */
export function renderMarkdown(markdown: string): string {
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  const html: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "") {
      i++;
      continue;
    }
    const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !/^\s*```\s*$/.test(lines[i]!)) body.push(lines[i++]!);
      i++; // closing fence (or end of input)
      const cls = fence[1] ? ` class="language-${escapeHtml(fence[1])}"` : "";
      html.push(`<pre><code${cls}>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      const level = heading[1]!.length;
      html.push(`<h${level}>${renderInline(heading[2]!)}</h${level}>`);
      i++;
      continue;
    }
    const listKind = /^\s*[-*+]\s+/.test(line) ? "ul" : /^\s*\d+[.)]\s+/.test(line) ? "ol" : null;
    if (listKind) {
      const item = listKind === "ul" ? /^\s*[-*+]\s+/ : /^\s*\d+[.)]\s+/;
      const items: string[] = [];
      while (i < lines.length && item.test(lines[i]!)) {
        items.push(`<li>${renderInline(lines[i]!.replace(item, ""))}</li>`);
        i++;
      }
      html.push(`<${listKind}>${items.join("")}</${listKind}>`);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quote: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i]!)) {
        quote.push(lines[i]!.replace(/^\s*>\s?/, ""));
        i++;
      }
      html.push(`<blockquote>${renderMarkdown(quote.join("\n"))}</blockquote>`);
      continue;
    }
    // A paragraph: this line (whatever it is, so the loop always advances) and the lines
    // up to the next blank line or block.
    const para: string[] = [line.trim()];
    i++;
    while (
      i < lines.length && lines[i]!.trim() !== "" &&
      !/^(#{1,6}\s|\s*```|\s*[-*+]\s|\s*\d+[.)]\s|\s*>)/.test(lines[i]!)
    ) {
      para.push(lines[i]!.trim());
      i++;
    }
    html.push(`<p>${renderInline(para.join(" "))}</p>`);
  }
  return html.join("\n");
}
