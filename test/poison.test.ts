import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import { dirname } from "node:path";
import { after, before, test } from "node:test";
import { decodeRecordFast } from "../src/events/fast-decode.js";
import { formatLsn } from "../src/lsn.js";
import type { RunSummary } from "../src/run.js";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair, storedOffset, syncAndCompare } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";
import {
  captureWithJunk,
  checkDetail,
  haltMessage,
  JUNK,
  junkDetail,
  rows,
  type Txn,
  txnInserting,
} from "./support/poison.js";

/**
 * Poison records from real WAL: a row only the target rejects (a CHECK only it has) and a line that
 * is not JSON, under on_error halt (the run names exactly the failing source transaction, applies
 * nothing, and `skip` gets past it) and dead_letter (exactly that transaction is set aside, and
 * `replay` applies it once the cause is fixed), at several batch sizes.
 */

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const SIZES = [1, 7, 1000];
/** Source history: t and u in sync, then a few transactions, one of which (ids 10, 11) is at fault. */
async function setUp(p: Pair): Promise<void> {
  await p.sql(
    "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE TABLE u (id int PRIMARY KEY, note text)",
  );
  await p.sql("INSERT INTO t VALUES (1, 1); INSERT INTO u VALUES (1, 'a')");
  await syncAndCompare(p, ["t", "u"]);
  await p.sql("INSERT INTO t VALUES (2, 2)");
  await p.sql("UPDATE u SET note = 'b' WHERE id = 1");
  await p.sql("INSERT INTO t SELECT g, g FROM generate_series(20, 24) g");
  await p.sql(
    "BEGIN; INSERT INTO t VALUES (10, 5); INSERT INTO u VALUES (10, 'in the bad one'); INSERT INTO t VALUES (11, 500); COMMIT",
  );
  await p.sql("INSERT INTO t VALUES (3, 3)");
  await p.sql("UPDATE t SET v = 4 WHERE id = 1; DELETE FROM t WHERE id = 22");
  await p.sql("INSERT INTO u VALUES (2, 'c')");
}

/** The target equals the source but for the bad transaction's rows, which it lacks. */
async function assertSameExceptBad(p: Pair): Promise<void> {
  assert.deepEqual(await rows(p.target, "t", []), await rows(p.source, "t", [10, 11]), "rows of t");
  assert.deepEqual(await rows(p.target, "u", []), await rows(p.source, "u", [10]), "rows of u");
}

function configFile(p: Pair, maxRecords: number, onError: string): string {
  const c = p.config();
  return writeConfig(
    dirname(p.topicFile),
    `name: ${c.name}
type: postgres-sink
topic: ${c.topic}
parameters:
  url: ${p.targetUrl}
  source: file:${p.topicFile}
  max_records: ${maxRecords}
  on_error: ${onError}
`,
  );
}

/** Runs until idle or a failure; the failure, with the target and stored offset just before it. */
async function runUntilFailure(
  p: Pair,
  maxRecords: number,
): Promise<{ error: Error; storedBefore: string | null; before: string[][] }> {
  for (let i = 0; i < 1000; i++) {
    const storedBefore = await storedOffset(p, p.config().name);
    const before = [await rows(p.target, "t", []), await rows(p.target, "u", [])];
    try {
      const s = await p.run({ maxRecords });
      if (s.records === 0) break;
    } catch (e) {
      return { error: e as Error, storedBefore, before };
    }
  }
  throw new Error("no run failed");
}

type Poison = "check" | "junk";

