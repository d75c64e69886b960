import assert from "node:assert/strict";
import { test } from "node:test";
import { assertSameTables, pairForFile, storedOffset } from "./support/harness.js";

const pair = pairForFile("copy");

/** Values whose text form COPY would misread unescaped, and every kind of value, as rows. */
const NASTY = `
  (1, E'back\\\\slash', E'tab\\there', E'new\\nline', E'cr\\rlf\\r\\n', E'\\\\N', E'\\\\.', '', NULL,
   'ünïcødé ✓ 🐘', '{"a,b","c\\"d",NULL,"NULL","","t\\\\\\\\b"}', '\\x00ff5c0a09', '{"k": "v\\\\n\\"q"}',
   '{"k": ["\\\\t", 1.50]}', 9223372036854775807, 12345678901234567890.0123456789, '2026-01-02 03:04:05.123456+05:30',
   '1 year 2 mons 3 days 04:05:06.7', '(1.5,-2)', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '{sad,happy}',
   E'x\\\\\\ty', 'ab', '192.168.0.1/24'),
  (2, E'\\\\', E'\\t', E'\\n', E'\\r', 'N', '.', NULL, '', E'\\\\101', '{}', '\\x', 'null', '[]',
   -9223372036854775808, 'NaN', 'infinity', '-1 days', '(0,0)', '00000000-0000-0000-0000-000000000000', 'sad', '{}',
   '', '', '::1'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`;

const COLUMNS = `(id int PRIMARY KEY, bs text, tb text, nl text, cr text, n1 text, dot text, e1 text, e2 text, mb varchar(40),
  ta text[], by bytea, j json, jb jsonb, i8 bigint, n numeric, tstz timestamptz, iv interval, pt point, u uuid,
  m mood, ma mood[], esc text, bp char(5), ip inet)`;

