import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { assertSameTables, makePair, type Pair, storedOffset } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const SIZES = [1, 7, 1000];

async function stateRow(p: Pair, connector: string) {
  const r = await p.target.query(
    `SELECT next_offset::text AS o, resume_position::text AS pos, last_record_sha256 AS sha, awaited_resend
       FROM fluvio_sink.state WHERE connector = $1`,
    [connector],
  );
  return r.rows[0] as
    | { o: string; pos: string | null; sha: string | null; awaited_resend: unknown }
    | undefined;
}

/** Some transactions over two tables, with a text value holding CR, LF and CRLF. */
async function workload(p: Pair, n: number): Promise<void> {
  await p.sql(`CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text, n bigint)`);
  for (let i = 0; i < n; i++) {
    await p.sql("BEGIN");
    await p.sql(`INSERT INTO notes VALUES ($1, $2, $3)`, [
      i,
      `line ${i}\rcr\nlf\r\ncrlf é`,
      (2n ** 62n + BigInt(i)).toString(),
    ]);
    await p.sql(`UPDATE notes SET body = body || 'x' WHERE id = $1`, [Math.floor(i / 2)]);
    await p.sql("COMMIT");
  }
}

function lastIndex(lines: string[], pred: (l: string) => boolean): number {
  for (let i = lines.length - 1; i >= 0; i--) if (pred(lines[i] as string)) return i;
  return -1;
}

test("a file replayed in many small batches: offsets, stored byte position and target exact", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `replay_${max}`);
    try {
      await workload(p, 12);
      await p.capture();
      const size = statSync(p.topicFile).size;
      let runs = 0;
      for (;;) {
        const s = await p.run({ maxRecords: max });
        if (s.records === 0) break;
        runs++;
        const row = await stateRow(p, `sink-replay_${max}`);
        const next = Number(s.next_offset);
        // The stored position is the byte where the next offset starts.
        const expected = Buffer.byteLength(
          p.records
            .slice(0, next)
            .map((l) => `${l}\n`)
            .join(""),
        );
        assert.equal(row?.pos, String(expected), `max_records ${max}, run ${runs}`);
        assert.equal(s.lag, p.records.length - next);
      }
      assert.ok(max === 1000 ? runs === 1 : runs >= 12 / Math.min(max, 5), `runs ${runs}`);
      assert.equal(await storedOffset(p, `sink-replay_${max}`), String(p.records.length));
      assert.equal((await stateRow(p, `sink-replay_${max}`))?.pos, String(size));
      await assertSameTables(p, ["notes"]);
    } finally {
      await p.close();
    }
  }
});

test("the lag of a growing file: each run counts on from where the last count ended, exact every time", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `grow_${max}`);
    try {
      await p.sql("CREATE TABLE notes (id int PRIMARY KEY, body text, n bigint)");
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 4; i++)
          await p.sql("INSERT INTO notes VALUES ($1, $2, $3)", [
            round * 10 + i,
            `r${round} é`,
            String(2n ** 62n),
          ]);
        await p.sql("UPDATE notes SET body = body || 'x' WHERE id % 3 = 0");
        await p.capture();
        for (let i = 0; i < 2; i++) {
          const s = await p.run({ maxRecords: max });
          assert.equal(s.lag, p.records.length - Number(s.next_offset), `max_records ${max}, round ${round}`);
          const h = await p.target.query(
            `SELECT run_history->-1->>'end' AS e, run_history->-1->>'end_position' AS pos
               FROM fluvio_sink.state WHERE connector = $1`,
            [`sink-grow_${max}`],
          );
          // Where the count ended: the whole file, every line of it complete.
          assert.deepEqual(h.rows[0], {
            e: String(p.records.length),
            pos: String(statSync(p.topicFile).size),
          });
        }
      }
      while ((await p.run({ maxRecords: max })).records > 0);
      assert.equal(await storedOffset(p, `sink-grow_${max}`), String(p.records.length));
      await assertSameTables(p, ["notes"]);
    } finally {
      await p.close();
    }
  }
});

