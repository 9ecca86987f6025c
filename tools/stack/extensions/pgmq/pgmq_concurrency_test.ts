/**
 * Concurrency guarantees of pgmq.read() that a single-session pgTAP file cannot show: with
 * several readers in flight at once, no message is handed out twice within its visibility
 * timeout, and a read whose transaction rolls back gives the message back untouched. Written
 * against the pgmq 1.5.1 API, so it holds for the real extension and for our local stand-in.
 *
 * Needs `CONVEYOR_DB_URL` (the `postgres` role's URL, set by `deno task test`).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import postgres from "postgres";

type Sql = ReturnType<typeof postgres>;

/** The database URL from the test environment contract. */
function dbUrl(): string {
  const url = Deno.env.get("CONVEYOR_DB_URL");
  if (!url) throw new Error("CONVEYOR_DB_URL is not set: run this through `deno task test`");
  return url;
}

/**
 * One connection of its own, so each reader really is a separate backend. The timeouts turn
 * a reader that blocks (instead of skipping locked rows) into a failure rather than a hang.
 */
function connect(): Sql {
  return postgres(dbUrl(), {
    max: 1,
    onnotice: () => {},
    connection: { lock_timeout: 10_000, statement_timeout: 60_000 }, // milliseconds
  });
}

/** A queue name no other test run uses. */
function uniqueQueue(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Resolves once `release` is called: lets one reader wait until another holds its locks. */
function gate(): { wait: Promise<void>; release: () => void } {
  let release = () => {};
  const wait = new Promise<void>((resolve) => release = resolve);
  return { wait, release };
}

Deno.test("read() never hands the same message to two concurrent readers", async () => {
  const MESSAGES = 2_000;
  const READERS = 4;
  const BATCH = 7;
  const queue = uniqueQueue("cc_read");
  const admin = connect();
  const readers = Array.from({ length: READERS }, connect);
  try {
    await admin`select pgmq.create(${queue})`;
    const sent = await admin`
      select count(*)::int as n
      from pgmq.send_batch(
        ${queue},
        (select array_agg(jsonb_build_object('i', g)) from generate_series(1, ${MESSAGES}) g)
      )`;
    assertEquals(sent[0]?.n, MESSAGES);

    // Deterministic overlap first: reader 0 claims a batch and keeps its transaction (and row
    // locks) open until reader 1 has read too, so both reads are certainly in flight together.
    // msg_id is bigint; postgres.js hands int8 over as a decimal string, which is all we compare.
    const delivered: string[][] = readers.map(() => []);
    const held = gate();
    const secondDone = gate();
    const first = readers[0]!.begin(async (tx) => {
      try {
        const rows = await tx`select msg_id from pgmq.read(${queue}, 600, ${BATCH})`;
        delivered[0]!.push(...rows.map((r) => String(r.msg_id)));
      } finally {
        held.release();
      }
      await secondDone.wait;
    });
    first.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
    await held.wait;
    let second: string[];
    try {
      second = await readers[1]!.begin(async (tx) => {
        const rows = await tx`select msg_id from pgmq.read(${queue}, 600, ${BATCH})`;
        return rows.map((r) => String(r.msg_id));
      });
    } finally {
      secondDone.release(); // never leave reader 0's transaction waiting, even on failure
      await first;
    }
    delivered[1]!.push(...second);
    assertEquals(delivered[0]!.length, BATCH);
    assertEquals(second.length, BATCH, "the second reader skipped the locked rows, not waited");
    assert(
      !second.some((id) => delivered[0]!.includes(id)),
      "overlapping readers claimed the same message",
    );

    // Then every reader drains the queue at once, each claim in its own transaction that
    // holds its locks a moment (pg_sleep) so the others keep running into them.
    await Promise.all(readers.map(async (sql, r) => {
      for (;;) {
        const ids = await sql.begin(async (tx) => {
          const rows = await tx`select msg_id from pgmq.read(${queue}, 600, ${BATCH})`;
          await tx`select pg_sleep(0.001)`;
          return rows.map((row) => String(row.msg_id));
        });
        if (ids.length === 0) return;
        delivered[r]!.push(...ids);
      }
    }));

    const all = delivered.flat();
    const unique = new Set(all);
    assertEquals(all.length - unique.size, 0, "some message was delivered more than once");
    assertEquals(unique.size, MESSAGES, "every message is delivered");
    const [counts] = await admin`
      select count(*)::int as total, count(*) filter (where read_ct = 1)::int as read_once
      from ${admin("pgmq")}.${admin(`q_${queue}`)}`;
    assertEquals({ ...counts }, { total: MESSAGES, read_once: MESSAGES });
    assertEquals(
      (await admin`select msg_id from pgmq.read(${queue}, 600, 1)`).length,
      0,
      "nothing is visible again while vt is long",
    );
  } finally {
    await admin`select pgmq.drop_queue(${queue})`.catch(() => {});
    await Promise.all([admin, ...readers].map((sql) => sql.end()));
  }
});

Deno.test("read() in a transaction that rolls back makes the message readable again", async () => {
  const queue = uniqueQueue("cc_rollback");
  const admin = connect();
  const reader = connect();
  const other = connect();
  try {
    await admin`select pgmq.create(${queue})`;
    const [sent] = await admin`select pgmq.send(${queue}, '{"job": 1}') as id`;
    const id = String(sent!.id);

    const rolledBack = new Error("roll back on purpose");
    const result = await reader.begin(async (tx) => {
      const [msg] = await tx`select msg_id, read_ct from pgmq.read(${queue}, 600, 1)`;
      assertEquals(String(msg!.msg_id), id);
      assertEquals(msg!.read_ct, 1);
      // While that read is uncommitted the message is locked: another reader gets nothing.
      const meanwhile = await other`select msg_id from pgmq.read(${queue}, 600, 1)`;
      assertEquals(meanwhile.length, 0);
      throw rolledBack;
    }).catch((e: unknown) => e);
    assertEquals(result, rolledBack);

    const [row] = await admin`
      select read_ct, vt <= clock_timestamp() as visible
      from ${admin("pgmq")}.${admin(`q_${queue}`)} where msg_id = ${id}`;
    assertEquals({ ...row }, { read_ct: 0, visible: true }, "the rollback restored read_ct and vt");

    const [again] = await other`select msg_id, read_ct from pgmq.read(${queue}, 600, 1)`;
    assertEquals(String(again!.msg_id), id);
    assertEquals(again!.read_ct, 1);
  } finally {
    await admin`select pgmq.drop_queue(${queue})`.catch(() => {});
    await Promise.all([admin, reader, other].map((sql) => sql.end()));
  }
});
