import assert from "node:assert/strict";
import { test } from "node:test";
import type { Catalog } from "../src/apply/model.js";
import { type PlanState, plan, type Step } from "../src/apply/plan.js";
import { paramsOf } from "../src/apply/statements.js";
import type { Event, Relation, Value } from "../src/events/types.js";
import { UNCHANGED } from "../src/events/types.js";

// The planner is pure: these tests need no database.

const rel: Relation = {
  relId: 1,
  namespace: "public",
  name: "acct",
  replicaIdentity: "default",
  columns: [
    { name: "id", typeId: 23, typeModifier: -1, key: true },
    { name: "v", typeId: 25, typeModifier: -1, key: false },
  ],
};
const catalog: Catalog = {
  tables: new Map(),
  types: new Map([
    ["23/-1", { ddl: "integer", cast: '"pg_catalog"."int4"' }],
    ["25/-1", { ddl: "text", cast: '"pg_catalog"."text"' }],
  ]),
};
const state = (): PlanState => ({
  relations: new Map(),
  types: new Map(),
  lastCommitLsn: null,
  inTransaction: false,
});

let off = 0n;
const at = () => off++;
const begin = (lsn: bigint): Event => ({ kind: "begin", offset: at(), finalLsn: lsn, xid: 1, timestamp: 0n });
const commit = (lsn: bigint): Event => ({
  kind: "commit",
  offset: at(),
  commitLsn: lsn,
  endLsn: lsn + 1n,
  timestamp: 0n,
});
const ins = (t: Value[]): Event => ({ kind: "insert", offset: at(), relId: 1, tuple: t });
const upd = (t: Value[], key: Value[] | null = null): Event => ({
  kind: "update",
  offset: at(),
  relId: 1,
  oldTuple: null,
  keyTuple: key,
  newTuple: t,
});
const del = (k: Value[]): Event => ({ kind: "delete", offset: at(), relId: 1, oldTuple: null, keyTuple: k });
const relation = (): Event => ({ kind: "relation", offset: at(), relation: rel });
const dml = (steps: Step[]) => steps.filter((s) => s.kind === "dml") as Extract<Step, { kind: "dml" }>[];

test("changes to one row collapse to their net effect, in few set-wise statements", () => {
  const events = [
    begin(10n),
    relation(),
    ins(["1", "a"]),
    ins(["2", "b"]),
    upd(["1", "a2"]),
    commit(10n),
    begin(20n),
    upd(["1", "a3"]),
    del(["2", null]),
    ins(["3", "c"]),
    upd(["4", "d"]),
    upd(["4", UNCHANGED]),
    commit(20n),
  ];
  const p = plan(events, state(), catalog);
  assert.deepEqual(p.stats, {
    transactions: 2,
    skippedTransactions: 0,
    inserts: 3,
    updates: 4,
    deletes: 1,
    truncates: 0,
  });
  const steps = dml(p.steps);
  assert.deepEqual(
    steps.map((s) => [s.op, s.rows, paramsOf(s.statement)]),
    [
      ["update", 1, [["4"], ["d"]]],
      [
        "insert",
        2,
        [
          ["1", "3"],
          ["a3", "c"],
        ],
      ],
    ],
  );
  assert.equal(p.state.lastCommitLsn, 20n);
  assert.match(steps[1]?.statement.sql ?? "", /^COPY "public"\."acct" \("id", "v"\) FROM STDIN$/);
});

test("a key change flushes the table and moves the row by its old key", () => {
  const p = plan(
    [begin(1n), relation(), upd(["1", "x"]), upd(["9", "y"], ["1", null]), commit(1n)],
    state(),
    catalog,
  );
  const steps = dml(p.steps);
  assert.deepEqual(
    steps.map((s) => [s.op, paramsOf(s.statement)]),
    [
      ["update", [["1"], ["x"]]],
      ["update", [["1"], ["9"], ["y"]]],
    ],
  );
});

test("a re-sent transaction (commit LSN at or below the last applied) is skipped", () => {
  const s = state();
  s.lastCommitLsn = 50n;
  s.relations.set(1, { relation: rel, casts: ['"pg_catalog"."int4"', '"pg_catalog"."text"'] });
  const p = plan(
    [begin(50n), ins(["1", "a"]), commit(50n), begin(60n), ins(["2", "b"]), commit(60n)],
    s,
    catalog,
  );
  assert.equal(p.stats.skippedTransactions, 1);
  assert.equal(p.stats.transactions, 1);
  assert.deepEqual(dml(p.steps).map((s) => paramsOf(s.statement))[0], [["2"], ["b"]]);
});

test("identifiers are quoted, values never appear in SQL", () => {
  const odd: Relation = {
    ...rel,
    namespace: 'we"ird',
    name: "t; DROP TABLE x",
    columns: rel.columns.map((c) => ({ ...c, name: `${c.name}"` })),
  };
  const p = plan(
    [
      begin(1n),
      { kind: "relation", offset: at(), relation: odd },
      ins(["1", "'); DROP TABLE y; --"]),
      commit(1n),
    ],
    state(),
    catalog,
  );
  const sqls = p.steps.map((s) => (s.kind === "dml" ? s.statement.sql : s.sql));
  assert.ok(
    sqls.some((q) =>
      q.includes(
        'CREATE TABLE "we""ird"."t; DROP TABLE x" ("id""" integer, "v""" text, CONSTRAINT "t; DROP TABLE x__rel1_pkey" PRIMARY KEY ("id"""))',
      ),
    ),
  );
  assert.ok(sqls.every((q) => !q.includes("DROP TABLE y")));
});

test("changes outside a transaction, unknown relations and wrong tuple sizes are refused", () => {
  assert.throws(() => plan([ins(["1", "a"])], state(), catalog), /insert outside a source transaction/);
  assert.throws(() => plan([begin(1n), ins(["1", "a"])], state(), catalog), /unknown rel_id 1/);
  assert.throws(
    () => plan([begin(1n), relation(), ins(["1"])], state(), catalog),
    /tuple has 1 values but the relation has 2 columns/,
  );
  assert.throws(
    () => plan([begin(1n), relation(), commit(2n)], state(), catalog),
    /does not match the begin's final_lsn/,
  );
});
