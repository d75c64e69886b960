import type pg from "pg";
import { type ExecuteResult, executePlan, type MissingRows } from "./apply/execute.js";
import type { Catalog } from "./apply/model.js";
import { emptyPlanStats, type PlanOptions, type PlanState, type PlanStats, plan } from "./apply/plan.js";
import type { SchemaWarning } from "./apply/schema.js";
import { asError, DeadlineError, type RecordError, SinkError, sqlState } from "./errors.js";
import type { Event, Relation } from "./events/types.js";
import { formatLsn } from "./lsn.js";
import type { Batch, PoisonedUnit } from "./read-batch.js";
import { logRowValues, safeText } from "./row-values.js";
import { isSessionFailure } from "./target/failure.js";

/**
 * Poison records: when a batch fails because of its records (not the connection or the time), it is
 * applied again source transaction by source transaction, each in its own savepoint, to find exactly
 * the one that fails; that one halts the run or is set aside (dead letter), per on_error.
 */

export type OnError = "halt" | "dead_letter";

/** One source transaction of a batch (or a run of undecodable records), by offsets. */
export interface Unit {
  from: bigint;
  to: bigint;
  /** The begin's final LSN, which is the commit's LSN; null when neither could be decoded. */
  lsn: bigint | null;
  events: Event[];
  /** Why the unit cannot be applied as it stands (a record that cannot be decoded), or null. */
  poison: RecordError | null;
}

/** A unit the run did not apply: a dead letter, or skipped on purpose. */
export interface SetAside {
  unit: Unit;
  /** The error (row values hidden unless LOG_ROW_VALUES=true); null when skipped on purpose. */
  error: string | null;
  sqlstate: string | null;
  tables: string[];
  /** The relation descriptions the unit's changes were decoded against, for a later replay. */
  relations: Relation[];
}

/** The batch as source transactions in offset order, undecodable runs among them. */
export function splitUnits(batch: Pick<Batch, "events" | "poisoned">): Unit[] {
  const units: Unit[] = [];
  let current: Unit | null = null;
  for (const ev of batch.events) {
    if (ev.kind === "begin" || current === null) {
      current = {
        from: ev.offset,
        to: ev.offset,
        lsn: ev.kind === "begin" ? ev.finalLsn : null,
        events: [],
        poison: null,
      };
      units.push(current);
    }
    current.events.push(ev);
    current.to = ev.offset;
    if (ev.kind === "commit") {
      current.lsn ??= ev.commitLsn;
      current = null;
    }
  }
  const poisoned = batch.poisoned.map(
    (p: PoisonedUnit): Unit => ({
      from: p.from,
      to: p.to,
      lsn: p.finalLsn ?? p.commitLsn,
      events: p.events,
      poison: p.error,
    }),
  );
  return [...units, ...poisoned].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
}

/**
 * Whether a failure is the records' fault, so narrowing can find the transaction at fault. Not:
 * the deadline, a lost or ended session, lock waits, serialization failures and deadlocks, or the
 * server's resources; those fail the run as they are, and the next run tries the same batch again.
 */
export function isRecordFault(e: unknown): boolean {
  if (e instanceof DeadlineError || isSessionFailure(e)) return false;
  const code = sqlState(e);
  // 40: transaction rollback (serialization, deadlock); 53: insufficient resources; 55: object not
  // in prerequisite state (lock not available); 58, XX: system and internal errors; F0: config file.
  // Without a SQLSTATE: the sink's own verdicts on records (decoding, planning, missing rows); any
  // other error is a fault of the sink itself and must not set records aside.
  if (code === undefined) return e instanceof SinkError;
  return !/^(40|53|55|58|XX|F0)/.test(code);
}

/** JSON.parse quotes the start of the text it rejects: a row value. */
function withoutQuotedInput(text: string): string {
  return logRowValues()
    ? text
    : text.replace(/, "(?:[^"\\]|\\.)*"(?:\.\.\.)? is not valid JSON/g, ', "…" is not valid JSON');
}

