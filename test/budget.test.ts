import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { readBudgetBytes } from "../src/budget.js";
import type { Logger } from "../src/log.js";
import { type RunSummary, runOnce } from "../src/run.js";
import { runCli, runProcess, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const isCommit = (line: string | undefined) => /"type":"commit"/.test(line ?? "");

/**
 * Source transactions of `rows` inserts each (rows + 2 records: begin, inserts, commit), captured
 * together (the capture's first transaction also carries the table's relation record).
 */
async function produce(p: Pair, transactions: number, rows: number, pad = 20): Promise<void> {
  for (let i = 0; i < transactions; i++)
    await p.sql(`INSERT INTO items (v) SELECT repeat('x', ${pad}) || g FROM generate_series(1, ${rows}) g`);
  await p.capture();
}

/** The records' bytes as the budget counts them (UTF-16 code units of each value). */
const bytesOf = (p: Pair, from: number, to: number) =>
  p.records.slice(from, to).reduce((n, r) => n + r.length, 0);

function capture(): { log: Logger; warnings: { msg: string; fields?: Record<string, unknown> }[] } {
  const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
  const none = () => {};
  return {
    warnings,
    log: { debug: none, info: none, error: none, warn: (msg, fields) => warnings.push({ msg, fields }) },
  };
}

function cliConfig(p: Pair, name: string, extra: string): string {
  const dir = mkdtempSync(join(tmpdir(), "fps-budget-"));
  return writeConfig(
    dir,
    `name: ${name}
type: postgres-sink
topic: postgres-topic
parameters:
  url: ${p.targetUrl}
  source: file:${p.topicFile}
  ${extra}
`,
  );
}

for (const perTick of [1_500, 4_000]) {
  test(`with the defaults a source doing ${perTick} records per tick (more than the old 1000) is caught up and stays so`, async () => {
    const p = await makePair(server, `keep${perTick}`);
    const fixedUrl = await server.createDatabase(`keep${perTick}_fixed`);
    try {
      await p.sql(`CREATE TABLE items (id serial PRIMARY KEY, v text)`);
      // 50-record transactions; a backlog of three ticks before the first run.
      const tick = () => produce(p, perTick / 50, 48);
      for (let i = 0; i < 3; i++) await tick();
      const defaults = p.config();
      assert.equal(defaults.maxRecords, null, "the default is the budget-sized batch");
      const fixed = p.config({ name: `fixed${perTick}`, databaseUrl: fixedUrl, maxRecords: 1000 });
      const first = await runOnce(defaults, { log: capture().log });
      assert.equal(first.lag, 0, "one invocation took the backlog");
      assert.equal(first.stopped_by, "end");
      assert.equal(first.records, p.records.length);
      const fixedLag: number[] = [(await runOnce(fixed, { log: capture().log })).lag as number];
      for (let t = 0; t < 4; t++) {
        const before = p.records.length;
        await tick();
        const s = await runOnce(defaults, { log: capture().log });
        assert.equal(s.lag, 0, `tick ${t}: caught up again`);
        assert.equal(s.records, p.records.length - before, `tick ${t}: the tick's records in one run`);
        assert.ok(s.records > 1000);
        assert.equal(s.schedule_outrun, false);
        fixedLag.push((await runOnce(fixed, { log: capture().log })).lag as number);
      }
      await assertSameTables(p, ["items"]);
      // The old fixed limit falls further behind every tick on the same source.
      for (let i = 1; i < fixedLag.length; i++)
        assert.ok((fixedLag[i] as number) > (fixedLag[i - 1] as number), `${fixedLag}`);
    } finally {
      await p.close();
    }
  });
}

for (const mb of [1, 2]) {
  test(`a memory budget of ${mb} MB cuts batches at commits and never holds more than its bytes`, async (t) => {
    const p = await makePair(server, `mem${mb}`);
    try {
      await p.sql(`CREATE TABLE items (id serial PRIMARY KEY, v text)`);
      // Transactions of varied sizes, then one larger than the budget on its own.
      for (let i = 0; i < 60; i++) await produce(p, 1, 5 + ((i * 37) % 190), 40);
      const budget = readBudgetBytes(mb);
      const bigRows = Math.ceil(budget / 80);
      await produce(p, 1, bigRows, 40);
      await produce(p, 3, 10, 40);
      assert.ok(bytesOf(p, 0, p.records.length) > 3 * budget, "the stream spans several budgets");
      const config = p.config({ memoryBudgetMb: mb });
      let start = 0;
      let runs = 0;
      let exceeded = 0;
      for (;;) {
        const s = await runOnce(config, { log: capture().log });
        if (s.records === 0) break;
        runs++;
        const next = Number(s.next_offset);
        assert.ok(isCommit(p.records[next - 1]), `run ${runs} ended at a commit`);
        assert.equal(s.partial_transaction, false);
        assert.equal(s.bytes, bytesOf(p, start, next), `run ${runs}: the bytes it read`);
        if (s.memory_budget_exceeded) {
          exceeded++;
          assert.equal(s.transactions, 1, "only a single transaction may exceed the budget");
          assert.ok(s.bytes > budget);
        } else assert.ok(s.bytes <= budget, `run ${runs}: ${s.bytes} bytes within ${budget}`);
        if (s.stopped_by === "memory" && !s.memory_budget_exceeded) {
          // The cut is as late as the budget allows: the next transaction would not have fit.
          let end = next;
          while (!isCommit(p.records[end])) end++;
          assert.ok(s.bytes + bytesOf(p, next, end + 1) > budget, `run ${runs} stopped too early`);
        } else if (s.stopped_by !== "memory") assert.equal(s.stopped_by, "end");
        start = next;
      }
      assert.equal(exceeded, 1, "the one transaction larger than the budget, applied whole");
      assert.ok(runs >= 4, `${runs} runs`);
      await assertSameTables(p, ["items"]);

      // Peak RSS of a whole run in its own process, with this budget and with the default one.
      const rss: Record<string, number> = {};
      for (const [label, budgetMb] of [
        [`${mb} MB`, mb],
        ["256 MB", 256],
      ] as const) {
        const url = await server.createDatabase(`mem${mb}_rss_${budgetMb}`);
        const r = await runProcess(process.execPath, [
          "--import",
          "tsx",
          join(import.meta.dirname, "support", "rss-run.ts"),
          JSON.stringify(p.config({ name: "rss", databaseUrl: url, memoryBudgetMb: budgetMb })),
        ]);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        rss[label] = out.max_rss_kb;
        t.diagnostic(
          `memory_budget_mb ${budgetMb}: ${out.summary.records} records, ${out.summary.bytes} bytes read, peak RSS ${(out.max_rss_kb / 1024).toFixed(1)} MB (${(out.rss_before_kb / 1024).toFixed(1)} MB before the run)`,
        );
      }
    } finally {
      await p.close();
    }
  });
}

/** Bounds on the arrival rate a run can have measured: records over the test's own clock. */
function arrivalBounds(records: number, firstRun: [number, number], lastRun: [number, number]) {
  return {
    low: records / ((lastRun[1] - firstRun[0]) / 1000),
    high: records / ((lastRun[0] - firstRun[1]) / 1000),
  };
}

test("status: arrival rate, capacity and time to catch up agree with the source and the schedule the test ran", async () => {
  const p = await makePair(server, "rates");
  try {
    await p.sql(`CREATE TABLE items (id serial PRIMARY KEY, v text)`);
    // Ticks 1 s apart, each adding 51 records (5 transactions of 10, and the relation record); a
    // run takes 100 (max_records) or a few more (to its transaction's end; relation records), a run a second.
    const tick = () => produce(p, 5, 8);
    await produce(p, 60, 8); // a backlog of 601 records
    const config = p.config({ maxRecords: 100, scheduleIntervalSeconds: 1 });
    const cfg = cliConfig(p, "sink-rates", "max_records: 100\n  schedule_interval_seconds: 1");
    const runs: { s: RunSummary; at: [number, number]; end: number }[] = [];
    let predicted: number | null = null;
    for (let i = 0; i < 40; i++) {
      const tickStart = Date.now();
      await tick();
      const end = p.records.length;
      const before = Date.now();
      const s = await runOnce(config, { log: capture().log });
      runs.push({ s, at: [before, Date.now()], end });
      assert.ok((s.records >= 100 && s.records <= 110) || s.lag === 0, `run ${i}: ${s.records} records`);
      if (i === 3) {
        const first = runs[0] as (typeof runs)[number];
        const { low, high } = arrivalBounds(end - first.end, first.at, [before, Date.now()]);
        const st = JSON.parse((await runCli(["status", "--config", cfg])).stdout);
        assert.ok(st.arrival_rate >= low && st.arrival_rate <= high, `${st.arrival_rate} in ${low}..${high}`);
        assert.ok(
          st.capacity >= 100 && st.capacity <= 110,
          `${st.capacity}: ~100 records per run, a run a second`,
        );
        assert.equal(st.keeping_up, true);
        assert.equal(st.lag, p.records.length - Number(s.next_offset));
        // lag / (capacity - arrival), for any arrival rate the test's clock allows.
        const [fast, slow] = [st.lag / (st.capacity - low), st.lag / (st.capacity - high)];
        assert.ok(
          st.time_to_catch_up >= fast - 0.1 && st.time_to_catch_up <= slow + 0.1,
          `${st.time_to_catch_up} s in ${fast}..${slow}`,
        );
        predicted = st.time_to_catch_up;
      }
      if (s.lag === 0) break;
      await sleep(Math.max(0, 1000 - (Date.now() - tickStart)));
    }
    const last = runs[runs.length - 1] as (typeof runs)[number];
    assert.equal(last.s.lag, 0, "caught up");
    assert.equal(last.s.time_to_catch_up, 0);
    // Predicted after run 3 (lag ~400 at ~100 - 51 records/s: about 8 s). The ticks' spacing
    // stretches past 1 s when the machine is busy (and once more for the status call), which the
    // prediction, made with a 1 s interval, cannot know: a quarter of the time and a tick of slack.
    const took = ((last.at[1] - (runs[3] as (typeof runs)[number]).at[1]) / 1000) as number;
    assert.ok(
      predicted !== null && Math.abs(predicted - took) <= took / 4 + 1,
      `predicted ${predicted} s to catch up, took ${took} s`,
    );
    await assertSameTables(p, ["items"]);
  } finally {
    await p.close();
  }
});

test("a source that outruns a tiny budget: the runs warn, the summary and status say so", async () => {
  const p = await makePair(server, "outrun");
  try {
    await p.sql(`CREATE TABLE items (id serial PRIMARY KEY, v text)`);
    const config = p.config({ maxRecords: 20, scheduleIntervalSeconds: 1 });
    const runs: { s: RunSummary; at: [number, number]; end: number; warned: boolean }[] = [];
    for (let i = 0; i < 7; i++) {
      await produce(p, 10, 3); // 50 records a tick; a run takes 20
      const { log, warnings } = capture();
      const before = Date.now();
      const s = await runOnce(config, { log });
      const warned = warnings.some((w) => /the source outruns the schedule/.test(w.msg));
      runs.push({ s, at: [before, Date.now()], end: p.records.length, warned });
      // 20, or 21 when a tick's relation record is among them.
      assert.ok(s.records === 20 || s.records === 21, `${s.records}`);
      assert.equal(s.stopped_by, "max_records");
    }
    // The warning needs five runs of history, then fires on every run.
    assert.deepEqual(
      runs.map((r) => r.warned),
      [false, false, false, false, true, true, true],
    );
    assert.deepEqual(
      runs.map((r) => r.s.schedule_outrun),
      runs.map((r) => r.warned),
    );
    const first = runs[0] as (typeof runs)[number];
    const last = runs[runs.length - 1] as (typeof runs)[number];
    const { low, high } = arrivalBounds(last.end - first.end, first.at, last.at);
    assert.ok(last.s.arrival_rate !== null && last.s.arrival_rate >= low && last.s.arrival_rate <= high);
    assert.ok(
      (last.s.capacity as number) >= 20 && (last.s.capacity as number) <= 21,
      "20 records per run, a run a second",
    );
    assert.ok((last.s.arrival_rate as number) > (last.s.capacity as number));
    assert.equal(last.s.time_to_catch_up, null, "never, at these rates");
    const st = JSON.parse(
      (
        await runCli([
          "status",
          "--config",
          cliConfig(p, "sink-outrun", "max_records: 20\n  schedule_interval_seconds: 1"),
        ])
      ).stdout,
    );
    assert.equal(st.keeping_up, false);
    assert.equal(st.capacity, last.s.capacity);
    assert.equal(st.time_to_catch_up, null);
    assert.equal(st.lag, p.records.length - Number(last.s.next_offset));
    assert.ok(st.arrival_rate >= low && st.arrival_rate <= high);
  } finally {
    await p.close();
  }
});

test("a budget-sized run that runs out of time halves what it read for the next run, then returns to the budget", async () => {
  const p = await makePair(server, "shrink");
  const blocker = new pg.Client({ connectionString: p.targetUrl });
  try {
    await p.sql(`CREATE TABLE items (id serial PRIMARY KEY, v text)`);
    await produce(p, 30, 8); // 301 records
    await p.run(); // the table exists on the target; nothing left
    await produce(p, 30, 8);
    await blocker.connect();
    await blocker.query(`BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE`);
    // The lock wait is capped by the run's 3 s deadline: out of time, not someone else's lock.
    await assert.rejects(p.run({ runTimeoutMs: 3000 }), /the next run reads at most 150 records/);
    await blocker.query("ROLLBACK");
    const limited = await p.run();
    assert.equal(limited.stopped_by, "max_records");
    // 150, and the rest of the transaction it is in (10 records each).
    assert.ok(limited.records >= 150 && limited.records < 160, `${limited.records}`);
    const rest = await p.run();
    assert.equal(rest.stopped_by, "end");
    assert.equal(rest.lag, 0);
    const r = await p.target.query(
      `SELECT batch_limit FROM fluvio_sink.state WHERE connector = 'sink-shrink'`,
    );
    assert.equal(r.rows[0].batch_limit, null, "back to the budget once the limit no longer binds");
    await assertSameTables(p, ["items"]);
  } finally {
    await blocker.end().catch(() => {});
    await p.close();
  }
});
