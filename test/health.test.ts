import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { silentLogger } from "../src/log.js";
import { type RunFailure, runOnce } from "../src/run.js";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

/** Wall-clock window (ms) around a source transaction's COMMIT: its commit timestamp lies inside. */
interface Window {
  from: number;
  to: number;
}

async function timedTxn(p: Pair, sql: string): Promise<Window> {
  const from = Date.now();
  await p.sql(sql);
  return { from, to: Date.now() };
}

/** Index of the last source transaction whose COMMIT lies before `nextOffset`. */
function lastCommitted(p: Pair, nextOffset: number): number {
  return p.records.slice(0, nextOffset).filter((r) => r.includes('"type":"commit"')).length - 1;
}

async function stateRow(p: Pair, connector: string) {
  const r = await p.target.query(
    `SELECT consecutive_failures, last_error, last_success_at, last_error_at, last_commit_time
       FROM fluvio_sink.state WHERE connector = $1`,
    [connector],
  );
  return r.rows[0];
}

for (const maxRecords of [1, 7, 1000]) {
  test(`seconds behind source is the age of the last applied commit while records remain (max_records ${maxRecords})`, async () => {
    const p = await makePair(server, `behind_${maxRecords}`);
    try {
      await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
      const windows: Window[] = [await timedTxn(p, `INSERT INTO items VALUES (0, 'first')`)];
      // The first transaction is clearly older than the run that applies it.
      await sleep(1500);
      for (let i = 1; i <= 6; i++)
        windows.push(await timedTxn(p, `INSERT INTO items VALUES (${i}, 'v${i}')`));
      await p.capture();
      const config = p.config({ maxRecords });
      let runs = 0;
      for (;;) {
        const started = Date.now();
        const s = await runOnce(config, { log: silentLogger });
        const ended = Date.now();
        runs++;
        const next = Number(s.next_offset);
        if (next === p.records.length) {
          assert.equal(s.lag, 0);
          assert.equal(s.seconds_behind_source, 0, "caught up");
          if (s.records === 0) break;
          continue;
        }
        const k = lastCommitted(p, next);
        const w = windows[k] as Window;
        const behind = s.seconds_behind_source as number;
        assert.ok(s.lag !== null && s.lag > 0);
        assert.ok(
          behind >= (started - w.to) / 1000 - 0.002 && behind <= (ended - w.from) / 1000 + 0.002,
          `${behind} s behind: the last applied commit was ${(started - w.to) / 1000}..${(ended - w.from) / 1000} s before the run`,
        );
        if (k === 0) assert.ok(behind >= 1.4, "the first transaction waited 1.5 s before the rest");
      }
      assert.equal(runs > 2, maxRecords < 1000, "several runs only with a small batch");
      await assertSameTables(p, ["items"]);
      const row = await stateRow(p, config.name);
      const last = windows[windows.length - 1] as Window;
      const stored = (row.last_commit_time as Date).getTime();
      // Stored to the microsecond, read back by pg to the millisecond.
      assert.ok(stored >= last.from - 1 && stored <= last.to, "the state keeps the last commit's time");
      assert.equal(row.consecutive_failures, 0);
      assert.ok(row.last_success_at instanceof Date);
    } finally {
      await p.close();
    }
  });
}

