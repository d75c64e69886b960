import assert from "node:assert/strict";
import { test } from "node:test";
import type { CachedRelation, Catalog, TargetTable } from "../src/apply/model.js";
import { mapColumns, parkedName, primaryKeyName, SchemaFollower } from "../src/apply/schema.js";
import type { Column, Relation } from "../src/events/types.js";

// Schema following is pure: relation cache + catalog snapshot + relation message in, DDL out.

const INT = 23;
const TEXT = 25;
const BIGINT = 20;
const col = (name: string, typeId = TEXT, key = false): Column => ({ name, typeId, typeModifier: -1, key });
const rel = (relId: number, name: string, columns: Column[], extra: Partial<Relation> = {}): Relation => ({
  relId,
  namespace: "public",
  name,
  replicaIdentity: "default",
  columns,
  ...extra,
});
const casts: Record<number, string> = {
  [INT]: "pg_catalog.int4",
  [TEXT]: "pg_catalog.text",
  [BIGINT]: "pg_catalog.int8",
};
const ddls: Record<number, string> = { [INT]: "integer", [TEXT]: "text", [BIGINT]: "bigint" };
const catalog = (tables: TargetTable[] = []): Catalog => ({
  tables: new Map(tables.map((t) => [JSON.stringify([t.schema, t.name]), t])),
  types: new Map(
    Object.keys(casts).map((k) => [
      `${k}/-1`,
      { ddl: ddls[Number(k)] as string, cast: casts[Number(k)] as string },
    ]),
  ),
});
const cached = (r: Relation, o: Partial<CachedRelation> = {}): CachedRelation => ({
  relation: r,
  casts: r.columns.map((c) => casts[c.typeId] as string),
  table: { schema: r.namespace, name: r.name },
  created: true,
  ...o,
});
const follower = (cache: CachedRelation[], tables: TargetTable[] = []) =>
  new SchemaFollower(new Map(cache.map((c) => [c.relation.relId, c])), catalog(tables), new Map());
const tableOfCache = (c: CachedRelation): TargetTable => ({
  schema: c.relation.namespace,
  name: c.relation.name,
  columns: c.relation.columns.map((x, i) => ({ name: x.name, cast: c.casts[i] as string })),
  primaryKey: c.relation.columns.some((x) => x.key)
    ? primaryKeyName(c.relation.name, c.relation.relId)
    : null,
});

const names = (s: string) => s.split(",").map((n) => col(n));

test("columns map by position: renames keep the place, drops remove, adds append", () => {
  // rename in the middle
  assert.deepEqual(mapColumns(names("id,a,z"), names("id,b,z")), [0, 1, 2]);
  // drop in the middle
  assert.deepEqual(mapColumns(names("id,a,b,c"), names("id,a,c")), [0, 1, 3]);
  // drop then add: "b -> c, c -> d" keeps both columns' data over "drop b, add d"
  assert.deepEqual(mapColumns(names("a,b,c"), names("a,c,d")), [0, 1, 2]);
  // chain through a reused name and a swap are both the identity by position
  assert.deepEqual(mapColumns(names("id,a,b"), names("id,b,c")), [0, 1, 2]);
  assert.deepEqual(mapColumns(names("id,a,b"), names("id,b,a")), [0, 1, 2]);
  // adds only
  assert.deepEqual(mapColumns(names("id"), names("id,x,y")), [0, -1, -1]);
  // all dropped
  assert.deepEqual(mapColumns(names("a,b"), []), []);
});

