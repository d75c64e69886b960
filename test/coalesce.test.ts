import assert from "node:assert/strict";
import { test } from "node:test";
import { coalesceCopies } from "../src/apply/execute.js";
import type { Step } from "../src/apply/plan.js";
import { type Cell, insertRows, type TableShape, updateRows } from "../src/apply/statements.js";

const shape = (name: string): TableShape => ({
  schema: "public",
  name,
  columns: ["id", "v"],
  casts: ['"pg_catalog"."int4"', '"pg_catalog"."text"'],
});

const ins = (table: string, offset: bigint, ...rows: Cell[][]): Step => ({
  kind: "dml",
  op: "insert",
  statement: insertRows(shape(table), [0, 1], rows),
  table: `public.${table}`,
  fromOffset: offset,
  toOffset: offset,
  rows: rows.length,
});

const upd = (table: string, offset: bigint): Step => ({
  kind: "dml",
  op: "update",
  statement: updateRows(shape(table), { cols: [0], mode: "key" }, [1], [["1", "x"]]),
  table: `public.${table}`,
  fromOffset: offset,
  toOffset: offset,
  rows: 1,
});

const view = (steps: Step[]) =>
  steps.map((s) =>
    s.kind === "dml" ? [s.op, s.table, `${s.fromOffset}..${s.toOffset}`, s.rows, s.statement.rows] : [s.kind],
  );

test("consecutive COPYs into one table become one, rows in order; anything between keeps them apart", () => {
  const steps: Step[] = [
    ins("a", 1n, ["1", "x"]),
    ins("a", 2n, ["2", null], ["3", "z"]),
    ins("a", 4n, ["4", ""]),
    ins("b", 5n, ["1", "b"]),
    ins("a", 6n, ["5", "y"]),
    upd("a", 7n),
    ins("a", 8n, ["6", "w"]),
    { kind: "ddl", sql: "ALTER TABLE a ADD COLUMN w int", table: "public.a", offset: 9n },
    ins("a", 10n, ["7", "q"]),
  ];
  assert.deepEqual(view(coalesceCopies(steps)), [
    [
      "insert",
      "public.a",
      "1..4",
      4,
      [
        ["1", "x"],
        ["2", null],
        ["3", "z"],
        ["4", ""],
      ],
    ],
    ["insert", "public.b", "5..5", 1, [["1", "b"]]],
    ["insert", "public.a", "6..6", 1, [["5", "y"]]],
    ["update", "public.a", "7..7", 1, [["1", "x"]]],
    ["insert", "public.a", "8..8", 1, [["6", "w"]]],
    ["ddl"],
    ["insert", "public.a", "10..10", 1, [["7", "q"]]],
  ]);
});

test("inserts that are not COPYs (on_conflict upsert) are never joined", () => {
  const up = (offset: bigint): Step => ({
    kind: "dml",
    op: "insert",
    statement: insertRows(shape("a"), [0, 1], [[String(offset), "v"]], [0]),
    table: "public.a",
    fromOffset: offset,
    toOffset: offset,
    rows: 1,
  });
  assert.equal(coalesceCopies([up(1n), up(2n)]).length, 2);
});
