/**
 * Conveyor into a Supabase project of someone else's, as docs/install.md tells a user to do
 * it, end to end (issue 22): `supabase init` (the real CLI) in a temp folder; a migration
 * and a function of the project's own; `deno task conveyor install`; `add kind send_invoice`
 * with a handler that writes a row; the local stack started on that folder (private ports);
 * `queue_job` over HTTP runs a send_invoice job to completion, a failing one is retried and
 * dead-lettered; the project's own migration and function still work; install again changes
 * nothing; `types` describes the project; a new Conveyor migration → `upgrade` writes exactly
 * that one and `supabase db push` applies it; `deno task test --project` runs the project's
 * tests; and bad input (unknown folder, no supabase/, a kind name that is not one or already
 * exists) gets a clear error and writes nothing. Every command is printed with its output,
 * as the user would see it.
 */
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch } from "../tools/test/assert.ts";
import { connect } from "../tools/test/db.ts";
import { eventually } from "../tools/test/queue.ts";
import { freePort } from "../tools/stack/proc.ts";
import { projectStackDir, REPO_ROOT } from "../tools/stack/state.ts";
import { cliDbUrl, supabaseCliPath } from "../tools/stack/supabase_cli.ts";
import { stackInfo } from "../tools/stack/supervisor.ts";

const dec = new TextDecoder();

/** The harness's variables, unset: the commands run as in a user's own shell. */
const HARNESS_VARS = new Set([
  "CONVEYOR_DB_URL",
  "CONVEYOR_ADMIN_DB_URL",
  "CONVEYOR_STACK_DIR",
  "CONVEYOR_PROJECT",
  "SUPABASE_URL",
  "SUPABASE_ANON_KEY",
  "SUPABASE_SERVICE_ROLE_KEY",
  "SUPABASE_JWT_SECRET",
  "SUPABASE_DB_URL",
]);
const USER_ENV: Record<string, string> = {
  ...Object.fromEntries(Object.entries(Deno.env.toObject()).filter(([k]) => !HARNESS_VARS.has(k))),
  SUPABASE_TELEMETRY_DISABLED: "1",
  DO_NOT_TRACK: "1",
  NO_COLOR: "1",
};

interface Ran {
  code: number;
  out: string;
}

/**
 * Runs a command as the user would type `shown`, prints `$ shown` and its output (indented,
 * `keep` filters long output), and returns exit code and output.
 */
async function run(
  shown: string,
  cmd: string,
  args: string[],
  opts: { cwd?: string; keep?: (line: string) => boolean } = {},
): Promise<Ran> {
  const res = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd ?? REPO_ROOT,
    clearEnv: true,
    env: USER_ENV,
    stdout: "piped",
    stderr: "piped",
  }).output();
  // Progress goes to stderr before the result on stdout (the Supabase CLI's "Finished …").
  const out = (dec.decode(res.stderr) + dec.decode(res.stdout))
    // deno's download/initialise chatter is not what the command says
    .split("\n").filter((l) => !/^(Download|Initialize|Warning Implicitly) /.test(l)).join("\n");
  console.log(`$ ${shown}`);
  const lines = out.trimEnd().split("\n").filter((l) => l && (!opts.keep || opts.keep(l)));
  for (const l of lines) console.log(`  ${l}`);
  if (opts.keep && lines.length === 0) console.log("  …");
  console.log(`  (exit ${res.code})`);
  return { code: res.code, out };
}

/** `deno task conveyor <args>` from this checkout. */
function conveyor(...args: string[]): Promise<Ran> {
  return run(
    `deno task conveyor ${args.join(" ")}`,
    Deno.execPath(),
    ["run", "-A", `${REPO_ROOT}/tools/conveyor.ts`, ...args],
  );
}

/** sha256 of every file under `dir` (path → hash): "nothing written" is "the same tree". */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else {out[p.slice(dir.length + 1)] = createHash("sha256").update(await Deno.readFile(p))
          .digest("hex");}
    }
  };
  await walk(dir);
  return out;
}

const OWN_MIGRATION = `-- The project's own table: invoices its send_invoice jobs sent.
create table public.invoices_sent (
  invoice_id text primary key,
  amount_cents int not null check (amount_cents >= 0),
  job_id uuid,
  sent_at timestamptz not null default now()
);
alter table public.invoices_sent enable row level security;
-- Only the server writes and reads it (what \`deno task doctor\`'s database lints ask for).
revoke all on public.invoices_sent from anon, authenticated;
`;

