import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import { configFromEnv, type SinkConfig, validateConnectorConfig } from "../src/config.js";
import { decodeRecordFast } from "../src/events/fast-decode.js";
import { silentLogger } from "../src/log.js";
import { type RunSummary, runOnce } from "../src/run.js";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair, storedOffset } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";
import {
  captureWithJunk,
  checkDetail,
  haltMessage,
  junkDetail,
  rows,
  type Txn,
  txnInserting,
} from "./support/poison.js";

/**
 * Segmented, streamed apply: a batch is planned and sent in segments of about segment_bytes while
 * the rest is read, all in the batch's one target transaction. These tests run real WAL through it
 * at segment_bytes 1 (every source transaction its own segment), a few hundred bytes and the
 * default (4 MiB: one segment per batch here), at several max_records, and check the target, the
 * stored offset and the summary's `segments`; and that anything unusual (poison, an order-sensitive
 * constraint, skip, a crash) leaves the target and offset exactly as the unsegmented path does.
 */

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

/** Closes a pair and frees its replication slot: this file makes more pairs than the server has slots. */
async function closePair(p: Pair): Promise<void> {
  await p.source.query(
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()",
  );
  await p.close();
}

/** Why these tests cannot run on this tree, or null when the feature is there. */
function featureMissing(): string | null {
  try {
    validateConnectorConfig(
      {
        name: "x",
        type: "postgres-sink",
        topic: "t",
        parameters: { url: "postgres://h/d", segment_bytes: 1 },
      },
      { env: {} },
    );
    return null;
  } catch (e) {
    return `needs segmented, streamed apply (branch i9-stream): ${(e as Error).message.split(" (known:")[0]}`;
  }
}
const MISSING = featureMissing();
const skip = MISSING ?? false;

/** null: the default (parameter unset). */
const SEGMENT_BYTES: (number | null)[] = [1, 300, null];
const segLabel = (b: number | null) => `segment_bytes ${b ?? "default"}`;
const maxLabel = (m: number | null) => `max_records ${m ?? "unset"}`;

interface Settings {
  segmentBytes: number | null;
  maxRecords?: number | null;
  onError?: "halt" | "dead_letter";
  url?: string;
}

/** The run's config built the way a user sets it: parameters, validated. */
function configOf(p: Pair, o: Settings): SinkConfig {
  const base = p.config();
  const parameters: Record<string, unknown> = { url: o.url ?? p.targetUrl, source: `file:${p.topicFile}` };
  if (o.maxRecords != null) parameters.max_records = o.maxRecords;
  if (o.segmentBytes !== null) parameters.segment_bytes = o.segmentBytes;
  if (o.onError) parameters.on_error = o.onError;
  return validateConnectorConfig(
    { name: base.name, type: "postgres-sink", topic: base.topic, parameters },
    { env: {} },
  );
}

/** YAML for the CLI, with the same parameters. */
function yamlOf(p: Pair, o: Settings): string {
  const base = p.config();
  const lines = [
    `name: ${base.name}`,
    "type: postgres-sink",
    `topic: ${base.topic}`,
    "parameters:",
    `  url: ${o.url ?? p.targetUrl}`,
    `  source: file:${p.topicFile}`,
  ];
  if (o.maxRecords != null) lines.push(`  max_records: ${o.maxRecords}`);
  if (o.segmentBytes !== null) lines.push(`  segment_bytes: ${o.segmentBytes}`);
  if (o.onError) lines.push(`  on_error: ${o.onError}`);
  return writeConfig(dirname(p.topicFile), `${lines.join("\n")}\n`);
}

function segmentsOf(s: RunSummary): number {
  assert.equal(typeof s.segments, "number", "the summary has segments");
  return s.segments;
}

interface Ran {
  s: RunSummary;
  /** Offsets the run consumed: from..to-1. */
  from: bigint;
  to: bigint;
}

async function runAll(p: Pair, o: Settings): Promise<Ran[]> {
  const config = configOf(p, o);
  let from = BigInt((await storedOffset(p, config.name)) ?? "0");
  const out: Ran[] = [];
  for (let i = 0; i < 10_000; i++) {
    const s = await runOnce(config, { log: silentLogger });
    const to = BigInt(s.next_offset);
    out.push({ s, from, to });
    from = to;
    if (s.records === 0) return out;
  }
  throw new Error("runs never went idle");
}

function isCommit(line: string): boolean {
  try {
    return decodeRecordFast(0n, line).kind === "commit";
  } catch {
    return false;
  }
}

/**
 * Segments a batch of these records makes at `segmentBytes`, counting a record's size by `size` and
 * checking the threshold before or after adding the COMMIT that may end the segment.
 */
function simulate(
  lines: string[],
  segmentBytes: number,
  size: (l: string) => number,
  inclusive: boolean,
): number {
  let n = 0;
  let acc = 0;
  for (const line of lines) {
    const commit = isCommit(line);
    if (!commit || inclusive) acc += size(line);
    if (commit && acc >= segmentBytes) {
      n++;
      acc = 0;
    } else if (commit && !inclusive) acc += size(line);
  }
  return acc > 0 ? n + 1 : n;
}

