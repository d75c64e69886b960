import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeRecord } from "../src/events/decode.js";
import { parseJsonLossless } from "../src/events/json.js";
import { UNCHANGED } from "../src/events/types.js";

const env = (message: string) => `{"wal_start":1,"wal_end":1,"timestamp":0,"message":${message}}`;

test("Int8 beyond 2^53 and u64 LSNs stay exact", () => {
  const ev = decodeRecord(
    5n,
    env(
      `{"type":"insert","rel_id":4294967295,"tuple":[{"Int8":9007199254740993},{"Int8":-9223372036854775808},"Null","UnchangedToast"]}`,
    ),
  );
  assert.equal(ev.kind, "insert");
  if (ev.kind !== "insert") return;
  assert.equal(ev.relId, 4294967295);
  assert.deepEqual(ev.tuple, ["9007199254740993", "-9223372036854775808", null, UNCHANGED]);
  const b = decodeRecord(0n, env(`{"type":"begin","final_lsn":18446744073709551615,"timestamp":1,"xid":7}`));
  assert.equal(b.kind === "begin" && b.finalLsn, 18446744073709551615n);
});

test("each variant becomes PostgreSQL's text form", () => {
  const ev = decodeRecord(
    0n,
    env(`{"type":"insert","rel_id":1,"tuple":[{"Bool":true},{"Bool":false},{"Char":7},{"Char":9},{"Char":0},
      {"Int2":-5},{"Oid":4294967295},{"Float4":1.5},{"Float8":-1e-300},{"Float8":null},{"String":"a\\"b\\\\c\\u00e9"},
      {"RawText":[123,125]},{"RawText":[]},{"RawText":[240,159,144,152]}]}`),
  );
  assert.ok(ev.kind === "insert");
  assert.deepEqual(ev.tuple, [
    "t",
    "f",
    "7",
    "9",
    "0",
    "-5",
    "4294967295",
    "1.5",
    "-1e-300",
    null,
    'a"b\\cé',
    "{}",
    "",
    "🐘",
  ]);
});

test("truncate options and relation messages decode", () => {
  const t = decodeRecord(0n, env(`{"type":"truncate","options":3,"rel_ids":[1,2]}`));
  assert.deepEqual(t.kind === "truncate" && [t.cascade, t.restartIdentity, t.relIds], [true, true, [1, 2]]);
  const r = decodeRecord(
    0n,
    env(`{"type":"relation","rel_id":9,"namespace":"s","name":"t","replica_identity":"Full",
      "columns":[{"flags":1,"name":"id","type_id":23,"type_modifier":-1}]}`),
  );
  assert.ok(r.kind === "relation");
  assert.deepEqual(r.relation, {
    relId: 9,
    namespace: "s",
    name: "t",
    replicaIdentity: "full",
    columns: [{ name: "id", typeId: 23, typeModifier: -1, key: true }],
  });
});

test("malformed records name the offset and what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["", /offset 42: malformed JSON: unexpected end of input/],
    ["[1,2", /offset 42: malformed JSON/],
    ['{"message":1}', /offset 42: message must be an object/],
    [env(`{"type":"insert","rel_id":-1,"tuple":[]}`), /offset 42: message\.rel_id is out of range/],
    [env(`{"type":"insert","rel_id":1,"tuple":{}}`), /offset 42: message\.tuple must be an array/],
    [
      env(`{"type":"insert","rel_id":1,"tuple":[{"Int4":1.5}]}`),
      /message\.tuple\[0\]\.Int4 must be an integer/,
    ],
    [
      env(`{"type":"insert","rel_id":1,"tuple":[{"Int2":40000}]}`),
      /message\.tuple\[0\]\.Int2 is out of range/,
    ],
    [
      env(`{"type":"insert","rel_id":1,"tuple":[{"Blob":1}]}`),
      /message\.tuple\[0\] has unknown variant "Blob"/,
    ],
    [env(`{"type":"insert","rel_id":1,"tuple":[{"RawText":[255,254]}]}`), /RawText is not valid UTF-8/],
    [env(`{"type":"insert","rel_id":1,"tuple":[{"RawText":[256]}]}`), /RawText\[0\] must be a byte/],
    [
      env(`{"type":"delete","rel_id":1,"old_tuple":null,"key_tuple":null}`),
      /delete has neither old_tuple nor key_tuple/,
    ],
    [
      env(`{"type":"relation","rel_id":1,"namespace":"s","name":"t","replica_identity":"Some","columns":[]}`),
      /replica_identity/,
    ],
    [env(`{"type":"nope"}`), /unknown message\.type "nope"/],
  ];
  for (const [text, re] of cases) assert.throws(() => decodeRecord(42n, text), re, text);
});

test("the lossless parser keeps number text and rejects trailing garbage", () => {
  const v = parseJsonLossless('{"a":[12345678901234567890, -0.5e+10]}') as { a: { text: string }[] };
  assert.deepEqual(
    v.a.map((n) => n.text),
    ["12345678901234567890", "-0.5e+10"],
  );
  assert.throws(() => parseJsonLossless('{"a":1} x'), /trailing/);
  assert.throws(() => parseJsonLossless('{"a":01}'), /expected/);
});

test("real inbound shapes: Char digits only, zero-column relations, origin, serde floats, zero envelope LSNs", () => {
  for (const bad of ["120", "-1", "10"])
    assert.throws(
      () => decodeRecord(7n, env(`{"type":"insert","rel_id":1,"tuple":["Null",{"Char":${bad}}]}`)),
      new RegExp(
        `^RecordError: record at offset 7: message\\.tuple\\[1\\]\\.Char is ${bad}: "char" values arrive as the digits 0\\.\\.9`,
      ),
    );
  const rel = decodeRecord(
    3n,
    `{"wal_start":0,"wal_end":0,"timestamp":776,"message":{"type":"relation","rel_id":77,"namespace":"public","name":"empty","replica_identity":"Default","columns":[]}}`,
  );
  assert.ok(rel.kind === "relation");
  assert.deepEqual(rel.relation.columns, []);
  const ins = decodeRecord(4n, env(`{"type":"insert","rel_id":77,"tuple":[]}`));
  assert.deepEqual(ins.kind === "insert" && ins.tuple, []);
  const ty = decodeRecord(
    5n,
    `{"wal_start":0,"wal_end":0,"timestamp":1,"message":{"type":"type","id":16390,"namespace":"mood","name":"mood"}}`,
  );
  assert.deepEqual(ty.kind === "type" && [ty.id, ty.name], [16390, "mood"]);
  const o = decodeRecord(6n, env(`{"type":"origin","commit_lsn":123456789,"name":"pg_16400"}`));
  assert.deepEqual(o.kind === "origin" && [o.commitLsn, o.name], [123456789n, "pg_16400"]);
  const f = decodeRecord(
    8n,
    env(
      `{"type":"insert","rel_id":1,"tuple":[{"Float8":1e20},{"Float8":-0.0},{"Float8":1.0},{"Float4":1e-7},{"Float8":1.7976931348623157e308}]}`,
    ),
  );
  assert.deepEqual(f.kind === "insert" && f.tuple, ["1e20", "-0.0", "1.0", "1e-7", "1.7976931348623157e308"]);
});