async function prepare(kind: Poison, name: string): Promise<{ p: Pair; bad: Txn; detail: string }> {
  const p = await makePair(server, name);
  await setUp(p);
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

for (const kind of ["check", "junk"] as Poison[])
  for (const max of SIZES) {
    test(`halt (${kind}, max_records ${max}): names exactly the failing transaction, applies nothing; skip gets past it`, async () => {
      const { p, bad, detail } = await prepare(kind, `h${kind}${max}`);
      try {
        const { error, storedBefore, before } = await runUntilFailure(p, max);
        assert.ok(storedBefore !== null);
        assert.equal(error.message, haltMessage(bad, detail, storedBefore));
        assert.ok(!error.message.includes("11, 500") && !error.message.includes(JUNK), "no row values");
        // Nothing applied, state unchanged, and the same on every further run.
        assert.equal(await storedOffset(p, p.config().name), storedBefore);
        assert.deepEqual([await rows(p.target, "t", []), await rows(p.target, "u", [])], before);
        await assert.rejects(p.run({ maxRecords: max }), { message: error.message });

        const file = configFile(p, max, "halt");
        const reason = "the row breaks the target's v_small";
        // At max_records 1 the failing batch is that transaction alone: skip's default, the stored offset.
        const at = max === 1 ? [] : ["--offset", bad.from.toString()];
        if (max === 1) assert.equal(storedBefore, bad.from.toString());
        const dry = await runCli(["skip", "--config", file, ...at, "--reason", reason]);
        assert.equal(dry.code, 0, dry.stderr);
        const dryOut = JSON.parse(dry.stdout);
        assert.equal(dryOut.dry_run, true);
        assert.deepEqual(
          [dryOut.skipped.from, dryOut.skipped.to, dryOut.skipped.lsn],
          [bad.from.toString(), bad.to.toString(), bad.lsn],
        );
        assert.equal(await storedOffset(p, p.config().name), storedBefore, "a dry run changes nothing");

        const r = await runCli(["skip", "--config", file, ...at, "--reason", reason, "--yes"]);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        assert.deepEqual(
          [out.skipped.from, out.skipped.to, out.skipped.lsn],
          [bad.from.toString(), bad.to.toString(), bad.lsn],
        );
        assert.equal(out.next_offset, (bad.to + 1n).toString());
        assert.equal(await storedOffset(p, p.config().name), (bad.to + 1n).toString());
        const audit = await p.target.query(
          "SELECT action, from_offset::text, to_offset::text, lsn::text, reason, db_user FROM fluvio_sink.audit",
        );
        assert.deepEqual(audit.rows, [
          {
            action: "skip",
            from_offset: bad.from.toString(),
            to_offset: bad.to.toString(),
            lsn: bad.lsn,
            reason,
            db_user: "postgres",
          },
        ]);
        const rest = await p.runUntilIdle({ maxRecords: max });
        assert.equal(
          rest.reduce((n, s) => n + s.dead_letters, 0),
          0,
        );
        await assertSameExceptBad(p);
      } finally {
        await p.close();
      }
    });

    test(`dead_letter (${kind}, max_records ${max}): exactly the failing transaction is set aside; replay applies it`, async () => {
      const { p, bad, detail } = await prepare(kind, `d${kind}${max}`);
      try {
        const sums: RunSummary[] = await p.runUntilIdle({ maxRecords: max, onError: "dead_letter" });
        assert.equal(
          sums.reduce((n, s) => n + s.dead_letters, 0),
          1,
        );
        const aside = sums.flatMap((s) => s.dead_lettered);
        assert.deepEqual(
          aside.map((d) => [d.from, d.to, d.lsn, d.tables, d.error]),
          [[bad.from.toString(), bad.to.toString(), bad.lsn, ["public.t", "public.u"], detail]],
        );
        assert.equal(await storedOffset(p, p.config().name), p.records.length.toString());
        await assertSameExceptBad(p);

        const file = configFile(p, max, "dead_letter");
        const list = await runCli(["dead-letters", "--config", file]);
        assert.equal(list.code, 0, list.stderr);
        const listed = JSON.parse(list.stdout);
        assert.equal(listed.pending, 1);
        assert.deepEqual(
          listed.dead_letters.map((d: Record<string, unknown>) => [
            d.id,
            d.from,
            d.to,
            d.lsn,
            d.error,
            d.replayed_at,
          ]),
          [[aside[0]?.id, bad.from.toString(), bad.to.toString(), bad.lsn, detail, null]],
        );
        const id = aside[0]?.id as string;
        if (max === 7) {
          const st = await runCli(["status", "--config", file]);
          assert.equal(JSON.parse(st.stdout).dead_letters_pending, 1, st.stderr);
        }

        // Not fixed yet: refused or failed, nothing applied, still pending.
        const early = await runCli(["replay", "--config", file, "--id", id]);
        assert.equal(early.code, 1, early.stderr);
        const earlyOut = JSON.parse(early.stdout);
        assert.equal(earlyOut.status, "failed");
        if (kind === "check")
          assert.equal(
            earlyOut.error,
            `replay of dead letter ${id} failed: offset ${bad.insertAt}, table public.t: insert failed: new row for relation "t" violates check constraint "v_small" (SQLSTATE 23514); Failing row contains (…).; replayed nothing`,
          );
        else
          assert.equal(
            earlyOut.error,
            `dead letter ${id}: ${junkDetail(bad.from + 1n)}. Correct the record first (records[2] of the dead-letter table, or remove it from the array), then replay`,
          );
        await assertSameExceptBad(p);

        // The fix: the target's constraint goes, or the record is corrected where it was set aside.
        if (kind === "check") await p.target.query("ALTER TABLE t DROP CONSTRAINT v_small");
        else
          await p.target.query(
            "UPDATE fluvio_sink.dead_letter SET records = array_remove(records, $1) WHERE id = $2",
            [JUNK, id],
          );
        const r = await runCli(["replay", "--config", file, "--id", id, "--reason", "fixed"]);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        assert.deepEqual([out.status, out.id, out.inserts], ["replayed", id, 3]);
        await assertSameTables(p, ["t", "u"]);

        const again = await runCli(["replay", "--config", file, "--id", id]);
        assert.equal(again.code, 1);
        assert.match(
          JSON.parse(again.stdout).error,
          new RegExp(`^dead letter ${id} was replayed already, at `),
        );
        const after = JSON.parse((await runCli(["dead-letters", "--config", file])).stdout);
        assert.equal(after.pending, 0);
        assert.ok(after.dead_letters[0].replayed_at);
        const audit = await p.target.query(
          "SELECT action, dead_letter_id::text, reason FROM fluvio_sink.audit",
        );
        assert.deepEqual(audit.rows, [{ action: "replay", dead_letter_id: id, reason: "fixed" }]);
      } finally {
        await p.close();
      }
    });
  }

test("a lock wait or a lost connection is not narrowed nor dead-lettered: the run fails as it is", async () => {
  const { p } = await prepare("check", "conn");
  try {
    const stored = await storedOffset(p, p.config().name);
    // Another session holds the table: lock_timeout, not the records' fault.
    const other = await makeClient(p);
    await other.query("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    await assert.rejects(p.run({ onError: "dead_letter", lockTimeoutMs: 300 }), (e: Error) => {
      assert.match(e.message, /lock_timeout_ms|lock/);
      assert.doesNotMatch(e.message, /^source transaction/);
      return true;
    });
    await other.query("ROLLBACK");
    await other.end();
    assert.equal(await storedOffset(p, p.config().name), stored);
    assert.equal(await deadLetterCount(p), 0);

    // The connection is killed in the middle of the run.
    process.env.FLUVIO_PG_SINK_PAUSE = "after-read";
    process.env.FLUVIO_PG_SINK_PAUSE_MS = "1500";
    try {
      const run = p.run({ onError: "dead_letter" });
      await new Promise((r) => setTimeout(r, 700));
      await p.target.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      await assert.rejects(run, (e: Error) => {
        assert.doesNotMatch(e.message, /^source transaction/);
        return true;
      });
    } finally {
      delete process.env.FLUVIO_PG_SINK_PAUSE;
      delete process.env.FLUVIO_PG_SINK_PAUSE_MS;
    }
    assert.equal(await storedOffset(p, p.config().name), stored);
    assert.equal(await deadLetterCount(p), 0);

    // The records' fault, on the same batch: set aside.
    const s = await p.runUntilIdle({ onError: "dead_letter" });
    assert.equal(
      s.reduce((n, x) => n + x.dead_letters, 0),
      1,
    );
    await assertSameExceptBad(p);
  } finally {
    await p.close();
  }
});