/**
 * Each applied run made as many segments as its records allow: at least as many as the smallest
 * reading of "bytes read" gives, at most as many as the largest (UTF-8 bytes and a newline, the
 * COMMIT counted); an idle run none. Runs that fell back to the unsegmented path are not counted.
 */
function assertSegments(p: Pair, runs: Ran[], segmentBytes: number | null): void {
  const sb = segmentBytes ?? 4 * 1024 * 1024;
  for (const { s, from, to } of runs) {
    const n = segmentsOf(s);
    if (s.records === 0) {
      assert.equal(n, 0, "an idle run applies no segment");
      continue;
    }
    if (s.exact_order || s.narrowed || s.dead_letters > 0 || s.skipped_transactions > 0) continue;
    const lines = p.records.slice(Number(from), Number(to));
    const least = simulate(lines, sb, (l) => l.length, false);
    const most = simulate(lines, sb, (l) => Buffer.byteLength(l) + 1, true);
    assert.ok(
      n >= least && n <= most,
      `offsets ${from}..${to - 1n} at ${segLabel(segmentBytes)}: ${n} segments, expected ${least}..${most}`,
    );
    if (segmentBytes === 1) assert.equal(n, s.transactions, "every source transaction is a segment");
    if (segmentBytes === null) assert.equal(n, 1, "a small batch is one segment by default");
  }
}

/** Several segments in one run, when one run took many transactions at a small segment size. */
function assertSomeRunStreamed(runs: Ran[], segmentBytes: number | null, maxRecords: number | null): void {
  if (segmentBytes === null || maxRecords !== null) return;
  assert.ok(
    runs.some((r) => segmentsOf(r.s) > 1),
    `some run applied several segments: ${runs.map((r) => segmentsOf(r.s)).join(",")}`,
  );
}

async function finish(p: Pair, o: Settings, tables: string[]): Promise<Ran[]> {
  await p.capture();
  const runs = await runAll(p, o);
  await assertSameTables(p, tables);
  assert.equal(await storedOffset(p, p.config().name), String(p.records.length), "offset at the end");
  assertSegments(p, runs, o.segmentBytes);
  assertSomeRunStreamed(runs, o.segmentBytes, o.maxRecords ?? null);
  for (const r of runs) assert.equal(r.s.exact_order, false, "set-wise, no fallback needed");
  return runs;
}

test("segment_bytes: a parameter and SEGMENT_BYTES, an integer >= 1", { skip }, () => {
  const doc = (v: unknown) => ({
    name: "x",
    type: "postgres-sink",
    topic: "t",
    parameters: { url: "postgres://h/d", segment_bytes: v },
  });
  const fromParam = validateConnectorConfig(doc(300), { env: {} });
  const fromEnv = configFromEnv({
    FLUVIO_TOPIC: "t",
    FLUVIO_PG_DATABASE_URL: "postgres://h/d",
    SEGMENT_BYTES: "300",
  });
  const unset = validateConnectorConfig(doc(undefined), { env: {} });
  assert.equal(fromParam.segmentBytes, 300);
  assert.equal(fromEnv.segmentBytes, 300);
  assert.equal(unset.segmentBytes, 4 * 1024 * 1024);
  for (const bad of [0, -1, 1.5, "x"])
    assert.throws(() => validateConnectorConfig(doc(bad), { env: {} }), {
      message: /parameters\.segment_bytes must be an integer >= 1/,
    });
});

// 1. A mixed workload in one run.

const MIXED_TABLES = ["acct", "dup", "pair"];

