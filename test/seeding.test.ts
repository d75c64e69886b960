import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import pg from "pg";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

/**
 * Targets seeded with the source's rows, the usual way to start: the README's recipe (a slot's
 * exported snapshot and consistent point, pg_dump --snapshot, then start_lsn), and on_conflict:
 * upsert for a seed taken without an LSN.
 */

let server: PgServer | undefined;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

function pgDump(args: string[]): string {
  const bin = process.env.PG_BIN_DIR ?? "/usr/lib/postgresql/15/bin";
  const exe = existsSync(`${bin}/pg_dump`) ? `${bin}/pg_dump` : "pg_dump";
  const sql = execFileSync(exe, ["--no-publications", "--no-subscriptions", "--no-owner", ...args], {
    encoding: "utf8",
  });
  // Recent pg_dump releases wrap the script in psql meta-commands (restrict): psql's, not SQL.
  return sql
    .split("\n")
    .filter((l) => !l.startsWith("\\"))
    .join("\n");
}

/** Restores a plain-SQL dump on its own connection (the dump resets search_path). */
async function restore(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function history(p: Pair): Promise<void> {
  await p.sql(`CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, bal numeric NOT NULL)`);
  await p.sql(`INSERT INTO acct SELECT g, 'o' || g, g * 10 FROM generate_series(1, 20) g`);
  await p.sql(`UPDATE acct SET bal = bal + 1 WHERE id % 3 = 0`);
  await p.sql(`DELETE FROM acct WHERE id IN (4, 5)`);
}

async function later(p: Pair): Promise<void> {
  await p.sql(`INSERT INTO acct VALUES (4, 'back', 4), (21, 'new', 21)`);
  await p.sql(`UPDATE acct SET bal = bal * 2 WHERE id <= 10`);
  await p.sql(`BEGIN; DELETE FROM acct WHERE id = 7; INSERT INTO acct VALUES (7, 'seven again', 7); COMMIT`);
}

for (const maxRecords of [1, 7, 1000]) {
  test(`seeded from a slot's exported snapshot; start_lsn skips what the seed holds (max_records ${maxRecords})`, async () => {
    const p = await makePair(server as PgServer, `seed${maxRecords}`);
    try {
      await history(p);
      // The seed: a slot created over a replication connection exports a snapshot and says where
      // it is consistent; pg_dump copies that snapshot while the connection stays open and idle.
      const repl = new pg.Client({
        connectionString: p.sourceUrl,
        replication: "database",
      } as pg.ClientConfig);
      await repl.connect();
      let startLsn: string;
      try {
        const slot = await repl.query(
          `CREATE_REPLICATION_SLOT seed_${maxRecords} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')`,
        );
        startLsn = slot.rows[0].consistent_point;
        const snapshot = slot.rows[0].snapshot_name;
        // Writes while the snapshot is held are after it: the sink must apply them.
        await p.sql(`UPDATE acct SET owner = owner || '+' WHERE id <= 3`);
        await restore(p.targetUrl, pgDump([`--snapshot=${snapshot}`, "--inserts", p.sourceUrl]));
      } finally {
        await repl.end();
      }
      await later(p);
      await p.capture();
      // Without start_lsn the seed's rows are inserted again: a duplicate key, and nothing applied.
      await assert.rejects(
        p.run({ maxRecords: 1000 }),
        /duplicate key value violates unique constraint "acct_pkey"/,
      );
      const runs = await p.runUntilIdle({ maxRecords, startLsn: parseLsnText(startLsn) });
      assert.ok(
        runs.reduce((n, r) => n + r.skipped_transactions, 0) >= 3,
        "the seed's transactions were skipped",
      );
      await assertSameTables(p, ["acct"]);
    } finally {
      await p.close();
    }
  });
}

function parseLsnText(lsn: string): bigint {
  const [hi, lo] = lsn.split("/") as [string, string];
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

for (const maxRecords of [1, 7, 1000]) {
  test(`on_conflict: upsert turns inserts of keys the target has into updates, counted (max_records ${maxRecords})`, async () => {
    const p = await makePair(server as PgServer, `ups${maxRecords}`);
    try {
      await history(p);
      // A plain copy, with no LSN: the stream is replayed from its start over it.
      await restore(p.targetUrl, pgDump(["--inserts", p.sourceUrl]));
      await later(p);
      await p.capture();
      const runs = await p.runUntilIdle({ maxRecords, onConflict: "upsert" });
      const upserted = runs.reduce((n, r) => n + r.upserted_rows, 0);
      // The copy held ids 1..20 less 4 and 5 (deleted): the stream's inserts of the other 18 find
      // their rows. Its later inserts (4, 21, and 7 after its delete) are new rows.
      assert.equal(upserted, 18);
      await assertSameTables(p, ["acct"]);
    } finally {
      await p.close();
    }
  });
}
