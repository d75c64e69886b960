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

test("chunks of ASCII only and chunks with other characters read alike: values, offsets, byte positions", async () => {
  // Mostly ASCII lines with a few multi-byte, CRLF and invalid ones, so that at each read size some
  // chunks are pure ASCII (read without UTF-8 decoding) and some are not.
  const parts: Buffer[] = [];
  for (let i = 0; i < 600; i++) {
    const text = i % 97 === 5 ? `{"n":${i},"s":"ünï ✓ 🐘"}` : `{"n":${i},"s":"${"x".repeat(i % 40)}"}`;
    if (i % 151 === 7) parts.push(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), Buffer.from("\n"));
    else parts.push(Buffer.from(text), Buffer.from(i % 50 === 3 ? "\r\n" : "\n"));
  }
  const bytes = Buffer.concat(parts);
  const path = file(bytes);
  const want: { value: string; end: number; invalid: boolean }[] = [];
  for (let start = 0, lf = bytes.indexOf(10); lf !== -1; start = lf + 1, lf = bytes.indexOf(10, start)) {
    let line = bytes.subarray(start, lf);
    if (line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
    const invalid = !Buffer.from(line.toString("utf8"), "utf8").equals(line);
    want.push({ value: line.toString("utf8"), end: lf + 1, invalid });
  }
  assert.ok(want.some((w) => w.invalid) && want.some((w) => /🐘/.test(w.value)));
  for (const chunk of [64, 1000, 4096, 1 << 20]) {
    const got: { value: string; end: number; invalid: boolean }[] = [];
    let next = 0n;
    for await (const run of new FileSource(path, chunk).read(0n))
      for (const r of run) {
        assert.equal(r.offset, next++, `chunk ${chunk}`);
        got.push({ value: r.value, end: r.end as number, invalid: r.invalid !== undefined });
      }
    assert.deepEqual(got, want, `chunk ${chunk}`);
  }
});

test("the lag's count goes on from where an earlier count ended, and only from a line start", async () => {
  const path = file("a\nbb\nccc\npart");
  const first = new FileSource(path);
  assert.equal(await first.endOffset(), 3n);
  // After the last complete line, not at the end of the file: "part" is not a record yet.
  assert.deepEqual(first.endHint(), { offset: 3n, position: 9n });
  writeFileSync(path, "a\nbb\nccc\npartial done\nnext\n");
  const later = new FileSource(path);
  assert.equal(await later.endOffset({ offset: 3n, position: 9n }), 5n);
  assert.deepEqual(later.endHint(), { offset: 5n, position: 27n });
  // A hint that does not start a line, or lies past the end, is not trusted: counted from the top.
  const wrong = [
    { offset: 3n, position: 8n },
    { offset: 99n, position: 400n },
  ];
  for (const hint of wrong) assert.equal(await new FileSource(path).endOffset(hint), 5n);
  // One that does start a line is believed: the count is the hint's plus the lines after it.
  assert.equal(await new FileSource(path).endOffset({ offset: 40n, position: 2n }), 44n);
  // Behind where reading already got, the read position counts instead.
  const reader = new FileSource(path);
  for await (const _ of reader.read(2n)) break;
  assert.equal(await reader.endOffset({ offset: 1n, position: 2n }), 5n);
});
