// Test fixture: EdgeRuntime.waitUntil, beforeunload and long calls.
declare const EdgeRuntime: { waitUntil(promise: Promise<unknown>): void };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const releases = new Map<string, () => void>();
const states = new Map<string, unknown>();

Deno.serve(async (req) => {
  const url = new URL(req.url);
  const marker = url.searchParams.get("marker") ?? "";
  const id = url.searchParams.get("id") ?? "";
  switch (url.pathname) {
    case "/background/after":
      // Writes `marker` only once `<marker>.go` exists, which the test creates after it has
      // read the whole response: the work provably runs after the response.
      EdgeRuntime.waitUntil((async () => {
        while (!(await exists(`${marker}.go`))) await sleep(20);
        await Deno.writeTextFile(marker, "done");
      })());
      return new Response("accepted", { status: 202 });
    case "/background/arm":
      addEventListener("beforeunload", (ev) => {
        const reason = (ev as CustomEvent<{ reason?: string }>).detail?.reason;
        EdgeRuntime.waitUntil((async () => {
          await sleep(50);
          await Deno.writeTextFile(marker, String(reason));
        })());
      });
      return new Response("armed");
    case "/background/reject":
      EdgeRuntime.waitUntil(Promise.reject(new Error("background task boom")));
      return Response.json({ pid: Deno.pid });
    case "/background/slow": {
      states.set(id, { started: true });
      await new Promise<void>((resolve) => releases.set(id, resolve));
      states.set(id, { finished: true, aborted: req.signal.aborted });
      return new Response("slow done");
    }
    case "/background/release":
      releases.get(id)?.();
      return new Response(releases.has(id) ? "released" : "unknown");
    case "/background/status":
      return Response.json(states.get(id) ?? {});
    default:
      return Response.json({ pid: Deno.pid });
  }
});