test("a survivor that would change both name and type loses to a drop and an add", () => {
  // [id, c varchar, d numeric] -> [id, d numeric, e text]: "drop c, add e", not two renames with casts
  const old = [col("id", INT), col("c", 1043), col("d", 1700)];
  const next = [col("id", INT), col("d", 1700), col("e", TEXT)];
  assert.deepEqual(mapColumns(old, next), [0, 2, -1]);
  // but a lone rename plus type change at the end is still a survivor (nothing else explains it better)
  assert.deepEqual(mapColumns([col("id", INT), col("b", INT)], [col("id", INT), col("c", BIGINT)]), [0, 1]);
  // a three-way name rotation is not mistaken for "drop a, add a"
  assert.deepEqual(mapColumns(names("id,a,d,c"), names("id,d,c,a")), [0, 1, 2, 3]);
});

test("a new relation creates its table with a named primary key and is recorded as created", () => {
  const r = rel(7, "t", [col("id", INT, true), col("v")]);
  const f = follower([]);
  const change = f.follow(r, 1n);
  assert.deepEqual(change?.ddl, [
    'CREATE SCHEMA IF NOT EXISTS "public"',
    'CREATE TABLE "public"."t" ("id" integer, "v" text, CONSTRAINT "t__rel7_pkey" PRIMARY KEY ("id"))',
  ]);
  assert.deepEqual(f.relations.get(7), {
    relation: r,
    casts: ["pg_catalog.int4", "pg_catalog.text"],
    table: { schema: "public", name: "t" },
    created: true,
  });
  assert.equal(f.follow(r, 2n), null, "the same relation again changes nothing");
});

test("an unowned existing table is adopted; key changes on it are not followed", () => {
  const r = rel(3, "u", [col("id", INT, true), col("v")]);
  const f = follower(
    [],
    [{ schema: "public", name: "u", columns: [{ name: "id", cast: "public.myint" }], primaryKey: "u_pkey" }],
  );
  assert.deepEqual(f.follow(r, 1n)?.ddl, ['ALTER TABLE "public"."u" ADD COLUMN "v" text']);
  assert.equal(f.relations.get(3)?.created, false);
  assert.deepEqual(f.relations.get(3)?.casts, ["public.myint", "pg_catalog.text"]);
  const keyless = rel(3, "u", [col("id", INT), col("v")], { replicaIdentity: "full" });
  assert.deepEqual(f.follow(keyless, 2n)?.ddl, []);
});

test("renames are ordered so no step collides: chains go back to front, swaps use a temporary name", () => {
  const old = rel(1, "t", [col("id", INT, true), col("a"), col("b"), col("c")]);
  const f = follower([cached(old)], [tableOfCache(cached(old))]);
  const chain = f.follow(rel(1, "t", [col("id", INT, true), col("b"), col("c"), col("d")]), 1n);
  assert.deepEqual(chain?.ddl, [
    'ALTER TABLE "public"."t" RENAME COLUMN "c" TO "d"',
    'ALTER TABLE "public"."t" RENAME COLUMN "b" TO "c"',
    'ALTER TABLE "public"."t" RENAME COLUMN "a" TO "b"',
  ]);
  const swap = f.follow(rel(1, "t", [col("id", INT, true), col("c"), col("b"), col("d")]), 2n);
  assert.deepEqual(swap?.ddl, [
    'ALTER TABLE "public"."t" RENAME COLUMN "b" TO "__fps_tmp_0"',
    'ALTER TABLE "public"."t" RENAME COLUMN "c" TO "b"',
    'ALTER TABLE "public"."t" RENAME COLUMN "__fps_tmp_0" TO "c"',
  ]);
});

test("a rename plus a type change renames first, then converts; the ambiguity is reported", () => {
  const old = rel(1, "t", [col("id", INT, true), col("n", INT)]);
  const f = follower([cached(old)], [tableOfCache(cached(old))]);
  const change = f.follow(rel(1, "t", [col("id", INT, true), col("m", BIGINT)]), 9n);
  assert.deepEqual(change?.ddl, [
    'ALTER TABLE "public"."t" RENAME COLUMN "n" TO "m"',
    'ALTER TABLE "public"."t" ALTER COLUMN "m" TYPE bigint USING "m"::bigint',
  ]);
  assert.deepEqual(f.relations.get(1)?.casts, ["pg_catalog.int4", "pg_catalog.int8"]);
  assert.equal(change?.warnings.length, 1);
  assert.deepEqual(change?.warnings[0]?.fields, {
    table: "public.t",
    offset: "9",
    assumed: ["rename n to m", "change the type of m"],
    other: ["drop n", "add m"],
  });
});

