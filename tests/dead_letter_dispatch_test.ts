/**
 * Dead letters reach the DLQ consumer on their own: dead-lettering a job kicks dlq-worker
 * (debounced, through pg_net), which records the letter and raises the `dead_letter`
 * alert, with no manual call; cron's sweep covers lost kicks.
 */
import { assertEquals } from "../tools/test/assert.ts";
import { eventually, tempKind } from "../tools/test/queue.ts";

Deno.test("a dead-lettered job is consumed by dlq-worker without a manual call", async () => {
  await using k = await tempKind();
  const { sql, kind } = k;
  await sql`select public.queue_job(${
    sql.json({ idempotency_key: `dlq:${crypto.randomUUID()}`, kind, payload: { n: 1 } })
  })`;
  const [c] = await sql`select job_id, lease_id from public.claim_jobs(p_kind => ${kind},
                                                                     p_worker => 't')`;
  const [outcome] = await sql`select public.fail_job(${c!.job_id}, ${c!.lease_id}, 'boom',
                                                     '{"max_attempts": 1}') as o`;
  assertEquals(outcome!.o, "dead_lettered");

  const letter = await eventually("dlq-worker to acknowledge the dead letter", async () => {
    const [d] = await sql`select acknowledged_at from public.dead_letter_jobs
                          where job_id = ${c!.job_id}`;
    return d?.acknowledged_at ? d : null;
  }, 30_000);
  assertEquals(letter.acknowledged_at instanceof Date, true);
  const [alert] = await sql`select rule, status from public.alert_history
                            where rule = 'dead_letter' and subject = ${kind}`;
  assertEquals([alert?.rule, alert?.status], ["dead_letter", "open"]);
});

Deno.test("the per-minute sweep calls dlq-worker only when q_dlq has visible messages", async () => {
  await using k = await tempKind();
  const { sql } = k;
  const [job] = await sql`select jobname, schedule, active from cron.job
                          where jobname = 'conveyor-dead-letters'`;
  assertEquals([job?.schedule, job?.active], ["* * * * *", true]);
  // Hold every visible DLQ message in a transaction so the sweep sees none, then let go.
  await sql.begin(async (tx) => {
    await tx`select msg_id from pgmq.q_q_dlq for update`;
    await tx`update pgmq.q_q_dlq set vt = clock_timestamp() + interval '1 hour'`;
    const [none] = await tx`select conveyor.sweep_dead_letters() as called`;
    assertEquals(none!.called, false);
    await tx`select pgmq.send('q_dlq', '{"probe": true}')`;
    const [some] = await tx`select conveyor.sweep_dead_letters() as called`;
    assertEquals(some!.called, true);
    throw new Rollback();
  }).catch((e) => {
    if (!(e instanceof Rollback)) throw e;
  });
});

class Rollback extends Error {}
