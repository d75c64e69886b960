/**
 * `npm run bench`: applies a captured stream of small OLTP transactions (transfers between 100
 * accounts plus a ledger insert each) and reports records/s and statements per 1000 records, next to
 * the round trips a per-change applier would need (one per change). Timing lives here, not in tests.
 */
import pg from "pg";
import { silentLogger } from "../src/log.js";
import { runOnce } from "../src/run.js";
import { assertSameTables, makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";

const TXNS = Number(process.env.BENCH_TXNS ?? 3000);
const server = await startPostgres();
const p = await makePair(server, "bench");
try {
  await p.sql(`CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text)`);
  await p.sql(`CREATE TABLE ledger (id bigserial PRIMARY KEY, a int, b int, amount bigint)`);
  await p.sql(`INSERT INTO accounts SELECT g, 100000, 'acct ' || g FROM generate_series(1, 100) g`);
  const load = new pg.Client({ connectionString: p.sourceUrl });
  await load.connect();
  for (let i = 0; i < TXNS; i++) {
    const a = ((i * 37) % 100) + 1;
    const b = ((i * 53 + 11) % 100) + 1;
    await load.query(`BEGIN; UPDATE accounts SET balance = balance - 3 WHERE id = ${a};
      UPDATE accounts SET balance = balance + 3 WHERE id = ${b}; INSERT INTO ledger (a, b, amount) VALUES (${a}, ${b}, 3); COMMIT`);
  }
  await load.end();
  await p.capture();
  const changes = p.records.filter((l) => /"type":"(insert|update|delete)"/.test(l)).length;
  for (const maxRecords of [100, 1000, 5000]) {
    await p.target.query(`DROP SCHEMA IF EXISTS fluvio_sink CASCADE; DROP TABLE IF EXISTS accounts, ledger`);
    const started = process.hrtime.bigint();
    let statements = 0;
    let runs = 0;
    for (;;) {
      const s = await runOnce(p.config({ name: "bench", maxRecords }), { log: silentLogger });
      if (s.records === 0) break;
      statements += s.statements;
      runs++;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    await assertSameTables(p, ["accounts", "ledger"]);
    process.stdout.write(
      `max_records=${maxRecords}: ${p.records.length} records (${changes} changes) in ${runs} runs, ${ms.toFixed(0)} ms, ` +
        `${Math.round((p.records.length * 1000) / ms)} records/s, ${statements} statements ` +
        `(${((statements * 1000) / p.records.length).toFixed(1)} per 1000 records; a per-change applier: ${changes})\n`,
    );
  }
} finally {
  await p.close();
  await server.stop();
}