const OWN_FUNCTION = `// The project's own function, as it had one before Conveyor.
Deno.serve(async (req) => {
  const { name } = await req.json().catch(() => ({ name: "world" }));
  return Response.json({ message: \`Hello \${name}!\` });
});
`;

const KIND = `import { jobKind } from "../_conveyor/jobs.ts";

/** What a send_invoice job carries. */
export interface SendInvoicePayload {
  invoice_id: string;
  amount_cents: number;
  /** Makes the card "declined": the job fails, is retried, then dead-lettered. */
  fail?: boolean;
}

export const sendInvoice = jobKind<SendInvoicePayload>("send_invoice");
`;

const HANDLER = `import { defineHandler, serviceClient } from "../_conveyor/jobs.ts";
import { sendInvoice } from "./kind.ts";

// Sends the invoice: here, records it in the project's own table (idempotent: an upsert).
export const handler = defineHandler(sendInvoice, async (job, { log }) => {
  if (job.payload.fail) throw new Error(\`card declined for \${job.payload.invoice_id}\`);
  const { error } = await serviceClient().from("invoices_sent").upsert({
    invoice_id: job.payload.invoice_id,
    amount_cents: job.payload.amount_cents,
    job_id: job.id,
  });
  if (error) throw new Error(error.message);
  log("invoice sent", { invoice_id: job.payload.invoice_id });
  return { sent: job.payload.invoice_id };
});
`;

const HANDLER_TEST = `import assert from "node:assert/strict";
import { enqueue, runHandler, serviceClient } from "../_conveyor/jobs.ts";
import { handler } from "./handler.ts";
import { sendInvoice } from "./kind.ts";

Deno.test("send_invoice records the invoice", async () => {
  const { output } = await runHandler(handler, { invoice_id: "test-1", amount_cents: 500 });
  assert.deepEqual(output, { sent: "test-1" });
  const { data, error } = await serviceClient().from("invoices_sent").select("amount_cents")
    .eq("invoice_id", "test-1").single();
  assert.equal(error, null);
  assert.equal(data?.amount_cents, 500);
});

Deno.test("send_invoice jobs are enqueued with the same typed kind", async () => {
  const n = await enqueue(serviceClient(), sendInvoice, { invoice_id: "test-3", amount_cents: 7 }, {
    idempotencyKey: "invoice:test-3",
  });
  assert.equal(typeof n, "number");
});

Deno.test("send_invoice fails when the card is declined", async () => {
  await assert.rejects(
    runHandler(handler, { invoice_id: "test-2", amount_cents: 1, fail: true }),
    /card declined for test-2/,
  );
});
`;

const PGTAP = `begin;
select plan(2);
select has_table('public', 'invoices_sent', 'the project''s own table is there');
select is((select count(*)::int from conveyor.job_kinds where kind = 'send_invoice'), 1,
  'send_invoice is a job kind');
select * from finish();
rollback;
`;

