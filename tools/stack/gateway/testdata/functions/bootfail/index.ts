// Test fixture: fails while loading, before Deno.serve.
throw new Error("bootfail fixture cannot start");
