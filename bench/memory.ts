/**
 * `npm run bench:memory`: peak memory of one run over one large batch. BENCH_CHANGES (default
 * 1,000,000) changes of the benchmark's workload are made on a real source PostgreSQL and captured
 * from its logical decoding into a topic file (kept at MEM_TOPIC, default in the temporary
 * directory, with the source tables' checksums next to it, so a second measurement reuses it); then
 * the sink's CLI applies the whole file in ONE batch (max_records above the record count) to a fresh
 * target under /usr/bin/time, which reports the process's peak resident set size. An idle run (the
 * same state, nothing to read) gives the baseline the batch adds to. The target is checked against
 * the source's checksums. Prints peak RSS and bytes per record held for the batch. Measurement lives
 * here, never in tests.
 *
 * The CLI runs as a user's process runs it (BENCH_CLI=built, the default): `npm run build`, then
 * package.json's bin entry. BENCH_CLI=tsx runs src/cli.ts through tsx instead, which adds about 30 MB
 * that a user's process does not have. SINK_ROOT measures another checkout instead of this one: its
 * bin entry as that checkout built it, or its src/cli.ts through tsx when that bin does not start.
 * BENCH_BASELINE=<another checkout> measures that checkout too (its bin, which must be built), on a
 * fresh target, and prints the ratio. Settings an older checkout does not know (it rejects them by
 * name) are left out of its config: it has no such limit to lift.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";
import { type Cli, cliNode, cliNodeVersion, otherCli, ownCli, ownRoot, writeBenchConfig } from "./cli.js";
import { applyWorkload, startWorkload, TABLES, TABLES_DDL } from "./workload.js";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 1_000_000);
const topicFile = process.env.MEM_TOPIC ?? join(tmpdir(), `fps-memory-${CHANGES}.jsonl`);
const sinkCli =
  process.env.SINK_ROOT && resolve(process.env.SINK_ROOT) !== ownRoot
    ? otherCli(process.env.SINK_ROOT, "SINK_ROOT", "tsx")
    : ownCli(process.env.BENCH_CLI ?? "built");
const baselineCli = process.env.BENCH_BASELINE
  ? otherCli(process.env.BENCH_BASELINE, "BENCH_BASELINE", "none")
  : null;
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

class CliFailed extends Error {
  constructor(
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`the CLI exited with ${code}: ${stderr.slice(-4000)}`);
  }
}

function runCli(cli: Cli, config: string): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn("/usr/bin/time", ["-v", cliNode, ...cli.args, "run", "--config", config], {
      cwd: cli.root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      if (code !== 0) return reject(new CliFailed(code, stderr));
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      if (!m) return reject(new Error(`no peak RSS in /usr/bin/time's output: ${stderr.slice(-2000)}`));
      resolve({ peakRssKb: Number(m[1]), wallMs: performance.now() - started, summary: JSON.parse(stdout) });
    });
  });
}

/**
 * Settings that lift the current sink's limits for the one big batch; a checkout from before them
 * rejects them as unknown (and has no such limit).
 */
const LIFTED: Record<string, number> = { run_timeout_ms: 3_600_000, memory_budget_mb: 100_000 };
const LIFTS = Object.keys(LIFTED);

/**
 * A run of `cli` with a config written by `write` (given the settings to leave out): when the CLI
 * rejects some of LIFTS by name, they are left out (remembered in `omitted`) and the run made again.
 */
async function runWith(
  cli: Cli,
  omitted: Set<string>,
  write: (omit: Set<string>) => string,
): Promise<Measured> {
  for (;;) {
    try {
      return await runCli(cli, write(omitted));
    } catch (e) {
      const unknown =
        e instanceof CliFailed && e.code === 2
          ? [...e.stderr.matchAll(/parameters\.(\w+) is not a known setting/g)].map((m) => m[1] as string)
          : [];
      if (unknown.length === 0 || !unknown.every((k) => LIFTS.includes(k) && !omitted.has(k))) throw e;
      for (const k of unknown) omitted.add(k);
    }
  }
}

function config(dir: string, name: string, url: string, maxRecords: number, omit: Set<string>): string {
  const lifted = { ...LIFTED };
  for (const k of omit) delete lifted[k];
  return writeBenchConfig(dir, name, url, topicFile, {
    max_records: maxRecords,
    max_transaction_records: maxRecords,
    ...lifted,
  });
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
  out(`sink: node ${sinkCli.how} (Node ${cliNodeVersion})`);
  if (baselineCli) out(`baseline: node ${baselineCli.how}`);

  const dir = mkdtempSync(join(tmpdir(), "fps-memory-"));
  /** One batch of the whole stream on a fresh target, checked, then an idle run on the same state. */
  const measure = async (label: string, cli: Cli, db: string) => {
    const url = await server.createDatabase(db);
    const target = new pg.Client({ connectionString: url });
    // The server stops in `finally` even when a run fails: that failure, not the disconnect, is the news.
    target.on("error", () => {});
    await target.connect();
    try {
      await target.query(TABLES_DDL);
      const omitted = new Set<string>();
      const write = (omit: Set<string>) => config(dir, db, url, records + 1, omit);
      const one = await runWith(cli, omitted, write);
      if (one.summary.records !== records)
        throw new Error(
          `${label}: the run read ${one.summary.records} records, not ${records}: not one batch`,
        );
      const got = await checksums(target);
      if (JSON.stringify(got) !== JSON.stringify(expected))
        throw new Error(
          `${label}: the target differs from the source: ${JSON.stringify(got)} vs ${JSON.stringify(expected)}`,
        );
      const idle = await runWith(cli, omitted, write);
      if (idle.summary.records !== 0) throw new Error(`${label}: the idle run read records`);
      const perRecord = ((one.peakRssKb - idle.peakRssKb) * 1024) / records;
      out(
        `${label}: one batch of ${records} records: peak RSS ${(one.peakRssKb / 1024).toFixed(0)} MB ` +
          `(idle run ${(idle.peakRssKb / 1024).toFixed(0)} MB), ${perRecord.toFixed(0)} bytes/record above idle; ` +
          `process ${(one.wallMs / 1000).toFixed(1)} s, in-run ${one.summary.duration_ms} ms; target exact` +
          (omitted.size > 0 ? ` (config without ${[...omitted].join(", ")}, which it does not know)` : ""),
      );
      return { peakKb: one.peakRssKb, perRecord };
    } finally {
      await target.end();
    }
  };
  const sink = await measure("sink", sinkCli, "mem_dst");
  if (baselineCli) {
    const base = await measure("baseline", baselineCli, "mem_dst_base");
    out(
      `sink vs baseline: peak RSS ${(sink.peakKb / base.peakKb).toFixed(2)}x the baseline's, ` +
        `bytes/record above idle ${(sink.perRecord / base.perRecord).toFixed(2)}x the baseline's`,
    );
  }
} finally {
  await server.stop();
}
