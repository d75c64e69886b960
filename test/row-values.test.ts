import assert from "node:assert/strict";
import { test } from "node:test";
import { formatLsn } from "../src/lsn.js";
import { describeDbError, hideRowValues } from "../src/row-values.js";

test("hideRowValues removes the values PostgreSQL's messages and details carry, keeping names", () => {
  const cases: [string, string][] = [
    ["Failing row contains (5, poison, null).", "Failing row contains (…)."],
    ["Key (id)=(5) already exists.", "Key (id)=(…) already exists."],
    [
      'Key (a, b)=(1, x) is not present in table "parent".',
      'Key (a, b)=(…) is not present in table "parent".',
    ],
    [
      'Key (id)=(7) is still referenced from table "child".',
      'Key (id)=(…) is still referenced from table "child".',
    ],
    [
      "Key (r)=([1,3)) conflicts with existing key (r)=([2,4)).",
      "Key (r)=(…) conflicts with existing key (r)=(…).",
    ],
    ['invalid input syntax for type integer: "abc"', 'invalid input syntax for type integer: "…"'],
    [
      'offset 3, table public.t: insert failed: invalid input value for enum mood: "grumpy" (SQLSTATE 22P02)',
      'offset 3, table public.t: insert failed: invalid input value for enum mood: "…" (SQLSTATE 22P02)',
    ],
    ['value "99999999999" is out of range for type integer', 'value "…" is out of range for type integer'],
    // Names stay.
    [
      'new row for relation "items" violates check constraint "no_poison"',
      'new row for relation "items" violates check constraint "no_poison"',
    ],
    [
      'null value in column "w" of relation "items" violates not-null constraint',
      'null value in column "w" of relation "items" violates not-null constraint',
    ],
  ];
  for (const [text, hidden] of cases) assert.equal(hideRowValues(text), hidden);
});

test("describeDbError keeps the SQLSTATE and shows the detail's values only with LOG_ROW_VALUES=true", () => {
  const e = Object.assign(new Error('duplicate key value violates unique constraint "t_pkey"'), {
    code: "23505",
    detail: "Key (id)=(5) already exists.",
  });
  assert.equal(
    describeDbError(e, {}),
    'duplicate key value violates unique constraint "t_pkey" (SQLSTATE 23505); Key (id)=(…) already exists.',
  );
  assert.equal(
    describeDbError(e, { LOG_ROW_VALUES: "true" }),
    'duplicate key value violates unique constraint "t_pkey" (SQLSTATE 23505); Key (id)=(5) already exists.',
  );
});

test("LSNs print as PostgreSQL prints pg_lsn", () => {
  assert.equal(formatLsn(0n), "0/0");
  assert.equal(formatLsn(23803720n), "0/16B3748");
  assert.equal(formatLsn(0x1_0000_00ffn), "1/FF");
  assert.equal(formatLsn(0xffffffff_ffffffffn), "FFFFFFFF/FFFFFFFF");
});
