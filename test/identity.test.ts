import assert from "node:assert/strict";
import { test } from "node:test";
import { assertSameTables, pairForFile, syncAndCompare } from "./support/harness.js";

const pair = pairForFile("ident");

const sync = (tables: string[]) => syncAndCompare(pair(), tables);

test("replica identity DEFAULT: updates by key, primary-key change moves the row", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE acct (id int PRIMARY KEY, owner text, bal bigint)`);
  await p.sql(`INSERT INTO acct SELECT g, 'o' || g, g * 100 FROM generate_series(1, 50) g`);
  await p.sql(`UPDATE acct SET bal = bal + 1 WHERE id % 2 = 0`);
  await p.sql(`UPDATE acct SET id = id + 1000 WHERE id <= 5`);
  await p.sql(`UPDATE acct SET owner = 'moved' WHERE id = 1001`);
  await p.sql(`DELETE FROM acct WHERE id BETWEEN 40 AND 45`);
  await sync(["acct"]);
  await p.sql(
    `BEGIN; UPDATE acct SET id = 1 WHERE id = 1001; UPDATE acct SET id = 1001 WHERE id = 1002; COMMIT`,
  );
  await sync(["acct"]);
});

test("composite key and REPLICA IDENTITY USING INDEX", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE pair (a int NOT NULL, b text NOT NULL, v text, surrogate serial PRIMARY KEY)`);
  await p.sql(`CREATE UNIQUE INDEX pair_ab ON pair (a, b)`);
  await p.sql(`ALTER TABLE pair REPLICA IDENTITY USING INDEX pair_ab`);
  await p.sql(`INSERT INTO pair (a, b, v) VALUES (1, 'x', 'one'), (1, 'y', 'two'), (2, 'x', 'three')`);
  await p.sql(`UPDATE pair SET v = 'ONE' WHERE a = 1 AND b = 'x'`);
  await p.sql(`UPDATE pair SET b = 'z' WHERE a = 1 AND b = 'y'`);
  await p.sql(`DELETE FROM pair WHERE a = 2`);
  await sync(["pair"]);
});

test("REPLICA IDENTITY FULL with duplicate rows touches exactly one row per change", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE dup (x int, y text, j json)`);
  await p.sql(`ALTER TABLE dup REPLICA IDENTITY FULL`);
  await p.sql(
    `INSERT INTO dup VALUES (1, 'a', '{"k": 1}'), (1, 'a', '{"k": 1}'), (1, 'a', '{"k": 1}'), (2, NULL, NULL), (2, NULL, NULL)`,
  );
  await sync(["dup"]);
  await p.sql(
    `WITH one AS (SELECT ctid FROM dup WHERE x = 1 LIMIT 1) UPDATE dup SET y = 'b' WHERE ctid IN (SELECT ctid FROM one)`,
  );
  await p.sql(
    `WITH one AS (SELECT ctid FROM dup WHERE x = 2 LIMIT 1) DELETE FROM dup WHERE ctid IN (SELECT ctid FROM one)`,
  );
  await p.sql(
    `WITH one AS (SELECT ctid FROM dup WHERE x = 1 AND y = 'a' LIMIT 1) DELETE FROM dup WHERE ctid IN (SELECT ctid FROM one)`,
  );
  await p.sql(`UPDATE dup SET x = 3 WHERE y = 'b'`);
  await p.sql(`UPDATE dup SET x = 4 WHERE x = 3`);
  await sync(["dup"]);
  const n = await p.target.query(`SELECT count(*)::int AS n FROM dup`);
  assert.equal(n.rows[0].n, 3);
});

test("unchanged TOAST values keep what the target has", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE doc (id int PRIMARY KEY, title text, body text, meta jsonb)`);
  await p.sql(`ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL`);
  await p.sql(`ALTER TABLE doc ALTER COLUMN meta SET STORAGE EXTERNAL`);
  await p.sql(
    `INSERT INTO doc SELECT g, 't' || g, repeat(md5(g::text), 400), jsonb_build_object('big', repeat('x', 9000)) FROM generate_series(1, 3) g`,
  );
  await sync(["doc"]);
  await p.sql(`UPDATE doc SET title = 'changed' WHERE id = 1`);
  await p.sql(`UPDATE doc SET title = 'twice' WHERE id = 2`);
  await p.sql(`UPDATE doc SET title = 'twice again', meta = '{"small": true}' WHERE id = 2`);
  const lines = await p.capture();
  assert.ok(
    lines.some((l) => l.includes('"UnchangedToast"')),
    "the capture has unchanged TOAST values",
  );
  await p.runUntilIdle();
  await assertSameTables(p, ["doc"]);
  // An insert and an update of the same row in one batch merge into the insert.
  await p.sql(
    `BEGIN; INSERT INTO doc VALUES (4, 'new', repeat('y', 5000), '{}'); UPDATE doc SET title = 'newer' WHERE id = 4; COMMIT`,
  );
  await sync(["doc"]);
});

test("TRUNCATE of several tables, with RESTART IDENTITY and CASCADE", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE parent (id int PRIMARY KEY, name text)`);
  await p.sql(`CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent, v text)`);
  await p.sql(`CREATE TABLE other (id int PRIMARY KEY)`);
  await p.sql(
    `INSERT INTO parent VALUES (1, 'p'); INSERT INTO child (parent_id, v) VALUES (1, 'c'); INSERT INTO other VALUES (1)`,
  );
  await sync(["parent", "child", "other"]);
  await p.sql(`TRUNCATE parent, other RESTART IDENTITY CASCADE`);
  await p.sql(`INSERT INTO parent VALUES (2, 'p2'); INSERT INTO child (parent_id, v) VALUES (2, 'c2')`);
  const lines = await p.capture();
  const trunc = lines.find((l) => l.includes('"truncate"'));
  assert.match(trunc ?? "", /"options":3/);
  await p.runUntilIdle();
  await assertSameTables(p, ["parent", "child", "other"]);
});

test("a transaction spanning several tables, interleaved, lands whole", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2))`);
  await p.sql(`CREATE TABLE lines (order_id int, n int, sku text, PRIMARY KEY (order_id, n))`);
  await p.sql(`BEGIN;
    INSERT INTO orders VALUES (1, 0);
    INSERT INTO lines VALUES (1, 1, 'a');
    UPDATE orders SET total = 10 WHERE id = 1;
    INSERT INTO lines VALUES (1, 2, 'b');
    DELETE FROM lines WHERE order_id = 1 AND n = 1;
    UPDATE orders SET total = 5.5 WHERE id = 1;
    INSERT INTO lines VALUES (1, 1, 'c');
    COMMIT`);
  await sync(["orders", "lines"]);
});
