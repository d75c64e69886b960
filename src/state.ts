import type pg from "pg";
import { type CachedRelation, tableOf } from "./apply/model.js";
import { qualified, quoteIdent } from "./apply/sql.js";
import type { Relation } from "./events/types.js";
import type { RunSample } from "./throughput.js";

/**
 * The sink's own state, kept in the target database and written only in the transaction that applies
 * the data it describes, so a crash leaves both or neither.
 */

export interface PartitionKey {
  connector: string;
  topic: string;
  partition: number;
}

export interface SinkState {
  nextOffset: bigint;
  lastCommitLsn: bigint | null;
  /** The next record continues a source transaction whose first part is already applied. */
  inTransaction: boolean;
  relations: Map<number, CachedRelation>;
  types: Map<number, { namespace: string; name: string }>;
  /** A smaller record limit a run fell back to after running out of time (null: the configured one). */
  batchLimit: number | null;
  /** Byte position where nextOffset starts (file source), verified before it is used. */
  resumePosition: bigint | null;
  /** SHA-256 (hex) of the record at nextOffset - 1, checked on resume against what the source has. */
  lastRecordSha256: string | null;
  /**
   * Dropped source transactions that never committed, by final LSN: each re-send must come before
   * any transaction with a greater final LSN.
   */
  awaitedResends: AwaitedResend[];
  /**
   * Commit timestamp of the last applied source transaction, as the records carry it (microseconds
   * since 2000-01-01 UTC); null or absent when unknown.
   */
  lastCommitTime?: bigint | null;
  /** The last successful runs, oldest first, for the arrival rate and capacity (src/throughput.ts). */
  runHistory?: RunSample[];
}

export interface AwaitedResend {
  finalLsn: bigint;
  /** The offsets of the dropped part. */
  from: bigint;
  to: bigint;
}

/** How runs have gone lately: written after each run, for `status` and the metrics. */
export interface RunHealth {
  lastSuccessAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  consecutiveFailures: number;
}

/** PostgreSQL's epoch (2000-01-01 UTC), which commit timestamps count from, in Unix milliseconds. */
export const PG_EPOCH_MS = 946_684_800_000;

/** Seconds from a commit timestamp (µs since 2000-01-01) to `now` (Unix ms), never negative. */
export function secondsSince(commitTime: bigint, now = Date.now()): number {
  const ms = now - (PG_EPOCH_MS + Number(commitTime / 1000n));
  return Math.max(0, Math.round(ms) / 1000);
}

/** The commit time as an ISO timestamp, for people. */
export function commitTimeIso(commitTime: bigint): string {
  return new Date(PG_EPOCH_MS + Number(commitTime / 1000n)).toISOString();
}

const TABLE = "state";

export function emptyState(nextOffset = 0n): SinkState {
  return {
    nextOffset,
    lastCommitLsn: null,
    inTransaction: false,
    relations: new Map(),
    types: new Map(),
    batchLimit: null,
    resumePosition: null,
    lastRecordSha256: null,
    awaitedResends: [],
  };
}

/**
 * Columns added to the state table after its first version: a table created earlier gets them when a
 * run finds them missing. Each is nullable or has a default, so older rows load as they are.
 */
const ADDED_COLUMNS: [name: string, definition: string][] = [
  ["last_commit_time", "timestamptz"],
  ["last_success_at", "timestamptz"],
  ["last_error", "text"],
  ["last_error_at", "timestamptz"],
  ["consecutive_failures", "integer NOT NULL DEFAULT 0"],
  ["resume_position", "bigint"],
  ["last_record_sha256", "text"],
  ["awaited_resend", "jsonb"],
  ["run_history", "jsonb"],
];