Deno.test({
  name: "install: Conveyor into a project made by supabase init, add kind, run, upgrade",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tmp = await Deno.makeTempDir({ prefix: "conveyor-install-" });
    const app = `${tmp}/app`;
    // Where `--project` puts the project's stack by default (.stack/app-<hash>), and a folder
    // for the nested `deno task test` run of its own (the default .stack/test may be in use).
    const stackDir = projectStackDir(app);
    const testDir = `${stackDir}-test`;
    const apiPort = freePort();
    const dbPort = freePort();
    const info = await stackInfo(apiPort, dbPort);
    const supabase = await supabaseCliPath();
    let stackUp = false;
    try {
      await t.step("a project of its own: supabase init, a migration, a function", async () => {
        await Deno.mkdir(app);
        assertEquals(
          (await run("supabase init", supabase, ["init", "--yes"], { cwd: app })).code,
          0,
        );
        const made = await run("supabase migration new invoices", supabase, [
          "migration",
          "new",
          "invoices",
        ], { cwd: app });
        assertEquals(made.code, 0);
        const file = /supabase\/migrations\/(\d+_invoices\.sql)/.exec(made.out)![1]!;
        await Deno.writeTextFile(`${app}/supabase/migrations/${file}`, OWN_MIGRATION);
        await Deno.mkdir(`${app}/supabase/functions/hello`, { recursive: true });
        await Deno.writeTextFile(`${app}/supabase/functions/hello/index.ts`, OWN_FUNCTION);
        await Deno.writeTextFile(
          `${app}/supabase/config.toml`,
          "\n[functions.hello]\nverify_jwt = false\n",
          { append: true },
        );
        console.log(`  (wrote ${file}: table invoices_sent; supabase/functions/hello)`);
      });

      const configBefore = await Deno.readTextFile(`${app}/supabase/config.toml`);
      await t.step("bad input: a clear error, nothing written", async () => {
        const before = await tree(tmp);
        const missing = await conveyor("install", "--project", `${tmp}/nope`);
        assertEquals([missing.code, missing.out.trim()], [
          1,
          `error: project folder ${tmp}/nope does not exist`,
        ]);
        await Deno.mkdir(`${tmp}/empty`);
        const empty = await conveyor("install", "--project", `${tmp}/empty`);
        assertEquals([empty.code, empty.out.trim()], [
          1,
          `error: ${tmp}/empty has no supabase/ folder: it is not a Supabase project\n` +
          `  fix: run \`supabase init\` in ${tmp}/empty first`,
        ]);
        const upgrade = await conveyor("upgrade", "--project", app);
        assertEquals([upgrade.code, upgrade.out.trim()], [
          1,
          `error: Conveyor is not installed in ${app} (no supabase/conveyor.lock.json)\n` +
          `  fix: deno task conveyor install --project ${app}`,
        ]);
        await Deno.remove(`${tmp}/empty`);
        assertEquals(await tree(tmp), before, "nothing written");
      });

      await t.step("deno task conveyor install (--dry-run first)", async () => {
        const before = await tree(app);
        const dry = await conveyor("install", "--project", app, "--dry-run");
        assertEquals(dry.code, 0);
        assertMatch(dry.out, /^\(dry run: nothing written\)$/m);
        assertEquals(await tree(app), before, "a dry run writes nothing");
        const r = await conveyor("install", "--project", app);
        assertEquals(r.code, 0);
        assertMatch(r.out, /^Installing Conveyor .* into /m);
        const names = [...Deno.readDirSync(`${app}/supabase/migrations`)].map((e) => e.name).sort();
        const own = names.filter((n) => !n.includes("_conveyor_"));
        assertEquals(own.length, 1);
        assert(names.at(0) === own[0], "Conveyor's migrations come after the project's own");
        assertEquals(
          names.filter((n) => n.includes("_conveyor_0051_queue_job_expose.sql")).length,
          1,
          "the seed's name stays recognisable",
        );
        const config = await Deno.readTextFile(`${app}/supabase/config.toml`);
        assert(config.startsWith(configBefore), "the project's config.toml text is untouched");
        assertMatch(config, /\[functions\.content-queue-dispatcher\]\nverify_jwt = true/);
        const hello = await Deno.readTextFile(`${app}/supabase/functions/hello/index.ts`);
        assertEquals(hello, OWN_FUNCTION);
      });

      await t.step(
        "deno task conveyor add kind send_invoice, and the handler filled in",
        async () => {
          const r = await conveyor("add", "kind", "send_invoice", "--project", app);
          assertEquals(r.code, 0);
          const dir = `${app}/supabase/functions/send-invoice-worker`;
          assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
            "handler.ts",
            "handler_test.ts",
            "index.ts",
            "kind.ts",
          ]);
          await Deno.writeTextFile(`${dir}/kind.ts`, KIND);
          await Deno.writeTextFile(`${dir}/handler.ts`, HANDLER);
          await Deno.writeTextFile(`${dir}/handler_test.ts`, HANDLER_TEST);
          await Deno.mkdir(`${app}/supabase/tests`, { recursive: true });
          await Deno.writeTextFile(`${app}/supabase/tests/invoices.test.sql`, PGTAP);
          console.log(
            "  (filled in kind.ts, handler.ts, handler_test.ts; supabase/tests/invoices.test.sql)",
          );

          const before = await tree(tmp);
          const bad = await conveyor("add", "kind", "Send-Invoice", "--project", app);
          assertEquals([bad.code, bad.out.trim()], [
            2,
            'error: "Send-Invoice" is not a valid kind name: a lower-case letter, then lower-case ' +
            "letters, digits or _ (29 characters at most), e.g. send_invoice",
          ]);
          const again = await conveyor("add", "kind", "send_invoice", "--project", app);
          assertEquals(again.code, 1);
          assertMatch(
            again.out.trim(),
            /^error: kind send_invoice already exists \(supabase\/migrations\/\d+_conveyor_kind_send_invoice\.sql\)$/,
          );
          const shipped = await conveyor("add", "kind", "enrich", "--project", app);
          assertEquals(shipped.code, 1);
          assertMatch(
            shipped.out.trim(),
            /^error: kind enrich already exists \(supabase\/migrations\/\d+_conveyor_0010_conveyor_core\.sql\)$/,
          );
          assertEquals(await tree(tmp), before, "nothing written");
        },
      );

      await t.step(
        "every function type-checks on its own, no import map (what deploy bundles)",
        async () => {
          const fns = [...Deno.readDirSync(`${app}/supabase/functions`)]
            .filter((e) => e.isDirectory && !e.name.startsWith("_"))
            .map((e) => `supabase/functions/${e.name}/index.ts`).sort();
          const r = await run(
            "deno check supabase/functions/*/index.ts",
            Deno.execPath(),
            ["check", ...fns],
            { cwd: app, keep: (l) => !/^Check /.test(l) },
          );
          assertEquals(r.code, 0, r.out);
          console.log(`  (${fns.length} functions checked)`);
        },
      );

      await t.step("the local stack on the project folder", async () => {
        const r = await run(
          `deno task stack:up --project ${app} --api-port ${apiPort} --db-port ${dbPort}`,
          Deno.execPath(),
          [
            "run",
            "-A",
            `${REPO_ROOT}/tools/stack/main.ts`,
            "up",
            "--project",
            app,
            "--api-port",
            String(apiPort),
            "--db-port",
            String(dbPort),
          ],
          { keep: (l) => /Applying migration|applied|project:|error|fix:|running\.$/.test(l) },
        );
        stackUp = true;
        assertEquals(r.code, 0, r.out);
        // Every migration in the folder: the project's own, Conveyor's (however many it
        // ships) and the kind's.
        const count = [...Deno.readDirSync(`${app}/supabase/migrations`)].length;
        assertMatch(r.out, new RegExp(`supabase db push applied ${count} migration\\(s\\)`));
      });

      const sql = connect(info.dbUrl, 2);
      try {
        const queueJob = async (body: Record<string, unknown>) => {
          const res = await fetch(`${info.apiUrl}/rest/v1/rpc/queue_job`, {
            method: "POST",
            headers: {
              apikey: info.serviceRoleKey,
              Authorization: `Bearer ${info.serviceRoleKey}`,
              "Content-Type": "application/json",
            },
            body: JSON.stringify(body),
          });
          const text = await res.text();
          console.log(
            `$ curl -X POST $SUPABASE_URL/rest/v1/rpc/queue_job -d '${JSON.stringify(body)}'`,
          );
          console.log(`  HTTP ${res.status} ${text}`);
          return { status: res.status, text };
        };

        await t.step("queue_job send_invoice over HTTP: runs to completion", async () => {
          const r = await queueJob({
            idempotency_key: "invoice:inv-1",
            kind: "send_invoice",
            payload: { invoice_id: "inv-1", amount_cents: 1250 },
          });
          assertEquals(r.status, 200);
          const n = Number(r.text);
          // As docs/install.md says to look: GET /rest/v1/jobs?msg_id=eq.<number>.
          const job = await eventually("send_invoice job completed", async () => {
            const res = await fetch(
              `${info.apiUrl}/rest/v1/jobs?msg_id=eq.${n}&select=status,attempts,output,id`,
              {
                headers: {
                  apikey: info.serviceRoleKey,
                  Authorization: `Bearer ${info.serviceRoleKey}`,
                },
              },
            );
            const [row] = await res.json() as {
              status: string;
              attempts: number;
              output: unknown;
              id: string;
            }[];
            return row?.status === "completed" ? row : null;
          }, 60_000);
          assertEquals([job.attempts, job.output], [1, { sent: "inv-1" }]);
          const rows = await sql`select invoice_id, amount_cents, job_id from public.invoices_sent`;
          assertEquals(rows.map((x) => [x.invoice_id, x.amount_cents, x.job_id]), [[
            "inv-1",
            1250,
            job.id,
          ]]);
          console.log(`  job ${n}: completed, attempt 1; invoices_sent has inv-1 (1250)`);
        });

        await t.step("a failing send_invoice is retried, then dead-lettered", async () => {
          const r = await queueJob({
            idempotency_key: "invoice:inv-2",
            kind: "send_invoice",
            payload: { invoice_id: "inv-2", amount_cents: 99, fail: true },
          });
          assertEquals(r.status, 200);
          const n = Number(r.text);
          const job = await eventually("send_invoice job dead-lettered", async () => {
            const [row] = await sql`select id, status, attempts, last_error from public.jobs
                                    where msg_id = ${n}`;
            return row?.status === "failed" ? row : null;
          }, 60_000);
          assertEquals(job.attempts, 3);
          const events = await sql`select type from public.job_events where job_id = ${job.id}
                                   order by created_at, id`;
          assertEquals(events.map((e) => e.type), [
            "retry_scheduled",
            "retry_scheduled",
            "dead_lettered",
          ]);
          const [dead] = await sql`select reason, attempts from public.dead_letter_jobs
                                   where job_id = ${job.id}`;
          assertEquals(dead?.attempts, 3);
          console.log(
            `  job ${n}: failed after 3 attempts (retry_scheduled ×2, dead_lettered): ${dead?.reason}`,
          );
        });

        await t.step("the project's own migration and function still work", async () => {
          const rest = await fetch(`${info.apiUrl}/rest/v1/invoices_sent?select=invoice_id`, {
            headers: {
              apikey: info.serviceRoleKey,
              Authorization: `Bearer ${info.serviceRoleKey}`,
            },
          });
          assertEquals([rest.status, await rest.json()], [200, [{ invoice_id: "inv-1" }]]);
          const hello = await fetch(`${info.apiUrl}/functions/v1/hello`, {
            method: "POST",
            headers: { apikey: info.anonKey, "Content-Type": "application/json" },
            body: JSON.stringify({ name: "Conveyor" }),
          });
          assertEquals([hello.status, await hello.json()], [200, { message: "Hello Conveyor!" }]);
          console.log(
            '  GET /rest/v1/invoices_sent → 200 [inv-1]; POST /functions/v1/hello → 200 "Hello Conveyor!"',
          );
        });

        await t.step("looking at it: stack:status, doctor, conveyor status", async () => {
          const status = await run(
            `deno task stack:status --project ${app}`,
            Deno.execPath(),
            ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, "status", "--project", app],
            { keep: (l) => /^\s*(project:|API URL:|DB URL:|Conveyor local stack)/.test(l) },
          );
          assertEquals(status.code, 0, status.out);
          assertMatch(status.out, new RegExp(`:${apiPort}\\b`));
          const doctor = await run(
            `deno task doctor --project ${app}`,
            Deno.execPath(),
            ["run", "-A", `${REPO_ROOT}/tools/doctor.ts`, "--project", app],
          );
          assertEquals(doctor.code, 0, doctor.out);
          assert(!/^FAIL /m.test(doctor.out), doctor.out);
          const ops = await run(
            `deno task conveyor status --stack-dir ${stackDir}`,
            Deno.execPath(),
            ["run", "-A", `${REPO_ROOT}/tools/conveyor.ts`, "status", "--stack-dir", stackDir],
          );
          assertEquals(ops.code, 0, ops.out);
          assertMatch(ops.out, /send_invoice/);
        });

        await t.step("install again changes nothing", async () => {
          const before = await tree(app);
          const r = await conveyor("install", "--project", app);
          assertEquals(r.code, 0);
          assertMatch(r.out, /^Nothing to do: .* every file as it wrote it\.$/m);
          assertEquals(await tree(app), before);
        });

        await t.step("deno task conveyor types: the project's Database types", async () => {
          const r = await run(
            `deno task conveyor types --project ${app} > database.types.ts`,
            Deno.execPath(),
            [
              "run",
              "-A",
              `${REPO_ROOT}/tools/conveyor.ts`,
              "types",
              "--project",
              app,
            ],
            { keep: (l) => /^\/\/ |^export type Database/.test(l) },
          );
          assertEquals(r.code, 0);
          assertMatch(r.out, /\n {6}invoices_sent: \{\n/);
          assertMatch(r.out, /\n {6}queue_job: \{ Args: \{ "": Json \}; Returns: number \}/);
        });

        await t.step(
          "a new Conveyor migration: upgrade writes exactly it, the CLI applies it",
          async () => {
            // Conveyor a release later: this checkout plus one forward migration.
            const next = `${tmp}/conveyor-next`;
            await Deno.mkdir(`${next}/supabase`, { recursive: true });
            for (const d of ["migrations", "functions"]) {
              const cp = await new Deno.Command("cp", {
                args: ["-r", `${REPO_ROOT}/supabase/${d}`, `${next}/supabase/${d}`],
              }).output();
              assert(cp.success, `cp ${d}`);
            }
            await Deno.copyFile(
              `${REPO_ROOT}/supabase/config.toml`,
              `${next}/supabase/config.toml`,
            );
            await Deno.writeTextFile(
              `${next}/supabase/migrations/20991231000000_e2e_next.sql`,
              "-- A forward migration of a later Conveyor.\n" +
                "create table conveyor.e2e_next (id int primary key);\n",
            );
            const before = await tree(app);
            const dry = await conveyor("upgrade", "--project", app, "--from", next, "--dry-run");
            assertEquals(dry.code, 0);
            assertMatch(
              dry.out,
              /^ {2}add {6}supabase\/migrations\/\d{14}_conveyor_20991231000000_e2e_next\.sql$/m,
            );
            assertEquals(await tree(app), before, "a dry run writes nothing");
            const r = await conveyor(
              "upgrade",
              "--project",
              app,
              "--from",
              next,
              "--db-url",
              info.dbUrl,
            );
            assertEquals(r.code, 0);
            const after = await tree(app);
            const changed = Object.keys(after).filter((p) => after[p] !== before[p]).sort();
            assertEquals(changed.length, 2, changed.join(", "));
            assertMatch(changed[0]!, /^supabase\/conveyor\.lock\.json$/);
            assertMatch(
              changed[1]!,
              /^supabase\/migrations\/\d{14}_conveyor_20991231000000_e2e_next\.sql$/,
            );
            const name = changed[1]!.split("/").at(-1)!;
            const push = await run(
              `supabase db push --db-url "${cliDbUrl(info.dbUrl)}"`,
              supabase,
              ["--workdir", app, "db", "push", "--db-url", cliDbUrl(info.dbUrl), "--yes"],
              { cwd: app },
            );
            assertEquals(push.code, 0);
            assertEquals(
              [...push.out.matchAll(/^Applying migration (\S+)\.\.\.$/gm)].map((m) => m[1]),
              [name],
            );
            const [probe] = await sql`select to_regclass('conveyor.e2e_next') is not null as made`;
            assertEquals(probe?.made, true);
            const again = await conveyor("upgrade", "--project", app, "--from", next);
            assertMatch(again.out, /^Nothing to do/m);
          },
        );

        await t.step(
          "removing Conveyor: uninstall.sql leaves the project's own migration",
          async () => {
            const r = await run(
              `psql "$SUPABASE_DB_URL" -v ON_ERROR_STOP=1 -f scripts/uninstall.sql`,
              "psql",
              [
                info.dbUrl,
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                `${REPO_ROOT}/scripts/uninstall.sql`,
              ],
              { keep: (l) => /ERROR|FATAL/.test(l) },
            );
            assertEquals(r.code, 0, r.out);
            const left = await sql`select version, name from supabase_migrations.schema_migrations`;
            assertEquals(left.map((x) => x.name), ["invoices"]);
            const [gone] = await sql`select to_regnamespace('conveyor') is null as gone,
                                     to_regclass('public.invoices_sent') is not null as kept`;
            assertEquals([gone?.gone, gone?.kept], [true, true]);
            console.log(
              "  schema conveyor and its history gone; invoices_sent and its migration kept",
            );
          },
        );
      } finally {
        await sql.end();
      }

      await run(
        `deno task stack:down --project ${app}`,
        Deno.execPath(),
        ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, "down", "--project", app],
      );
      stackUp = false;

      await t.step(
        "deno task test --project: the project's own tests on a private stack",
        async () => {
          const r = await run(
            `deno task test --project ${app} --stack-dir ${testDir}`,
            Deno.execPath(),
            [
              "run",
              "-A",
              `${REPO_ROOT}/tools/test/run.ts`,
              "--project",
              app,
              "--stack-dir",
              testDir,
            ],
            { keep: (l) => /^(send_invoice|ok \d|not ok|\S+\.sql|\d+ passed)/.test(l) },
          );
          assertEquals(r.code, 0, r.out);
          assertMatch(r.out, /^5 passed, 0 failed$/m);
        },
      );
    } finally {
      if (stackUp) {
        await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", `${REPO_ROOT}/tools/stack/main.ts`, "down", "--dir", stackDir],
          stdout: "null",
          stderr: "null",
        }).output();
      }
      await Deno.remove(stackDir, { recursive: true }).catch(() => {});
      await Deno.remove(testDir, { recursive: true }).catch(() => {});
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
