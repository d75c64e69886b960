/**
 * `npm run demo`: the main job end to end on one machine, nothing installed or running beforehand.
 * Starts a throwaway PostgreSQL (source and target databases) and the local Fluvio-compatible test
 * cluster; a workload runs on the source in waves, and its logical decoding (in the inbound
 * connector's record format) is produced into a topic with the real @fluvio/client producer; the
 * Lambda handler is invoked on a short schedule, as EventBridge would, applying bounded batches while
 * the demo shows lag and records/s; at the end the target is checked against the source.
 */
import type { Context } from "aws-lambda";
import { createApplyHandler } from "../src/lambda/apply.js";
import { FluvioTestCluster } from "../test/support/fluvio/cluster.js";
import { produce } from "../test/support/fluvio/produce.js";
import { assertSameTables, makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";

const say = (s: string) => process.stdout.write(`${s}\n`);
const TICK_MS = 200;
const WAVES = 4;
const TXNS_PER_WAVE = 150;

const server = await startPostgres();
const cluster = await FluvioTestCluster.start();
cluster.createTopic("postgres-topic");
const p = await makePair(server, "demo");
let code = 0;
try {
  Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: "WARN", POWERTOOLS_METRICS_DISABLED: "true" });
  const handler = createApplyHandler({
    ...process.env,
    FLUVIO_PG_SINK_NAME: "demo-sink",
    FLUVIO_TOPIC: "postgres-topic",
    FLUVIO_ENDPOINT: cluster.endpoint,
    FLUVIO_PG_DATABASE_URL: p.targetUrl,
    MAX_RECORDS: "400",
  });
  const context = {
    awsRequestId: "demo",
    functionName: "apply",
    getRemainingTimeInMillis: () => 60_000,
  } as unknown as Context;

  say(`source PostgreSQL and Fluvio-compatible cluster at ${cluster.endpoint} are up`);
  await p.sql(
    `CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2) NOT NULL)`,
  );
  await p.sql(
    `CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint, items jsonb, placed_at timestamptz DEFAULT now())`,
  );
  await p.sql(`CREATE TABLE ledger (account_id bigint, delta numeric(14,2), note text)`);
  await p.sql(`INSERT INTO accounts SELECT g, 'owner ' || g, 1000 FROM generate_series(1, 50) g`);

  const started = Date.now();
  let tick = 0;
  let applied = 0;
  for (let wave = 0; wave < WAVES; wave++) {
    for (let k = 0; k < TXNS_PER_WAVE; k++) {
      const i = wave * TXNS_PER_WAVE + k;
      const a = ((i * 17) % 50) + 1;
      const b = ((i * 31 + 7) % 50) + 1;
      const amt = ((i % 97) + 1) / 4;
      await p.sql(`BEGIN;
        UPDATE accounts SET balance = balance - ${amt} WHERE id = ${a};
        UPDATE accounts SET balance = balance + ${amt} WHERE id = ${b};
        INSERT INTO ledger VALUES (${a}, -${amt}, 'transfer ${i}'), (${b}, ${amt}, 'transfer ${i}');
        INSERT INTO orders (account_id, items) VALUES (${a}, '{"sku": "S-${i}", "qty": ${i % 5}}');
        COMMIT`);
    }
    if (wave === 1) await p.sql(`ALTER TABLE orders ADD COLUMN status text`);
    if (wave >= 1) await p.sql(`UPDATE orders SET status = 'shipped' WHERE id % 7 = ${wave}`);
    if (wave === 3) await p.sql(`DELETE FROM orders WHERE id % 10 = 0`);
    const records = await p.capture();
    await produce(cluster.endpoint, "postgres-topic", records);
    say(
      `wave ${wave + 1}: ${TXNS_PER_WAVE} source transactions, ${records.length} records produced into postgres-topic`,
    );
    // The schedule: one invocation per tick until the sink has caught up.
    for (;;) {
      await new Promise((r) => setTimeout(r, TICK_MS));
      const s = await handler({}, context);
      tick++;
      applied += s.records;
      const rate = Math.round((s.records * 1000) / Math.max(1, s.duration_ms));
      say(
        `  tick ${String(tick).padStart(2)}: applied ${String(s.records).padStart(3)} records (${s.transactions} txns, ` +
          `${s.statements} statements) in ${s.duration_ms} ms, ${rate} records/s, lag ${s.lag}`,
      );
      if (s.lag === 0) break;
    }
  }
  const seconds = (Date.now() - started) / 1000;
  await assertSameTables(p, ["accounts", "orders", "ledger"]);
  const c = await p.target.query(
    `SELECT (SELECT count(*) FROM accounts) AS a, (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM ledger) AS l,
            (SELECT sum(balance) FROM accounts)::text AS total`,
  );
  say(
    `done: ${applied} records in ${tick} invocations over ${seconds.toFixed(1)} s; target equals source ` +
      `(accounts ${c.rows[0].a}, orders ${c.rows[0].o}, ledger ${c.rows[0].l} rows; total balance ${c.rows[0].total})`,
  );
} catch (e) {
  process.stderr.write(`demo failed: ${(e as Error).stack ?? e}\n`);
  code = 1;
} finally {
  await p.close();
  await cluster.stop();
  await server.stop();
}
// The native Fluvio client's background work is not ours to stop: exit explicitly.
process.exit(code);
