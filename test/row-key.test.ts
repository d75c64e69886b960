import assert from "node:assert/strict";
import { test } from "node:test";
import { keyString, rowKey } from "../src/apply/plan.js";
import { UNCHANGED, type Value } from "../src/events/types.js";

/** Values chosen to look like the encoding's own parts: lengths, colons, "N", "U", empty text. */
const ATOMS: Value[] = [
  null,
  UNCHANGED,
  "",
  "N",
  "U",
  ":",
  "0:",
  "1:",
  "1:a",
  "a",
  "2:ab",
  "N1:a",
  "10:",
  "12",
  "1:N",
  "é",
  "\u0000",
  "a:b",
];

/** Every array of up to `width` atoms. */
function* rows(width: number): Generator<Value[]> {
  yield [];
  if (width === 0) return;
  for (const shorter of rows(width - 1)) {
    if (shorter.length !== width - 1) continue;
    for (const a of ATOMS) yield [...shorter, a];
  }
}

const same = (a: Value[], b: Value[]) => a.length === b.length && a.every((v, i) => v === b[i]);

test("rowKey: distinct rows of any width never share a key", () => {
  const seen = new Map<string, Value[]>();
  let n = 0;
  for (let w = 0; w <= 3; w++)
    for (const r of rows(w)) {
      if (r.length !== w) continue;
      const k = rowKey(r);
      const before = seen.get(k);
      if (before) assert.ok(same(before, r), `${String(before)} and ${String(r)} share the key ${k}`);
      seen.set(k, r);
      n++;
    }
  assert.equal(seen.size, n);
  assert.equal(n, 1 + ATOMS.length + ATOMS.length ** 2 + ATOMS.length ** 3);
});

test("rowKey: NULL, unchanged TOAST and empty text are three different things", () => {
  const keys = [rowKey([null]), rowKey([UNCHANGED]), rowKey([""]), rowKey(["N"]), rowKey(["U"])];
  assert.equal(new Set(keys).size, keys.length);
  assert.notEqual(rowKey(["", null]), rowKey([null, ""]));
  assert.notEqual(rowKey(["a", ""]), rowKey(["", "a"]));
});

test("rowKey: a separator inside a value cannot shift the split between columns", () => {
  assert.notEqual(rowKey(["1:a", "b"]), rowKey(["1", "a1:b"]));
  assert.notEqual(rowKey(["ab", "c"]), rowKey(["a", "bc"]));
  assert.notEqual(rowKey(["1:a1:b"]), rowKey(["a", "b"]));
  assert.equal(rowKey(["ab", "c"]), rowKey(["ab", "c"]));
});

test("keyString: keys of one width (no NULL, no unchanged value) never collide", () => {
  const texts = ATOMS.filter((a): a is string => typeof a === "string");
  for (const w of [1, 2, 3]) {
    const seen = new Map<string, Value[]>();
    let n = 0;
    const build = (prefix: Value[]): void => {
      if (prefix.length === w) {
        const k = keyString(prefix);
        const before = seen.get(k);
        if (before) assert.ok(same(before, prefix), `${String(before)} and ${String(prefix)} share ${k}`);
        seen.set(k, prefix);
        n++;
        return;
      }
      for (const t of texts) build([...prefix, t]);
    };
    build([]);
    assert.equal(seen.size, n);
    assert.equal(n, texts.length ** w);
  }
  // A one-column key is its own text; a wider one the length-prefixed form.
  assert.equal(keyString(["42"]), "42");
  assert.equal(keyString(["4", "2"]), "1:41:2");
});
