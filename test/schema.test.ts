import assert from "node:assert/strict";
import { test } from "node:test";
import { assertSameTables, pairForFile, syncAndCompare } from "./support/harness.js";

const pair = pairForFile("schema");

const sync = (tables: string[]) => syncAndCompare(pair(), tables);

test("the sample stream's operations: create, add column, delete, truncate restart identity", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE customers (id serial PRIMARY KEY, name text, email varchar(120), balance numeric(10,2),
               created_at timestamptz DEFAULT '2026-01-02 03:04:05+00', tags text[])`);
  await p.sql(
    `INSERT INTO customers (name, email, balance, tags) VALUES ('Ada', 'ada@example.com', 10.5, '{vip}'), ('Lin', NULL, 0, '{}')`,
  );
  await p.sql(`UPDATE customers SET balance = 11.5 WHERE id = 1`);
  await sync(["customers"]);
  await p.sql(`ALTER TABLE customers ADD COLUMN note text`);
  await p.sql(`UPDATE customers SET note = 'hello' WHERE id = 1`);
  await p.sql(`DELETE FROM customers WHERE id = 2`);
  await p.sql(`TRUNCATE customers RESTART IDENTITY`);
  await p.sql(`INSERT INTO customers (name) VALUES ('after')`);
  await sync(["customers"]);
});

test("add, rename and drop columns; change a type; rename and move the table", async () => {
  const p = pair();
  await p.sql(`CREATE TABLE evo (id int PRIMARY KEY, a text, b int, c varchar(10))`);
  await p.sql(`INSERT INTO evo VALUES (1, 'x', 1, 'c1'), (2, 'y', 2, 'c2')`);
  await sync(["evo"]);

  await p.sql(`ALTER TABLE evo ADD COLUMN d numeric(8,3)`);
  await p.sql(`UPDATE evo SET d = 1.5 WHERE id = 1`);
  await sync(["evo"]);

  await p.sql(`ALTER TABLE evo RENAME COLUMN a TO "A renamed"`);
  await p.sql(`INSERT INTO evo VALUES (3, 'z', 3, 'c3', 2.25)`);
  await sync(["evo"]);

  await p.sql(`ALTER TABLE evo DROP COLUMN b`);
  await p.sql(`UPDATE evo SET c = 'c2b' WHERE id = 2`);
  await sync(["evo"]);

  await p.sql(`ALTER TABLE evo ALTER COLUMN c TYPE varchar(50)`);
  await p.sql(`ALTER TABLE evo ALTER COLUMN d TYPE numeric(12,4)`);
  await p.sql(`UPDATE evo SET c = repeat('w', 40), d = 12345678.1234 WHERE id = 3`);
  await sync(["evo"]);

  await p.sql(`ALTER TABLE evo RENAME TO evolved`);
  await p.sql(`DELETE FROM evolved WHERE id = 1`);
  await sync(["evolved"]);
  assert.equal((await p.target.query(`SELECT to_regclass('public.evo') AS r`)).rows[0].r, null);

  await p.sql(`CREATE SCHEMA archive`);
  await p.sql(`ALTER TABLE evolved SET SCHEMA archive`);
  await p.sql(`UPDATE archive.evolved SET c = 'moved' WHERE id = 2`);
  await sync(["archive.evolved"]);

  // Several changes between two data changes arrive as one relation message.
  await p.sql(`ALTER TABLE archive.evolved ADD COLUMN e text; ALTER TABLE archive.evolved DROP COLUMN c`);
  await p.sql(`INSERT INTO archive.evolved (id, "A renamed", d, e) VALUES (9, 'n', 1, 'e')`);
  await sync(["archive.evolved"]);
});

test("an existing target table is adopted, keeping its domain column and adding what it lacks", async () => {
  const p = pair();
  await p.sql(`CREATE DOMAIN posint AS int CHECK (VALUE > 0)`);
  await p.target.query(`CREATE DOMAIN posint AS int CHECK (VALUE > 0)`);
  await p.sql(`CREATE TABLE adopted (id int PRIMARY KEY, qty posint, label text)`);
  await p.target.query(`CREATE TABLE adopted (id int PRIMARY KEY, qty posint)`);
  await p.sql(`INSERT INTO adopted VALUES (1, 5, 'a'), (2, 6, 'b')`);
  await p.sql(`UPDATE adopted SET qty = 7 WHERE id = 2`);
  await sync(["adopted"]);
});

test("custom types resolve by name through type messages", async () => {
  const p = pair();
  await p.sql(`CREATE TYPE status AS ENUM ('new', 'done')`);
  await p.target.query(`CREATE TYPE status AS ENUM ('new', 'done')`);
  await p.sql(`CREATE TABLE tasks (id int PRIMARY KEY, s status, hist status[])`);
  await p.sql(`INSERT INTO tasks VALUES (1, 'new', '{new}'), (2, 'done', '{new,done}')`);
  await p.sql(`UPDATE tasks SET s = 'done', hist = hist || 'done'::status WHERE id = 1`);
  await sync(["tasks"]);
});

test("a custom type the target lacks stops the run with a clear error and applies nothing", async () => {
  const p = pair();
  await p.sql(`CREATE TYPE color AS ENUM ('red')`);
  await p.sql(`CREATE TABLE paint (id int PRIMARY KEY, c color)`);
  await p.sql(`INSERT INTO paint VALUES (1, 'red')`);
  await p.capture();
  const before = (await p.target.query(`SELECT next_offset::text AS o FROM fluvio_sink.state`)).rows[0].o;
  await assert.rejects(
    p.run(),
    /offset \d+ \(table public\.paint\): column "c" has type color .*target database does not have/,
  );
  const afterRun = (await p.target.query(`SELECT next_offset::text AS o FROM fluvio_sink.state`)).rows[0].o;
  assert.equal(afterRun, before);
  assert.equal((await p.target.query(`SELECT to_regclass('public.paint') AS r`)).rows[0].r, null);
  await p.target.query(`CREATE TYPE color AS ENUM ('red')`);
  await p.runUntilIdle();
  await assertSameTables(p, ["paint"]);
});
