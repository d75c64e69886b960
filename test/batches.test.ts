import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { assertSameTables, makePair, storedOffset } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const isCommit = (line: string | undefined) => /"type":"commit"/.test(line ?? "");

test("hundreds of transfers with a small max_records: the total balance holds after every run", async () => {
  const p = await makePair(server, "transfers");
  try {
    await p.sql(`CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)`);
    await p.sql(`CREATE TABLE ledger (from_id int, to_id int, amount bigint)`);
    await p.sql(`INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g`);
    for (let i = 0; i < 300; i++) {
      const a = ((i * 7) % 10) + 1;
      const b = ((i * 3 + 1) % 10) + 1;
      const amt = (i % 13) + 1;
      await p.sql(`BEGIN; UPDATE accounts SET balance = balance - ${amt} WHERE id = ${a};
                   UPDATE accounts SET balance = balance + ${amt} WHERE id = ${b};
                   INSERT INTO ledger VALUES (${a}, ${b}, ${amt}); COMMIT`);
    }
    await p.capture();
    let runs = 0;
    for (;;) {
      const s = await p.run({ maxRecords: 7 });
      if (s.records === 0) break;
      runs++;
      const next = Number(s.next_offset);
      assert.ok(isCommit(p.records[next - 1]), `run ${runs} ended at a commit (offset ${next - 1})`);
      const sum = await p.target.query(`SELECT sum(balance)::text AS s, count(*)::int AS n FROM accounts`);
      assert.equal(sum.rows[0].s, "10000", `total balance after run ${runs}`);
    }
    assert.ok(runs > 100, `many runs (${runs})`);
    assert.equal(await storedOffset(p, "sink-transfers"), String(p.records.length));
    await assertSameTables(p, ["accounts", "ledger"]);
  } finally {
    await p.close();
  }
});

test("a transaction larger than max_records is applied whole; a huge one in loud parts", async () => {
  const p = await makePair(server, "big");
  try {
    await p.sql(`CREATE TABLE big (id int PRIMARY KEY, v text)`);
    await p.sql(`INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 500) g`);
    await p.capture();
    const s = await p.run({ maxRecords: 10 });
    assert.equal(s.max_records_exceeded, true);
    assert.equal(s.records, p.records.length);
    assert.equal(s.lag, 0);
    await assertSameTables(p, ["big"]);

    await p.sql(`UPDATE big SET v = v || '!' WHERE id <= 100`);
    await p.capture();
    const parts = await p.runUntilIdle({ maxRecords: 10, maxTransactionRecords: 30 });
    assert.ok(parts.filter((x) => x.partial_transaction).length >= 3, "applied in parts");
    assert.equal(parts.at(-2)?.partial_transaction, false);
    await assertSameTables(p, ["big"]);
  } finally {
    await p.close();
  }
});

test("re-sent transactions are skipped; an unfinished trailing transaction waits for its commit", async () => {
  const p = await makePair(server, "resend");
  try {
    await p.sql(`CREATE TABLE ev (n int)`); // no key: a duplicate insert would show
    await p.sql(`INSERT INTO ev VALUES (1), (2)`);
    await p.sql(`INSERT INTO ev VALUES (3)`);
    await p.capture();
    await p.runUntilIdle();
    // The inbound connector restarts and sends everything again, then new work.
    appendFileSync(p.topicFile, `${p.records.join("\n")}\n`);
    p.records.push(...p.records);
    await p.sql(`INSERT INTO ev VALUES (4)`);
    const fresh = await p.wal_take_lines();
    // Only half of the new transaction has reached the topic.
    const half = fresh.slice(0, 2);
    appendFileSync(p.topicFile, `${half.join("\n")}\n`);
    const s = await p.run();
    assert.equal(s.skipped_transactions, 2);
    assert.equal(s.transactions, 0);
    assert.equal(s.lag, 2, "the unfinished transaction's records are left for later");
    appendFileSync(p.topicFile, `${fresh.slice(2).join("\n")}\n`);
    const s2 = await p.run();
    assert.equal(s2.transactions, 1);
    await assertSameTables(p, ["ev"]);
  } finally {
    await p.close();
  }
});