for (const maxRecords of [1, 7, 1000]) {
  test(`consecutive failures count up over failing runs, the error is kept without row values, a success resets the count (max_records ${maxRecords})`, async () => {
    const p = await makePair(server, `fail_${maxRecords}`);
    try {
      await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
      await p.target.query(
        `CREATE TABLE items (id int PRIMARY KEY, v text CONSTRAINT no_poison CHECK (v <> 'poison-4711'))`,
      );
      for (let i = 1; i <= 4; i++) await p.sql(`INSERT INTO items VALUES (${i}, 'v${i}')`);
      await p.sql(`INSERT INTO items VALUES (5, 'poison-4711')`);
      await p.sql(`INSERT INTO items VALUES (6, 'v6')`);
      await p.capture();
      const config = p.config({ maxRecords });
      // Runs before the poison record apply and succeed.
      let applied = 0;
      for (;;) {
        const failures: RunFailure[] = [];
        try {
          const s = await runOnce(config, { log: silentLogger, onFailure: (f) => failures.push(f) });
          assert.equal(s.status, "applied");
          applied++;
        } catch (e) {
          assert.match((e as Error).message, /check constraint "no_poison".*\(SQLSTATE 23514\)/);
          assert.ok(!(e as Error).message.includes("poison-4711"), (e as Error).message);
          assert.equal(failures.length, 1);
          assert.equal(failures[0]?.consecutive_failures, 1);
          break;
        }
      }
      assert.equal(applied > 0, maxRecords < 1000);
      for (const n of [2, 3]) {
        const failures: RunFailure[] = [];
        await assert.rejects(runOnce(config, { log: silentLogger, onFailure: (f) => failures.push(f) }));
        assert.equal(failures[0]?.consecutive_failures, n);
        const behind = failures[0]?.seconds_behind_source;
        // Nothing applied yet when the batch holds everything: the age of the last commit is unknown.
        if (applied > 0) assert.ok(typeof behind === "number" && behind >= 0);
        else assert.equal(behind, null);
        const row = await stateRow(p, config.name);
        assert.equal(row.consecutive_failures, n);
        assert.match(row.last_error, /check constraint "no_poison"/);
        assert.ok(!row.last_error.includes("poison-4711"), row.last_error);
        assert.ok(row.last_error_at instanceof Date);
      }
      const poison = await p.target.query(`SELECT count(*)::int AS n FROM items WHERE id >= 5`);
      assert.equal(poison.rows[0].n, 0, "nothing of the failing transaction or after it was applied");
      await p.target.query(`ALTER TABLE items DROP CONSTRAINT no_poison`);
      const s = await runOnce(config, { log: silentLogger });
      assert.equal(s.status, "applied");
      await p.runUntilIdle();
      await assertSameTables(p, ["items"]);
      const row = await stateRow(p, config.name);
      assert.equal(row.consecutive_failures, 0);
      assert.match(row.last_error, /no_poison/, "the last error stays for the record");
    } finally {
      await p.close();
    }
  });
}

test("a state table from before these columns gets them, and its row loads as it was", async () => {
  const p = await makePair(server, "migrate");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    for (let i = 1; i <= 3; i++) await p.sql(`INSERT INTO items VALUES (${i}, 'v${i}')`);
    await p.capture();
    await p.run({ maxRecords: 1 });
    const offset = (await p.target.query(`SELECT next_offset::text AS o FROM fluvio_sink.state`)).rows[0].o;
    for (const c of [
      "last_commit_time",
      "last_success_at",
      "last_error",
      "last_error_at",
      "consecutive_failures",
    ])
      await p.target.query(`ALTER TABLE fluvio_sink.state DROP COLUMN ${c}`);
    await p.runUntilIdle();
    await assertSameTables(p, ["items"]);
    const row = await stateRow(p, "sink-migrate");
    assert.equal(row.consecutive_failures, 0);
    assert.ok(row.last_commit_time instanceof Date);
    assert.ok(Number(offset) > 0);
  } finally {
    await p.close();
  }
});

function cliConfig(p: Pair, name: string, source: string, maxRecords = 1000): string {
  return writeConfig(
    dirname(p.topicFile),
    `version: 0.2.0
name: ${name}
type: postgres-sink
topic: postgres-topic
parameters:
  url: secrets.FLUVIO_PG_DATABASE_URL
  ${source}
  max_records: ${maxRecords}
secrets:
  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}
`,
  );
}