async function mixedWorkload(p: Pair): Promise<void> {
  await p.sql(`CREATE TABLE acct (id bigint PRIMARY KEY, name text, balance numeric(20,4), big bigint,
                 at timestamptz, doc text);
               ALTER TABLE acct ALTER COLUMN doc SET STORAGE EXTERNAL`);
  await p.sql("CREATE TABLE dup (a int, b text); ALTER TABLE dup REPLICA IDENTITY FULL");
  await p.sql("CREATE TABLE pair (k1 text, k2 int, v jsonb, PRIMARY KEY (k1, k2))");
  await p.sql(`INSERT INTO acct VALUES
    (1, 'plain', 10.5, 0, '2024-01-01 00:00:00+00', NULL),
    (2, $$it's "quoted" \\ back\tslash$$, NULL, -9223372036854775808, NULL, repeat(md5('a'), 300)),
    (3, NULL, -0.0001, 9223372036854775807, 'infinity', repeat(md5('b'), 300)),
    (9007199254740993, 'past 2^53', 1e15, 9007199254740993, '1999-12-31 23:59:59.999999+00', 'small')`);
  await p.sql(`INSERT INTO dup VALUES (1, 'x'), (1, 'x'), (2, NULL), (3, 'it''s')`);
  await p.sql(`INSERT INTO pair VALUES ('a', 1, '{"k": [1, 2]}'), ('a', 2, 'null'), ('b''q', 1, NULL)`);
  // The TOASTed doc arrives as UnchangedToast in these: the target keeps what an earlier segment wrote.
  await p.sql("UPDATE acct SET balance = balance + 1 WHERE id = 2");
  await p.sql("UPDATE acct SET name = 'renamed \"again\"' WHERE id = 3");
  await p.sql("UPDATE acct SET big = big - 1 WHERE id = 3");
  await p.sql("UPDATE acct SET big = -9223372036854775807 WHERE id = 1");
  await p.sql(
    "WITH one AS (SELECT ctid FROM dup WHERE a = 1 LIMIT 1) UPDATE dup SET b = 'y' WHERE ctid IN (SELECT ctid FROM one)",
  );
  await p.sql(
    "WITH one AS (SELECT ctid FROM dup WHERE a = 1 AND b = 'x' LIMIT 1) DELETE FROM dup WHERE ctid IN (SELECT ctid FROM one)",
  );
  await p.sql("INSERT INTO dup VALUES (2, NULL)");
  await p.sql("UPDATE dup SET b = 'was null' WHERE a = 2 AND b IS NULL");
  await p.sql(`BEGIN; UPDATE pair SET v = '{"moved": true}' WHERE k1 = 'a' AND k2 = 1;
               DELETE FROM pair WHERE k1 = 'a' AND k2 = 2; INSERT INTO acct VALUES (4, 'in a mixed txn', 0, 4, now(), NULL);
               UPDATE acct SET doc = NULL WHERE id = 9007199254740993; COMMIT`);
  await p.sql("DELETE FROM acct WHERE id = 3");
  await p.sql("INSERT INTO acct VALUES (3, 'back', 3, 3, NULL, repeat(md5('c'), 300))");
  await p.sql("UPDATE pair SET k2 = 7 WHERE k1 = 'b''q'");
  await p.sql(
    "INSERT INTO pair SELECT 'g' || g, g, jsonb_build_object('g', g) FROM generate_series(1, 20) g",
  );
  await p.sql("DELETE FROM pair WHERE k1 LIKE 'g%' AND k2 % 3 = 0");
  await p.sql("UPDATE acct SET balance = NULL, at = NULL WHERE id = 1");
  await p.sql("DELETE FROM dup WHERE a = 3");
}

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`mixed workload, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exact, offset at the end`, {
      skip,
    }, async () => {
      const p = await makePair(server, `mix${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await mixedWorkload(p);
        const lines = await p.wal_take_lines();
        assert.ok(
          lines.some((l) => l.includes('"UnchangedToast"')),
          "the capture has unchanged TOAST values",
        );
        appendFileSync(p.topicFile, `${lines.join("\n")}\n`);
        p.records.push(...lines);
        const runs = await finish(p, { segmentBytes, maxRecords }, MIXED_TABLES);
        if (maxRecords === null) assert.equal(runs.length, 2, "one run and an idle one");
      } finally {
        await closePair(p);
      }
    });

// 2. Collapsing across segments.

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`one row inserted, updated, re-keyed, deleted and re-inserted in later segments, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}`, {
      skip,
    }, async () => {
      const p = await makePair(server, `col${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await p.sql("CREATE TABLE r (id int PRIMARY KEY, v text, n int)");
        await p.sql("CREATE TABLE other (id int PRIMARY KEY, pad text)");
        const filler = (i: number) => p.sql("INSERT INTO other VALUES ($1, repeat('f', 80))", [i]);
        await p.sql("INSERT INTO r VALUES (1, 'first', 1)");
        await filler(1);
        await p.sql("UPDATE r SET v = 'second', n = 2 WHERE id = 1");
        await filler(2);
        await p.sql("UPDATE r SET id = 2, v = 'moved' WHERE id = 1");
        await filler(3);
        // The old key is free again and taken by a new row, the moved one moves on.
        await p.sql(
          "BEGIN; INSERT INTO r VALUES (1, 'new at old key', 10); UPDATE r SET id = 3 WHERE id = 2; COMMIT",
        );
        await filler(4);
        await p.sql("DELETE FROM r WHERE id = 3");
        await filler(5);
        await p.sql("INSERT INTO r VALUES (3, 're-inserted', 30)");
        await p.sql("UPDATE r SET n = NULL WHERE id = 3");
        await filler(6);
        // Keys swap through a third value over three transactions.
        await p.sql("UPDATE r SET id = 100 WHERE id = 1");
        await p.sql("UPDATE r SET id = 1 WHERE id = 3");
        await p.sql("UPDATE r SET id = 3 WHERE id = 100");
        await p.sql("DELETE FROM r WHERE id = 1");
        await p.sql("INSERT INTO r VALUES (1, 'last', 1)");
        await finish(p, { segmentBytes, maxRecords }, ["r", "other"]);
        assert.deepEqual(
          (await p.target.query("SELECT r::text AS r FROM r ORDER BY id")).rows.map((x) => x.r),
          ["(1,last,1)", '(3,"new at old key",10)'],
        );
      } finally {
        await closePair(p);
      }
    });

