import { assertEquals } from "../../../../tools/test/assert.ts";
import { escapeHtml, html, trusted } from "./html.ts";

Deno.test("escapeHtml() escapes the five characters that matter in text and attributes", () => {
  assertEquals(
    escapeHtml(`<a href="x" onclick='y'>&</a>`),
    "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;",
  );
});

Deno.test("html`` escapes interpolated strings but keeps nested html and trusted markup", () => {
  const user = `<img src=x onerror="alert(1)">`;
  const inner = html`<b>${user}</b>`;
  const out = html`<p title="${user}">${inner}${trusted("<br>")}</p>`.value;
  assertEquals(
    out,
    `<p title="&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"><b>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</b><br></p>`,
  );
});

Deno.test("html`` joins arrays and drops null, undefined and false", () => {
  assertEquals(html`${["<", html`<i>`, 1]}${null}${undefined}${false}${0}`.value, "&lt;<i>10");
});
