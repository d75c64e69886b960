import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import pg from "pg";
import { DEFAULTS, type SinkConfig } from "../../src/config.js";
import { silentLogger } from "../../src/log.js";
import { type RunSummary, runOnce } from "../../src/run.js";
import { WalCapture } from "./capture.js";
import { FluvioTestCluster } from "./fluvio/cluster.js";
import { type PgServer, startPostgres } from "./pg.js";

/** A source database with WAL capture, a target database, and a topic export file between them. */
export interface Pair {
  source: pg.Client;
  target: pg.Client;
  sourceUrl: string;
  targetUrl: string;
  topicFile: string;
  /** Every record written to the topic so far. */
  records: string[];
  /** Runs SQL on the source. */
  sql(text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** Moves what the source committed since the last call into the topic. */
  capture(): Promise<string[]>;
  /** Takes what the source committed since the last call without writing it to the topic. */
  wal_take_lines(): Promise<string[]>;
  config(overrides?: Partial<SinkConfig>): SinkConfig;
  run(overrides?: Partial<SinkConfig>): Promise<RunSummary>;
  /** Runs until a run consumes nothing; returns the summaries. */
  runUntilIdle(overrides?: Partial<SinkConfig>): Promise<RunSummary[]>;
  close(): Promise<void>;
}

export async function makePair(server: PgServer, name = "t"): Promise<Pair> {
  const sourceUrl = await server.createDatabase(`${name}_src`);
  const targetUrl = await server.createDatabase(`${name}_dst`);
  const source = new pg.Client({ connectionString: sourceUrl });
  const target = new pg.Client({ connectionString: targetUrl });
  source.on("error", () => {});
  target.on("error", () => {});
  await source.connect();
  await target.connect();
  const wal = await WalCapture.create(source, `cap_${new URL(sourceUrl).pathname.slice(1)}`);
  const dir = mkdtempSync(join(tmpdir(), "fps-topic-"));
  const topicFile = join(dir, "topic.jsonl");
  writeFileSync(topicFile, "");
  const records: string[] = [];
  const config = (o: Partial<SinkConfig> = {}): SinkConfig => ({
    name: `sink-${name}`,
    topic: "postgres-topic",
    partition: 0,
    databaseUrl: targetUrl,
    source: { kind: "file", path: topicFile },
    maxRecords: DEFAULTS.maxRecords,
    memoryBudgetMb: DEFAULTS.memoryBudgetMb,
    // TEST_SEGMENT_BYTES=1 runs every test with each source transaction in its own segment.
    segmentBytes: Number(process.env.TEST_SEGMENT_BYTES ?? DEFAULTS.segmentBytes),
    scheduleIntervalSeconds: DEFAULTS.scheduleIntervalSeconds,
    maxTransactionRecords: DEFAULTS.maxTransactionRecords,
    stateSchema: DEFAULTS.stateSchema,
    missingRows: "skip",
    connectTimeoutMs: DEFAULTS.connectTimeoutMs,
    readTimeoutMs: DEFAULTS.readTimeoutMs,
    fetchMaxBytes: DEFAULTS.fetchMaxBytes,
    runTimeoutMs: DEFAULTS.runTimeoutMs,
    statementTimeoutMs: DEFAULTS.statementTimeoutMs,
    lockTimeoutMs: DEFAULTS.lockTimeoutMs,
    queryTimeoutMs: DEFAULTS.statementTimeoutMs + DEFAULTS.queryTimeoutMarginMs,
    tcpKeepaliveMs: DEFAULTS.tcpKeepaliveMs,
    onLostRecords: DEFAULTS.onLostRecords,
    startLsn: DEFAULTS.startLsn,
    onConflict: DEFAULTS.onConflict,
    onError: DEFAULTS.onError,
    ...o,
  });
  const pair: Pair = {
    source,
    target,
    sourceUrl,
    targetUrl,
    topicFile,
    records,
    sql: (text, params) => source.query(text, params),
    async capture() {
      const lines = await wal.take();
      if (lines.length > 0) appendFileSync(topicFile, `${lines.join("\n")}\n`);
      records.push(...lines);
      return lines;
    },
    wal_take_lines: () => wal.take(),
    config,
    run: (o) => runOnce(config(o), { log: silentLogger }),
    async runUntilIdle(o) {
      const out: RunSummary[] = [];
      for (let i = 0; i < 10_000; i++) {
        const s = await runOnce(config(o), { log: silentLogger });
        out.push(s);
        if (s.records === 0) return out;
      }
      throw new Error("runs never went idle");
    },
    async close() {
      await source.end();
      await target.end();
    },
  };
  return pair;
}

async function tableRows(c: pg.Client, table: string): Promise<string[]> {
  const r = await c.query(`SELECT x::text AS r FROM ${table} AS x`);
  return r.rows.map((row) => row.r as string).sort();
}

async function tableColumns(c: pg.Client, table: string): Promise<string[]> {
  const r = await c.query(
    `SELECT attname || ' ' || format_type(atttypid, atttypmod) AS c FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
  );
  return r.rows.map((row) => row.c as string);
}

/** Asserts that each table has the same columns (names, types) and the same rows on both sides. */
export async function assertSameTables(p: Pair, tables: string[]): Promise<void> {
  for (const t of tables) {
    assert.deepEqual(await tableColumns(p.target, t), await tableColumns(p.source, t), `columns of ${t}`);
    assert.deepEqual(await tableRows(p.target, t), await tableRows(p.source, t), `rows of ${t}`);
  }
}

export async function storedOffset(p: Pair, connector = "sink-t"): Promise<string | null> {
  const r = await p.target
    .query(`SELECT next_offset::text AS o FROM fluvio_sink.state WHERE connector = $1`, [connector])
    .catch(() => ({ rows: [] as { o: string }[] }));
  return r.rows[0]?.o ?? null;
}

/** Moves what the source committed into the topic, runs the sink until idle, compares the tables. */
export async function syncAndCompare(p: Pair, tables: string[]): Promise<void> {
  await p.capture();
  await p.runUntilIdle();
  await assertSameTables(p, tables);
}

/**
 * Registers hooks that start a throwaway PostgreSQL and one source/target pair for the calling test
 * file, and returns an accessor for the pair.
 */
export function pairForFile(name: string): () => Pair {
  let server: PgServer | undefined;
  let pair: Pair | undefined;
  before(async () => {
    server = await startPostgres();
    pair = await makePair(server, name);
  });
  after(async () => {
    await pair?.close();
    await server?.stop();
  });
  return () => {
    if (!pair) throw new Error("the pair is not started yet");
    return pair;
  };
}

/** Registers hooks that start a throwaway PostgreSQL and a Fluvio test cluster for the calling file. */
export function pgAndFluvioForFile(): () => { server: PgServer; cluster: FluvioTestCluster } {
  let server: PgServer | undefined;
  let cluster: FluvioTestCluster | undefined;
  before(async () => {
    server = await startPostgres();
    cluster = await FluvioTestCluster.start();
  });
  after(async () => {
    await cluster?.stop();
    await server?.stop();
  });
  return () => {
    if (!server || !cluster) throw new Error("the services are not started yet");
    return { server, cluster };
  };
}
