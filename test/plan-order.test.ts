import assert from "node:assert/strict";
import { test } from "node:test";
import type { TableTraits, TargetTraits } from "../src/apply/constraints.js";
import { type Catalog, tableKey } from "../src/apply/model.js";
import { type PlanOptions, type PlanState, plan, type Step } from "../src/apply/plan.js";
import type { Event, Relation, Value } from "../src/events/types.js";

// Pure planning of the target-aware parts: foreign-key order, exact mode, identity and generated
// columns, upserts, start_lsn, TRUNCATE. No database.

const table = (relId: number, name: string, extra: Relation["columns"] = []): Relation => ({
  relId,
  namespace: "public",
  name,
  replicaIdentity: "default",
  columns: [
    { name: "id", typeId: 23, typeModifier: -1, key: true },
    { name: "ref", typeId: 23, typeModifier: -1, key: false },
    ...extra,
  ],
});
const parent = table(1, "parent");
const child = table(2, "child");
const catalog = (): Catalog => ({
  tables: new Map(),
  types: new Map([["23/-1", { ddl: "integer", cast: '"pg_catalog"."int4"' }]]),
});
const traitsOf = (t: Partial<TableTraits>): TableTraits => ({
  generated: new Set(),
  identityAlways: new Set(),
  columns: ["id", "ref"],
  parents: new Set(),
  actedOnBy: new Set(),
  ...t,
});
const P = tableKey("public", "parent");
const C = tableKey("public", "child");
const fk = (): TargetTraits =>
  new Map([
    [P, traitsOf({})],
    [C, traitsOf({ parents: new Set([P]) })],
  ]);

let off = 0n;
const at = () => off++;
const begin = (lsn: bigint): Event => ({ kind: "begin", offset: at(), finalLsn: lsn, xid: 1, timestamp: 0n });
const commit = (lsn: bigint): Event => ({
  kind: "commit",
  offset: at(),
  commitLsn: lsn,
  endLsn: lsn,
  timestamp: 0n,
});
const rel = (r: Relation): Event => ({ kind: "relation", offset: at(), relation: r });
const ins = (r: Relation, t: Value[]): Event => ({ kind: "insert", offset: at(), relId: r.relId, tuple: t });
const upd = (r: Relation, t: Value[], key: Value[] | null = null): Event => ({
  kind: "update",
  offset: at(),
  relId: r.relId,
  oldTuple: null,
  keyTuple: key,
  newTuple: t,
});
const del = (r: Relation, k: Value[]): Event => ({
  kind: "delete",
  offset: at(),
  relId: r.relId,
  oldTuple: null,
  keyTuple: k,
});
const state = (): PlanState => ({
  relations: new Map(),
  types: new Map(),
  lastCommitLsn: null,
  inTransaction: false,
});
const run = (events: Event[], options: PlanOptions) => plan(events, state(), catalog(), options);
const dml = (steps: Step[]) =>
  steps.flatMap((s) => (s.kind === "dml" ? [`${s.op} ${s.table}`] : s.kind === "truncate" ? [s.sql] : []));

const workload = (): Event[] => [
  begin(10n),
  rel(parent),
  rel(child),
  ins(child, ["10", "2"]),
  del(child, ["11", null]),
  ins(parent, ["2", null]),
  del(parent, ["1", null]),
  upd(child, ["12", "2"]),
  commit(10n),
];

test("foreign-key order: parents' rows before children's, children's deletes before parents'", () => {
  const p = run(workload(), { traits: fk(), foreignKeyOrder: true });
  assert.deepEqual(dml(p.steps), [
    "insert public.parent",
    "insert public.child",
    "update public.child",
    "delete public.child",
    "delete public.parent",
  ]);
  assert.equal(p.needsExactOrder, false);
  // Without it (replica role): deletes, updates, inserts.
  assert.deepEqual(dml(run(workload(), { traits: fk() }).steps), [
    "delete public.child",
    "delete public.parent",
    "update public.child",
    "insert public.parent",
    "insert public.child",
  ]);
});

