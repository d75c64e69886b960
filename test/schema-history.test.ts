import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import type { Logger } from "../src/log.js";
import { runOnce } from "../src/run.js";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

// Schema histories on real WAL: one source and topic, applied by three sinks that cut the stream into
// batches of 1, 7 and 1000 records, each into its own target.

interface Target {
  maxRecords: number;
  url: string;
  client: pg.Client;
  warnings: { msg: string; fields: Record<string, unknown> }[];
}

let server: PgServer | undefined;
let pair: Pair | undefined;
const targets: Target[] = [];

before(async () => {
  server = await startPostgres();
  pair = await makePair(server, "hist");
  for (const maxRecords of [1, 7, 1000]) {
    const url = await server.createDatabase(`hist_dst_${maxRecords}`);
    const client = new pg.Client({ connectionString: url });
    client.on("error", () => {});
    await client.connect();
    targets.push({ maxRecords, url, client, warnings: [] });
  }
});

after(async () => {
  for (const t of targets) await t.client.end();
  await pair?.close();
  await server?.stop();
});

const p = () => pair as Pair;

function recorder(t: Target): Logger {
  return {
    debug() {},
    info() {},
    error() {},
    warn: (msg, fields) => t.warnings.push({ msg, fields: fields ?? {} }),
  };
}