test("the last run's count is where the next starts counting: the rest of the file is not read again", async () => {
  const p = await makePair(server, "grow_hint");
  try {
    // More than the source's first read (64 KiB), so a one-record run stops reading before the end.
    await p.sql("CREATE TABLE big (id int PRIMARY KEY, body text)");
    for (let i = 0; i < 40; i++) await p.sql("INSERT INTO big VALUES ($1, repeat('x', 4000))", [i]);
    await p.capture();
    const first = await p.run({ maxRecords: 1 });
    assert.equal(first.lag, p.records.length - Number(first.next_offset));
    // Make the recorded count say 40 more lines than the file has up to its recorded position: a
    // run that believes it (rather than counting the file again) reports a lag 40 too high.
    await p.target.query(
      `UPDATE fluvio_sink.state SET run_history = jsonb_set(run_history, '{-1,end}',
         to_jsonb(((run_history->-1->>'end')::bigint + 40)::text)) WHERE connector = 'sink-grow_hint'`,
    );
    const second = await p.run({ maxRecords: 1 });
    assert.equal(second.lag, p.records.length - Number(second.next_offset) + 40);
  } finally {
    await p.close();
  }
});

test("the stored byte position is used: bytes before it are not scanned again", async () => {
  const p = await makePair(server, "seek");
  try {
    await workload(p, 4);
    await p.capture();
    await p.runUntilIdle({ maxRecords: 1000 });
    await workload(p, 0);
    await p.sql(`INSERT INTO notes VALUES (100, 'later', 1)`);
    await p.capture();
    // An extra LF early in the file keeps its length but would shift every offset of a scan from the
    // top (and so fail the fingerprint check): a run that seeks never sees it.
    const bytes = readFileSync(p.topicFile);
    const at = bytes.indexOf(0x0a) - 1;
    bytes[at] = 0x0a;
    writeFileSync(p.topicFile, bytes);
    const s = await p.run({ maxRecords: 1000 });
    assert.equal(s.transactions, 1);
    assert.equal(s.next_offset, String(p.records.length));
    const rows = await p.target.query(`SELECT body FROM notes WHERE id = 100`);
    assert.deepEqual(rows.rows, [{ body: "later" }]);
  } finally {
    await p.close();
  }
});

test("CRLF line ends are tolerated; a raw CR inside a record stays in it and shifts nothing", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `crlf_${max}`);
    try {
      await workload(p, 6);
      const lines = await p.wal_take_lines();
      // JSON allows a raw CR between tokens: put one inside every record, and end lines with CRLF.
      const withCr = lines.map((l) => l.replace(`{"`, `{\r"`));
      assert.ok(withCr.every((l, i) => l !== lines[i]));
      writeFileSync(p.topicFile, withCr.map((l) => `${l}\r\n`).join(""));
      p.records.push(...lines);
      const runs = await p.runUntilIdle({ maxRecords: max });
      assert.equal(runs.at(-2)?.next_offset, String(lines.length));
      assert.equal(runs.at(-1)?.lag, 0);
      assert.equal(await storedOffset(p, `sink-crlf_${max}`), String(lines.length));
      await assertSameTables(p, ["notes"]);
    } finally {
      await p.close();
    }
  }
});

test("an unterminated last line is not a record yet: applied on the run after its LF arrives", async () => {
  const p = await makePair(server, "unterminated");
  try {
    await workload(p, 2);
    const first = await p.wal_take_lines();
    await p.sql(`INSERT INTO notes VALUES (50, 'tail', 5)`);
    const second = await p.wal_take_lines();
    // The second transaction is complete but its commit line has no LF yet.
    writeFileSync(p.topicFile, `${[...first, ...second].join("\n")}`);
    const s = await p.run();
    assert.equal(s.next_offset, String(first.length));
    assert.equal(s.lag, second.length - 1, "the unterminated line is not counted");
    assert.equal((await p.target.query(`SELECT count(*)::int AS n FROM notes WHERE id = 50`)).rows[0].n, 0);
    appendFileSync(p.topicFile, "\n");
    const s2 = await p.run();
    assert.equal(s2.transactions, 1);
    assert.equal(s2.next_offset, String(first.length + second.length));
    assert.equal(s2.lag, 0);
    await assertSameTables(p, ["notes"]);
  } finally {
    await p.close();
  }
});

