import type pg from "pg";
import { loadCatalog } from "./apply/catalog.js";
import { loadTargetTraits } from "./apply/constraints.js";
import { executePlan } from "./apply/execute.js";
import { tableOf } from "./apply/model.js";
import { plan } from "./apply/plan.js";
import { enterReplicaRole } from "./apply/role.js";
import { parseLsn, type SinkConfig } from "./config.js";
import {
  type DeadLetter,
  insertAudit,
  listDeadLetters,
  lockDeadLetter,
  markReplayed,
} from "./dead-letter.js";
import { RecordError, SinkError } from "./errors.js";
import { decodeRecordFast } from "./events/fast-decode.js";
import type { Event, Relation } from "./events/types.js";
import type { Logger } from "./log.js";
import { failureText } from "./poison.js";
import { loadState, type PartitionKey, tryLockPartition } from "./state.js";

/** A replay the sink refuses before applying anything: the message says why and what to do. */
export class ReplayRefused extends SinkError {
  override name = "ReplayRefused";
}

/** The dead-letter command: what was set aside, without the records' text. */
export async function deadLetterList(
  client: pg.ClientBase,
  config: SinkConfig,
): Promise<Record<string, unknown>> {
  const key = keyOf(config);
  const rows = await listDeadLetters(client, config.stateSchema, key);
  return {
    ...key,
    dead_letters: rows.map((d) => ({
      id: d.id,
      from: d.from.toString(),
      to: d.to.toString(),
      lsn: d.lsn,
      tables: d.tables,
      error: d.error,
      sqlstate: d.sqlstate,
      records: d.records.length,
      created_at: d.createdAt.toISOString(),
      replayed_at: d.replayedAt?.toISOString() ?? null,
      replayed_by: d.replayedBy,
    })),
    pending: rows.filter((d) => d.replayedAt === null).length,
  };
}

function keyOf(config: SinkConfig): PartitionKey {
  return { connector: config.name, topic: config.topic, partition: config.partition };
}

/** What a relation description means for decoding: a changed one decodes the records differently. */
function shape(r: Relation): string {
  return JSON.stringify([
    r.namespace,
    r.name,
    r.replicaIdentity,
    r.columns.map((c) => [c.name, c.typeId, c.typeModifier, c.key]),
  ]);
}

function describeColumns(r: Relation): string {
  return `${r.namespace}.${r.name} (${r.columns.map((c) => c.name).join(", ")})`;
}

/**
 * Re-applies a dead letter's changes, in one target transaction with marking it replayed and an
 * audit row. Its schema messages were applied when it was set aside; its changes are decoded against
 * the relation cache, so it must still describe the tables as the records were written against.
 */
export async function replayDeadLetter(
  client: pg.ClientBase,
  config: SinkConfig,
  id: string,
  who: { actor: string; reason: string | null },
  log: Logger,
): Promise<Record<string, unknown>> {
  const key = keyOf(config);
  await client.query(
    [
      "BEGIN",
      `SET LOCAL statement_timeout = ${config.statementTimeoutMs}`,
      `SET LOCAL lock_timeout = ${config.lockTimeoutMs}`,
    ].join("; "),
  );
  try {
    if (!(await tryLockPartition(client, key)))
      throw new ReplayRefused(
        "another run is applying this partition: replayed nothing; try again when it ends",
      );
    const dl = await lockDeadLetter(client, config.stateSchema, key, id);
    if (!dl)
      throw new ReplayRefused(
        `no dead letter ${id} for connector ${key.connector}, topic ${key.topic}, partition ${key.partition}`,
      );
    if (dl.replayedAt !== null)
      throw new ReplayRefused(`dead letter ${id} was replayed already, at ${dl.replayedAt.toISOString()}`);
    const state = await loadState(client, config.stateSchema, key);
    if (!state) throw new ReplayRefused(`no state for connector ${key.connector}: nothing to replay against`);
    const changed = dl.relations.filter((r) => {
      const now = state.relations.get(r.relId)?.relation;
      return now === undefined || shape(now) !== shape(r);
    });
    if (changed.length > 0)
      throw new ReplayRefused(
        `dead letter ${id} (offsets ${dl.from}..${dl.to}) cannot be replayed: its records were written against ` +
          changed
            .map((r) => {
              const now = state.relations.get(r.relId)?.relation;
              return `${describeColumns(r)}, which the sink now knows as ${now ? describeColumns(now) : "nothing (dropped)"}`;
            })
            .join("; ") +
          ". The table changed since; replayed nothing. Apply its changes by hand (the records column holds them).",
      );
    const events = decodeAll(dl);
    const mode = await enterReplicaRole(client);
    await client.query("SET CONSTRAINTS ALL DEFERRED");
    const tables = dl.relations.flatMap((r) => {
      const c = state.relations.get(r.relId);
      return c ? [tableOf(c)] : [];
    });
    const traits = await loadTargetTraits(
      client,
      tables.map((t): [string, string] => [t.schema, t.name]),
    );
    const planned = plan(
      events,
      // Never taken for a re-send: the stored LSN is past it, as it was set aside.
      {
        relations: state.relations,
        types: state.types,
        lastCommitLsn: null,
        inTransaction: events[0]?.kind !== "begin",
      },
      await loadCatalog(client, [], state.types),
      {
        traits,
        onConflict: config.onConflict,
        foreignKeyOrder: mode === "ordered",
        exact: true,
        startLsn: null,
      },
    );
    const executed = await executePlan(client, planned.steps, config.missingRows, (msg, fields) =>
      log.warn(msg, fields),
    );
    await client.query("SET CONSTRAINTS ALL IMMEDIATE");
    await markReplayed(client, config.stateSchema, id, who.actor);
    const auditId = await insertAudit(client, config.stateSchema, key, {
      action: "replay",
      from: dl.from,
      to: dl.to,
      lsn: dl.lsn === null ? null : parseLsn(dl.lsn),
      deadLetterId: id,
      reason: who.reason,
      actor: who.actor,
    });
    await client.query("COMMIT");
    return {
      status: "replayed",
      ...key,
      id,
      from: dl.from.toString(),
      to: dl.to.toString(),
      lsn: dl.lsn,
      tables: dl.tables,
      inserts: planned.stats.inserts,
      updates: planned.stats.updates,
      deletes: planned.stats.deletes,
      truncates: planned.stats.truncates,
      statements: executed.statements,
      missing_rows: executed.missingRows,
      audit_id: auditId,
    };
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    if (e instanceof ReplayRefused) throw e;
    throw new SinkError(`replay of dead letter ${id} failed: ${failureText(e)}; replayed nothing`, {
      cause: e,
    });
  }
}

/** The dead letter's changes; its relation and type messages were applied when it was set aside. */
function decodeAll(dl: DeadLetter): Event[] {
  const events: Event[] = [];
  dl.records.forEach((text, i) => {
    const offset = dl.recordOffsets[i] ?? dl.from + BigInt(i);
    let ev: Event;
    try {
      ev = decodeRecordFast(offset, text);
    } catch (e) {
      if (!(e instanceof RecordError)) throw e;
      throw new ReplayRefused(
        `dead letter ${dl.id}: ${failureText(e)}. Correct the record first (records[${i + 1}] of the dead-letter ` +
          "table, or remove it from the array), then replay",
      );
    }
    if (ev.kind !== "relation" && ev.kind !== "type") events.push(ev);
  });
  return events;
}