for (const maxRecords of [1, 7, 1000]) {
  test(`every kind of value through COPY, keyed and keyless tables (max_records ${maxRecords})`, async () => {
    const p = pair();
    if (maxRecords === 1) {
      await p.sql(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
      await p.target.query(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
    }
    const keyed = `keyed_${maxRecords}`;
    const full = `full_${maxRecords}`;
    const nokey = `nokey_${maxRecords}`;
    await p.sql(`CREATE TABLE ${keyed} ${COLUMNS}`);
    // Keyless: REPLICA IDENTITY FULL, and no key at all with the default identity (inserts only).
    await p.sql(
      `CREATE TABLE ${full} ${COLUMNS.replace(" PRIMARY KEY", "")}; ALTER TABLE ${full} REPLICA IDENTITY FULL`,
    );
    await p.sql(`CREATE TABLE ${nokey} ${COLUMNS.replace(" PRIMARY KEY", "")}`);
    for (const t of [keyed, full, nokey]) await p.sql(`INSERT INTO ${t} VALUES ${NASTY}`);
    // Duplicate rows in the keyless tables, and a second transaction of inserts interleaved with updates.
    await p.sql(`BEGIN; INSERT INTO ${full} VALUES ${NASTY}; INSERT INTO ${nokey} VALUES ${NASTY};
                 UPDATE ${keyed} SET bs = E'up\\\\date\\t' WHERE id = 2;
                 INSERT INTO ${keyed} SELECT id + 10, bs, tb, nl, cr, n1, dot, e1, e2, mb, ta, by, j, jb, i8, n, tstz, iv,
                   pt, u, m, ma, esc, bp, ip FROM ${keyed}; COMMIT`);
    await p.capture();
    const runs = await p.runUntilIdle({ maxRecords });
    assert.equal(
      runs.reduce((n, s) => n + s.inserts, 0),
      3 * 3 + 3 + 3 + 3,
    );
    await assertSameTables(p, [keyed, full, nokey]);
  });
}

test("a row the target rejects in a COPY rolls the whole run back and names the offsets and table", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE guarded (id int PRIMARY KEY, v text)`);
  await p.sql(`INSERT INTO guarded VALUES (0, 'seed')`);
  await p.capture();
  await p.runUntilIdle();
  // Only the target forbids it: the source's rows are fine there.
  await p.target.query(`ALTER TABLE guarded ADD CONSTRAINT no_bad CHECK (v <> 'bad')`);
  const before = await storedOffset(p);
  const first = p.records.length;
  await p.sql(`BEGIN; INSERT INTO guarded VALUES (1, 'ok'), (2, 'fine'); COMMIT`);
  await p.sql(
    `BEGIN; UPDATE guarded SET v = 'seed2' WHERE id = 0; INSERT INTO guarded VALUES (3, 'bad'), (4, 'ok'); COMMIT`,
  );
  await p.capture();
  // Records: begin, relation?, inserts..., commit. The batch's COPY fails; narrowed to the second
  // transaction, the failing COPY holds its two inserts.
  const offsets = p.records.flatMap((l, i) => (i >= first && /"type":"insert"/.test(l) ? [i] : []));
  assert.equal(offsets.length, 4);
  await assert.rejects(p.run({ maxRecords: 1000 }), (e: Error) => {
    assert.match(
      e.message,
      new RegExp(
        // Narrowed to the source transaction that fails, and to its COPY's offsets within it.
        `^source transaction at offsets \\d+\\.\\.\\d+ \\(LSN [0-9A-F]+/[0-9A-F]+, table public\\.guarded\\) failed: offsets ${offsets[2]}\\.\\.${offsets[3]}, table public\\.guarded: insert failed: new row for relation "guarded" violates check constraint "no_bad" \\(SQLSTATE 23514\\)`,
      ),
    );
    return true;
  });
  assert.equal(await storedOffset(p), before);
  const rows = await p.target.query(`SELECT id, v FROM guarded ORDER BY id`);
  assert.deepEqual(
    rows.rows.map((r) => [r.id, r.v]),
    [[0, "seed"]],
    "nothing of the run is visible, the update included",
  );
  // Once the target accepts the row, the same batch applies whole.
  await p.target.query(`ALTER TABLE guarded DROP CONSTRAINT no_bad`);
  await p.runUntilIdle();
  await assertSameTables(p, ["guarded"]);
});

for (const maxRecords of [1, 7, 1000]) {
  test(`exact-order fallback, pipelined: source order kept, each change's missing row counted (max_records ${maxRecords})`, async () => {
    const p = pair();
    const t = `swap_${maxRecords}`;
    const ddl = `CREATE TABLE ${t} (id int PRIMARY KEY, name text NOT NULL UNIQUE, n int)`;
    await p.sql(ddl);
    // The sink creates tables with their key only: the target's own UNIQUE constraint is the user's.
    await p.target.query(ddl);
    await p.sql(`INSERT INTO ${t} VALUES (1, 'a', 0), (2, 'b', 0), (3, 'c', 0)`);
    await p.capture();
    await p.runUntilIdle();
    // The target lost row 3: the updates to it find nothing.
    await p.target.query(`DELETE FROM ${t} WHERE id = 3`);
    // Swapping names through a third value: one set-wise UPDATE trips UNIQUE, source order does not.
    await p.sql(`BEGIN;
      UPDATE ${t} SET name = 'tmp' WHERE id = 1; UPDATE ${t} SET name = 'a' WHERE id = 2;
      UPDATE ${t} SET name = 'b' WHERE id = 1; UPDATE ${t} SET n = 1 WHERE id = 3;
      UPDATE ${t} SET n = 2 WHERE id = 3; INSERT INTO ${t} VALUES (4, E'd\\\\', 4); COMMIT`);
    await p.capture();
    const updates = p.records.flatMap((l, i) => (/"type":"update"/.test(l) ? [i] : [])).slice(-2);
    await assert.rejects(p.run({ maxRecords, missingRows: "error" }), (e: Error) => {
      assert.match(
        e.message,
        new RegExp(`offset ${updates[0]}, table public\\.${t}: update found 0 of 1 rows on the target`),
      );
      return true;
    });
    const runs = await p.runUntilIdle({ maxRecords });
    assert.ok(runs.some((r) => r.exact_order));
    assert.equal(
      runs.reduce((n, r) => n + r.missing_rows, 0),
      2,
    );
    const rows = await p.target.query(`SELECT id, name, n FROM ${t} ORDER BY id`);
    assert.deepEqual(
      rows.rows.map((r) => [r.id, r.name, r.n]),
      [
        [1, "b", 0],
        [2, "a", 0],
        [4, "d\\", 4],
      ],
    );
  });
}

for (const maxRecords of [7, 1000, 10000]) {
  test(`batches larger than a pipeline slice: many COPY chunks, large binary parameters (max_records ${maxRecords})`, async () => {
    const p = pair();
    const t = `big_${maxRecords}`;
    await p.sql(`CREATE TABLE ${t} (id int PRIMARY KEY, body text, n bigint)`);
    // About 4 MB of rows whose text needs escaping all along, so escapes straddle chunk boundaries.
    await p.sql(
      `INSERT INTO ${t} SELECT g, repeat(md5(g::text) || E'\\\\\\t\\n\\r', 30), g FROM generate_series(1, 3000) g`,
    );
    await p.sql(`UPDATE ${t} SET body = body || E'\\\\N', n = -n WHERE id % 3 = 0`);
    await p.sql(`DELETE FROM ${t} WHERE id % 7 = 0`);
    await p.capture();
    await p.runUntilIdle({ maxRecords });
    await assertSameTables(p, [t]);
  });
}