test("invalid UTF-8 in a record is an error naming its offset; nothing is applied", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `utf8_${max}`);
    try {
      await workload(p, 3);
      const lines = await p.wal_take_lines();
      // Corrupt the value of the last insert: a lone continuation byte inside its text.
      const bad = lastIndex(lines, (l) => l.includes("crlf é"));
      const bytes = Buffer.from(`${lines.join("\n")}\n`);
      const lineStart = Buffer.byteLength(
        lines
          .slice(0, bad)
          .map((l) => `${l}\n`)
          .join(""),
      );
      const at = bytes.indexOf(Buffer.from("é"), lineStart);
      bytes[at] = 0xff;
      writeFileSync(p.topicFile, bytes);
      const good = lastIndex(lines.slice(0, bad), (l) => /"type":"commit"/.test(l)) + 1;
      let err: Error | undefined;
      for (let i = 0; i < 100 && !err; i++) await p.run({ maxRecords: max }).catch((e) => (err = e));
      // The source transaction around it is named (poison handling, on_error: halt).
      assert.ok(
        err?.message.startsWith(`source transaction at offsets ${good}..`) &&
          err.message.includes(
            `failed: record at offset ${bad}: not valid UTF-8 (in ${p.topicFile}). Applied nothing`,
          ),
        err?.message,
      );
      // Everything before the transaction holding it was applied, and not that transaction.
      // (A batch that reaches it whole rolls back whole.)
      assert.equal(await storedOffset(p, `sink-utf8_${max}`), max === 1000 ? "0" : String(good));
    } finally {
      await p.close();
    }
  }
});

test("a directory or unreadable path as source: a clear error naming it and parameters.source", async () => {
  const p = await makePair(server, "dir");
  try {
    const dir = mkdtempSync(join(tmpdir(), "fps-dir-"));
    await assert.rejects(p.run({ source: { kind: "file", path: dir } }), {
      message: `parameters.source: ${dir} is a directory; it must name a topic export file`,
    });
    const missing = join(dir, "nope.jsonl");
    await assert.rejects(p.run({ source: { kind: "file", path: missing } }), {
      message: `parameters.source: the topic export ${missing} cannot be read (ENOENT)`,
    });
    assert.equal(await storedOffset(p, "sink-dir"), "0");
  } finally {
    await p.close();
  }
});

test("a replaced file or a shifted log start: the fingerprint check fails the resume, nothing applied", async () => {
  const p = await makePair(server, "fingerprint");
  try {
    await workload(p, 4);
    await p.capture();
    await p.runUntilIdle({ maxRecords: 1000 });
    const applied = p.records.length;
    const original = readFileSync(p.topicFile);
    for (let i = 0; i < 4; i++) await p.sql(`INSERT INTO notes VALUES (${200 + i}, 'new', 2)`);
    const more = await p.wal_take_lines();
    const expectMessage = (offset: number) =>
      `file ${p.topicFile}: the record at offset ${offset} is not the one this sink applied there (its fingerprint differs), ` +
      "so the offsets no longer mean what they meant: records were removed at the log start (or the partition listing " +
      "lags the log start), the topic was recreated, or the file was replaced. Applied nothing. Restore the source, " +
      "or reset this connector's row in the state table (fluvio_sink.state) to the offset where the sink must continue.";
    // The log start moved: the first transaction is gone from the top of the file.
    const firstCommit = p.records.findIndex((l) => /"type":"commit"/.test(l));
    const shifted = [...p.records.slice(firstCommit + 1), ...more];
    writeFileSync(p.topicFile, `${shifted.join("\n")}\n`);
    await assert.rejects(p.run(), { message: expectMessage(applied - 1) });
    // Replaced by another export of the same length in lines.
    const other = [...p.records.slice(0, applied - 1), p.records[0] as string, ...more];
    writeFileSync(p.topicFile, `${other.join("\n")}\n`);
    await assert.rejects(p.run(), { message: expectMessage(applied - 1) });
    // Truncated before the record applied last.
    writeFileSync(p.topicFile, `${p.records.slice(0, 2).join("\n")}\n`);
    await assert.rejects(p.run(), {
      message:
        `file ${p.topicFile}: the record at offset ${applied - 1}, applied last by this sink, is gone (the source ` +
        "ends before it); was the topic recreated or the file truncated? Applied nothing.",
    });
    assert.equal(await storedOffset(p, "sink-fingerprint"), String(applied));
    assert.equal((await p.target.query(`SELECT count(*)::int AS n FROM notes WHERE id = 200`)).rows[0].n, 0);
    // Restored: the run goes on exactly.
    writeFileSync(p.topicFile, Buffer.concat([original, Buffer.from(`${more.join("\n")}\n`)]));
    p.records.push(...more);
    const s = await p.run();
    assert.equal(s.transactions, 4);
    await assertSameTables(p, ["notes"]);
  } finally {
    await p.close();
  }
});