/** The error of a failed unit for messages, logs and the dead-letter table. */
export function failureText(e: unknown): string {
  return withoutQuotedInput(safeText(asError(e).message));
}

/** The target tables a unit's changes go to (by the relations it saw), for people. */
export function unitTables(unit: Unit, relations: Map<number, { relation: Relation }>): string[] {
  return [...new Set(neededRelations(unit, relations).map((r) => `${r.namespace}.${r.name}`))].sort();
}

/**
 * The relation descriptions the unit's changes are decoded against: a relation message earlier in
 * the unit, else the cache as it was before the unit.
 */
export function neededRelations(unit: Unit, relations: Map<number, { relation: Relation }>): Relation[] {
  const own = new Map<number, Relation>();
  const needed = new Map<number, Relation>();
  const need = (relId: number) => {
    if (needed.has(relId)) return;
    const r = own.get(relId) ?? relations.get(relId)?.relation;
    if (r) needed.set(relId, r);
  };
  for (const ev of unit.events) {
    if (ev.kind === "relation") own.set(ev.relation.relId, ev.relation);
    else if (ev.kind === "insert" || ev.kind === "update" || ev.kind === "delete") need(ev.relId);
    else if (ev.kind === "truncate") for (const id of ev.relIds) need(id);
  }
  return [...needed.values()];
}

export function unitLsnText(unit: Unit): string {
  return unit.lsn === null ? "LSN unknown" : `LSN ${formatLsn(unit.lsn)}`;
}

/** The halt error: names the transaction, what failed, and how to get past it. */
export class PoisonError extends SinkError {
  override name = "PoisonError";
  constructor(
    readonly unit: Unit,
    readonly tables: string[],
    detail: string,
    storedOffset: bigint,
    options?: ErrorOptions,
  ) {
    super(
      `source transaction at offsets ${unit.from}..${unit.to} (${unitLsnText(unit)}` +
        `${tables.length > 0 ? `, ${tables.length === 1 ? "table" : "tables"} ${tables.join(", ")}` : ""}) ` +
        `failed: ${detail.replace(/\.$/, "")}. ` +
        // No parentheses past the error: row-value scrubbing reads up to the last one.
        `Applied nothing; the stored offset stays ${storedOffset}. Fix the cause, e.g. the target table, ` +
        `and run again; or get past it on purpose, audited: fluvio-postgres-sink skip --config <file> --offset ${unit.from} ` +
        `--reason "<why>" --yes; or set parameters.on_error: dead_letter`,
      options,
    );
  }
}

export interface NarrowInput {
  client: pg.ClientBase;
  units: Unit[];
  state: PlanState;
  /** The target's catalog as it is now (re-read: earlier units may have changed it). */
  catalog: () => Promise<Catalog>;
  options: PlanOptions;
  missingRows: MissingRows;
  warn: (msg: string, fields: Record<string, unknown>) => void;
  onError: OnError;
  /** The unit starting at this offset is set aside on purpose (skip), and the run stops after it. */
  skipAt: bigint | null;
  storedOffset: bigint;
  /** Whether a failure is the records' fault (the run also knows about lost connections). */
  isFault: (e: unknown) => boolean;
}

export interface NarrowResult {
  state: PlanState;
  stats: PlanStats;
  executed: ExecuteResult;
  warnings: SchemaWarning[];
  setAside: SetAside[];
  /** Skip: the run ends after this unit. */
  stoppedAfter: Unit | null;
}

/**
 * Applies the units one by one, each in a savepoint and in exact source order. A unit that fails
 * (or is skipped) is rolled back; under halt that fails the run, else it is set aside: its changes
 * are not applied, but its schema messages are, since pgoutput does not send a relation again until
 * it changes, so later transactions are decoded against it.
 */
