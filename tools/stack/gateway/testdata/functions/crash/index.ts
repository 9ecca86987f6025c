// Test fixture: dies in different ways depending on the path.
Deno.serve((req) => {
  const { pathname } = new URL(req.url);
  if (pathname === "/crash/exit") Deno.exit(3);
  if (pathname === "/crash/throw") {
    // an uncaught error outside the handler kills the whole process; never answer
    setTimeout(() => {
      throw new Error("boom from the crash fixture");
    }, 0);
    return new Promise<Response>(() => {});
  }
  if (pathname === "/crash/handler") throw new Error("handler failed");
  return Response.json({ pid: Deno.pid });
});