test("a partial transaction that is never re-sent stops the run; one re-sent applies exactly", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `partial_${max}`);
    try {
      await p.sql(`CREATE TABLE ev (id int PRIMARY KEY, v text)`);
      await p.sql(`INSERT INTO ev VALUES (0, 'zero')`);
      const t0 = await p.wal_take_lines();
      await p.sql(`INSERT INTO ev SELECT g, 'one' FROM generate_series(1, 5) g`);
      const t1 = await p.wal_take_lines();
      await p.sql(`INSERT INTO ev VALUES (10, 'two')`);
      const t2 = await p.wal_take_lines();
      const lsn = lsnOf(t1[0] as string);
      const part = t1.slice(0, 3);
      // Re-sent case: T0, T1 cut short, T0 again (older, allowed), then T1 whole, then T2.
      const resent = [...t0, ...part, ...t0, ...t1, ...t2];
      writeFileSync(p.topicFile, `${resent.join("\n")}\n`);
      p.records.push(...t0, ...t1, ...t2);
      const runs = await p.runUntilIdle({ maxRecords: max });
      assert.equal(runs.at(-2)?.next_offset, String(resent.length));
      await assertSameTables(p, ["ev"]);
      assert.equal((await stateRow(p, `sink-partial_${max}`))?.awaited_resend, null);

      // Never re-sent: T1 cut short, then T0 again, then T2: lost upstream.
      await p.target.query(`DELETE FROM fluvio_sink.state; TRUNCATE ev`);
      const lost = [...t0, ...part, ...t0, ...t2];
      writeFileSync(p.topicFile, `${lost.join("\n")}\n`);
      let err: Error | undefined;
      for (let i = 0; i < 100 && !err; i++) await p.run({ maxRecords: max }).catch((e) => (err = e));
      const partFrom = t0.length;
      const t2At = t0.length * 2 + part.length;
      assert.equal(
        err?.message,
        `records were lost upstream: the source transaction at offsets ${partFrom}..${partFrom + part.length - 1} ` +
          `(final_lsn ${lsn}) never committed and was not re-sent before the transaction at offset ${t2At} ` +
          `(final_lsn ${lsnOf(t2[0] as string)}); ` +
          "the target would miss its changes. This run applied nothing. Re-send it from the source (or resynchronise " +
          "the tables it touched) before going on.",
      );
      // Smaller batches stopped after the re-sent T0 (the wait for T1 stored with it); T2 never applied.
      assert.equal(await storedOffset(p, `sink-partial_${max}`), max === 1000 ? "0" : String(t2At));
      const rows = await p.target.query(`SELECT id FROM ev ORDER BY id`);
      assert.deepEqual(
        rows.rows.map((r) => r.id),
        max === 1000 ? [] : [0],
      );
    } finally {
      await p.close();
    }
  }
});

