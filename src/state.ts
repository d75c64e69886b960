import type pg from "pg";
import type { CachedRelation } from "./apply/model.js";
import { qualified, quoteIdent } from "./apply/sql.js";
import type { Relation } from "./events/types.js";

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
  };
}

/** Creates the state table if needed, in its own short transaction, serialised across sinks. */
export async function ensureStateTable(client: pg.ClientBase, schema: string): Promise<void> {
  const exists = await client.query("SELECT to_regclass($1) IS NOT NULL AS ok", [qualified(schema, TABLE)]);
  if (exists.rows[0]?.ok) return;
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
    `SELECT next_offset::text, last_commit_lsn::text, in_transaction, relations, types, batch_limit
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
  }));
  const types = [...s.types.entries()].map(([id, t]) => ({ id, ...t }));
  await client.query(
    `INSERT INTO ${qualified(schema, TABLE)}
       (connector, topic, partition, next_offset, last_commit_lsn, in_transaction, relations, types, batch_limit, updated_at)
     VALUES ($1, $2, $3, $4::bigint, $5::numeric, $6, $7::jsonb, $8::jsonb, $9, now())
     ON CONFLICT (connector, topic, partition) DO UPDATE SET
       next_offset = EXCLUDED.next_offset, last_commit_lsn = EXCLUDED.last_commit_lsn,
       in_transaction = EXCLUDED.in_transaction, relations = EXCLUDED.relations, types = EXCLUDED.types,
       batch_limit = EXCLUDED.batch_limit, updated_at = now()`,
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
