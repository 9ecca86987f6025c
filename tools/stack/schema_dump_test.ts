/**
 * The schema-drift guard: supabase/schema.sql must be what the migrations build. With
 * CONVEYOR_SCHEMA_DUMP=write (`deno task db:dump`) the test writes the file instead.
 */
import { assertEquals } from "../test/assert.ts";
import { freshDb } from "../test/db.ts";
import { testEnv } from "../test/env.ts";
import { normaliseDump, SCHEMA_FILE, schemaDump, unifiedDiff } from "./schema_dump.ts";

Deno.test("normaliseDump() drops pg_dump's version lines, random key, preamble and owners", () => {
  const raw = [
    "--",
    "-- PostgreSQL database dump",
    "--",
    "",
    "\\restrict Abc123",
    "",
    "-- Dumped from database version 15.18",
    "-- Dumped by pg_dump version 15.18",
    "",
    "SET statement_timeout = 0;",
    "SELECT pg_catalog.set_config('search_path', '', false);",
    "",
    "--",
    "-- Name: conveyor; Type: SCHEMA; Schema: -; Owner: -",
    "--",
    "",
    "CREATE SCHEMA conveyor;",
    "",
    "",
    "",
    "SET default_tablespace = '';",
    "",
    "--",
    "-- PostgreSQL database dump complete",
    "--",
    "",
    "\\unrestrict Abc123",
    "",
  ].join("\n");
  assertEquals(
    normaliseDump(raw),
    "--\n-- Name: conveyor; Type: SCHEMA; Schema: -\n--\n\nCREATE SCHEMA conveyor;\n",
  );
});

Deno.test("supabase/schema.sql is what the migrations build (else: deno task db:dump)", async () => {
  const env = testEnv();
  // A clone of the migrated template (connecting to the template itself would block the
  // clones other tests make); cron jobs live in the database pg_cron serves.
  await using db = await freshDb();
  const built = await schemaDump({ url: db.url, cronUrl: env.dbUrl, pgBin: env.pgBin });
  if (Deno.env.get("CONVEYOR_SCHEMA_DUMP") === "write") {
    await Deno.writeTextFile(SCHEMA_FILE, built);
    console.log(`wrote supabase/schema.sql (${built.split("\n").length} lines)`);
    return;
  }
  const committed = await Deno.readTextFile(SCHEMA_FILE).catch(() => "");
  if (built !== committed) {
    const diff = await unifiedDiff(committed, built, [
      "supabase/schema.sql (committed)",
      "what supabase/migrations build",
    ]);
    throw new Error(
      `supabase/schema.sql is out of date: run \`deno task db:dump\` and commit it.\n${diff}`,
    );
  }
});