test("status shows the stored state when Fluvio cannot be reached: last success, last error, failures, batch limit, LSN as X/Y", async () => {
  const p = await makePair(server, "status");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.target.query(
      `CREATE TABLE items (id int PRIMARY KEY, v text CONSTRAINT no_poison CHECK (v <> 'poison-4711'))`,
    );
    for (let i = 1; i <= 3; i++) await p.sql(`INSERT INTO items VALUES (${i}, 'v${i}')`);
    await p.sql(`INSERT INTO items VALUES (4, 'poison-4711')`);
    await p.capture();
    const fileCfg = cliConfig(p, "status-sink", `source: file:${p.topicFile}`, 1);
    // Nobody listens on port 1.
    const downCfg = cliConfig(p, "status-sink", "fluvio_endpoint: 127.0.0.1:1\n  connect_timeout_ms: 3000");
    for (let i = 0; i < 3; i++) assert.equal((await runCli(["run", "--config", fileCfg])).code, 0);
    for (let i = 0; i < 2; i++) assert.equal((await runCli(["run", "--config", fileCfg])).code, 1);
    await p.target.query(`UPDATE fluvio_sink.state SET batch_limit = 1`);

    const r = await runCli(["status", "--config", downCfg]);
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout);
    const lsn = await p.target.query(
      `SELECT last_commit_lsn::text AS d, ('0/0'::pg_lsn + last_commit_lsn)::text AS x FROM fluvio_sink.state`,
    );
    assert.equal(st.connector, "status-sink");
    assert.equal(st.next_offset, String(p.records.length - 3), "after the third transaction");
    assert.equal(st.end_offset, null);
    assert.equal(st.lag, null);
    assert.equal(st.seconds_behind_source, null);
    assert.match(st.source_error, /127\.0\.0\.1:1/);
    assert.equal(st.last_commit_lsn, lsn.rows[0].x, "PostgreSQL's own X/Y notation");
    assert.match(st.last_commit_lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(st.last_commit_lsn_decimal, lsn.rows[0].d);
    assert.ok(Date.now() - Date.parse(st.last_success_at) < 60_000, st.last_success_at);
    assert.ok(Date.parse(st.last_error_at) >= Date.parse(st.last_success_at));
    assert.match(st.last_error, /check constraint "no_poison"/);
    assert.equal(st.consecutive_failures, 2);
    assert.equal(st.batch_limit, 1);
    assert.equal(st.max_records, 1000);
    assert.ok(Date.now() - Date.parse(st.last_commit_time) < 60_000, st.last_commit_time);
    assert.deepEqual(st.tables, ["public.items"]);

    // With the source reachable, how far behind: records remain, so the age of the last commit.
    const up = JSON.parse((await runCli(["status", "--config", fileCfg])).stdout);
    assert.equal(up.source_error, null);
    assert.equal(up.lag, 3);
    assert.ok(up.seconds_behind_source > 0);
  } finally {
    await p.close();
  }
});

test("no row value in any log line of a failing run unless LOG_ROW_VALUES=true", async () => {
  const p = await makePair(server, "rowvalues");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text, w text)`);
    // Constraints only the target has: CHECK, NOT NULL and a UNIQUE key the source lacks.
    await p.target.query(
      `CREATE TABLE items (id int PRIMARY KEY, v text CONSTRAINT no_poison CHECK (v <> 'poison-4711'), w text NOT NULL UNIQUE)`,
    );
    const cases = [
      [
        `INSERT INTO items VALUES (1, 'poison-4711', 'w-4711')`,
        /check constraint "no_poison".*\(SQLSTATE 23514\)/,
      ],
      [`INSERT INTO items VALUES (2, 'v-4711', NULL)`, /not-null constraint.*\(SQLSTATE 23502\)/],
      [
        `INSERT INTO items VALUES (3, 'v-4711', 'dup-4711'), (4, 'v2-4711', 'dup-4711')`,
        /unique constraint "items_w_key".*\(SQLSTATE 23505\)/,
      ],
    ] as const;
    for (const [i, [sql, expected]] of cases.entries()) {
      await p.sql(sql);
      await p.capture();
      const cfg = cliConfig(p, `rv-${i}`, `source: file:${p.topicFile}`);
      const r = await runCli(["run", "--config", cfg]);
      assert.equal(r.code, 1, r.stderr);
      const messages = r.stderr
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l).msg);
      assert.match(messages.join("\n"), expected);
      for (const line of r.stderr.split("\n")) assert.ok(!line.includes("4711"), `a row value in: ${line}`);
      const shown = await runCli(["run", "--config", cfg], { LOG_ROW_VALUES: "true" });
      assert.equal(shown.code, 1);
      assert.match(shown.stderr, /4711/, "LOG_ROW_VALUES=true shows the row");
      // The next case starts from an empty topic.
      await p.sql(`DELETE FROM items`);
      p.records.length = 0;
      writeFileSync(p.topicFile, "");
      await p.wal_take_lines();
    }
  } finally {
    await p.close();
  }
});
