import { userInfo } from "node:os";
import type pg from "pg";
import { qualified, quoteIdent } from "./apply/sql.js";
import type { Relation } from "./events/types.js";
import { formatLsn } from "./lsn.js";
import type { SetAside } from "./poison.js";
import type { PartitionKey } from "./state.js";

/**
 * The dead-letter and audit tables, in the state schema next to the state table: written in the
 * transaction that moves the stored offset past what they describe, so both or neither happen.
 */

const DEAD_LETTER = "dead_letter";
const AUDIT = "audit";

/** Creates the two tables if needed, inside the caller's transaction, serialised across sinks. */
export async function ensureDeadLetterTables(client: pg.ClientBase, schema: string): Promise<void> {
  const r = await client.query("SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok", [
    qualified(schema, DEAD_LETTER),
    qualified(schema, AUDIT),
  ]);
  if (r.rows[0]?.ok) return;
  await client.query("SELECT pg_advisory_xact_lock(hashtextextended('fluvio-postgres-sink/setup', 0))");
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${qualified(schema, DEAD_LETTER)} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       connector text NOT NULL,
       topic text NOT NULL,
       partition integer NOT NULL,
       from_offset bigint NOT NULL,
       to_offset bigint NOT NULL,
       lsn pg_lsn,
       tables text[] NOT NULL DEFAULT '{}',
       error text NOT NULL,
       sqlstate text,
       record_offsets bigint[] NOT NULL,
       records text[] NOT NULL,
       relations jsonb NOT NULL DEFAULT '[]',
       created_at timestamptz NOT NULL DEFAULT now(),
       replayed_at timestamptz,
       replayed_by text)`,
  );
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${qualified(schema, AUDIT)} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       connector text NOT NULL,
       topic text NOT NULL,
       partition integer NOT NULL,
       action text NOT NULL,
       from_offset bigint,
       to_offset bigint,
       lsn pg_lsn,
       dead_letter_id bigint,
       reason text,
       actor text,
       db_user text NOT NULL DEFAULT current_user,
       at timestamptz NOT NULL DEFAULT now())`,
  );
}

async function exists(client: pg.ClientBase, schema: string): Promise<boolean> {
  const r = await client.query("SELECT to_regclass($1) IS NOT NULL AS ok", [qualified(schema, DEAD_LETTER)]);
  return r.rows[0]?.ok === true;
}

/** Who runs this command, for the audit row (the database login is recorded as well). */
export function actor(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

const lsnParam = (lsn: bigint | null) => (lsn === null ? null : formatLsn(lsn));

/** Stores a failed source transaction's records and error; returns its id. */
export async function insertDeadLetter(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  aside: SetAside,
  records: { offset: bigint; value: string }[],
): Promise<string> {
  await ensureDeadLetterTables(client, schema);
  const r = await client.query(
    `INSERT INTO ${qualified(schema, DEAD_LETTER)}
       (connector, topic, partition, from_offset, to_offset, lsn, tables, error, sqlstate, record_offsets, records, relations)
     VALUES ($1, $2, $3, $4::bigint, $5::bigint, $6::pg_lsn, $7::text[], $8, $9, $10::bigint[], $11::text[], $12::jsonb)
     RETURNING id::text`,
    [
      key.connector,
      key.topic,
      key.partition,
      aside.unit.from.toString(),
      aside.unit.to.toString(),
      lsnParam(aside.unit.lsn),
      aside.tables,
      aside.error ?? "",
      aside.sqlstate,
      records.map((rec) => rec.offset.toString()),
      records.map((rec) => rec.value),
      JSON.stringify(aside.relations),
    ],
  );
  return r.rows[0].id as string;
}

export interface AuditEntry {
  action: "skip" | "replay";
  from: bigint | null;
  to: bigint | null;
  lsn: bigint | null;
  deadLetterId: string | null;
  reason: string | null;
  actor: string;
}

export async function insertAudit(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  a: AuditEntry,
): Promise<string> {
  await ensureDeadLetterTables(client, schema);
  const r = await client.query(
    `INSERT INTO ${qualified(schema, AUDIT)}
       (connector, topic, partition, action, from_offset, to_offset, lsn, dead_letter_id, reason, actor)
     VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint, $7::pg_lsn, $8::bigint, $9, $10)
     RETURNING id::text`,
    [
      key.connector,
      key.topic,
      key.partition,
      a.action,
      a.from?.toString() ?? null,
      a.to?.toString() ?? null,
      lsnParam(a.lsn),
      a.deadLetterId,
      a.reason,
      a.actor,
    ],
  );
  return r.rows[0].id as string;
}

export interface DeadLetter {
  id: string;
  from: bigint;
  to: bigint;
  lsn: string | null;
  tables: string[];
  error: string;
  sqlstate: string | null;
  recordOffsets: bigint[];
  records: string[];
  relations: Relation[];
  createdAt: Date;
  replayedAt: Date | null;
  replayedBy: string | null;
}

const COLUMNS = `id::text, from_offset::text, to_offset::text, lsn::text, tables, error, sqlstate,
  record_offsets::text[] AS record_offsets, records, relations, created_at, replayed_at, replayed_by`;

function fromRow(row: Record<string, unknown>): DeadLetter {
  return {
    id: row.id as string,
    from: BigInt(row.from_offset as string),
    to: BigInt(row.to_offset as string),
    lsn: row.lsn as string | null,
    tables: row.tables as string[],
    error: row.error as string,
    sqlstate: row.sqlstate as string | null,
    recordOffsets: (row.record_offsets as string[]).map(BigInt),
    records: row.records as string[],
    relations: row.relations as Relation[],
    createdAt: row.created_at as Date,
    replayedAt: row.replayed_at as Date | null,
    replayedBy: row.replayed_by as string | null,
  };
}

export async function listDeadLetters(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
): Promise<DeadLetter[]> {
  if (!(await exists(client, schema))) return [];
  const r = await client.query(
    `SELECT ${COLUMNS} FROM ${qualified(schema, DEAD_LETTER)}
      WHERE connector = $1 AND topic = $2 AND partition = $3 ORDER BY id`,
    [key.connector, key.topic, key.partition],
  );
  return r.rows.map(fromRow);
}

/** Dead letters of this partition not replayed yet. */
export async function pendingDeadLetters(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
): Promise<number> {
  if (!(await exists(client, schema))) return 0;
  const r = await client.query(
    `SELECT count(*)::int AS n FROM ${qualified(schema, DEAD_LETTER)}
      WHERE connector = $1 AND topic = $2 AND partition = $3 AND replayed_at IS NULL`,
    [key.connector, key.topic, key.partition],
  );
  return r.rows[0].n as number;
}

/** One dead letter of this partition, locked for the caller's transaction; null when there is none. */
export async function lockDeadLetter(
  client: pg.ClientBase,
  schema: string,
  key: PartitionKey,
  id: string,
): Promise<DeadLetter | null> {
  if (!(await exists(client, schema))) return null;
  const r = await client.query(
    `SELECT ${COLUMNS} FROM ${qualified(schema, DEAD_LETTER)}
      WHERE id = $1::bigint AND connector = $2 AND topic = $3 AND partition = $4 FOR UPDATE`,
    [id, key.connector, key.topic, key.partition],
  );
  return r.rows[0] ? fromRow(r.rows[0]) : null;
}

export async function markReplayed(
  client: pg.ClientBase,
  schema: string,
  id: string,
  by: string,
): Promise<void> {
  await client.query(
    `UPDATE ${qualified(schema, DEAD_LETTER)} SET replayed_at = now(), replayed_by = $2 WHERE id = $1::bigint`,
    [id, by],
  );
}