test("a key change on a created table drops the old key by its catalog name and adds the new one", () => {
  const old = rel(1, "t", [col("id", INT, true), col("v")]);
  const target = { ...tableOfCache(cached(old)), primaryKey: "t_pkey" };
  const f = follower([cached(old)], [target]);
  const changed = f.follow(rel(1, "t", [col("id", INT), col("v", TEXT, true)]), 1n);
  assert.deepEqual(changed?.ddl, [
    'ALTER TABLE "public"."t" DROP CONSTRAINT IF EXISTS "t_pkey"',
    'ALTER TABLE "public"."t" ADD CONSTRAINT "t__rel1_pkey" PRIMARY KEY ("v")',
  ]);
  const dropped = f.follow(rel(1, "t", [col("id", INT), col("v")], { replicaIdentity: "full" }), 2n);
  assert.deepEqual(dropped?.ddl, ['ALTER TABLE "public"."t" DROP CONSTRAINT IF EXISTS "t__rel1_pkey"']);
  // A key column renamed is not a key change.
  const f2 = follower([cached(old)], [target]);
  assert.deepEqual(f2.follow(rel(1, "t", [col("ident", INT, true), col("v")]), 3n)?.ddl, [
    'ALTER TABLE "public"."t" RENAME COLUMN "id" TO "ident"',
  ]);
});

test("a key change on a created table whose key constraint the catalog does not know is a clear error", () => {
  const old = rel(1, "t", [col("id", INT, true), col("v")]);
  const f = follower([cached(old)]);
  assert.throws(
    () => f.follow(rel(1, "t", [col("id", INT), col("v")], { replicaIdentity: "full" }), 4n),
    /offset 4 \(table public\.t\): the replica identity key changed, but the primary key constraint of target table public\.t is not known/,
  );
});

test("rotate: a new rel_id taking an owned name parks the owner's table, which later follows its own name", () => {
  const old = rel(1, "t", [col("id", INT, true), col("v")]);
  const f = follower([cached(old)], [tableOfCache(cached(old))]);
  const created = f.follow(rel(2, "t", [col("id", INT, true), col("v"), col("w", INT)]), 1n);
  assert.deepEqual(created?.ddl, [
    'ALTER TABLE "public"."t" RENAME TO "t__rel1"',
    'CREATE SCHEMA IF NOT EXISTS "public"',
    'CREATE TABLE "public"."t" ("id" integer, "v" text, "w" integer, CONSTRAINT "t__rel2_pkey" PRIMARY KEY ("id"))',
  ]);
  assert.deepEqual(created?.flushFirst, [2, 1]);
  assert.deepEqual(f.relations.get(1)?.table, { schema: "public", name: "t__rel1" });
  // The old rel_id's next message names its real new name.
  const moved = f.follow(rel(1, "t_old", [col("id", INT, true), col("v")]), 2n);
  assert.deepEqual(moved?.ddl, ['ALTER TABLE "public"."t__rel1" RENAME TO "t_old"']);
  assert.deepEqual(f.relations.get(1)?.table, { schema: "public", name: "t_old" });
});

