// Test fixture: present on disk but `enabled = false` in config.toml, so never served.
Deno.serve(() => new Response("should not be reachable"));
