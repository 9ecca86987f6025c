/**
 * The committed `Database` types (supabase/functions/_shared/database.types.ts) must be what
 * Supabase's generator makes of the migrated database, as supabase/schema.sql must be what
 * the migrations build. With CONVEYOR_SCHEMA_DUMP=write (`deno task db:dump`) the test
 * writes the file instead.
 */
import { freshDb } from "../test/db.ts";
import { unifiedDiff } from "./schema_dump.ts";
import { generateTypes, TYPES_FILE, TYPES_HEADER } from "./typegen.ts";

Deno.test("database.types.ts is what Supabase's generator makes of the migrations (else: deno task db:dump)", async () => {
  await using db = await freshDb();
  const built = await generateTypes(db.url, { header: TYPES_HEADER });
  if (Deno.env.get("CONVEYOR_SCHEMA_DUMP") === "write") {
    await Deno.writeTextFile(TYPES_FILE, built);
    console.log(`wrote ${TYPES_FILE} (${built.split("\n").length} lines)`);
    return;
  }
  const committed = await Deno.readTextFile(TYPES_FILE).catch(() => "");
  if (built !== committed) {
    const diff = await unifiedDiff(committed, built, [
      "supabase/functions/_shared/database.types.ts (committed)",
      "what Supabase's generator makes of supabase/migrations",
    ]);
    throw new Error(
      `database.types.ts is out of date: run \`deno task db:dump\` and commit it.\n${diff}`,
    );
  }
});