// 3. Schema changes mid-batch.

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`schema changes mid-batch (ADD COLUMN, RENAME COLUMN, a new table), ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}`, {
      skip,
    }, async () => {
      const p = await makePair(server, `ddl${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await p.sql("CREATE TABLE s (id int PRIMARY KEY, a text)");
        await p.sql("INSERT INTO s SELECT g, 'a' || g FROM generate_series(1, 3) g");
        await p.sql("UPDATE s SET a = 'a1 again' WHERE id = 1");
        await p.sql("ALTER TABLE s ADD COLUMN b bigint");
        await p.sql("INSERT INTO s VALUES (4, 'a4', 9223372036854775807)");
        await p.sql("UPDATE s SET b = -1 WHERE id = 2");
        await p.sql("ALTER TABLE s RENAME COLUMN a TO label");
        await p.sql("UPDATE s SET label = 'renamed' WHERE id = 3");
        await p.sql("INSERT INTO s VALUES (5, 'after rename', 5)");
        await p.sql("CREATE TABLE s2 (k text PRIMARY KEY, s_id int, at date)");
        await p.sql("INSERT INTO s2 SELECT 'k' || g, g, date '2020-02-29' + g FROM generate_series(1, 6) g");
        await p.sql("BEGIN; UPDATE s2 SET at = NULL WHERE k = 'k2'; DELETE FROM s WHERE id = 1; COMMIT");
        await p.sql("ALTER TABLE s2 ADD COLUMN note text");
        await p.sql("UPDATE s2 SET note = 'it''s new' WHERE k IN ('k1', 'k3')");
        await p.sql("ALTER TABLE s RENAME COLUMN b TO big");
        await p.sql("BEGIN; INSERT INTO s VALUES (6, 'six', 6); DELETE FROM s2 WHERE k = 'k6'; COMMIT");
        await finish(p, { segmentBytes, maxRecords }, ["s", "s2"]);
      } finally {
        await closePair(p);
      }
    });

// 4. A poison record in a late segment.

type Poison = "check" | "junk";

/**
 * t and u in sync, then many good transactions (several segments at small sizes), the bad one
 * (ids 10 and 11 in t, 10 in u; t's 11 breaks a CHECK only the target has), and a few good ones.
 */
async function poisoned(kind: Poison, name: string): Promise<{ p: Pair; bad: Txn; detail: string }> {
  const p = await makePair(server, name);
  await p.sql(
    "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE TABLE u (id int PRIMARY KEY, note text)",
  );
  await p.sql("INSERT INTO t VALUES (1, 1); INSERT INTO u VALUES (1, 'a')");
  await p.capture();
  await runAll(p, { segmentBytes: null });
  await assertSameTables(p, ["t", "u"]);
  for (let i = 20; i < 32; i++)
    await p.sql(`INSERT INTO t VALUES (${i}, ${i}); UPDATE u SET note = 'n${i}' WHERE id = 1`);
  await p.sql("DELETE FROM t WHERE id = 21");
  await p.sql(
    "BEGIN; INSERT INTO t VALUES (10, 5); INSERT INTO u VALUES (10, 'in the bad one'); INSERT INTO t VALUES (11, 500); COMMIT",
  );
  await p.sql("INSERT INTO t VALUES (3, 3)");
  await p.sql("UPDATE t SET v = 4 WHERE id = 1; DELETE FROM t WHERE id = 22");
  await p.sql("INSERT INTO u VALUES (2, 'c')");
  if (kind === "check") {
    await p.target.query("ALTER TABLE t ADD CONSTRAINT v_small CHECK (v < 100)");
    await p.capture();
    const bad = txnInserting(p.records, "11");
    return { p, bad, detail: checkDetail(bad.insertAt) };
  }
  await captureWithJunk(p);
  const bad = txnInserting(p.records, "11");
  return { p, bad, detail: junkDetail(bad.from + 1n) };
}

async function assertSameExceptBad(p: Pair): Promise<void> {
  assert.deepEqual(await rows(p.target, "t"), await rows(p.source, "t", [10, 11]), "rows of t");
  assert.deepEqual(await rows(p.target, "u"), await rows(p.source, "u", [10]), "rows of u");
}

// 1000 would read what unset reads here.
const POISON_MAX = [7, null];

for (const kind of ["check", "junk"] as Poison[])
  for (const segmentBytes of SEGMENT_BYTES)
    for (const maxRecords of POISON_MAX) {
      test(`poison (${kind}) in a late segment, on_error halt, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: nothing of the batch applied, offset kept; skip gets past it`, {
        skip,
      }, async () => {
        const name = `ph${kind}${segmentBytes ?? "d"}_${maxRecords ?? "u"}`;
        const { p, bad, detail } = await poisoned(kind, name);
        try {
          const o: Settings = { segmentBytes, maxRecords, onError: "halt" };
          const config = configOf(p, o);
          let failure: { error: Error; stored: string; target: string[][] } | null = null;
          for (let i = 0; i < 1000 && failure === null; i++) {
            const stored = (await storedOffset(p, config.name)) as string;
            const target = [await rows(p.target, "t"), await rows(p.target, "u")];
            try {
              const s = await runOnce(config, { log: silentLogger });
              assert.ok(s.records > 0, "the runs reached the bad transaction");
            } catch (e) {
              failure = { error: e as Error, stored, target };
            }
          }
          assert.ok(failure, "a run failed");
          const { error, stored, target } = failure;
          assert.equal(error.message, haltMessage(bad, detail, stored));
          if (maxRecords !== 7)
            assert.ok(BigInt(bad.from) - BigInt(stored) > 40n, "the bad transaction is late in its batch");
          assert.equal(await storedOffset(p, config.name), stored, "the stored offset is unchanged");
          assert.deepEqual(
            [await rows(p.target, "t"), await rows(p.target, "u")],
            target,
            "nothing of the batch",
          );
          await assert.rejects(runOnce(config, { log: silentLogger }), { message: error.message });

          const r = await runCli([
            "skip",
            "--config",
            yamlOf(p, o),
            "--offset",
            bad.from.toString(),
            "--reason",
            "breaks the target's v_small",
            "--yes",
          ]);
          assert.equal(r.code, 0, r.stderr);
          const out = JSON.parse(r.stdout);
          assert.deepEqual(
            [out.skipped.from, out.skipped.to, out.next_offset],
            [bad.from.toString(), bad.to.toString(), (bad.to + 1n).toString()],
          );
          // skip applied what came before the bad transaction in that batch, and nothing after it.
          assert.equal(await storedOffset(p, config.name), (bad.to + 1n).toString());
          const rest = await runAll(p, o);
          assert.equal(
            rest.reduce((n, x) => n + x.s.dead_letters, 0),
            0,
          );
          assertSegments(p, rest, segmentBytes);
          await assertSameExceptBad(p);
          assert.equal(await storedOffset(p, config.name), String(p.records.length));
        } finally {
          await closePair(p);
        }
      });

      test(`poison (${kind}) in a late segment, on_error dead_letter, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exactly that transaction set aside, the rest exact`, {
        skip,
      }, async () => {
        const name = `pd${kind}${segmentBytes ?? "d"}_${maxRecords ?? "u"}`;
        const { p, bad, detail } = await poisoned(kind, name);
        try {
          const runs = await runAll(p, { segmentBytes, maxRecords, onError: "dead_letter" });
          const aside = runs.flatMap((r) => r.s.dead_lettered);
          assert.deepEqual(
            aside.map((d) => [d.from, d.to, d.lsn, d.tables, d.error]),
            [[bad.from.toString(), bad.to.toString(), bad.lsn, ["public.t", "public.u"], detail]],
          );
          const stored = await p.target.query(
            "SELECT from_offset::text AS f, to_offset::text AS t FROM fluvio_sink.dead_letter",
          );
          assert.deepEqual(stored.rows, [{ f: bad.from.toString(), t: bad.to.toString() }]);
          assert.equal(await storedOffset(p, p.config().name), String(p.records.length));
          await assertSameExceptBad(p);
          assertSegments(p, runs, segmentBytes);
        } finally {
          await closePair(p);
        }
      });
    }

// 4b. A deferred constraint broken in an early segment: found only when the batch ends.

const DEFERRED_SOURCE = `
  CREATE TABLE parent (id int PRIMARY KEY, name text);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL)`;
const DEFERRED_TARGET = `
  CREATE TABLE parent (id int PRIMARY KEY, name text);
  CREATE TABLE child (id int PRIMARY KEY,
    parent_id int NOT NULL REFERENCES parent DEFERRABLE INITIALLY DEFERRED)`;

for (const onError of ["halt", "dead_letter"] as const)
  for (const segmentBytes of SEGMENT_BYTES)
    test(`a DEFERRABLE foreign key only the target has, broken in an early segment, on_error ${onError}, ${segLabel(segmentBytes)}: that transaction is named, the rest exact`, {
      skip,
    }, async () => {
      const p = await makePair(server, `defer${onError === "halt" ? "h" : "d"}${segmentBytes ?? "d"}`);
      try {
        await p.sql(DEFERRED_SOURCE);
        await p.target.query(DEFERRED_TARGET);
        const url = await limitedLogin(p, `seg_defer_${onError}_${segmentBytes ?? "d"}`);
        await p.sql("INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 3) g");
        await p.capture();
        await runAll(p, { segmentBytes: null, url });
        await p.sql("INSERT INTO child VALUES (1, 1)");
        // The bad one: child 500's parent 99 is on neither side (the source has no foreign key).
        await p.sql("BEGIN; INSERT INTO child VALUES (500, 99); INSERT INTO parent VALUES (4, 'p4'); COMMIT");
        for (let i = 10; i < 22; i++) await p.sql(`INSERT INTO child VALUES (${i}, ${1 + (i % 3)})`);
        await p.sql("DELETE FROM child WHERE id = 1; UPDATE parent SET name = 'renamed' WHERE id = 2");
        await p.capture();
        const bad = txnInserting(p.records, "500");
        const stored = (await storedOffset(p, p.config().name)) as string;
        // Found by SET CONSTRAINTS ALL IMMEDIATE, which names no offset: the narrowing names the transaction.
        const detail =
          'insert or update on table "child" violates foreign key constraint "child_parent_id_fkey"';
        if (onError === "halt") {
          const before = [await rows(p.target, "parent"), await rows(p.target, "child")];
          const config = configOf(p, { segmentBytes, onError, url });
          await assert.rejects(runOnce(config, { log: silentLogger }), {
            message: haltMessage(bad, detail, stored, "public.child, public.parent"),
          });
          assert.equal(await storedOffset(p, config.name), stored);
          assert.deepEqual([await rows(p.target, "parent"), await rows(p.target, "child")], before);
          return;
        }
        const runs = await runAll(p, { segmentBytes, onError, url });
        const aside = runs.flatMap((r) => r.s.dead_lettered);
        assert.deepEqual(
          aside.map((d) => [d.from, d.to, d.lsn, d.tables, d.error]),
          [[bad.from.toString(), bad.to.toString(), bad.lsn, ["public.child", "public.parent"], detail]],
        );
        assert.deepEqual(await rows(p.target, "parent"), await rows(p.source, "parent", [4]));
        assert.deepEqual(await rows(p.target, "child"), await rows(p.source, "child", [500]));
        assert.equal(await storedOffset(p, p.config().name), String(p.records.length));
      } finally {
        await closePair(p);
      }
    });

// 5. An order-sensitive UNIQUE swap in a later segment.

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`a UNIQUE swap in one source transaction, in a later segment, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exact by the exact-order fallback`, {
      skip,
    }, async () => {
      const p = await makePair(server, `swap${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        const ddl = "CREATE TABLE k (id int PRIMARY KEY, code text NOT NULL UNIQUE, n int)";
        await p.sql(ddl);
        await p.target.query(ddl);
        // The two rows are on the target before the batch: the swap is an update of both in it.
        await p.sql("INSERT INTO k VALUES (1, 'x', 1), (2, 'y', 2)");
        await p.capture();
        await runAll(p, { segmentBytes: null });
        for (let i = 3; i < 13; i++) await p.sql(`INSERT INTO k VALUES (${i}, 'c${i}', ${i})`);
        await p.sql("UPDATE k SET n = n + 1 WHERE id = 5");
        await p.sql(
          "BEGIN; UPDATE k SET code = 'tmp' WHERE id = 1; UPDATE k SET code = 'x' WHERE id = 2; UPDATE k SET code = 'y' WHERE id = 1; COMMIT",
        );
        await p.sql("INSERT INTO k VALUES (13, 'after', 13)");
        await p.capture();
        const swap = p.records.findIndex((l) => l.includes('"String":"tmp"'));
        assert.ok(swap > 0);
        const runs = await runAll(p, { segmentBytes, maxRecords });
        await assertSameTables(p, ["k"]);
        assert.equal(await storedOffset(p, p.config().name), String(p.records.length));
        for (const { s, from, to } of runs) {
          const hasSwap = BigInt(swap) >= from && BigInt(swap) < to;
          assert.equal(s.exact_order, hasSwap, `exact_order of the run over ${from}..${to - 1n}`);
        }
        assertSegments(p, runs, segmentBytes);
      } finally {
        await closePair(p);
      }
    });