export async function applyUnitByUnit(input: NarrowInput): Promise<NarrowResult> {
  const { client, options } = input;
  let state = input.state;
  const stats: PlanStats = emptyPlanStats();
  const executed: ExecuteResult = { statements: 0, rows: 0, missingRows: 0, upserts: 0 };
  const warnings: SchemaWarning[] = [];
  const setAside: SetAside[] = [];
  let stoppedAfter: Unit | null = null;
  for (const unit of input.units) {
    const skipping = input.skipAt !== null && unit.from === input.skipAt;
    let failure: unknown = unit.poison;
    if (failure === null && !skipping) {
      await client.query("SAVEPOINT fps_txn");
      try {
        const planned = plan(unit.events, state, await input.catalog(), { ...options, exact: true });
        const ex = await executePlan(client, planned.steps, input.missingRows, input.warn);
        // Deferred constraints would only trip at COMMIT, past any savepoint: check them here.
        await client.query("SET CONSTRAINTS ALL IMMEDIATE");
        await client.query("SET CONSTRAINTS ALL DEFERRED");
        await client.query("RELEASE SAVEPOINT fps_txn");
        for (const k of Object.keys(stats) as (keyof PlanStats)[]) stats[k] += planned.stats[k];
        for (const k of Object.keys(executed) as (keyof ExecuteResult)[]) executed[k] += ex[k];
        warnings.push(...planned.warnings);
        state = planned.state;
        continue;
      } catch (e) {
        if (!input.isFault(e)) throw e;
        await client.query("ROLLBACK TO SAVEPOINT fps_txn");
        await client.query("RELEASE SAVEPOINT fps_txn");
        failure = e;
      }
    }
    const tables = unitTables(unit, state.relations);
    const detail = failure === null ? null : failureText(failure);
    if (!skipping && input.onError === "halt")
      throw new PoisonError(unit, tables, detail ?? "", input.storedOffset, { cause: failure });
    const relations = neededRelations(unit, state.relations);
    state = await applySchemaOnly(input, unit, state, detail);
    const lsn = unit.lsn;
    if (lsn !== null && (state.lastCommitLsn === null || lsn > state.lastCommitLsn))
      state = { ...state, lastCommitLsn: lsn };
    state = { ...state, inTransaction: false };
    setAside.push({ unit, error: detail, sqlstate: sqlState(failure) ?? null, tables, relations });
    if (skipping) {
      stoppedAfter = unit;
      break;
    }
  }
  if (input.skipAt !== null && stoppedAfter === null)
    throw new SinkError(
      `no source transaction starts at offset ${input.skipAt} in the batch read from the stored offset ` +
        `${input.storedOffset} (transactions start at ${input.units
          .slice(0, 10)
          .map((u) => u.from)
          .join(", ")}${input.units.length > 10 ? ", …" : ""}); skipped nothing`,
    );
  return { state, stats, executed, warnings, setAside, stoppedAfter };
}

/** Applies a set-aside unit's relation and type messages alone, so later units decode as the source meant. */
async function applySchemaOnly(
  input: NarrowInput,
  unit: Unit,
  state: PlanState,
  detail: string | null,
): Promise<PlanState> {
  const schema = unit.events.filter((ev) => ev.kind === "relation" || ev.kind === "type");
  if (schema.length === 0) return state;
  const { client } = input;
  await client.query("SAVEPOINT fps_txn");
  try {
    // As inside the transaction, and never taken for a re-send: its relations must be followed.
    const planned = plan(
      schema,
      { ...state, inTransaction: true, lastCommitLsn: null },
      await input.catalog(),
      {
        ...input.options,
        exact: true,
        startLsn: null,
      },
    );
    await executePlan(client, planned.steps, input.missingRows, input.warn);
    await client.query("RELEASE SAVEPOINT fps_txn");
    return { ...state, relations: planned.state.relations, types: planned.state.types };
  } catch (e) {
    if (!input.isFault(e)) throw e;
    throw new SinkError(
      `source transaction at offsets ${unit.from}..${unit.to} (${unitLsnText(unit)})` +
        `${detail === null ? "" : ` failed (${detail}), and`} its schema messages cannot be applied either: ` +
        `${failureText(e)}. Later transactions are decoded against them, so it cannot be set aside; applied nothing. ` +
        "Fix the target so the table change applies, and run again",
      { cause: e },
    );
  }
}