async function makeClient(p: Pair) {
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: p.targetUrl });
  await c.connect();
  return c;
}

async function deadLetterCount(p: Pair): Promise<number> {
  const r = await p.target.query(
    "SELECT CASE WHEN to_regclass('fluvio_sink.dead_letter') IS NULL THEN 0 ELSE 1 END AS ok",
  );
  if (r.rows[0].ok === 0) return 0;
  return Number((await p.target.query("SELECT count(*) AS n FROM fluvio_sink.dead_letter")).rows[0].n);
}

test("skip, dead-letters and replay: bad usage exits 2 before anything is read", async () => {
  const cases: [string[], RegExp][] = [
    [["replay", "--config", "x.yaml"], /replay needs --id N/],
    [["replay", "--config", "x.yaml", "--id", "abc"], /replay needs --id N/],
    [["skip", "--config", "x.yaml", "--offset", "1.5"], /--offset must be a record offset/],
    [["dead-letters", "--config", "x.yaml", "--id", "1"], /--id is for replay/],
    [["run", "--config", "x.yaml", "--reason", "x"], /--reason is for skip and replay/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, message);
  }
});

for (const max of SIZES)
  test(`an undecodable record between transactions, in place of a BEGIN and in place of a COMMIT: what is set aside (max_records ${max})`, async () => {
    const p = await makePair(server, `bounds${max}`);
    try {
      await p.sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)");
      for (let id = 1; id <= 5; id++) await p.sql(`INSERT INTO t VALUES (${id}, ${id})`);
      const lines = await p.wal_take_lines();
      // Transactions by their lines: [begin, (relation), insert, commit].
      const txns: string[][] = [];
      for (const line of lines) {
        if (decodeRecordFast(0n, line).kind === "begin") txns.push([]);
        txns[txns.length - 1]?.push(line);
      }
      assert.equal(txns.length, 5, "five inserts (DDL is not in the stream)");
      const lsnOf = (txn: string[]) => {
        const ev = decodeRecordFast(0n, txn[0] as string);
        return ev.kind === "begin" ? formatLsn(ev.finalLsn) : "";
      };
      const [t1, t2, t3, t4, t5] = txns as [string[], string[], string[], string[], string[]];
      const out: string[] = [...t1];
      const between = out.length;
      out.push(JUNK, ...t2);
      const noBegin = out.length;
      out.push(JUNK, ...t3.slice(1));
      const noCommitFrom = out.length;
      out.push(...t4.slice(0, -1), JUNK);
      const noCommitTo = out.length - 1;
      out.push(...t5);
      appendFileSync(p.topicFile, `${out.join("\n")}\n`);
      p.records.push(...out);

      const sums = await p.runUntilIdle({ maxRecords: max, onError: "dead_letter" });
      const aside = sums.flatMap((s) => s.dead_lettered);
      assert.deepEqual(
        aside.map((d) => [d.from, d.to, d.lsn, d.error]),
        [
          // Alone: nothing around it is known to belong to it.
          [String(between), String(between), null, junkDetail(BigInt(between))],
          // It was the BEGIN: up to the COMMIT, whose LSN names the transaction.
          [String(noBegin), String(noBegin + t3.length - 1), lsnOf(t3), junkDetail(BigInt(noBegin))],
          // It was the COMMIT: from the BEGIN up to just before the next BEGIN.
          [String(noCommitFrom), String(noCommitTo), lsnOf(t4), junkDetail(BigInt(noCommitTo))],
        ],
      );
      assert.equal(await storedOffset(p, p.config().name), String(out.length));
      assert.deepEqual(await rows(p.target, "t", []), await rows(p.source, "t", [3, 4]));
    } finally {
      await p.close();
    }
  });