/**
 * A login that may not set the replica role (the target's foreign keys then fire on the sink's
 * writes: ordered mode), given the target's tables as they are now; returns its URL.
 */
async function limitedLogin(p: Pair, role: string): Promise<string> {
  const db = new URL(p.targetUrl).pathname.slice(1);
  await p.target.query(`
    CREATE ROLE ${role} LOGIN PASSWORD 'limited-pw';
    -- CREATE: the sink's state schema, made on its first run.
    GRANT CONNECT, CREATE ON DATABASE ${db} TO ${role};
    GRANT USAGE ON SCHEMA public TO ${role};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};`);
  const url = new URL(p.targetUrl);
  url.username = role;
  url.password = "limited-pw";
  return url.toString();
}

// 5b. An exclusion-constraint swap (23P01) and a foreign-key cycle (23503) in later segments, ordered mode.

const SENSITIVE_SCHEMA = `
  CREATE TABLE slot (id int PRIMARY KEY, span int4range NOT NULL, EXCLUDE USING gist (span WITH &&));
  CREATE TABLE husband (id int PRIMARY KEY, wife_id int);
  CREATE TABLE wife (id int PRIMARY KEY, husband_id int REFERENCES husband);
  ALTER TABLE husband ADD FOREIGN KEY (wife_id) REFERENCES wife`;

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`an exclusion swap and a foreign-key cycle in later segments, login without the replica role, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exact by the exact-order fallback`, {
      skip,
    }, async () => {
      const p = await makePair(server, `sens${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await p.sql(SENSITIVE_SCHEMA);
        await p.target.query(SENSITIVE_SCHEMA);
        const url = await limitedLogin(p, `seg_sens_${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
        await p.sql("INSERT INTO slot VALUES (1, '[0,10)'), (2, '[10,20)')");
        await p.capture();
        await runAll(p, { segmentBytes: null, url });
        const sensitive: number[] = [];
        const mark = async () => {
          await p.capture();
          sensitive.push(p.records.length);
        };
        for (let i = 3; i < 10; i++)
          await p.sql(`INSERT INTO slot VALUES (${i}, int4range(${i * 10}, ${i * 10 + 5}))`);
        await p.capture();
        // The two spans swap through an empty one: in one set-wise UPDATE the first row meets the second's old span.
        await p.sql(
          "BEGIN; UPDATE slot SET span = 'empty' WHERE id = 1; UPDATE slot SET span = '[0,10)' WHERE id = 2; UPDATE slot SET span = '[10,20)' WHERE id = 1; COMMIT",
        );
        await mark();
        for (let i = 10; i < 14; i++)
          await p.sql(`INSERT INTO slot VALUES (${i}, int4range(${i * 10}, ${i * 10 + 5}))`);
        await p.capture();
        // A cycle: whichever row of the net inserts goes first references one not there yet.
        await p.sql(
          "BEGIN; INSERT INTO husband VALUES (1, NULL); INSERT INTO wife VALUES (1, 1); UPDATE husband SET wife_id = 1 WHERE id = 1; COMMIT",
        );
        await mark();
        await p.sql("INSERT INTO slot VALUES (99, '[990,995)')");
        await p.capture();
        const runs = await runAll(p, { segmentBytes, maxRecords, url });
        await assertSameTables(p, ["slot", "husband", "wife"]);
        assert.equal(await storedOffset(p, p.config().name), String(p.records.length));
        // A sensitive transaction ends just before each mark.
        for (const { s, from, to } of runs) {
          const has = sensitive.some((end) => BigInt(end - 1) >= from && BigInt(end - 1) < to);
          assert.equal(s.exact_order, has, `exact_order of the run over ${from}..${to - 1n}`);
          if (s.records > 0) assert.equal(s.apply_mode, "ordered");
        }
        assertSegments(p, runs, segmentBytes);
      } finally {
        await closePair(p);
      }
    });

