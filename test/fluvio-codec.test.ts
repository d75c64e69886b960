import assert from "node:assert/strict";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import {
  crc32c,
  decodeBatches,
  decodeBatchList,
  encodeBatch,
  frame,
  Reader,
  Writer,
} from "./support/fluvio/codec.js";

// The test cluster's codec against fixed bytes from the protocol's definition.

test("zigzag varints", () => {
  const enc = (n: number) => new Writer().varint(n).build().toString("hex");
  assert.equal(enc(0), "00");
  assert.equal(enc(-1), "01");
  assert.equal(enc(1), "02");
  assert.equal(enc(300), "d804");
  assert.equal(enc(-65), "8101");
  for (const n of [0, 1, -1, 63, -64, 300, 123456, -2147483648, 2147483647])
    assert.equal(new Reader(new Writer().varint(n).build()).varint(), n);
});

test("strings, options, vectors and framing", () => {
  const b = new Writer()
    .string("ab")
    .optString(null)
    .optString("c")
    .vec([1, 2], (w, x) => w.i16(x))
    .build();
  assert.equal(b.toString("hex"), "00026162" + "00" + "01" + "000163" + "00000002" + "0001" + "0002");
  assert.equal(frame(Buffer.from([1, 2, 3])).toString("hex"), "00000003010203");
});

test("CRC-32C check value", () => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
});

test("a batch has the documented layout and decodes back", () => {
  const batch = encodeBatch(7n, [
    { key: Buffer.alloc(0), value: Buffer.from("hi") },
    { key: null, value: Buffer.from("there") },
  ]);
  const r = new Reader(batch);
  assert.equal(r.i64(), 7n); // base offset
  assert.equal(r.i32(), batch.length - 12); // batch_len: everything after it
  assert.equal(r.i32(), -1); // leader epoch
  assert.equal(r.i8(), 2); // magic
  const crc = r.u32();
  assert.equal(crc, crc32c(batch.subarray(21)));
  assert.equal(r.i16(), 0); // attributes
  assert.equal(r.i32(), 1); // last offset delta
  // First record: length, attributes 0, timestamp delta 0, offset delta 0, key Some(""), value "hi", no headers.
  const recs = batch.subarray(12 + 45);
  assert.equal(recs.subarray(0, 4).toString("hex"), "00000002");
  assert.equal(
    recs.subarray(4, 4 + 10).toString("hex"),
    "12" + "00" + "00" + "00" + "0100" + "04" + "6869" + "00",
  );
  const back = decodeBatches(new Reader(batch), batch.length);
  assert.deepEqual(
    back.map((x) => [x.key?.toString() ?? null, x.value.toString()]),
    [
      ["", "hi"],
      [null, "there"],
    ],
  );
});

test("a gzip batch: attributes say gzip, the records section is one gzip stream, and it decodes back", () => {
  const records = [
    { key: Buffer.alloc(0), value: Buffer.from("hi") },
    { key: null, value: Buffer.from("x".repeat(5000)) },
  ];
  const batch = encodeBatch(3n, records, 0n, "gzip");
  const r = new Reader(batch);
  assert.equal(r.i64(), 3n);
  assert.equal(r.i32(), batch.length - 12);
  r.i32();
  r.i8();
  assert.equal(r.u32(), crc32c(batch.subarray(21)));
  assert.equal(r.i16(), 1); // attributes: gzip
  assert.equal(r.i32(), 1); // last offset delta
  const section = batch.subarray(12 + 45);
  assert.equal(section.subarray(0, 2).toString("hex"), "1f8b", "gzip magic");
  // The uncompressed section is exactly what an uncompressed batch carries.
  assert.deepEqual(gunzipSync(section), encodeBatch(3n, records).subarray(12 + 45));
  assert.ok(batch.length < 200, "compressed");
  const back = decodeBatchList(new Reader(batch), batch.length);
  assert.deepEqual(
    back.map((b) => b.map((x) => [x.key?.toString() ?? null, x.value.toString()])),
    [
      [
        ["", "hi"],
        [null, "x".repeat(5000)],
      ],
    ],
  );
});

test("batches decode one by one, and an unsupported compression is refused", () => {
  const a = encodeBatch(0n, [{ key: null, value: Buffer.from("a") }]);
  const b = encodeBatch(1n, [{ key: null, value: Buffer.from("b") }], 0n, "gzip");
  const both = Buffer.concat([a, b]);
  assert.deepEqual(
    decodeBatchList(new Reader(both), both.length).map((x) => x.map((y) => y.value.toString())),
    [["a"], ["b"]],
  );
  const snappy = Buffer.from(a);
  snappy.writeInt16BE(2, 21);
  assert.throws(() => decodeBatches(new Reader(snappy), snappy.length), /compression 2 is not supported/);
});