test("two partial transactions awaited at once: both re-sent in order apply exactly; the one never re-sent stops the run", async () => {
  for (const max of SIZES) {
    const p = await makePair(server, `partial2_${max}`);
    try {
      await p.sql(`CREATE TABLE ev (id int PRIMARY KEY, v text)`);
      await p.sql(`INSERT INTO ev VALUES (0, 'zero')`);
      const t0 = await p.wal_take_lines();
      await p.sql(`INSERT INTO ev SELECT g, 'one' FROM generate_series(1, 5) g`);
      const t1 = await p.wal_take_lines();
      await p.sql(`INSERT INTO ev SELECT g, 'two' FROM generate_series(6, 9) g`);
      const t2 = await p.wal_take_lines();
      await p.sql(`INSERT INTO ev VALUES (10, 'three')`);
      const t3 = await p.wal_take_lines();
      const part1 = t1.slice(0, 3);
      const part2 = t2.slice(0, 4);
      // T2 cut short, then T1 cut short (earlier: still awaited both), then T0 again (older, allowed):
      // T1 and T2 awaited at once, in final LSN order, whatever order they were dropped in.
      const head = [...t0, ...part2, ...part1, ...t0];
      const from2 = t0.length;
      const from1 = from2 + part2.length;
      const awaitedBoth = [
        { final_lsn: finalLsnOf(t1[0] as string), from: String(from1), to: String(from1 + part1.length - 1) },
        { final_lsn: finalLsnOf(t2[0] as string), from: String(from2), to: String(from1 - 1) },
      ];

      // Both re-sent in order, then T3.
      const resent = [...head, ...t1, ...t2, ...t3];
      writeFileSync(p.topicFile, `${resent.join("\n")}\n`);
      p.records.push(...t0, ...t1, ...t2, ...t3);
      if (max === 1) {
        // A run ends at each commit: the one after the re-sent T0 stores both awaited re-sends.
        await p.run({ maxRecords: max });
        const s = await p.run({ maxRecords: max });
        assert.equal(s.next_offset, String(head.length));
        assert.deepEqual((await stateRow(p, `sink-partial2_${max}`))?.awaited_resend, awaitedBoth);
        // The re-sent T1 is the first awaited; T2 still is.
        await p.run({ maxRecords: max });
        assert.deepEqual((await stateRow(p, `sink-partial2_${max}`))?.awaited_resend, awaitedBoth.slice(1));
      }
      const runs = await p.runUntilIdle({ maxRecords: max });
      assert.equal(runs.at(-1)?.next_offset, String(resent.length));
      await assertSameTables(p, ["ev"]);
      assert.equal((await stateRow(p, `sink-partial2_${max}`))?.awaited_resend, null);

      // T1 re-sent, T2 never: T3 comes first, and T2 is named.
      await p.target.query(`DELETE FROM fluvio_sink.state; TRUNCATE ev`);
      const lost = [...head, ...t1, ...t3];
      writeFileSync(p.topicFile, `${lost.join("\n")}\n`);
      let err: Error | undefined;
      for (let i = 0; i < 100 && !err; i++) await p.run({ maxRecords: max }).catch((e) => (err = e));
      const t3At = head.length + t1.length;
      assert.equal(
        err?.message,
        `records were lost upstream: the source transaction at offsets ${from2}..${from1 - 1} ` +
          `(final_lsn ${lsnOf(t2[0] as string)}) never committed and was not re-sent before the transaction ` +
          `at offset ${t3At} (final_lsn ${lsnOf(t3[0] as string)}); ` +
          "the target would miss its changes. This run applied nothing. Re-send it from the source (or resynchronise " +
          "the tables it touched) before going on.",
      );
      // Smaller batches applied T0 and the re-sent T1 (the wait for T2 stored with it); T3 never.
      assert.equal(await storedOffset(p, `sink-partial2_${max}`), max === 1000 ? "0" : String(t3At));
      const rows = await p.target.query(`SELECT id FROM ev ORDER BY id`);
      assert.deepEqual(
        rows.rows.map((r) => r.id),
        max === 1000 ? [] : [0, 1, 2, 3, 4, 5],
      );
      if (max !== 1000)
        assert.deepEqual((await stateRow(p, `sink-partial2_${max}`))?.awaited_resend, awaitedBoth.slice(1));
    } finally {
      await p.close();
    }
  }
});

/** The begin record's final_lsn as the state table stores it: decimal text. */
function finalLsnOf(line: string): string {
  return BigInt(/"final_lsn":(\d+)/.exec(line)?.[1] ?? "x").toString();
}

/** The begin record's final_lsn as PostgreSQL prints it (read as text: LSNs are 64-bit). */
function lsnOf(line: string): string {
  const v = BigInt(/"final_lsn":(\d+)/.exec(line)?.[1] ?? "x");
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

test("a state table from an earlier version gets the new columns and resumes where it was", async () => {
  const p = await makePair(server, "upgrade");
  try {
    await workload(p, 3);
    await p.capture();
    const firstCommit = p.records.findIndex((l) => /"type":"commit"/.test(l)) + 1;
    await p.run({ maxRecords: 1 });
    await p.target.query(
      `ALTER TABLE fluvio_sink.state DROP COLUMN resume_position, DROP COLUMN last_record_sha256,
         DROP COLUMN awaited_resend`,
    );
    assert.equal(await storedOffset(p, "sink-upgrade"), String(firstCommit));
    const runs = await p.runUntilIdle();
    assert.equal(runs[0]?.next_offset, String(p.records.length));
    const row = await stateRow(p, "sink-upgrade");
    assert.equal(row?.pos, String(statSync(p.topicFile).size));
    assert.match(row?.sha ?? "", /^[0-9a-f]{64}$/);
    await assertSameTables(p, ["notes"]);
  } finally {
    await p.close();
  }
});
