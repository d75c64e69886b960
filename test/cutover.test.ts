import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { runCli, writeConfig } from "./support/cli.js";
import { produce } from "./support/fluvio/produce.js";
import {
  assertSameTables,
  makePair,
  type Pair,
  pgAndFluvioForFile,
  storedOffset,
} from "./support/harness.js";

/**
 * Cut-over from the original Rust sink: its fluvio.offset table holds the last record it applied,
 * and the relation messages the later records need came before that offset (the inbound connector
 * sends each relation once per replication session).
 */

const services = pgAndFluvioForFile();

/**
 * Writes a topic whose relation records all come before the cut-over offset, and leaves the target
 * as the Rust sink would have: the changes up to that offset applied, its fluvio.offset row, no
 * state of this sink. Returns the topic's records and the offset.
 */
async function legacyTarget(p: Pair): Promise<{ lines: string[]; offset: number }> {
  await p.sql(`CREATE TABLE acct (id int PRIMARY KEY, owner text, bal numeric)`);
  await p.sql(`CREATE TABLE log (id bigint PRIMARY KEY, msg text)`);
  await p.sql(`CREATE TABLE dup (x int, y text)`);
  await p.sql(`ALTER TABLE dup REPLICA IDENTITY FULL`);
  await p.sql(`INSERT INTO acct SELECT g, 'o' || g, g FROM generate_series(1, 10) g`);
  await p.sql(`INSERT INTO log VALUES (1, 'first')`);
  await p.sql(`INSERT INTO dup VALUES (1, 'a'), (1, 'a'), (2, 'b')`);
  const cut = (await p.sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l as string;
  for (let i = 0; i < 6; i++)
    await p.sql(`BEGIN; UPDATE acct SET bal = bal + ${i} WHERE id % 3 = ${i % 3};
                 INSERT INTO log VALUES (${i + 2}, 'm${i}'); COMMIT`);
  await p.sql(`DELETE FROM acct WHERE id = 2`);
  await p.sql(
    `WITH one AS (SELECT ctid FROM dup WHERE x = 1 LIMIT 1) DELETE FROM dup WHERE ctid IN (SELECT ctid FROM one)`,
  );
  await p.sql(`UPDATE dup SET y = 'c' WHERE x = 2`);
  // One replication session: each table's relation message comes once, before the cut.
  const lines = await p.wal_take_lines();
  const [hi, lo] = cut.split("/") as [string, string];
  const cutLsn = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  let offset = -1;
  lines.forEach((l, i) => {
    const m = /"type":"commit".*"commit_lsn":(\d+)/.exec(l);
    if (m && BigInt(m[1] as string) < cutLsn) offset = i;
  });
  assert.ok(offset > 0);
  assert.ok(
    lines.slice(offset + 1).every((l) => !l.includes('"type":"relation"')),
    "no relation record after the offset",
  );
  // What the Rust sink had applied: the records up to the offset, then its offset table.
  const head = join(dirname(p.topicFile), "head.jsonl");
  writeFileSync(head, `${lines.slice(0, offset + 1).join("\n")}\n`);
  await p.runUntilIdle({ source: { kind: "file", path: head } });
  await p.target.query(`DROP SCHEMA fluvio_sink CASCADE;
    CREATE SCHEMA fluvio;
    CREATE TABLE fluvio."offset" (id int PRIMARY KEY, current_offset bigint NOT NULL);
    INSERT INTO fluvio."offset" VALUES (1, ${offset});`);
  return { lines, offset };
}

for (const maxRecords of [1, 7, 1000]) {
  test(`cut-over from fluvio.offset rebuilds the relation cache from the topic's start (max_records ${maxRecords})`, async () => {
    const p = await makePair(services().server, `cut${maxRecords}`);
    try {
      const { lines, offset } = await legacyTarget(p);
      writeFileSync(p.topicFile, `${lines.join("\n")}\n`);
      const runs = await p.runUntilIdle({ maxRecords });
      assert.ok(
        (runs[0]?.records ?? 0) > 0 && (runs[0]?.transactions ?? 0) > 0,
        "the first run applied records",
      );
      assert.ok(
        offset + 1 + (runs[0]?.records ?? 0) === Number(runs[0]?.next_offset),
        "it started after the offset",
      );
      assert.equal(await storedOffset(p, `sink-cut${maxRecords}`), String(lines.length));
      await assertSameTables(p, ["acct", "log", "dup"]);
    } finally {
      await p.close();
    }
  });
}

test("cut-over when retention removed the topic's start: a clear error that says what to do", async () => {
  const p = await makePair(services().server, "cutgap");
  try {
    const { lines, offset } = await legacyTarget(p);
    const { cluster } = services();
    cluster.createTopic("cut");
    await produce(cluster.endpoint, "cut", lines);
    cluster.setLogStart("cut", 0, 3n);
    const config = writeConfig(
      dirname(p.topicFile),
      `version: 0.2.0
name: legacy-sink
type: postgres-sink
topic: cut
parameters:
  fluvio_endpoint: ${cluster.endpoint}
  connect_timeout_ms: 3000
  read_timeout_ms: 3000
secrets:
  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}
`,
    );
    const r = await runCli(["run", "--config", config]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `cannot cut over from fluvio\\.offset: the relation messages before offset ${offset + 1} are needed to read the records after it, but reading the topic from offset 0 failed: .*offset 0 is below the log start 3\\. ` +
          "Re-seed the target from a snapshot of the source and start with parameters\\.start_lsn",
      ),
    );
    assert.equal(await storedOffset(p, "legacy-sink"), null);
  } finally {
    await p.close();
  }
});
