// Test fixture: answers with everything it received, so the test can check what the host forwards.
const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type",
};

Deno.serve(async (req) => {
  if (req.method === "OPTIONS") return new Response("ok", { headers: cors });
  const url = new URL(req.url);
  if (url.pathname === "/echo/sleep") {
    await new Promise((resolve) => setTimeout(resolve, Number(url.searchParams.get("ms"))));
    return new Response("slept");
  }
  if (url.pathname === "/echo/redirect") {
    return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
  }
  return Response.json({
    method: req.method,
    path: url.pathname,
    search: url.search,
    headers: Object.fromEntries(req.headers),
    body: await req.text(),
    env: {
      SUPABASE_URL: Deno.env.get("SUPABASE_URL") ?? null,
      GREETING: Deno.env.get("GREETING") ?? null,
      PLAIN: Deno.env.get("PLAIN") ?? null,
      SB_EXECUTION_ID: Deno.env.get("SB_EXECUTION_ID") ?? null,
      FUNCTIONS_HOST_TEST_LEAK: Deno.env.get("FUNCTIONS_HOST_TEST_LEAK") ?? null,
    },
    edgeRuntime: typeof (globalThis as { EdgeRuntime?: unknown }).EdgeRuntime,
    cwd: Deno.cwd(),
    pid: Deno.pid,
  }, { headers: cors });
});