/** The columns of the state table that exist (empty: no table). */
export async function stateColumns(client: pg.ClientBase, schema: string): Promise<Set<string>> {
  const r = await client.query(
    `SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
    [qualified(schema, TABLE)],
  );
  return new Set(r.rows.map((row) => row.attname as string));
}

/**
 * Creates the state table, or adds the columns it lacks, if needed, in its own short transaction,
 * serialised across sinks.
 */
export async function ensureStateTable(client: pg.ClientBase, schema: string): Promise<void> {
  const columns = await stateColumns(client, schema);
  if (columns.size > 0 && ADDED_COLUMNS.every(([name]) => columns.has(name))) return;
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended('fluvio-postgres-sink/setup', 0))");
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${qualified(schema, TABLE)} (
         connector text NOT NULL,
         topic text NOT NULL,
         partition integer NOT NULL,
         next_offset bigint NOT NULL,
         last_commit_lsn numeric(20, 0),
         in_transaction boolean NOT NULL DEFAULT false,
         relations jsonb NOT NULL DEFAULT '[]',
         types jsonb NOT NULL DEFAULT '[]',
         batch_limit integer,
         updated_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (connector, topic, partition))`,
    );
    for (const [name, definition] of ADDED_COLUMNS)
      await client.query(
        `ALTER TABLE ${qualified(schema, TABLE)} ADD COLUMN IF NOT EXISTS ${quoteIdent(name)} ${definition}`,
      );
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

/** Takes the single-writer lock for a partition, for the rest of the open transaction. */
export async function tryLockPartition(client: pg.ClientBase, key: PartitionKey): Promise<boolean> {
  const r = await client.query("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS ok", [
    JSON.stringify(["fluvio-postgres-sink", key.connector, key.topic, key.partition]),
  ]);
  return r.rows[0]?.ok === true;
}

export async function loadState(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
): Promise<SinkState | null> {
  const r = await client.query(
    `SELECT next_offset::text, last_commit_lsn::text, in_transaction, relations, types, batch_limit,
            ${COMMIT_TIME_US} AS last_commit_time,
            resume_position::text, last_record_sha256, awaited_resend, run_history
       FROM ${qualified(schema, TABLE)} WHERE connector = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
    [key.connector, key.topic, key.partition],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    nextOffset: BigInt(row.next_offset),
    lastCommitLsn: row.last_commit_lsn === null ? null : BigInt(row.last_commit_lsn),
    inTransaction: row.in_transaction,
    relations: new Map((row.relations as CachedRelation[]).map((c) => [c.relation.relId, c])),
    types: new Map(
      (row.types as { id: number; namespace: string; name: string }[]).map((t) => [
        t.id,
        { namespace: t.namespace, name: t.name },
      ]),
    ),
    batchLimit: row.batch_limit,
    resumePosition: row.resume_position === null ? null : BigInt(row.resume_position),
    lastRecordSha256: row.last_record_sha256,
    awaitedResends: ((row.awaited_resend ?? []) as { final_lsn: string; from: string; to: string }[]).map(
      (a) => ({ finalLsn: BigInt(a.final_lsn), from: BigInt(a.from), to: BigInt(a.to) }),
    ),
    lastCommitTime: row.last_commit_time === null ? null : BigInt(row.last_commit_time),
    runHistory: (row.run_history ?? []) as RunSample[],
  };
}

/** last_commit_time back as microseconds since 2000-01-01, exactly (extract gives numeric). */
const COMMIT_TIME_US = `((extract(epoch FROM last_commit_time) - 946684800) * 1000000)::bigint::text`;
/** A commit timestamp parameter (µs since 2000-01-01, as text) as timestamptz. */
const commitTimeParam = (n: number) =>
  `(timestamptz '2000-01-01 00:00:00+00' + $${n}::bigint * interval '1 microsecond')`;

/**
 * Records a run that succeeded (applied something or found nothing to do), in the transaction of the
 * data: the failure count restarts, and the last applied commit's time moves on.
 */
export async function recordSuccess(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  lastCommitTime: bigint | null,
  runHistory: RunSample[] | null = null,
): Promise<void> {
  await client.query(
    `UPDATE ${qualified(schema, TABLE)}
        SET last_success_at = now(), consecutive_failures = 0,
            last_commit_time = COALESCE(${commitTimeParam(4)}, last_commit_time),
            run_history = COALESCE($5::jsonb, run_history)
      WHERE connector = $1 AND topic = $2 AND partition = $3`,
    [
      key.connector,
      key.topic,
      key.partition,
      lastCommitTime === null ? null : lastCommitTime.toString(),
      runHistory === null ? null : JSON.stringify(runHistory),
    ],
  );
}

/**
 * Records a failed run in its own short transaction, after the run's rollback: the error (already
 * free of credentials and row values) and one more consecutive failure. Skipped (null) while another
 * run holds the partition, which will record its own outcome. Returns the failure count.
 */
export async function recordFailure(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  current: SinkState | null,
  error: string,
): Promise<number | null> {
  await client.query("BEGIN");
  try {
    if (!(await tryLockPartition(client, key))) {
      await client.query("ROLLBACK");
      return null;
    }
    const update = () =>
      client.query(
        `UPDATE ${qualified(schema, TABLE)}
            SET consecutive_failures = consecutive_failures + 1, last_error = $4, last_error_at = now()
          WHERE connector = $1 AND topic = $2 AND partition = $3
          RETURNING consecutive_failures`,
        [key.connector, key.topic, key.partition, error],
      );
    let r = await update();
    // No row yet (the first runs fail): one from the state the run loaded, so nothing else changes.
    if (r.rowCount === 0 && current) {
      await saveState(client, schema, key, current);
      r = await update();
    }
    await client.query("COMMIT");
    return r.rows[0]?.consecutive_failures ?? null;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

/** What `status` shows of a partition's state, read without waiting for a run that holds it. */
export interface StoredStatus {
  nextOffset: bigint;
  lastCommitLsn: bigint | null;
  lastCommitTime: bigint | null;
  batchLimit: number | null;
  updatedAt: Date | null;
  health: RunHealth;
  tables: string[];
  runHistory: RunSample[];
}

export async function loadStatus(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
): Promise<StoredStatus | null> {
  const columns = await stateColumns(client, schema);
  if (columns.size === 0) return null;
  // A table from before a column was added (no run has migrated it yet) reads as NULL there.
  const col = (name: string, expr = name) => (columns.has(name) ? `${expr} AS ${name}` : `NULL AS ${name}`);
  const r = await client.query(
    `SELECT next_offset::text, last_commit_lsn::text, batch_limit, updated_at,
            ${col("last_commit_time", COMMIT_TIME_US)}, ${col("last_success_at")}, ${col("last_error")},
            ${col("last_error_at")}, ${col("consecutive_failures")}, ${col("run_history")},
            (SELECT coalesce(jsonb_agg(r -> 'relation' ->> 'namespace' || '.' || (r -> 'relation' ->> 'name')), '[]')
               FROM jsonb_array_elements(relations) AS r) AS tables
       FROM ${qualified(schema, TABLE)} WHERE connector = $1 AND topic = $2 AND partition = $3`,
    [key.connector, key.topic, key.partition],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    nextOffset: BigInt(row.next_offset),
    lastCommitLsn: row.last_commit_lsn === null ? null : BigInt(row.last_commit_lsn),
    lastCommitTime: row.last_commit_time === null ? null : BigInt(row.last_commit_time),
    batchLimit: row.batch_limit,
    updatedAt: row.updated_at,
    health: {
      lastSuccessAt: row.last_success_at,
      lastError: row.last_error,
      lastErrorAt: row.last_error_at,
      consecutiveFailures: row.consecutive_failures ?? 0,
    },
    tables: row.tables,
    runHistory: (row.run_history ?? []) as RunSample[],
  };
}

/** The original Rust sink's offset (the last record it applied), if its table exists. */
export async function loadLegacyOffset(client: pg.ClientBase): Promise<bigint | null> {
  const exists = await client.query(`SELECT to_regclass('fluvio."offset"') IS NOT NULL AS ok`);
  if (!exists.rows[0]?.ok) return null;
  const r = await client.query(`SELECT current_offset::text AS o FROM fluvio."offset" WHERE id = 1`);
  return r.rows[0] ? BigInt(r.rows[0].o) : null;
}

export async function saveState(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  s: SinkState,
): Promise<void> {
  const relations: CachedRelation[] = [...s.relations.values()].map((c) => ({
    relation: c.relation as Relation,
    casts: c.casts,
    table: tableOf(c),
    created: c.created === true,
  }));
  const types = [...s.types.entries()].map(([id, t]) => ({ id, ...t }));
  await client.query(
    `INSERT INTO ${qualified(schema, TABLE)}
       (connector, topic, partition, next_offset, last_commit_lsn, in_transaction, relations, types, batch_limit,
        resume_position, last_record_sha256, awaited_resend, updated_at)
     VALUES ($1, $2, $3, $4::bigint, $5::numeric, $6, $7::jsonb, $8::jsonb, $9, $10::bigint, $11, $12::jsonb, now())
     ON CONFLICT (connector, topic, partition) DO UPDATE SET
       next_offset = EXCLUDED.next_offset, last_commit_lsn = EXCLUDED.last_commit_lsn,
       in_transaction = EXCLUDED.in_transaction, relations = EXCLUDED.relations, types = EXCLUDED.types,
       batch_limit = EXCLUDED.batch_limit, resume_position = EXCLUDED.resume_position,
       last_record_sha256 = EXCLUDED.last_record_sha256, awaited_resend = EXCLUDED.awaited_resend,
       updated_at = now()`,
    [
      key.connector,
      key.topic,
      key.partition,
      s.nextOffset.toString(),
      s.lastCommitLsn === null ? null : s.lastCommitLsn.toString(),
      s.inTransaction,
      JSON.stringify(relations),
      JSON.stringify(types),
      s.batchLimit,
      s.resumePosition === null ? null : s.resumePosition.toString(),
      s.lastRecordSha256,
      s.awaitedResends.length === 0
        ? null
        : JSON.stringify(
            // Strings: LSNs and offsets are 64-bit.
            s.awaitedResends.map((a) => ({
              final_lsn: a.finalLsn.toString(),
              from: a.from.toString(),
              to: a.to.toString(),
            })),
          ),
    ],
  );
}

/** Records a smaller batch limit for the next run, leaving everything else as it was. */
export async function saveBatchLimit(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  current: SinkState,
  limit: number,
): Promise<void> {
  await client.query("BEGIN");
  try {
    const r = await client.query(
      `UPDATE ${qualified(schema, TABLE)} SET batch_limit = $4, updated_at = now()
        WHERE connector = $1 AND topic = $2 AND partition = $3`,
      [key.connector, key.topic, key.partition, limit],
    );
    if (r.rowCount === 0) await saveState(client, schema, key, { ...current, batchLimit: limit });
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

/** The stored next offset, read without waiting for the run that holds the partition. */
export async function peekNextOffset(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
): Promise<bigint | null> {
  const r = await client.query(
    `SELECT next_offset::text AS o FROM ${qualified(schema, TABLE)}
      WHERE connector = $1 AND topic = $2 AND partition = $3`,
    [key.connector, key.topic, key.partition],
  );
  return r.rows[0] ? BigInt(r.rows[0].o) : null;
}
