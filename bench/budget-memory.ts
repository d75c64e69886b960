/**
 * What a batch costs in memory per byte of records read (src/budget.ts, HELD_PER_BYTE_READ): the
 * benchmark's workload captured from a real source, then one run per stream size, each in a fresh
 * process on a fresh target with no batch limit, reporting its peak RSS. The slope between sizes is
 * the cost per byte read; the smallest run gives the process's own footprint.
 * BENCH_MEMORY_CHANGES (default 60000) sets the largest stream.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runProcess } from "../test/support/cli.js";
import { makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";
import { applyWorkload } from "./workload.js";

const CHANGES = Number(process.env.BENCH_MEMORY_CHANGES ?? 60_000);
const out = (s: string) => process.stdout.write(`${s}\n`);

const server = await startPostgres();
try {
  const p = await makePair(server, "mem");
  await p.sql(
    `CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, total numeric(12,2), status text, created timestamptz);
     CREATE TABLE events (id bigint PRIMARY KEY, kind varchar(32), payload jsonb, at timestamptz);
     CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint, name text, opened date);`,
  );
  await applyWorkload(p.source, CHANGES);
  const records = await p.capture();
  out(`stream: ${CHANGES} changes, ${records.length} records`);
  out("| records | bytes read | peak RSS (MB) | RSS above the idle run (MB) | per byte read |");
  out("|---|---|---|---|---|");
  let idle: number | null = null;
  for (const share of [0, 1 / 8, 1 / 4, 1 / 2, 1]) {
    // A prefix of the stream that ends at a commit.
    let n = Math.floor(records.length * share);
    while (n > 0 && !(records[n - 1] as string).includes('"type":"commit"')) n--;
    const file = join(p.topicFile, "..", `prefix-${n}.jsonl`);
    writeFileSync(file, records.slice(0, n).join("\n") + (n > 0 ? "\n" : ""));
    const targetUrl = await server.createDatabase(`mem_dst_${n}`);
    const config = p.config({
      name: `mem-${n}`,
      databaseUrl: targetUrl,
      source: { kind: "file", path: file },
      maxRecords: null,
      memoryBudgetMb: 1_000_000,
    });
    const r = await runProcess(process.execPath, [
      "--import",
      "tsx",
      join(import.meta.dirname, "..", "test", "support", "rss-run.ts"),
      JSON.stringify(config),
    ]);
    if (r.code !== 0) throw new Error(r.stderr);
    const { summary, max_rss_kb } = JSON.parse(r.stdout);
    const mb = max_rss_kb / 1024;
    idle ??= mb;
    const above = mb - idle;
    out(
      `| ${summary.records} | ${summary.bytes} | ${mb.toFixed(1)} | ${above.toFixed(1)} | ${summary.bytes > 0 ? ((above * 1024 * 1024) / summary.bytes).toFixed(2) : "-"} |`,
    );
  }
  await p.close();
} finally {
  await server.stop();
}