// 6. A login without the replica role, foreign keys on the target.

const FK_SCHEMA = `
  CREATE TABLE parent (id int PRIMARY KEY, code text NOT NULL UNIQUE);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent, name text);
  CREATE TABLE toy (id int PRIMARY KEY, child_id int REFERENCES child, label text)`;

async function familyWorkload(p: Pair): Promise<void> {
  await p.sql("INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 5) g");
  await p.sql(
    "INSERT INTO child SELECT 10 * p + g, p, 'c' FROM generate_series(1, 5) p, generate_series(1, 2) g",
  );
  await p.sql("INSERT INTO toy VALUES (1, 11, 'ball'), (2, 21, 'car')");
  // Children and toys go first, then their parent; the parent comes back under the same key.
  await p.sql(
    "BEGIN; DELETE FROM toy WHERE child_id IN (21, 22); DELETE FROM child WHERE parent_id = 2; DELETE FROM parent WHERE id = 2; COMMIT",
  );
  await p.sql("INSERT INTO parent VALUES (2, 'p2 again')");
  await p.sql("INSERT INTO child VALUES (21, 2, 'reborn')");
  // A parent replaced by a new key, its children moved over first.
  await p.sql(
    "BEGIN; INSERT INTO parent VALUES (7, 'p7'); UPDATE child SET parent_id = 7 WHERE parent_id = 3; DELETE FROM parent WHERE id = 3; COMMIT",
  );
  // A parent and child inserted, then deleted, then the parent back, over separate transactions.
  await p.sql("INSERT INTO parent VALUES (6, 'p6')");
  await p.sql("INSERT INTO child VALUES (60, 6, 'c60')");
  await p.sql("INSERT INTO toy VALUES (3, 60, 'kite')");
  await p.sql("DELETE FROM toy WHERE id = 3");
  await p.sql("DELETE FROM child WHERE id = 60");
  await p.sql("DELETE FROM parent WHERE id = 6");
  await p.sql("INSERT INTO parent VALUES (6, 'p6 again')");
  await p.sql(
    "BEGIN; INSERT INTO child VALUES (61, 6, 'c61'); INSERT INTO toy VALUES (4, 61, 'top'); COMMIT",
  );
  await p.sql(
    "BEGIN; DELETE FROM toy WHERE child_id = 11; DELETE FROM child WHERE parent_id = 1; DELETE FROM parent WHERE id = 1; COMMIT",
  );
}

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`login without the replica role, target foreign keys, parents and children across segments, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exact`, {
      skip,
    }, async () => {
      const p = await makePair(server, `fk${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await p.sql(FK_SCHEMA);
        await p.target.query(FK_SCHEMA);
        const url = await limitedLogin(p, `seg_limited_${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
        await familyWorkload(p);
        const runs = await finish(p, { segmentBytes, maxRecords, url }, ["parent", "child", "toy"]);
        assert.ok(
          runs.every((r) => r.s.records === 0 || r.s.apply_mode === "ordered"),
          "ordered mode",
        );
      } finally {
        await closePair(p);
      }
    });

