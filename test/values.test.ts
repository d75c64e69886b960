import assert from "node:assert/strict";
import { test } from "node:test";
import { assertSameTables, pairForFile } from "./support/harness.js";

const pair = pairForFile("values");

test("every kind of value arrives exactly", async () => {
  const p = pair();
  await p.sql(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  await p.target.query(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  await p.sql(`CREATE SCHEMA "Odd ""Schema"""`);
  await p.sql(`CREATE TABLE "Odd ""Schema"""."Val""ues" (
      id bigint PRIMARY KEY, i2 smallint, i4 int, i8 bigint, o oid, b bool, ch "char",
      f4 real, f8 double precision, n numeric(30,10), nn numeric, t text, vc varchar(255), bp char(5), nm name,
      ts timestamp, tstz timestamptz, d date, tm time, iv interval, j json, jb jsonb, u uuid,
      ia int[], ta text[], by bytea, inet_ inet, pt point, m mood, ma mood[], pi int, "we ird ""col""" text)`);
  await p.sql(`INSERT INTO "Odd ""Schema"""."Val""ues" VALUES
      (9223372036854775807, 32767, 2147483647, 9007199254740993, 4294967295, true, '7',
       3.4028235e38, 1.7976931348623157e308, 12345678901234567890.0123456789, 'NaN', E'quote '' dq " bs \\\\ nl \\n tab \\t', 'ünïcødé ✓ 🐘', 'ab', 'nm',
       '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05.123456+05:30', '2026-02-28', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.7',
       '{"b": 1,  "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50], "s": "x\\"y"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
       '{1,NULL,3}', '{"a,b","c\\"d",NULL,"NULL",""}', '\\x00ff10', '192.168.0.1/24', '(1.5,-2)', 'happy', '{sad,happy}', 7, 'w'),
      (-9223372036854775808, -32768, -2147483648, -9007199254740993, 0, false, '0', 'NaN', '-Infinity', -0.0000000001, 'Infinity', '', '', '', '',
       'infinity', '-infinity', 'infinity', '00:00', '-1 days', 'null', '[]', '00000000-0000-0000-0000-000000000000',
       '{}', '{}', '\\x', '::1', '(0,0)', 'sad', '{}', 1, NULL),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, '-infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  await p.capture();
  const [s] = await p.runUntilIdle();
  assert.equal(s?.inserts, 3);
  // float NaN/Infinity reach the sink as null (the inbound format loses them): NULL is written.
  const r = await p.target.query(
    `SELECT id::text, f4, f8, i8::text, n::text, nn::text FROM "Odd ""Schema"""."Val""ues" ORDER BY id`,
  );
  assert.deepEqual(
    r.rows.map((x) => [x.id, x.f4, x.f8, x.i8, x.n, x.nn]),
    [
      ["-9223372036854775808", null, null, "-9007199254740993", "-0.0000000001", "Infinity"],
      ["3", null, null, null, null, null],
      [
        "9223372036854775807",
        3.4028235e38,
        1.7976931348623157e308,
        "9007199254740993",
        "12345678901234567890.0123456789",
        "NaN",
      ],
    ],
  );
  // Everything except the float NaN/Infinity row matches the source exactly, text for text.
  await p.sql(`UPDATE "Odd ""Schema"""."Val""ues" SET f4 = NULL, f8 = NULL WHERE id < 0`);
  await p.capture();
  await p.runUntilIdle();
  await assertSameTables(p, [`"Odd ""Schema"""."Val""ues"`]);
});

test("a table with zero columns (all dropped), and 'char' values as the inbound connector sends them", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE hollow (a int)`);
  await p.sql(`ALTER TABLE hollow REPLICA IDENTITY FULL`);
  await p.sql(`INSERT INTO hollow VALUES (1)`);
  await p.sql(`ALTER TABLE hollow DROP COLUMN a`);
  await p.sql(`INSERT INTO hollow DEFAULT VALUES; INSERT INTO hollow DEFAULT VALUES`);
  await p.sql(`DELETE FROM hollow WHERE ctid = (SELECT min(ctid) FROM hollow)`);
  await p.sql(`CREATE TABLE flags (id int PRIMARY KEY, c "char")`);
  await p.sql(`INSERT INTO flags VALUES (1, '7'), (2, '0')`);
  // A non-digit fails the inbound connector's i8 parse and it drops the whole change: so does the
  // capture, and the target never sees row 3.
  await p.sql(`INSERT INTO flags VALUES (3, 'x')`);
  const lines = await p.capture();
  assert.ok(lines.some((l) => /"type":"relation".*"name":"hollow".*"columns":\[\]/.test(l)));
  await p.runUntilIdle({ maxRecords: 1 });
  const hollow = await p.target.query(`SELECT count(*)::int AS n FROM hollow`);
  assert.equal(hollow.rows[0].n, 2);
  const flags = await p.target.query(`SELECT id, c::text FROM flags ORDER BY id`);
  assert.deepEqual(
    flags.rows.map((r) => [r.id, r.c]),
    [
      [1, "7"],
      [2, "0"],
    ],
  );
});

test("a transaction replicated from elsewhere carries an origin record inside it", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE relayed (id int PRIMARY KEY, v text)`);
  await p.sql(`SELECT pg_replication_origin_create('upstream')`);
  await p.sql(`SELECT pg_replication_origin_session_setup('upstream')`);
  await p.sql(`BEGIN; SELECT pg_replication_origin_xact_setup('0/1234', now());
               INSERT INTO relayed VALUES (1, 'from upstream'), (2, 'too'); COMMIT`);
  await p.sql(`SELECT pg_replication_origin_session_reset()`);
  await p.sql(`UPDATE relayed SET v = 'local' WHERE id = 2`);
  const lines = await p.capture();
  const kinds = lines.map((l) => /"message":\{"type":"(\w+)"/.exec(l)?.[1]);
  const origin = kinds.indexOf("origin");
  assert.ok(
    origin > 0 && kinds[origin - 1] === "begin",
    `an origin record right after a begin: ${kinds.join(",")}`,
  );
  await p.runUntilIdle({ maxRecords: 1 });
  await assertSameTables(p, ["relayed"]);
});