for (const max of SIZES)
  test(`invalid UTF-8 in a record: its transaction is a dead letter, replayed once the record is corrected (max_records ${max})`, async () => {
    const p = await makePair(server, `utf${max}`);
    try {
      await p.sql("CREATE TABLE w (id int PRIMARY KEY, s text)");
      for (const [id, s] of [
        [1, "a"],
        [2, "é"],
        [3, "c"],
      ])
        await p.sql("INSERT INTO w VALUES ($1, $2)", [id, s]);
      const lines = await p.wal_take_lines();
      const at = lines.findIndex((l) => l.includes("é"));
      const bad = txnInserting(lines, "2");
      const bytes = Buffer.from(`${lines.join("\n")}\n`);
      const lineStart = Buffer.byteLength(
        lines
          .slice(0, at)
          .map((l) => `${l}\n`)
          .join(""),
      );
      // A lone 0xFF where the é's first byte was.
      bytes[bytes.indexOf(Buffer.from("é"), lineStart)] = 0xff;
      appendFileSync(p.topicFile, bytes);
      p.records.push(...lines);

      const sums = await p.runUntilIdle({ maxRecords: max, onError: "dead_letter" });
      const aside = sums.flatMap((s) => s.dead_lettered);
      assert.deepEqual(
        aside.map((d) => [d.from, d.to, d.lsn, d.error]),
        [
          [
            String(bad.from),
            String(bad.to),
            bad.lsn,
            `record at offset ${at}: not valid UTF-8 (in ${p.topicFile})`,
          ],
        ],
      );
      assert.deepEqual(await rows(p.target, "w", []), await rows(p.source, "w", [2]));

      // The stored text has U+FFFD for the invalid bytes; corrected, the replay applies it.
      const id = aside[0]?.id as string;
      const fixed = await p.target.query(
        "UPDATE fluvio_sink.dead_letter SET records[$1] = $2 WHERE id = $3 AND records[$1] <> $2 RETURNING id",
        [at - Number(bad.from) + 1, lines[at], id],
      );
      assert.equal(fixed.rowCount, 1);
      const r = await runCli(["replay", "--config", configFile(p, max, "dead_letter"), "--id", id]);
      assert.equal(r.code, 0, r.stderr);
      await assertSameTables(p, ["w"]);
    } finally {
      await p.close();
    }
  });