// 7. Killed at a failpoint.

for (const point of ["after-read", "before-commit"])
  for (const segmentBytes of [1, 300])
    test(`killed at ${point}, ${segLabel(segmentBytes)}: nothing visible, offset kept, the next run applies everything once`, {
      skip,
    }, async () => {
      const p = await makePair(server, `kill${point.replace("-", "_")}${segmentBytes}`);
      try {
        await p.sql("CREATE TABLE items (id int PRIMARY KEY, v text)");
        // Keyless: a change applied twice would show as a duplicate row.
        await p.sql("CREATE TABLE log (n int, what text); ALTER TABLE log REPLICA IDENTITY FULL");
        await p.sql("INSERT INTO items VALUES (0, 'seed'); INSERT INTO log VALUES (0, 'seed')");
        await p.capture();
        const cfg = yamlOf(p, { segmentBytes });
        const first = await runCli(["run", "--config", cfg]);
        assert.equal(first.code, 0, first.stderr);
        for (let i = 1; i <= 20; i++)
          await p.sql(
            `BEGIN; INSERT INTO items VALUES (${i}, 'i${i}'); UPDATE items SET v = v || '+' WHERE id = ${i - 1}; INSERT INTO log VALUES (${i}, 'x'); COMMIT`,
          );
        await p.sql("DELETE FROM items WHERE id % 4 = 0; DELETE FROM log WHERE n = 3");
        await p.capture();
        const stored = await storedOffset(p, p.config().name);
        const snapshot = async () => [
          await rows(p.target, "items"),
          (await p.target.query("SELECT l::text AS r FROM log l ORDER BY n")).rows.map((x) => x.r as string),
        ];
        const before = await snapshot();
        const killed = await runCli(["run", "--config", cfg], { FLUVIO_PG_SINK_FAILPOINT: point });
        assert.equal(killed.signal, "SIGKILL");
        assert.equal(await storedOffset(p, p.config().name), stored, "offset unchanged");
        assert.deepEqual(await snapshot(), before, "nothing of the killed run visible");
        // The killed run's session may hold the partition's lock a moment longer.
        let s: { status: string; records: number; segments: number; transactions: number } | null = null;
        for (let i = 0; i < 20 && (s === null || s.status === "locked"); i++) {
          if (s !== null) await new Promise((resolve) => setTimeout(resolve, 250));
          const r = await runCli(["run", "--config", cfg]);
          assert.equal(r.code, 0, r.stderr);
          s = JSON.parse(r.stdout);
        }
        assert.ok(s);
        assert.equal(s.status, "applied");
        assert.equal(s.records, p.records.length - Number(stored));
        assert.ok(s.segments > 1, `several segments: ${s.segments}`);
        if (segmentBytes === 1) assert.equal(s.segments, s.transactions);
        await assertSameTables(p, ["items", "log"]);
        assert.equal(await storedOffset(p, p.config().name), String(p.records.length));
        const idle = JSON.parse((await runCli(["run", "--config", cfg])).stdout);
        assert.deepEqual([idle.status, idle.segments], ["idle", 0]);
      } finally {
        await closePair(p);
      }
    });

