import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

describe("round trips on real WAL", () => {
  let p: Pair;
  before(async () => {
    p = await makePair(server, "basic");
  });
  after(async () => p?.close());

  test("create, insert, update, delete", async () => {
    await p.sql(`CREATE TABLE customers (id int PRIMARY KEY, name text, email varchar(120), balance numeric(10,2),
                  created_at timestamptz, tags text[])`);
    await p.sql(`INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', 10.5, '2026-01-02 03:04:05+00', '{vip}'),
                 (2, 'Lin', NULL, 0, '2026-01-02 03:04:05+00', '{}')`);
    await p.sql(`UPDATE customers SET balance = 11.5 WHERE id = 1`);
    await p.sql(`DELETE FROM customers WHERE id = 2`);
    await p.sql(`INSERT INTO customers VALUES (3, 'O''Brien "q" \\ back', NULL, NULL, NULL, '{NULL,"a b"}')`);
    await p.capture();
    const [first] = await p.runUntilIdle();
    assert.equal(first?.status, "applied");
    assert.equal(first?.transactions, 4);
    assert.equal(first?.next_offset, String(p.records.length));
    await assertSameTables(p, ["public.customers"]);
  });
});
