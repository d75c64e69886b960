/**
 * `npm run demo`: the main job end to end on one machine, nothing installed or running beforehand.
 * Starts a throwaway PostgreSQL (source and target databases) and the local Fluvio-compatible test
 * cluster, runs a workload on the source, streams its logical decoding (in the inbound connector's
 * record format) into a topic with the real @fluvio/client producer, applies it with repeated sink
 * runs while showing progress, and checks that the target equals the source.
 */
import assert from "node:assert/strict";
import { silentLogger } from "../src/log.js";
import { runOnce } from "../src/run.js";
import { FluvioTestCluster } from "../test/support/fluvio/cluster.js";
import { produce } from "../test/support/fluvio/produce.js";
import { assertSameTables, makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";

const say = (s: string) => process.stdout.write(`${s}\n`);

const server = await startPostgres();
const cluster = await FluvioTestCluster.start();
cluster.createTopic("postgres-topic");
const p = await makePair(server, "demo");
let code = 0;
try {
  say("source: creating accounts, orders and a ledger, then 400 transactions of transfers and orders");
  await p.sql(
    `CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2) NOT NULL)`,
  );
  await p.sql(
    `CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint, items jsonb, placed_at timestamptz DEFAULT now())`,
  );
  await p.sql(`CREATE TABLE ledger (account_id bigint, delta numeric(14,2), note text)`);
  await p.sql(`INSERT INTO accounts SELECT g, 'owner ' || g, 1000 FROM generate_series(1, 50) g`);
  for (let i = 0; i < 400; i++) {
    const a = ((i * 17) % 50) + 1;
    const b = ((i * 31 + 7) % 50) + 1;
    const amt = ((i % 97) + 1) / 4;
    await p.sql(`BEGIN;
      UPDATE accounts SET balance = balance - ${amt} WHERE id = ${a};
      UPDATE accounts SET balance = balance + ${amt} WHERE id = ${b};
      INSERT INTO ledger VALUES (${a}, -${amt}, 'transfer ${i}'), (${b}, ${amt}, 'transfer ${i}');
      INSERT INTO orders (account_id, items) VALUES (${a}, '{"sku": "S-${i}", "qty": ${i % 5}}');
      COMMIT`);
    if (i === 200) await p.sql(`ALTER TABLE orders ADD COLUMN status text`);
    if (i > 200) await p.sql(`UPDATE orders SET status = 'shipped' WHERE id = ${i - 150}`);
  }
  await p.sql(`DELETE FROM orders WHERE id % 10 = 0`);
  await produce(cluster.endpoint, "postgres-topic", await p.capture());
  say(
    `fluvio: ${p.records.length} records from real WAL produced into postgres-topic at ${cluster.endpoint}`,
  );

  const started = Date.now();
  let total = 0;
  for (let run = 1; ; run++) {
    const s = await runOnce(
      p.config({
        name: "demo-sink",
        maxRecords: 500,
        source: { kind: "fluvio", endpoint: cluster.endpoint },
      }),
      { log: silentLogger },
    );
    if (s.records === 0) break;
    total += s.records;
    const sum = await p.target.query(`SELECT sum(balance)::text AS s FROM accounts`);
    say(
      `run ${run}: ${s.records} records, ${s.transactions} transactions, ${s.statements} statements, lag ${s.lag}, ` +
        `${Math.round((s.records * 1000) / Math.max(1, s.duration_ms))} records/s, total balance on target ${sum.rows[0].s}`,
    );
  }
  const seconds = (Date.now() - started) / 1000;
  await assertSameTables(p, ["accounts", "orders", "ledger"]);
  const counts = await p.target.query(
    `SELECT (SELECT count(*) FROM accounts) AS a, (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM ledger) AS l`,
  );
  assert.equal(total, p.records.length);
  say(
    `done: ${total} records in ${seconds.toFixed(2)} s; target equals source ` +
      `(accounts ${counts.rows[0].a}, orders ${counts.rows[0].o}, ledger ${counts.rows[0].l} rows)`,
  );
} catch (e) {
  process.stderr.write(`demo failed: ${(e as Error).stack ?? e}\n`);
  code = 1;
} finally {
  await p.close();
  await cluster.stop();
  await server.stop();
}
// The native Fluvio client's background threads are not ours to stop.
process.exit(code);