test("swap: a rel_id renamed onto an owned name parks the owner first; a parked table with an unchanged relation still moves back", () => {
  const live = rel(1, "live", [col("id", INT, true)]);
  const stage = rel(2, "stage", [col("id", INT, true)]);
  const f = follower(
    [cached(live), cached(stage)],
    [tableOfCache(cached(live)), tableOfCache(cached(stage))],
  );
  assert.deepEqual(f.follow({ ...stage, name: "live" }, 1n)?.ddl, [
    'ALTER TABLE "public"."live" RENAME TO "live__rel1"',
    'ALTER TABLE "public"."stage" RENAME TO "live"',
  ]);
  // rel 1 renamed back onto "live" (say the swap was undone): its relation is unchanged but its table is parked.
  const f2 = follower([cached(live, { table: { schema: "public", name: "live__rel1" } })]);
  assert.deepEqual(f2.follow(live, 2n)?.ddl, ['ALTER TABLE "public"."live__rel1" RENAME TO "live"']);
});

test("a rel_id never adopts a table another rel_id owns (drop table + create table)", () => {
  const old = rel(1, "dc", [col("id", INT, true)]);
  const f = follower([cached(old)], [tableOfCache(cached(old))]);
  const change = f.follow(rel(5, "dc", [col("k", TEXT, true)]), 1n);
  assert.deepEqual(change?.ddl, [
    'ALTER TABLE "public"."dc" RENAME TO "dc__rel1"',
    'CREATE SCHEMA IF NOT EXISTS "public"',
    'CREATE TABLE "public"."dc" ("k" text, CONSTRAINT "dc__rel5_pkey" PRIMARY KEY ("k"))',
  ]);
  assert.equal(f.relations.get(5)?.created, true);
});

test("zero-column relations: a table can lose all its columns and be created without any", () => {
  const old = rel(1, "z", [col("a", INT), col("b")], { replicaIdentity: "full" });
  const f = follower([cached(old)], [tableOfCache(cached(old))]);
  assert.deepEqual(f.follow(rel(1, "z", [], { replicaIdentity: "full" }), 1n)?.ddl, [
    'ALTER TABLE "public"."z" DROP COLUMN "a"',
    'ALTER TABLE "public"."z" DROP COLUMN "b"',
  ]);
  assert.deepEqual(f.relations.get(1)?.casts, []);
  assert.deepEqual(follower([]).follow(rel(2, "e", []), 2n)?.ddl, [
    'CREATE SCHEMA IF NOT EXISTS "public"',
    'CREATE TABLE "public"."e" ()',
  ]);
});

test("parked and key names fit PostgreSQL's 63-byte identifiers on a character boundary", () => {
  const long = "é".repeat(40);
  const p = parkedName(long, 4294967295);
  assert.ok(Buffer.byteLength(p) <= 63);
  assert.ok(p.endsWith("__rel4294967295"));
  assert.ok(p.startsWith("é".repeat(23)));
  assert.ok(Buffer.byteLength(primaryKeyName(long, 12)) <= 63);
  assert.equal(parkedName("t", 5), "t__rel5");
});

test("a move to another schema renames first when that schema has a table of the old name", () => {
  const mv = rel(1, "mv", [col("id", INT, true)]);
  const there: TargetTable = {
    schema: "other",
    name: "mv",
    columns: [{ name: "id", cast: "pg_catalog.int4" }],
  };
  const f = follower([cached(mv)], [tableOfCache(cached(mv)), there]);
  assert.deepEqual(f.follow({ ...mv, namespace: "other", name: "mv2" }, 1n)?.ddl, [
    'ALTER TABLE "public"."mv" RENAME TO "mv2"',
    'CREATE SCHEMA IF NOT EXISTS "other"',
    'ALTER TABLE "public"."mv2" SET SCHEMA "other"',
  ]);
  const g = follower([cached(mv)], [tableOfCache(cached(mv))]);
  assert.deepEqual(g.follow({ ...mv, namespace: "other", name: "mv2" }, 1n)?.ddl, [
    'CREATE SCHEMA IF NOT EXISTS "other"',
    'ALTER TABLE "public"."mv" SET SCHEMA "other"',
    'ALTER TABLE "other"."mv" RENAME TO "mv2"',
  ]);
});