async function primaryKey(c: pg.Client, table: string): Promise<string[] | null> {
  const r = await c.query(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
       FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY AS k(attnum, ord), pg_attribute a
      WHERE p.conrelid = $1::regclass AND p.contype = 'p' AND a.attrelid = p.conrelid AND a.attnum = k.attnum`,
    [table],
  );
  return r.rows[0]?.cols ?? null;
}

/** Applies what the source committed with every sink; compares the tables unless told not to. */
async function sync(tables: string[], compare = true): Promise<void> {
  await p().capture();
  for (const t of targets) {
    const config = p().config({ name: `sink-${t.maxRecords}`, databaseUrl: t.url, maxRecords: t.maxRecords });
    for (let i = 0; ; i++) {
      assert.ok(i < 10_000, "runs never went idle");
      if ((await runOnce(config, { log: recorder(t) })).records === 0) break;
    }
    if (compare) await assertSameTables({ ...p(), target: t.client }, tables);
  }
}

const sql = (text: string) => p().sql(text);
const clearWarnings = () => {
  for (const t of targets) t.warnings.length = 0;
};
const ambiguity = (t: Target) => t.warnings.filter((w) => w.msg.includes("cannot tell two histories apart"));

test("a rename plus a type change keeps the column's data", async () => {
  await sql(`CREATE TABLE rt (id int PRIMARY KEY, b int, z text, last int)`);
  await sql(`INSERT INTO rt SELECT g, g * 10, 'z' || g, g FROM generate_series(1, 12) g`);
  await sync(["rt"]);
  clearWarnings();
  // In the middle the position proves the rename; no warning.
  await sql(`ALTER TABLE rt RENAME COLUMN b TO c; ALTER TABLE rt ALTER COLUMN c TYPE bigint`);
  await sql(`UPDATE rt SET z = 'changed' WHERE id <= 3`);
  await sql(`INSERT INTO rt VALUES (100, 9000000000, 'big', 1)`);
  await sync(["rt"]);
  for (const t of targets) assert.deepEqual(ambiguity(t), []);
  // The last column: could also be "drop last, add total"; the data is kept and the guess logged.
  await sql(
    `ALTER TABLE rt RENAME COLUMN last TO total; ALTER TABLE rt ALTER COLUMN total TYPE numeric(12,2)`,
  );
  await sql(`UPDATE rt SET z = 'again' WHERE id = 4`);
  await sync(["rt"]);
  for (const t of targets) {
    const w = ambiguity(t);
    assert.equal(w.length, 1, `sink-${t.maxRecords} warnings`);
    assert.equal(w[0]?.fields.table, "public.rt");
    assert.deepEqual(w[0]?.fields.assumed, ["rename last to total", "change the type of total"]);
    assert.deepEqual(w[0]?.fields.other, ["drop last", "add total"]);
  }
});

test("rename chains through a reused name", async () => {
  await sql(`CREATE TABLE ch (id int PRIMARY KEY, a text, b int, c date, z text)`);
  await sql(`INSERT INTO ch SELECT g, 'a' || g, g, date '2026-01-01' + g, 'z' FROM generate_series(1, 9) g`);
  await sync(["ch"]);
  // b -> c after c -> d, then a -> b: each name moves one place.
  await sql(`ALTER TABLE ch RENAME c TO d; ALTER TABLE ch RENAME b TO c; ALTER TABLE ch RENAME a TO b`);
  await sql(`UPDATE ch SET z = 'x' WHERE id IN (2, 5)`);
  await sql(`INSERT INTO ch VALUES (20, 'twenty', 20, '2030-01-01', 'n')`);
  await sync(["ch"]);
  // The same at the end of the list, with one column moved on.
  await sql(`ALTER TABLE ch RENAME z TO y; ALTER TABLE ch RENAME d TO z`);
  await sql(`DELETE FROM ch WHERE id = 3`);
  await sync(["ch"]);
});

test("name swaps, with and without a type change", async () => {
  await sql(`CREATE TABLE sw (id int PRIMARY KEY, a int, b text, c text, d text)`);
  await sql(`INSERT INTO sw SELECT g, g, 'b' || g, 'c' || g, 'd' || g FROM generate_series(1, 10) g`);
  await sync(["sw"]);
  await sql(`ALTER TABLE sw RENAME a TO tmp; ALTER TABLE sw RENAME b TO a; ALTER TABLE sw RENAME tmp TO b`);
  await sql(`ALTER TABLE sw RENAME c TO x; ALTER TABLE sw RENAME d TO c; ALTER TABLE sw RENAME x TO d`);
  await sql(`UPDATE sw SET a = 'swapped' WHERE id = 1`);
  await sync(["sw"]);
  // Three names rotate and one changes type.
  await sql(`ALTER TABLE sw RENAME a TO t; ALTER TABLE sw RENAME c TO a; ALTER TABLE sw RENAME d TO c;
             ALTER TABLE sw RENAME t TO d; ALTER TABLE sw ALTER COLUMN b TYPE bigint`);
  await sql(`INSERT INTO sw VALUES (50, 5000000000, 'c50', 'a50', 'd50')`);
  await sync(["sw"]);
});

test("a column dropped in the middle, and columns dropped and added between two changes", async () => {
  await sql(`CREATE TABLE dm (id int PRIMARY KEY, a text, b text, c int, e text)`);
  await sql(`INSERT INTO dm SELECT g, 'a' || g, 'b' || g, g, 'e' FROM generate_series(1, 8) g`);
  await sync(["dm"]);
  clearWarnings();
  await sql(`ALTER TABLE dm DROP COLUMN b`);
  await sql(`UPDATE dm SET c = c + 100 WHERE id > 4`);
  await sync(["dm"]);
  // A drop and an add of another type: no rename history fits as simply.
  await sql(`ALTER TABLE dm DROP COLUMN a, ADD COLUMN f numeric`);
  await sql(`INSERT INTO dm VALUES (30, 30, 'e30', 1.5)`);
  await sync(["dm"]);
  for (const t of targets) assert.deepEqual(ambiguity(t), [], `sink-${t.maxRecords}`);
});

test("drop + add that reads as renames keeps the data and says which history it assumed", async () => {
  await sql(`CREATE TABLE amb (id int PRIMARY KEY, a text, b text, c text)`);
  await sql(`INSERT INTO amb SELECT g, 'a' || g, 'b' || g, 'c' || g FROM generate_series(1, 6) g`);
  await sync(["amb"]);
  clearWarnings();
  // [id, a, b, c] -> [id, a, c, d]: "drop b, add d" or "b -> c, c -> d"; the second loses nothing.
  await sql(`ALTER TABLE amb DROP COLUMN b, ADD COLUMN d text`);
  await sql(`INSERT INTO amb VALUES (7, 'a7', 'c7', 'd7')`);
  await sync(["amb"], false);
  for (const t of targets) {
    const w = ambiguity(t);
    assert.equal(w.length, 1, `sink-${t.maxRecords} warnings`);
    assert.equal(w[0]?.fields.table, "public.amb");
    assert.deepEqual(w[0]?.fields.assumed, ["rename b to c", "rename c to d"]);
    assert.deepEqual(w[0]?.fields.other, ["drop b", "add d"]);
    // Nothing lost: the old b and c values are still there, one place on.
    const r = await t.client.query(`SELECT c, d FROM amb WHERE id = 2`);
    assert.deepEqual(r.rows[0], { c: "b2", d: "c2" });
    const n = await t.client.query(`SELECT c, d FROM amb WHERE id = 7`);
    assert.deepEqual(n.rows[0], { c: "c7", d: "d7" });
  }
  // Rows the source rewrites become exact again.
  await sql(`UPDATE amb SET c = c, d = d`);
  await sync(["amb"]);
});

test("rotate: the table is renamed away and a new one takes its name", async () => {
  await sql(`CREATE TABLE rot (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO rot SELECT g, 'old' || g FROM generate_series(1, 10) g`);
  await sync(["rot"]);
  await sql(`ALTER TABLE rot RENAME TO rot_old; CREATE TABLE rot (id int PRIMARY KEY, v text, w int)`);
  await sql(`INSERT INTO rot SELECT g, 'new' || g, g FROM generate_series(5, 15) g`);
  await sync(["rot"]);
  // The old table shows up under its new name when its changes arrive, mixed with the new one's.
  await sql(`BEGIN; UPDATE rot_old SET v = 'late' WHERE id <= 3; DELETE FROM rot WHERE id = 5;
             INSERT INTO rot_old VALUES (11, 'eleven'); UPDATE rot SET w = -1 WHERE id = 6; COMMIT`);
  await sync(["rot", "rot_old"]);
  // Rotate again, this time with the old table's changes first.
  await sql(`ALTER TABLE rot_old RENAME TO rot_older; ALTER TABLE rot RENAME TO rot_old;
             CREATE TABLE rot (id int PRIMARY KEY, v text, w int)`);
  await sql(`DELETE FROM rot_old WHERE id = 7; INSERT INTO rot VALUES (1, 'newest', 1);
             UPDATE rot_older SET v = 'oldest' WHERE id = 1`);
  await sync(["rot", "rot_old", "rot_older"]);
});

test("swap: a staging table is renamed onto the live name in one transaction", async () => {
  await sql(
    `CREATE TABLE live (id int PRIMARY KEY, v text); CREATE TABLE live_stage (id int PRIMARY KEY, v text)`,
  );
  await sql(`INSERT INTO live SELECT g, 'live' || g FROM generate_series(1, 6) g`);
  await sql(`INSERT INTO live_stage SELECT g, 'stage' || g FROM generate_series(4, 12) g`);
  await sync(["live", "live_stage"]);
  await sql(`BEGIN; ALTER TABLE live RENAME TO live_old; ALTER TABLE live_stage RENAME TO live; COMMIT`);
  await sql(`INSERT INTO live VALUES (13, 'after swap'); UPDATE live SET v = 'updated' WHERE id = 4`);
  await sql(`UPDATE live_old SET v = 'old updated' WHERE id = 4; DELETE FROM live_old WHERE id = 1`);
  await sync(["live", "live_old"]);
  // Swap back, in one transaction with changes to both, the old one's first.
  await sql(`BEGIN; ALTER TABLE live RENAME TO live_tmp; ALTER TABLE live_old RENAME TO live;
             ALTER TABLE live_tmp RENAME TO live_old; DELETE FROM live WHERE id = 2;
             INSERT INTO live_old VALUES (14, 'fourteen'); COMMIT`);
  await sync(["live", "live_old"]);
});

test("drop table and create one under the same name", async () => {
  await sql(`CREATE TABLE dc (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO dc SELECT g, 'first' || g FROM generate_series(1, 5) g`);
  await sync(["dc"]);
  await sql(`DROP TABLE dc; CREATE TABLE dc (id int PRIMARY KEY, x numeric, y text)`);
  await sql(`INSERT INTO dc VALUES (1, 1.5, 'second'), (9, 9, 'nine')`);
  await sync(["dc"]);
  await sql(
    `BEGIN; DROP TABLE dc; CREATE TABLE dc (k text PRIMARY KEY); INSERT INTO dc VALUES ('third'); COMMIT`,
  );
  await sync(["dc"]);
});

test("key dropped, added and changed on a table the sink created", async () => {
  await sql(`CREATE TABLE kc (id int PRIMARY KEY, v text, n int)`);
  await sql(`INSERT INTO kc SELECT g, 'v' || g, g FROM generate_series(1, 6) g`);
  await sync(["kc"]);
  // The key goes: duplicates become possible, and rows are matched as a whole.
  await sql(`ALTER TABLE kc REPLICA IDENTITY FULL; ALTER TABLE kc DROP CONSTRAINT kc_pkey`);
  await sql(`INSERT INTO kc VALUES (1, 'v1', 1), (1, 'v1', 1), (2, 'dup', 2)`);
  await sql(`UPDATE kc SET n = 99 WHERE id = 1 AND ctid = (SELECT min(ctid) FROM kc WHERE id = 1)`);
  await sql(`DELETE FROM kc WHERE ctid = (SELECT max(ctid) FROM kc WHERE id = 2)`);
  await sync(["kc"]);
  for (const t of targets) assert.equal(await primaryKey(t.client, "kc"), null);
  // A key comes back on other columns.
  await sql(`DELETE FROM kc WHERE id IN (1, 2); ALTER TABLE kc ADD PRIMARY KEY (v, n);
             ALTER TABLE kc REPLICA IDENTITY DEFAULT`);
  await sql(`UPDATE kc SET id = 30 WHERE v = 'v3'; INSERT INTO kc VALUES (7, 'v7', 7)`);
  await sync(["kc"]);
  for (const t of targets) assert.deepEqual(await primaryKey(t.client, "kc"), ["v", "n"]);
  // The key changes columns, one of which is then renamed.
  await sql(
    `ALTER TABLE kc DROP CONSTRAINT kc_pkey, ADD PRIMARY KEY (id); ALTER TABLE kc RENAME id TO ident`,
  );
  await sql(`UPDATE kc SET v = 'w' WHERE ident = 4; DELETE FROM kc WHERE ident = 5`);
  await sync(["kc"]);
  for (const t of targets) assert.deepEqual(await primaryKey(t.client, "kc"), ["ident"]);
});

test("a table whose columns were all dropped, then grows new ones", async () => {
  await sql(`CREATE TABLE zc (a int, b text) ; ALTER TABLE zc REPLICA IDENTITY FULL`);
  await sql(`INSERT INTO zc VALUES (1, 'x'), (2, 'y')`);
  await sync(["zc"]);
  await sql(`ALTER TABLE zc DROP COLUMN a, DROP COLUMN b`);
  // The truncate carries the zero-column relation message.
  await sql(`TRUNCATE zc`);
  await sync(["zc"]);
  await sql(`ALTER TABLE zc ADD COLUMN c text`);
  await sql(`INSERT INTO zc VALUES ('new')`);
  await sync(["zc"]);
});

test("a state written before table ownership was recorded still loads and follows renames", async () => {
  await sql(`CREATE TABLE legacy (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO legacy VALUES (1, 'one'), (2, 'two')`);
  await sync(["legacy"]);
  for (const t of targets)
    await t.client.query(
      `UPDATE fluvio_sink.state SET relations = (SELECT jsonb_agg(r - 'table' - 'created') FROM jsonb_array_elements(relations) r)`,
    );
  await sql(`ALTER TABLE legacy RENAME TO legacy2; ALTER TABLE legacy2 RENAME v TO w`);
  await sql(`UPDATE legacy2 SET w = 'uno' WHERE id = 1`);
  await sync(["legacy2"]);
});

test("a table moved to a schema that has a table of its old name", async () => {
  await sql(
    `CREATE SCHEMA other; CREATE TABLE other.mv (id int PRIMARY KEY, o text); CREATE TABLE mv (id int PRIMARY KEY, v text)`,
  );
  await sql(`INSERT INTO other.mv VALUES (1, 'other'); INSERT INTO mv VALUES (1, 'public')`);
  await sync(["other.mv", "mv"]);
  await sql(
    `ALTER TABLE mv RENAME TO mv2; ALTER INDEX mv_pkey RENAME TO mv2_pkey; ALTER TABLE mv2 SET SCHEMA other`,
  );
  await sql(`UPDATE other.mv2 SET v = 'moved'; UPDATE other.mv SET o = 'still other'`);
  await sync(["other.mv", "other.mv2"]);
});