for (const max of SIZES)
  test(`a dead-lettered transaction's relation message is still followed: later transactions decode against it (max_records ${max})`, async () => {
    const p = await makePair(server, `schema${max}`);
    try {
      await p.sql("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)");
      await p.sql("INSERT INTO t VALUES (1, 1)");
      await syncAndCompare(p, ["t"]);
      await p.target.query("ALTER TABLE t ADD CONSTRAINT v_small CHECK (v < 100)");
      // One capture: u's relation message comes once, inside the failing transaction.
      await p.sql("CREATE TABLE u (id int PRIMARY KEY, note text)");
      await p.sql("BEGIN; INSERT INTO u VALUES (1, 'first'); INSERT INTO t VALUES (10, 500); COMMIT");
      await p.sql("INSERT INTO u VALUES (2, 'later')");
      await p.sql("INSERT INTO t VALUES (2, 2)");
      await p.capture();
      const bad = txnInserting(p.records, "10");
      const relationsAt = p.records.flatMap((l, i) => {
        const ev = decodeRecordFast(BigInt(i), l);
        return ev.kind === "relation" && ev.relation.name === "u" ? [BigInt(i)] : [];
      });
      assert.equal(relationsAt.length, 1);
      assert.ok((relationsAt[0] as bigint) > bad.from && (relationsAt[0] as bigint) < bad.to);

      const sums = await p.runUntilIdle({ maxRecords: max, onError: "dead_letter" });
      const aside = sums.flatMap((s) => s.dead_lettered);
      assert.deepEqual(
        aside.map((d) => [d.from, d.to]),
        [[String(bad.from), String(bad.to)]],
      );
      // The table u was created from the set-aside relation message, and its later row applied.
      assert.deepEqual(await rows(p.target, "t", []), await rows(p.source, "t", [10]));
      assert.deepEqual(await rows(p.target, "u", []), ["(2,later)"]);

      await p.target.query("ALTER TABLE t DROP CONSTRAINT v_small");
      const r = await runCli([
        "replay",
        "--config",
        configFile(p, max, "dead_letter"),
        "--id",
        aside[0]?.id as string,
      ]);
      assert.equal(r.code, 0, r.stderr);
      await assertSameTables(p, ["t", "u"]);
    } finally {
      await p.close();
    }
  });

test("replay refuses, changing nothing, when a table its records need has changed since", async () => {
  const { p, bad } = await prepare("check", "refuse");
  try {
    const sums = await p.runUntilIdle({ maxRecords: 7, onError: "dead_letter" });
    const id = sums.flatMap((s) => s.dead_lettered)[0]?.id as string;
    await p.sql("ALTER TABLE t ADD COLUMN extra int");
    await p.sql("INSERT INTO t VALUES (30, 3, 7)");
    await p.capture();
    await p.runUntilIdle({ onError: "dead_letter" });
    await p.target.query("ALTER TABLE t DROP CONSTRAINT v_small");
    const before = await rows(p.target, "t", []);

    const r = await runCli(["replay", "--config", configFile(p, 7, "dead_letter"), "--id", id]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      JSON.parse(r.stdout).error,
      `dead letter ${id} (offsets ${bad.from}..${bad.to}) cannot be replayed: its records were written against ` +
        "public.t (id, v), which the sink now knows as public.t (id, v, extra). The table changed since; " +
        "replayed nothing. Apply its changes by hand (the records column holds them).",
    );
    assert.deepEqual(await rows(p.target, "t", []), before);
    const listed = JSON.parse(
      (await runCli(["dead-letters", "--config", configFile(p, 7, "dead_letter")])).stdout,
    );
    assert.equal(listed.pending, 1);
  } finally {
    await p.close();
  }
});