test("two runs at once: the second applies nothing and says why", async () => {
  const p = await makePair(server, "lock");
  try {
    await p.sql(`CREATE TABLE t (id int PRIMARY KEY)`);
    await p.sql(`INSERT INTO t VALUES (1)`);
    await p.capture();
    const holder = await p.target.query("BEGIN").then(() => p.target);
    await holder.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
      JSON.stringify(["fluvio-postgres-sink", "sink-lock", "postgres-topic", 0]),
    ]);
    const s = await p.run();
    assert.equal(s.status, "locked");
    assert.equal(s.records, 0);
    await holder.query("ROLLBACK");
    assert.equal(await storedOffset(p, "sink-lock"), null);
    const both = await Promise.all([p.run(), p.run()]);
    assert.deepEqual(both.map((x) => x.records).sort(), [0, p.records.length]);
    await assertSameTables(p, ["t"]);
  } finally {
    await p.close();
  }
});

test("the original connector's fluvio.offset is honoured when there is no state yet", async () => {
  const p = await makePair(server, "legacy");
  try {
    await p.sql(`CREATE TABLE l (id int PRIMARY KEY)`);
    await p.target.query(`CREATE TABLE l (id int PRIMARY KEY)`);
    await p.sql(`INSERT INTO l VALUES (1)`);
    await p.capture();
    // The Rust sink applied the first transaction and recorded the offset of its last record.
    await p.target.query(`INSERT INTO l VALUES (1)`);
    await p.target.query(
      `CREATE SCHEMA fluvio; CREATE TABLE fluvio."offset" (id int8 PRIMARY KEY, current_offset int8 NOT NULL)`,
    );
    await p.target.query(`INSERT INTO fluvio."offset" VALUES (1, $1)`, [p.records.length - 1]);
    await p.sql(`INSERT INTO l VALUES (2)`);
    await p.capture();
    await p.runUntilIdle();
    await assertSameTables(p, ["l"]);
    assert.equal(await storedOffset(p, "sink-legacy"), String(p.records.length));
  } finally {
    await p.close();
  }
});

test("max_records_exceeded only when one transaction is larger than the limit; a locked run reports the stored offset", async () => {
  const p = await makePair(server, "exceed");
  try {
    await p.sql(`CREATE TABLE ex (id int PRIMARY KEY)`);
    let id = 0;
    for (const maxRecords of [1, 7, 1000]) {
      // Transactions of 3 records (begin, insert, commit) and one of 2 * maxRecords + 2 records.
      for (let i = 0; i < 20; i++) await p.sql(`INSERT INTO ex VALUES ($1)`, [id++]);
      await p.capture();
      const small = await p.runUntilIdle({ maxRecords });
      const runs = small.filter((s) => s.records > 0);
      assert.ok(runs.length >= 1);
      if (maxRecords === 7)
        assert.ok(
          runs.some((s) => s.records > maxRecords),
          "some runs end past the limit, at a commit",
        );
      assert.deepEqual(
        runs.map((s) => s.max_records_exceeded),
        runs.map((s) => s.transactions === 1 && s.records > maxRecords),
        `max_records ${maxRecords}: only runs whose single transaction exceeds the limit`,
      );

      await p.sql(`INSERT INTO ex SELECT g FROM generate_series($1::int, $1::int + $2::int - 1) g`, [
        id,
        2 * maxRecords,
      ]);
      id += 2 * maxRecords;
      const bigTxn = await p.capture();
      const stored = await storedOffset(p, "sink-exceed");
      const holder = p.target;
      await holder.query("BEGIN");
      await holder.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [
        JSON.stringify(["fluvio-postgres-sink", "sink-exceed", "postgres-topic", 0]),
      ]);
      // The holder also has the state row locked, as a run does: the locked run must not wait for it.
      await holder.query(`SELECT 1 FROM fluvio_sink.state WHERE connector = 'sink-exceed' FOR UPDATE`);
      const locked = await p.run({ maxRecords });
      await holder.query("ROLLBACK");
      assert.equal(locked.status, "locked");
      assert.equal(locked.next_offset, stored);

      const big = await p.run({ maxRecords });
      assert.equal(big.records, bigTxn.length);
      assert.equal(big.transactions, 1);
      assert.equal(big.max_records_exceeded, true, `max_records ${maxRecords}: a transaction over the limit`);
      assert.equal(await storedOffset(p, "sink-exceed"), String(p.records.length));
      await assertSameTables(p, ["ex"]);
    }
  } finally {
    await p.close();
  }
});
