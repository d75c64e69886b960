import assert from "node:assert/strict";
import { test } from "node:test";
import { copyChunks, copyValue, textArray } from "../src/apply/encode.js";
import type { Cell } from "../src/apply/statements.js";

test("COPY text: every character COPY gives a meaning is escaped, nothing else", () => {
  assert.equal(copyValue("plain"), "plain");
  assert.equal(copyValue("a\\b"), "a\\\\b");
  assert.equal(copyValue("tab\there"), "tab\\there");
  assert.equal(copyValue("line\nbreak"), "line\\nbreak");
  assert.equal(copyValue("cr\rlf\r\n"), "cr\\rlf\\r\\n");
  assert.equal(copyValue("\\\\\t\n\r"), "\\\\\\\\\\t\\n\\r");
  // What would otherwise read as NULL, end of data or an octal escape stays literal text.
  assert.equal(copyValue("\\N"), "\\\\N");
  assert.equal(copyValue("\\."), "\\\\.");
  assert.equal(copyValue("\\101"), "\\\\101");
  assert.equal(copyValue("\\x00ff"), "\\\\x00ff");
});

test("COPY text: NULL is \\N, the empty string is an empty field", () => {
  assert.equal(copyValue(null), "\\N");
  assert.equal(copyValue(""), "");
  assert.equal(copyValue("N"), "N");
  assert.equal(copyValue("NULL"), "NULL");
});

test("COPY text: multi-byte characters pass through and are sent as UTF-8", () => {
  assert.equal(copyValue("ünïcødé ✓ 🐘"), "ünïcødé ✓ 🐘");
  const [chunk, ...rest] = [...copyChunks([["é\t🐘", null, ""]], [0, 1, 2])];
  assert.equal(rest.length, 0);
  assert.deepEqual(chunk, Buffer.from("é\\t🐘\t\\N\t\n", "utf8"));
});

test("COPY text: lines carry the chosen cells in order; chunks end on whole lines", () => {
  const rows: Cell[][] = [
    ["1", "skip", "a"],
    ["2", "skip", null],
  ];
  assert.equal(Buffer.concat([...copyChunks(rows, [2, 0])]).toString(), "a\t1\n\\N\t2\n");
  const many: Cell[][] = Array.from({ length: 20000 }, (_, i) => [String(i), "x".repeat(40)]);
  const chunks = [...copyChunks(many, [0, 1])];
  assert.ok(chunks.length > 1, "large inputs are split");
  for (const c of chunks) assert.equal(c[c.length - 1], 0x0a);
  const lines = Buffer.concat(chunks).toString().split("\n");
  assert.equal(lines.length, 20001);
  assert.equal(lines[19999], `19999\t${"x".repeat(40)}`);
});

/** Reads a one-dimensional binary text[] back (the server's array_recv, for the test). */
function readTextArray(buf: Buffer): { elemType: number; hasNull: number; values: Cell[] } {
  const ndim = buf.readInt32BE(0);
  const hasNull = buf.readInt32BE(4);
  const elemType = buf.readInt32BE(8);
  if (ndim === 0) {
    assert.equal(buf.length, 12);
    return { elemType, hasNull, values: [] };
  }
  assert.equal(ndim, 1);
  const n = buf.readInt32BE(12);
  assert.equal(buf.readInt32BE(16), 1, "lower bound 1");
  const values: Cell[] = [];
  let off = 20;
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(off);
    off += 4;
    if (len === -1) values.push(null);
    else {
      values.push(buf.toString("utf8", off, off + len));
      off += len;
    }
  }
  assert.equal(off, buf.length, "no trailing bytes");
  return { elemType, hasNull, values };
}

test("binary text[]: one cell of every row, NULLs flagged, lengths in UTF-8 bytes", () => {
  const rows: Cell[][] = [
    ["1", "a,b"],
    ["2", null],
    ["3", ""],
    ["4", 'quote " brace { } bs \\ 🐘'],
  ];
  assert.deepEqual(readTextArray(textArray(rows, 1)), {
    elemType: 25,
    hasNull: 1,
    values: ["a,b", null, "", 'quote " brace { } bs \\ 🐘'],
  });
  assert.deepEqual(readTextArray(textArray(rows, 0)), {
    elemType: 25,
    hasNull: 0,
    values: ["1", "2", "3", "4"],
  });
  assert.deepEqual(readTextArray(textArray([], 0)), { elemType: 25, hasNull: 0, values: [] });
});