test("a re-inserted key of a table the target cascades from, next to updates of the child: exact order only", () => {
  const traits = fk();
  (traits.get(P) as TableTraits).actedOnBy.add(C);
  const events = [
    begin(10n),
    rel(parent),
    rel(child),
    upd(child, ["5", "3"]),
    del(parent, ["2", null]),
    ins(parent, ["2", null]),
    commit(10n),
  ];
  assert.equal(run(events, { traits, foreignKeyOrder: true }).needsExactOrder, true);
  assert.equal(run(events, { traits }).needsExactOrder, false);
});

test("exact mode: one statement per change, in source order", () => {
  const p = run(workload(), { traits: fk(), exact: true });
  assert.deepEqual(
    p.steps.flatMap((s) => (s.kind === "dml" ? [[s.op, s.table, s.fromOffset === s.toOffset]] : [])),
    [
      ["insert", "public.child", true],
      ["delete", "public.child", true],
      ["insert", "public.parent", true],
      ["delete", "public.parent", true],
      ["update", "public.child", true],
    ],
  );
});

test("identity and generated columns: OVERRIDING SYSTEM VALUE, generated never written, key moves delete and re-insert", () => {
  const t = table(3, "ident", [{ name: "g", typeId: 23, typeModifier: -1, key: false }]);
  const traits: TargetTraits = new Map([
    [
      tableKey("public", "ident"),
      traitsOf({
        identityAlways: new Set(["id"]),
        generated: new Set(["g"]),
        columns: ["id", "ref", "extra"],
      }),
    ],
  ]);
  const p = run(
    [begin(1n), rel(t), ins(t, ["1", "2", "3"]), upd(t, ["9", "2", "3"], ["1", null, null]), commit(1n)],
    { traits },
  );
  const sql = p.steps.flatMap((s) => (s.kind === "dml" ? [s.statement.sql] : []));
  assert.match(sql[0] as string, /^COPY "public"\."ident" \("id", "ref"\) FROM STDIN$/);
  assert.match(
    sql[1] as string,
    /DELETE FROM "public"\."ident" AS t USING v .* RETURNING t\.\*\) INSERT INTO "public"\."ident" \("id", "ref", "extra"\) OVERRIDING SYSTEM VALUE SELECT v\.s0::"pg_catalog"\."int4", v\.s1::"pg_catalog"\."int4", d\."extra" FROM d JOIN v/,
  );
  assert.ok(!(sql[0] as string).includes('"g"'));
});

test("on_conflict upsert: inserts update rows the target has, and count them", () => {
  const p = run([begin(1n), rel(parent), ins(parent, ["1", "2"]), commit(1n)], { onConflict: "upsert" });
  const s = p.steps.find((x) => x.kind === "dml");
  assert.ok(s?.kind === "dml" && s.statement.counts);
  assert.match(
    s.statement.sql,
    /ON CONFLICT \("id"\) DO UPDATE SET "ref" = EXCLUDED\."ref" RETURNING xmax::text <> '0' AS up\) SELECT count\(\*\)::int AS n, count\(\*\) FILTER \(WHERE up\)::int AS upserted FROM r$/,
  );
});

test("start_lsn: transactions before it are skipped but their relations are adopted; TRUNCATE never cascades", () => {
  const events = [
    begin(5n),
    rel(parent),
    ins(parent, ["1", null]),
    commit(5n),
    begin(9n),
    ins(parent, ["2", null]),
    { kind: "truncate", offset: at(), relIds: [1], cascade: true, restartIdentity: true } as Event,
    commit(9n),
  ];
  const p = run(events, { startLsn: 9n });
  assert.equal(p.stats.skippedTransactions, 1);
  assert.equal(p.stats.transactions, 1);
  assert.ok(p.state.relations.has(1));
  assert.deepEqual(dml(p.steps), [
    "insert public.parent",
    'TRUNCATE TABLE "public"."parent" RESTART IDENTITY',
  ]);
});

test("a relation with zero columns: rows are counted off, not unnested", () => {
  const empty: Relation = {
    relId: 4,
    namespace: "public",
    name: "empty",
    replicaIdentity: "default",
    columns: [],
  };
  const p = run([begin(1n), rel(empty), ins(empty, []), ins(empty, []), commit(1n)], {});
  const s = p.steps.filter((x) => x.kind === "dml");
  assert.deepEqual(
    s.map((x) => x.kind === "dml" && [x.statement.sql, x.rows]),
    [['INSERT INTO "public"."empty" SELECT  FROM generate_series(1, 2) AS v(ord)', 2]],
  );
});
