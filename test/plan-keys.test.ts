import assert from "node:assert/strict";
import { test } from "node:test";
import type { Catalog } from "../src/apply/model.js";
import { type PlanState, plan, type Step } from "../src/apply/plan.js";
import { paramsOf } from "../src/apply/statements.js";
import type { Event, Relation, Value } from "../src/events/types.js";
import { UNCHANGED } from "../src/events/types.js";

// Pure planner tests of row identity: keys that look alike in text, and merges of partial images.

const text = { typeId: 25, typeModifier: -1 };
const rel: Relation = {
  relId: 7,
  namespace: "public",
  name: "pairs",
  replicaIdentity: "default",
  columns: [
    { name: "a", ...text, key: true },
    { name: "b", ...text, key: true },
    { name: "v", ...text, key: false },
    { name: "w", ...text, key: false },
  ],
};
const catalog: Catalog = {
  tables: new Map(),
  types: new Map([["25/-1", { ddl: "text", cast: '"pg_catalog"."text"' }]]),
};
const state = (): PlanState => ({
  relations: new Map(),
  types: new Map(),
  lastCommitLsn: null,
  inTransaction: false,
});

let off = 0n;
const at = () => off++;
const txn = (lsn: bigint, changes: Event[]): Event[] => [
  { kind: "begin", offset: at(), finalLsn: lsn, xid: 1, timestamp: 0n },
  ...changes,
  { kind: "commit", offset: at(), commitLsn: lsn, endLsn: lsn + 1n, timestamp: 0n },
];
const relation = (): Event => ({ kind: "relation", offset: at(), relation: rel });
const ins = (t: Value[]): Event => ({ kind: "insert", offset: at(), relId: 7, tuple: t });
const upd = (t: Value[]): Event => ({
  kind: "update",
  offset: at(),
  relId: 7,
  oldTuple: null,
  keyTuple: null,
  newTuple: t,
});
const del = (k: Value[]): Event => ({ kind: "delete", offset: at(), relId: 7, oldTuple: null, keyTuple: k });
const dml = (steps: Step[]) =>
  (steps.filter((s) => s.kind === "dml") as Extract<Step, { kind: "dml" }>[]).map((s) => [
    s.op,
    s.rows,
    paramsOf(s.statement),
  ]);

test("two-column keys whose texts join alike stay different rows", () => {
  const events = txn(1n, [
    relation(),
    ins(["1:a", "b", "x", "y"]),
    ins(["1", "a1:b", "x", "y"]),
    ins(["", "ab", "x", "y"]),
    ins(["ab", "", "x", "y"]),
    // Deletes only the row keyed exactly ("", "ab").
    del(["", "ab", null, null]),
  ]);
  for (const max of [1, 7, 1000]) {
    // However the changes are cut into batches, the same rows result.
    const s = state();
    let params: unknown[] = [];
    for (let i = 0; i < events.length; i += max) {
      const p = plan(events.slice(i, i + max), s, catalog);
      Object.assign(s, p.state);
      params = params.concat(dml(p.steps));
    }
    const inserted = params
      .filter((x) => (x as unknown[])[0] === "insert")
      .flatMap((x) => {
        const cols = (x as [string, number, string[][]])[2];
        return (cols[0] ?? []).map((_, r) => cols.map((c) => c[r]));
      });
    const deleted = params
      .filter((x) => (x as unknown[])[0] === "delete")
      .flatMap((x) => {
        const cols = (x as [string, number, string[][]])[2];
        return (cols[0] ?? []).map((_, r) => cols.map((c) => c[r]));
      });
    const live = inserted.filter((r) => !deleted.some((d) => d[0] === r[0] && d[1] === r[1]));
    assert.deepEqual(
      live.map((r) => [r[0], r[1]]).sort(),
      [
        ["1", "a1:b"],
        ["1:a", "b"],
        ["ab", ""],
      ],
      `max_records ${max}`,
    );
  }
});

test("unchanged-TOAST values merge into the net row, and the events themselves stay untouched", () => {
  const events = txn(2n, [
    relation(),
    ins(["k", "1", "v0", "w0"]),
    upd(["k", "1", UNCHANGED, "w1"]),
    upd(["k", "1", "v2", UNCHANGED]),
    upd(["k", "1", UNCHANGED, UNCHANGED]),
  ]);
  const before = JSON.stringify(events, (_, v) =>
    typeof v === "bigint" ? String(v) : v === UNCHANGED ? "U" : v,
  );
  const first = plan(events, state(), catalog);
  assert.deepEqual(dml(first.steps), [["insert", 1, [["k"], ["1"], ["v2"], ["w1"]]]]);
  // A fallback plans the same events again: they must not have been changed by the first plan.
  const after = JSON.stringify(events, (_, v) =>
    typeof v === "bigint" ? String(v) : v === UNCHANGED ? "U" : v,
  );
  assert.equal(after, before);
  assert.deepEqual(dml(plan(events, state(), catalog).steps), dml(first.steps));
});

test("updates to a row the batch did not insert keep its unchanged columns out of the SET list", () => {
  const p = plan(
    txn(3n, [relation(), upd(["k", "2", UNCHANGED, "w1"]), upd(["k", "2", UNCHANGED, "w2"])]),
    state(),
    catalog,
  );
  assert.deepEqual(dml(p.steps), [["update", 1, [["k"], ["2"], ["w2"]]]]);
});