// 8. TRUNCATE mid-batch.

for (const segmentBytes of SEGMENT_BYTES)
  for (const maxRecords of [1, 7, null])
    test(`TRUNCATE mid-batch, ${segLabel(segmentBytes)}, ${maxLabel(maxRecords)}: exact`, {
      skip,
    }, async () => {
      const p = await makePair(server, `tr${segmentBytes ?? "d"}_${maxRecords ?? "u"}`);
      try {
        await p.sql("CREATE TABLE a (id serial PRIMARY KEY, v text)");
        await p.sql("CREATE TABLE b (id int PRIMARY KEY, v text)");
        await p.sql("CREATE TABLE c (x int, y text); ALTER TABLE c REPLICA IDENTITY FULL");
        await p.sql("INSERT INTO a (v) SELECT 'a' || g FROM generate_series(1, 5) g");
        await p.sql("INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 5) g");
        await p.sql("INSERT INTO c VALUES (1, 'c'), (1, 'c')");
        await p.sql("UPDATE a SET v = 'updated' WHERE id = 2");
        await p.sql("TRUNCATE a RESTART IDENTITY");
        await p.sql("INSERT INTO a (v) VALUES ('after truncate')");
        await p.sql("UPDATE b SET v = 'before truncate' WHERE id = 1");
        await p.sql(
          "BEGIN; INSERT INTO b VALUES (6, 'gone soon'); TRUNCATE b, c; INSERT INTO b VALUES (1, 'same key, new row'); COMMIT",
        );
        await p.sql("INSERT INTO c VALUES (2, 'c2')");
        await p.sql("UPDATE b SET v = v || '!' WHERE id = 1");
        await p.sql("TRUNCATE c");
        await p.sql("INSERT INTO c VALUES (3, NULL)");
        await finish(p, { segmentBytes, maxRecords }, ["a", "b", "c"]);
      } finally {
        await closePair(p);
      }
    });
