import assert from "node:assert/strict";
import { test } from "node:test";
import { lambdaMemoryBudgetMb, readBudgetBytes } from "../src/budget.js";
import { nextBatchLimit } from "../src/run.js";
import { appendSample, estimateThroughput, HISTORY_RUNS, type RunSample } from "../src/throughput.js";

/** Runs `intervalS` apart; the source's end grows by `arrival` a run, each run takes `take`. */
function runs(n: number, intervalS: number, arrival: number, take: number, backlog = 0): RunSample[] {
  const out: RunSample[] = [];
  let end = backlog;
  let next = 0;
  for (let i = 0; i < n; i++) {
    end += arrival;
    const records = Math.min(take, end - next);
    next += records;
    out.push({
      at: 1_000_000 + i * intervalS * 1000,
      end: String(end),
      next: String(next),
      records,
      bytes: records * 200,
      ms: 100 + records,
      budget_ms: 117_000,
      stopped_by: records === take ? "max_records" : "end",
    });
  }
  return out;
}

const budget = { intervalSeconds: 60, maxRecords: null, readBytes: readBudgetBytes(256) };

test("arrival over the runs kept, capacity from runs a limit stopped, time to catch up", () => {
  const t = estimateThroughput(runs(6, 60, 600, 1200, 6000), budget);
  assert.equal(t.arrival_rate, 10, "600 records a minute");
  assert.equal(t.records_per_run, 1200);
  assert.equal(t.capacity, 20);
  // Lag after 6 runs: 6000 + 3600 - 7200 = 2400, shrinking at 20 - 10 records/s.
  assert.equal(t.time_to_catch_up, 240);
  assert.equal(t.keeping_up, true);
  assert.equal(t.outrun, false);
});

test("outrun only with enough runs, arrival over capacity and a lag that does not shrink", () => {
  const slow = runs(6, 60, 1200, 600);
  const t = estimateThroughput(slow, budget);
  assert.equal(t.keeping_up, false);
  assert.equal(t.time_to_catch_up, null, "never");
  assert.equal(t.outrun, true);
  assert.equal(estimateThroughput(slow.slice(0, 4), budget).outrun, false, "four runs are not enough");
});

test("caught-up runs model the capacity from their speed, the memory budget and max_records", () => {
  const quiet = runs(5, 60, 300, 1_000_000);
  const t = estimateThroughput(quiet, budget);
  assert.equal(t.time_to_catch_up, 0);
  assert.equal(t.keeping_up, true);
  // 1500 records in 5 * 100 + 1500 ms, over half of 117 s; memory allows 33554432 / 200 records.
  assert.equal(t.records_per_run, Math.floor((1500 / 2000) * 58_500));
  assert.equal(estimateThroughput(quiet, { ...budget, maxRecords: 500 }).records_per_run, 500);
  assert.equal(estimateThroughput(quiet, { ...budget, readBytes: 200 * 700 }).records_per_run, 700);
  // Without a configured interval, the runs' spacing.
  assert.equal(estimateThroughput(quiet, { ...budget, intervalSeconds: null }).schedule_interval_seconds, 60);
});

test("nothing known yet: nulls, not guesses", () => {
  const t = estimateThroughput([], budget, null);
  assert.deepEqual(
    [t.arrival_rate, t.capacity, t.time_to_catch_up, t.keeping_up, t.outrun],
    [null, null, null, null, false],
  );
  const one = runs(1, 60, 0, 10);
  assert.equal(estimateThroughput(one, budget).arrival_rate, null, "one run gives no rate");
  assert.equal(estimateThroughput(one, budget).time_to_catch_up, 0);
});

test("the history keeps the last runs", () => {
  let h: RunSample[] = [];
  for (const s of runs(HISTORY_RUNS + 3, 60, 10, 10)) h = appendSample(h, s);
  assert.equal(h.length, HISTORY_RUNS);
  assert.equal(h[h.length - 1]?.next, String((HISTORY_RUNS + 3) * 10));
});

test("a reduced batch limit grows back: doubling to max_records, or to the budget once it no longer binds", () => {
  assert.equal(nextBatchLimit(null, 1000, "end"), null);
  assert.equal(nextBatchLimit(100, 1000, "max_records"), 200);
  assert.equal(nextBatchLimit(600, 1000, "max_records"), null);
  assert.equal(nextBatchLimit(100, null, "max_records"), 200);
  assert.equal(nextBatchLimit(100, null, "end"), null);
  assert.equal(nextBatchLimit(100, null, "memory"), null);
});

test("memory budgets: bytes read per MB, and the Lambda's share of its memory", () => {
  assert.equal(readBudgetBytes(8), 1024 * 1024);
  assert.equal(lambdaMemoryBudgetMb(512), 288);
  assert.equal(lambdaMemoryBudgetMb(1024), 672);
  assert.equal(lambdaMemoryBudgetMb(128), 16, "a floor for the smallest functions");
});
