import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FileSource } from "../src/source/file.js";
import type { ReadOptions } from "../src/source/source.js";

// The file source alone, with read sizes that put line ends, CRLFs and multi-byte characters across
// chunk boundaries. (Integration with real WAL and a target: file-source.test.ts.)

const CHUNKS = [1, 2, 3, 5, 7, 64, 1 << 20];

function file(content: Buffer | string): string {
  const path = join(mkdtempSync(join(tmpdir(), "fps-unit-")), "t.jsonl");
  writeFileSync(path, content);
  return path;
}

async function all(src: FileSource, from = 0n, opts: ReadOptions = {}) {
  const out: { offset: bigint; value: string; end: number | undefined }[] = [];
  for await (const run of src.read(from, opts))
    for (const r of run) out.push({ offset: r.offset, value: r.value, end: r.end });
  return out;
}

const lines = ['{"a":"é€𝄞"}', "", "x\ry", "crlf", "\r", "last"];
// "crlf" and "\r" end with CRLF, so the second is an empty value; the last line has no LF.
const content = `${lines[0]}\n${lines[1]}\n${lines[2]}\n${lines[3]}\r\n${lines[4]}\n${lines[5]}`;

test("records split on LF only, CRLF tolerated, raw CR kept, unterminated last line left", async () => {
  const path = file(content);
  const bytes = Buffer.from(content);
  const ends: number[] = [];
  for (let i = bytes.indexOf(10); i !== -1; i = bytes.indexOf(10, i + 1)) ends.push(i + 1);
  for (const chunk of CHUNKS) {
    const got = await all(new FileSource(path, chunk));
    assert.deepEqual(
      got.map((r) => r.value),
      ['{"a":"é€𝄞"}', "", "x\ry", "crlf", ""],
      `chunk ${chunk}`,
    );
    assert.deepEqual(
      got.map((r) => r.offset),
      [0n, 1n, 2n, 3n, 4n],
    );
    assert.deepEqual(
      got.map((r) => r.end),
      ends,
      `chunk ${chunk}: end positions`,
    );
    for (const from of [0n, 2n, 4n, 5n, 9n]) {
      const part = await all(new FileSource(path, chunk), from);
      assert.deepEqual(part, got.slice(Number(from)), `chunk ${chunk}, from ${from}`);
    }
    const s = new FileSource(path, chunk);
    for await (const _ of s.read(1n)) break;
    assert.equal(await s.endOffset(), 5n, "the unterminated line is not counted");
  }
});

test("a stored position is used when it is a line start; otherwise the file is scanned from the top", async () => {
  const path = file(content);
  const bytes = Buffer.from(content);
  const at3 = bytes.indexOf("crlf");
  for (const chunk of CHUNKS) {
    const want = (await all(new FileSource(path, chunk))).slice(3);
    // Right, for the offset itself and for the one before it (the fingerprint read).
    assert.deepEqual(
      await all(new FileSource(path, chunk), 3n, { hint: { offset: 3n, position: BigInt(at3) } }),
      want,
    );
    const before = await all(new FileSource(path, chunk), 2n, {
      hint: { offset: 3n, position: BigInt(at3) },
    });
    assert.equal(before[0]?.value, "x\ry");
    // Wrong (not after an LF, past the end): ignored.
    for (const position of [BigInt(at3 + 1), 10_000n])
      assert.deepEqual(await all(new FileSource(path, chunk), 3n, { hint: { offset: 3n, position } }), want);
  }
  // A position that is a line start but of another offset is trusted: the fingerprint check catches it.
  const moved = await all(new FileSource(path), 3n, {
    hint: { offset: 3n, position: BigInt(bytes.indexOf("x")) },
  });
  assert.equal(moved[0]?.value, "x\ry");
});

test("invalid UTF-8: the record is handed over flagged with an error naming its offset, and reading goes on", async () => {
  const bad = Buffer.concat([
    Buffer.from("ok\nfine\n"),
    Buffer.from([0x61, 0xe2, 0x82]),
    Buffer.from("\nafter\n"),
  ]);
  const path = file(bad);
  for (const chunk of CHUNKS) {
    const seen: [string, string | undefined][] = [];
    for await (const run of new FileSource(path, chunk).read(0n))
      for (const r of run) seen.push([r.value, r.invalid?.message]);
    assert.deepEqual(
      seen,
      [
        ["ok", undefined],
        ["fine", undefined],
        ["a\ufffd", `record at offset 2: not valid UTF-8 (in ${path})`],
        ["after", undefined],
      ],
      `chunk ${chunk}`,
    );
  }
  // A BOM is kept (it is part of the bytes), not silently dropped.
  const bom = file(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("v\n")]));
  assert.deepEqual(
    (await all(new FileSource(bom))).map((r) => r.value),
    ["\ufeffv"],
  );
});
