/**
 * `npm run bench:memory`: peak memory of one run over one large batch. BENCH_CHANGES (default
 * 1,000,000) changes of the benchmark's workload are made on a real source PostgreSQL and captured
 * from its logical decoding into a topic file (kept at MEM_TOPIC, default in the temporary
 * directory, with the source tables' checksums next to it, so a second measurement reuses it); then
 * the sink's CLI applies the whole file in ONE batch (max_records above the record count) to a fresh
 * target under /usr/bin/time, which reports the process's peak resident set size. An idle run (the
 * same state, nothing to read) gives the baseline the batch adds to. The target is checked against
 * the source's checksums. SINK_ROOT runs another checkout's CLI (e.g. an older commit, to compare).
 * Prints peak RSS and bytes per record held for the batch. Measurement lives here, never in tests.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";
import { applyWorkload, startWorkload, TABLES, TABLES_DDL } from "./workload.js";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 1_000_000);
const topicFile = process.env.MEM_TOPIC ?? join(tmpdir(), `fps-memory-${CHANGES}.jsonl`);
const sinkRoot = process.env.SINK_ROOT ?? join(import.meta.dirname, "..");
const out = (s: string) => process.stdout.write(`${s}\n`);

/** One checksum per table: its rows as text, in key order. */
async function checksums(c: pg.ClientBase): Promise<Record<string, string>> {
  const sums: Record<string, string> = {};
  for (const t of TABLES) {
    const r =
      await c.query(`SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY id)), '')
      AS s FROM ${t} x`);
    sums[t] = r.rows[0].s as string;
  }
  return sums;
}

interface Measured {
  peakRssKb: number;
  wallMs: number;
  summary: { records: number; duration_ms: number };
}

function runCli(config: string): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      "/usr/bin/time",
      ["-v", process.execPath, "--import", "tsx", join(sinkRoot, "src", "cli.ts"), "run", "--config", config],
      { cwd: sinkRoot, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`sink exited with ${code}: ${stderr.slice(-4000)}`));
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      if (!m) return reject(new Error(`no peak RSS in /usr/bin/time's output: ${stderr.slice(-2000)}`));
      resolve({ peakRssKb: Number(m[1]), wallMs: performance.now() - started, summary: JSON.parse(stdout) });
    });
  });
}

function config(dir: string, name: string, url: string, maxRecords: number): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    `name: ${name}
type: postgres-sink
topic: bench-topic
parameters:
  url: secrets.FLUVIO_PG_DATABASE_URL
  source: file:${topicFile}
  max_records: ${maxRecords}
  max_transaction_records: ${maxRecords}
  run_timeout_ms: 3600000
  memory_budget_mb: 100000
secrets:
  FLUVIO_PG_DATABASE_URL: ${url}
`,
  );
  return path;
}

const server = await startPostgres();
try {
  const sumsFile = `${topicFile}.sums.json`;
  if (!existsSync(sumsFile)) {
    const p = await makePair(server, "mem");
    await p.sql(TABLES_DDL);
    let t = performance.now();
    // In slices, so the capture never holds more than a slice's decoding at once.
    const progress = startWorkload();
    for (let done = 0; done < CHANGES; done += 100_000) {
      await applyWorkload(p.source, Math.min(100_000, CHANGES - done), progress);
      await p.capture();
      p.records.length = 0;
    }
    out(`made and captured ${CHANGES} changes in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    renameSync(p.topicFile, topicFile);
    writeFileSync(sumsFile, JSON.stringify(await checksums(p.source)));
    await p.close();
  }
  const expected = JSON.parse(readFileSync(sumsFile, "utf8")) as Record<string, string>;
  const records = readFileSync(topicFile, "utf8").split("\n").length - 1;
  out(`stream: ${records} records, ${(statSync(topicFile).size / 1e6).toFixed(1)} MB (${topicFile})`);
  out(`sink: ${sinkRoot}`);

  const url = await server.createDatabase("mem_dst");
  const target = new pg.Client({ connectionString: url });
  // The server stops in `finally` even when a run fails: that failure, not the disconnect, is the news.
  target.on("error", () => {});
  await target.connect();
  await target.query(TABLES_DDL);
  const dir = mkdtempSync(join(tmpdir(), "fps-memory-"));
  const one = await runCli(config(dir, "mem-one", url, records + 1));
  if (one.summary.records !== records)
    throw new Error(`the run read ${one.summary.records} records, not ${records}: not one batch`);
  const got = await checksums(target);
  if (JSON.stringify(got) !== JSON.stringify(expected))
    throw new Error(
      `the target differs from the source: ${JSON.stringify(got)} vs ${JSON.stringify(expected)}`,
    );
  const idle = await runCli(config(dir, "mem-one", url, records + 1));
  if (idle.summary.records !== 0) throw new Error("the idle run read records");
  await target.end();
  const perRecord = ((one.peakRssKb - idle.peakRssKb) * 1024) / records;
  out(
    `one batch of ${records} records: peak RSS ${(one.peakRssKb / 1024).toFixed(0)} MB ` +
      `(idle run ${(idle.peakRssKb / 1024).toFixed(0)} MB), ${perRecord.toFixed(0)} bytes/record above idle; ` +
      `process ${(one.wallMs / 1000).toFixed(1)} s, in-run ${one.summary.duration_ms} ms; target exact`,
  );
} finally {
  await server.stop();
}
