import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeRecord } from "../src/events/decode.js";
import { decodeRecordFast, fastDecode } from "../src/events/fast-decode.js";
import type { Event } from "../src/events/types.js";
import { pairForFile } from "./support/harness.js";

/**
 * The fast decoder must be indistinguishable from the general one: same events for every record,
 * same error for every bad record. Real streams come from real WAL; edge cases are generated.
 */

type Outcome = { event: Event } | { error: string };

function outcome(decode: () => Event): Outcome {
  try {
    return { event: decode() };
  } catch (e) {
    return { error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

/** Asserts both decoders agree on `text`; returns whether the fast path answered itself. */
function agree(text: string, offset = 7n): boolean {
  const general = outcome(() => decodeRecord(offset, text));
  const fast = outcome(() => decodeRecordFast(offset, text));
  assert.deepStrictEqual(fast, general, text);
  const own = fastDecode(offset, text);
  if (own !== null) assert.deepStrictEqual({ event: own }, general, `fast path on ${text}`);
  return own !== null;
}

const pair = pairForFile("fastdecode");

const messageType = (line: string) => /"message":\{"type":"(\w+)"/.exec(line)?.[1];

test("fast and general decoders agree on every record of real captured streams", async () => {
  const p = pair();
  // Every value type of the values test, an enum (a type message), odd names.
  await p.sql(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  await p.sql(`CREATE SCHEMA "Odd ""Schema"""`);
  await p.sql(`CREATE TABLE "Odd ""Schema"""."Val""ues" (
      id bigint PRIMARY KEY, i2 smallint, i4 int, i8 bigint, o oid, b bool, ch "char",
      f4 real, f8 double precision, n numeric(30,10), nn numeric, t text, vc varchar(255), bp char(5), nm name,
      ts timestamp, tstz timestamptz, d date, tm time, iv interval, j json, jb jsonb, u uuid,
      ia int[], ta text[], by bytea, inet_ inet, pt point, m mood, ma mood[], pi int, "we ird ""col""" text)`);
  await p.sql(`INSERT INTO "Odd ""Schema"""."Val""ues" VALUES
      (9223372036854775807, 32767, 2147483647, 9007199254740993, 4294967295, true, 'x',
       3.4028235e38, 1.7976931348623157e308, 12345678901234567890.0123456789, 'NaN', E'quote '' dq " bs \\\\ nl \\n tab \\t ctl \\x01', 'ünïcødé ✓ 🐘', 'ab', 'nm',
       '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05.123456+05:30', '2026-02-28', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.7',
       '{"b": 1,  "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50], "s": "x\\"y"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
       '{1,NULL,3}', '{"a,b","c\\"d",NULL,"NULL",""}', '\\x00ff10', '192.168.0.1/24', '(1.5,-2)', 'happy', '{sad,happy}', 7, 'w'),
      (-9223372036854775808, -32768, -2147483648, -9007199254740993, 0, false, E'\\\\', 'NaN', '-Infinity', -0.0000000001, 'Infinity', '', '', '', '',
       'infinity', '-infinity', 'infinity', '00:00', '-1 days', 'null', '[]', '00000000-0000-0000-0000-000000000000',
       '{}', '{}', '\\x', '::1', '(0,0)', 'sad', '{}', 1, NULL),
      (3, NULL, NULL, NULL, NULL, NULL, '5', 1e20, -0.0, 1.0, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, '-infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, 0, 0, 0, 0, true, '0', 1e-7, 0.1, 0, 0, 'x', 'y', 'z', 'w',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  await p.sql(`UPDATE "Odd ""Schema"""."Val""ues" SET i4 = i4 / 2, t = 'changed' WHERE id = 4`);
  // TOAST: an unchanged large value arrives as UnchangedToast.
  await p.sql(`CREATE TABLE docs (id int PRIMARY KEY, body text, n int)`);
  await p.sql(`ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`);
  await p.sql(`INSERT INTO docs SELECT g, repeat(md5(g::text), 400), g FROM generate_series(1, 3) g`);
  await p.sql(`UPDATE docs SET n = n + 1`);
  await p.sql(`UPDATE docs SET id = id + 10 WHERE id = 1`); // a key change: key_tuple
  await p.sql(`DELETE FROM docs WHERE id = 2`);
  // REPLICA IDENTITY FULL without a key: old_tuple on update and delete, duplicate rows.
  await p.sql(`CREATE TABLE full_t (a int, b text, c numeric)`);
  await p.sql(`ALTER TABLE full_t REPLICA IDENTITY FULL`);
  await p.sql(`INSERT INTO full_t VALUES (1, 'a', 1.5), (1, 'a', 1.5), (2, NULL, NULL)`);
  await p.sql(`UPDATE full_t SET b = 'b' WHERE a = 2`);
  await p.sql(`DELETE FROM full_t WHERE a = 1`);
  // A relation message after a schema change, truncate with options, a transaction of many changes.
  await p.sql(`ALTER TABLE docs ADD COLUMN extra jsonb`);
  await p.sql(`INSERT INTO docs VALUES (5, 'five', 5, '{"k": [1, "\\u00e9"]}')`);
  await p.sql(`TRUNCATE full_t`);
  await p.sql(`TRUNCATE docs RESTART IDENTITY CASCADE`);
  await p.sql(`BEGIN; INSERT INTO full_t SELECT g, g::text, g / 3.0 FROM generate_series(1, 200) g;
    UPDATE full_t SET c = c * 2 WHERE a % 7 = 0; DELETE FROM full_t WHERE a % 11 = 0; COMMIT`);
  const lines = await p.capture();

  const seen = new Map<string, { all: number; fast: number }>();
  for (const [i, line] of lines.entries()) {
    const type = messageType(line) ?? "?";
    const s = seen.get(type) ?? { all: 0, fast: 0 };
    s.all++;
    if (agree(line, BigInt(i))) s.fast++;
    seen.set(type, s);
  }
  for (const t of ["begin", "commit", "insert", "update", "delete", "relation", "type", "truncate"])
    assert.ok((seen.get(t)?.all ?? 0) > 0, `the stream has ${t} records`);
  // The fast path answers every begin, commit, insert, update and delete but those holding a "char"
  // (its text form is the general decoder's); relation, type and truncate are the general decoder's.
  const withChar = (t: string) => lines.filter((l) => messageType(l) === t && l.includes('{"Char":')).length;
  for (const t of ["begin", "commit", "insert", "update", "delete"])
    assert.equal(seen.get(t)?.fast, (seen.get(t)?.all ?? 0) - withChar(t), `fast path took every ${t}`);
  for (const t of ["relation", "type", "truncate"]) assert.equal(seen.get(t)?.fast, 0);
  assert.ok(lines.some((l) => l.includes('"UnchangedToast"')));
  assert.ok(lines.some((l) => /"old_tuple":\[/.test(l)) && lines.some((l) => /"key_tuple":\[/.test(l)));

  // Every cut of a real record (a torn line) fails the same way in both.
  const sample = lines.filter((l) => /"type":"(insert|update|delete|begin|commit)"/.test(l)).slice(0, 12);
  for (const line of sample) for (let cut = 0; cut < line.length; cut += 7) agree(line.slice(0, cut));
});

const env = (message: string, pre = `{"wal_start":1,"wal_end":2,"timestamp":3,"message":`) =>
  `${pre}${message}}`;
const ins = (values: string) => env(`{"type":"insert","rel_id":5,"tuple":[${values}]}`);

test("generated edge cases: escapes, surrogates, big integers, float spellings, empty values", () => {
  const handled = [
    ins(`{"String":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"}`),
    ins(`{"String":"\\u00e9\\u00E9\\u0000\\u001f \\ud83d\\udc18 lone \\ud800 \\udc00 end"}`),
    ins(`{"String":"🐘 ünï ✓"}`),
    ins(`{"String":""},{"RawText":[]},{"String":"\\\\"}`),
    ins(
      `{"Int8":9223372036854775807},{"Int8":-9223372036854775808},{"Int8":9007199254740993},{"Int8":-0},{"Int8":0}`,
    ),
    ins(`{"Int8":123456789012345678},{"Int8":-123456789012345678},{"Int8":1234567890123456789}`),
    ins(
      `{"Int2":-32768},{"Int2":32767},{"Int4":-2147483648},{"Int4":2147483647},{"Int4":-0},{"Oid":4294967295},{"Oid":0}`,
    ),
    ins(
      `{"Float8":1e20},{"Float8":-0.0},{"Float8":1.0},{"Float8":null},{"Float4":1E-7},{"Float4":2.5e+3},{"Float8":-1.7976931348623157e308},{"Float8":0}`,
    ),
    ins(`{"Bool":true},{"Bool":false},"Null","UnchangedToast"`),
    ins(`{"RawText":[0]},{"RawText":[240,159,144,152]},{"RawText":[${Array(300).fill(65).join(",")}]}`),
    ins(`{"RawText":[${Array(40).fill("195,169").join(",")}]}`),
    ins(""),
    env(
      `{"type":"update","rel_id":4294967295,"old_tuple":[{"Int4":1}],"key_tuple":null,"new_tuple":[{"Int4":2}]}`,
    ),
    env(`{"type":"update","rel_id":0,"old_tuple":null,"key_tuple":[{"Int4":1}],"new_tuple":[]}`),
    env(`{"type":"delete","rel_id":1,"old_tuple":null,"key_tuple":["Null",{"Int4":1}]}`),
    env(
      `{"type":"begin","final_lsn":18446744073709551615,"timestamp":-9223372036854775808,"xid":4294967295}`,
    ),
    env(
      `{"type":"commit","flags":0,"commit_lsn":0,"end_lsn":18446744073709551615,"timestamp":9223372036854775807}`,
    ),
    env(`{"type":"begin","final_lsn":1,"timestamp":2,"xid":-0}`),
    env(
      `{"type":"begin","final_lsn":1,"timestamp":2,"xid":3}`,
      `{"wal_start":-1,"wal_end":0,"timestamp":-5,"message":`,
    ),
  ];
  for (const text of handled) assert.ok(agree(text), `the fast path handles ${text}`);

  // Integers the scanner reads as it goes (rel_id, xid, Int2, Int4, Oid): each bound, one past it,
  // signs, zeros and too many digits, each agreeing with the general decoder (answered or not).
  const ints: [string, string[]][] = [
    ["Int2", ["-32768", "-32769", "32767", "32768", "-0", "0", "01", "-", "1e2", "1.0", "00", "-01"]],
    ["Int4", ["-2147483648", "-2147483649", "2147483647", "2147483648", "99999999999", "-0", "7"]],
    ["Oid", ["0", "-0", "-1", "4294967295", "4294967296", "04294967295", "12345678901", "42"]],
  ];
  for (const [type, values] of ints) for (const v of values) agree(ins(`{"${type}":${v}}`));
  for (const v of ["0", "-0", "-1", "4294967295", "4294967296", "00", "01", "1.5", "12345678901", "-"]) {
    agree(env(`{"type":"insert","rel_id":${v},"tuple":[]}`));
    agree(env(`{"type":"begin","final_lsn":1,"timestamp":2,"xid":${v}}`));
  }

  const fallBack = [
    // Whitespace and other key orders: valid, the general decoder's.
    ` ${ins(`{"Int4":1}`)}`,
    `${ins(`{"Int4":1}`)}\n`,
    ins(`{"Int4": 1}`),
    ins(`{"Int4":1} ,{"Int4":2}`),
    env(`{"rel_id":5,"type":"insert","tuple":[]}`),
    env(`{"type":"insert","tuple":[],"rel_id":5}`),
    `{"message":{"type":"insert","rel_id":5,"tuple":[]},"wal_start":1,"wal_end":2,"timestamp":3}`,
    env(`{"type":"commit","commit_lsn":1,"end_lsn":2,"timestamp":3}`),
    env(`{"type":"commit","flags":"x","commit_lsn":1,"end_lsn":2,"timestamp":3}`),
    env(`{"type":"update","rel_id":1,"key_tuple":null,"new_tuple":[]}`),
    env(`{"type":"insert","rel_id":5,"tuple":[],"extra":1}`),
    env(`{"type":"insert","rel_id":5,"tuple":[],"tuple":[{"Int4":1}]}`),
    env(
      `{"type":"begin","final_lsn":1,"timestamp":2,"xid":3}`,
      `{"wal_start":1.5,"wal_end":null,"timestamp":"x","message":`,
    ),
    ins(`{"Int4":1,"Int4":2}`),
    ins(`{"Char":5},{"Char":0},{"Char":120},{"Char":-1},{"Char":92}`),
    env(
      `{"type":"relation","rel_id":9,"namespace":"s","name":"t","replica_identity":"Full","columns":[{"flags":1,"name":"id","type_id":23,"type_modifier":-1}]}`,
    ),
    env(
      `{"type":"relation","rel_id":9,"namespace":"s","name":"t","replica_identity":"Default","columns":[]}`,
    ),
    env(`{"type":"type","id":1,"namespace":"mood","name":"mood"}`),
    env(`{"type":"origin","commit_lsn":1,"name":"o"}`),
    env(`{"type":"truncate","options":3,"rel_ids":[1,2]}`),
  ];
  for (const text of fallBack) assert.equal(agree(text), false, `the general decoder handles ${text}`);
});

test("generated malformed records fail with the general decoder's message", () => {
  const bad = [
    "",
    "{",
    "null",
    "[]",
    '{"message":1}',
    env(`{"type":"nope"}`),
    env(`{"type":"insert","rel_id":-1,"tuple":[]}`),
    env(`{"type":"insert","rel_id":4294967296,"tuple":[]}`),
    env(`{"type":"insert","rel_id":1.0,"tuple":[]}`),
    env(`{"type":"insert","rel_id":1e3,"tuple":[]}`),
    env(`{"type":"insert","rel_id":01,"tuple":[]}`),
    env(`{"type":"insert","rel_id":1,"tuple":{}}`),
    env(`{"type":"insert","rel_id":1,"tuple":null}`),
    ins(`{"Int2":32768}`),
    ins(`{"Int2":-32769}`),
    ins(`{"Int4":2147483648}`),
    ins(`{"Int4":1.5}`),
    ins(`{"Int4":-}`),
    ins(`{"Int4":12345678901234567890}`),
    ins(`{"Int8":9223372036854775808}`),
    ins(`{"Int8":-9223372036854775809}`),
    ins(`{"Int8":1e3}`),
    ins(`{"Oid":-1}`),
    ins(`{"Oid":4294967296}`),
    ins(`{"Float8":"1"}`),
    ins(`{"Float8":1.}`),
    ins(`{"Float8":.5}`),
    ins(`{"Float8":1e}`),
    ins(`{"Float8":NaN}`),
    ins(`{"Bool":1}`),
    ins(`{"Bool":tru}`),
    ins(`{"String":1}`),
    ins(`{"String":"a\\x"}`),
    ins(`{"String":"\\u12G4"}`),
    ins(`{"String":"\\u12"}`),
    ins(`{"String":"tab\there"}`),
    ins(`{"String":"unterminated}]}}`),
    ins(`{"RawText":[256]}`),
    ins(`{"RawText":[1000]}`),
    ins(`{"RawText":[01]}`),
    ins(`{"RawText":[-1]}`),
    ins(`{"RawText":[1.0]}`),
    ins(`{"RawText":[255,254]}`),
    ins(`{"RawText":[${Array(80).fill(255).join(",")}]}`),
    ins(`{"RawText":[1,]}`),
    ins(`{"RawText":"x"}`),
    ins(`{"Blob":1}`),
    ins(`{}`),
    ins(`{"Int4":1,"Int8":2}`),
    ins(`"NULL"`),
    ins(`null`),
    ins(`{"Int4":1},`),
    ins(`{"Char":128}`),
    env(`{"type":"delete","rel_id":1,"old_tuple":null,"key_tuple":null}`),
    env(`{"type":"begin","final_lsn":-1,"timestamp":2,"xid":3}`),
    env(`{"type":"begin","final_lsn":18446744073709551616,"timestamp":2,"xid":3}`),
    env(`{"type":"commit","flags":0,"commit_lsn":1,"end_lsn":2,"timestamp":9223372036854775808}`),
    `${ins(`{"Int4":1}`)}x`,
    `${ins(`{"Int4":1}`)}}`,
    ins(`{"Int4":1}`).slice(0, -1),
  ];
  for (const text of bad) {
    assert.equal(fastDecode(9n, text), null, `the fast path leaves ${text} to the general decoder`);
    assert.ok("error" in outcome(() => decodeRecord(9n, text)), `${text} is an error`);
    agree(text, 9n);
  }
});

test("random corruptions of valid records: both decoders agree", () => {
  // A fixed-seed generator, so a failure reproduces.
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const valid = [
    ins(
      `{"Int4":1},{"String":"a\\"\\u00e9"},{"RawText":[49,50]},{"Float8":-1.5e-3},{"Int8":9007199254740993},"Null"`,
    ),
    env(
      `{"type":"update","rel_id":3,"old_tuple":[{"Bool":true}],"key_tuple":null,"new_tuple":["UnchangedToast",{"Oid":7}]}`,
    ),
    env(`{"type":"commit","flags":0,"commit_lsn":123,"end_lsn":456,"timestamp":789}`),
  ];
  const alphabet = `{}[]",:0123456789-.eE\\u abnNtf`;
  for (let i = 0; i < 3000; i++) {
    const v = valid[rnd(valid.length)] as string;
    const at = rnd(v.length);
    const ch = alphabet[rnd(alphabet.length)] as string;
    const op = rnd(3);
    const text =
      op === 0
        ? v.slice(0, at) + v.slice(at + 1)
        : op === 1
          ? v.slice(0, at) + ch + v.slice(at)
          : v.slice(0, at) + ch + v.slice(at + 1);
    agree(text);
  }
});
