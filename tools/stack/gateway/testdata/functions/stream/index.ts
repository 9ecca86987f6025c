// Test fixture: Server-Sent Events; chunk i+1 is only produced after the client acknowledged
// chunk i through `/stream/ack`, so a buffering proxy would deadlock.
const waiters: (() => void)[] = [];
const encoder = new TextEncoder();

Deno.serve((req) => {
  const url = new URL(req.url);
  if (url.pathname === "/stream/ack") {
    const wake = waiters.shift();
    wake?.();
    return new Response(wake ? "acked" : "nothing to ack");
  }
  const n = Number(url.searchParams.get("n") ?? "3");
  let i = 0;
  let acked: Promise<void> = Promise.resolve();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await acked;
      i++;
      controller.enqueue(encoder.encode(`data: chunk ${i}\n\n`));
      if (i >= n) controller.close();
      else acked = new Promise<void>((resolve) => waiters.push(resolve));
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
});
