import { assertEquals } from "../../../../tools/test/assert.ts";
import { renderInline, renderMarkdown } from "./markdown.ts";

Deno.test("renderMarkdown() renders headings, paragraphs, lists, quotes and code blocks", () => {
  const md = [
    "# Title",
    "",
    "First line",
    "same paragraph.",
    "",
    "## Part",
    "- one",
    "- **two**",
    "",
    "1. a",
    "2. b",
    "",
    "> quoted",
    "",
    "```ts",
    "const x = 1 < 2;",
    "```",
  ].join("\n");
  assertEquals(
    renderMarkdown(md),
    [
      "<h1>Title</h1>",
      "<p>First line same paragraph.</p>",
      "<h2>Part</h2>",
      "<ul><li>one</li><li><strong>two</strong></li></ul>",
      "<ol><li>a</li><li>b</li></ol>",
      "<blockquote><p>quoted</p></blockquote>",
      '<pre><code class="language-ts">const x = 1 &lt; 2;</code></pre>',
    ].join("\n"),
  );
});

Deno.test("renderMarkdown() never lets input inject markup or script URLs", () => {
  const html = renderMarkdown(
    '# <script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://e.com/?a="b") <img src=x onerror=y>',
  );
  assertEquals(html.includes("<script"), false);
  assertEquals(html.includes("<img"), false);
  assertEquals(html.includes("javascript:"), false);
  assertEquals(html.includes('<a href="https://e.com/?a=&quot;b&quot;">ok</a>'), true);
});

Deno.test("renderInline() keeps code spans literal and formats emphasis outside them", () => {
  assertEquals(
    renderInline("*a* and `*b*` and _c_ snake_case"),
    "<em>a</em> and <code>*b*</code> and <em>c</em> snake_case",
  );
});

Deno.test("renderMarkdown() always advances on lines that look like blocks but are not", () => {
  assertEquals(renderMarkdown("```not a fence line\ntext"), "<p>```not a fence line text</p>");
});
