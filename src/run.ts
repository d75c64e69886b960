import type pg from "pg";
import { loadCatalog } from "./apply/catalog.js";
import { executePlan } from "./apply/execute.js";
import { plan } from "./apply/plan.js";
import type { SinkConfig } from "./config.js";
import { RecordError, SinkError, sqlState } from "./errors.js";
import { decodeRecord } from "./events/decode.js";
import type { Event, Relation } from "./events/types.js";
import { failpoint } from "./failpoint.js";
import type { Logger } from "./log.js";
import { FileSource } from "./source/file.js";
import { FluvioSource } from "./source/fluvio.js";
import type { Source } from "./source/source.js";
import {
  emptyState,
  ensureStateTable,
  loadLegacyOffset,
  loadState,
  type PartitionKey,
  type SinkState,
  saveBatchLimit,
  saveState,
  tryLockPartition,
} from "./state.js";
import { connectTarget } from "./target/connect.js";

// Moved to src/target/connect.ts; re-exported for existing imports.
export { connectTarget };

export interface RunSummary {
  /** applied: something was consumed; idle: nothing to do; locked: another run holds the partition. */
  status: "applied" | "idle" | "locked";
  connector: string;
  topic: string;
  partition: number;
  /** Records consumed this run (offsets advanced by). */
  records: number;
  /** Source transactions applied. */
  transactions: number;
  /** Source transactions skipped because they had been applied before (re-sent by the inbound side). */
  skipped_transactions: number;
  inserts: number;
  updates: number;
  deletes: number;
  truncates: number;
  statements: number;
  missing_rows: number;
  next_offset: string;
  /** Records left after next_offset, when the source knows its end. */
  lag: number | null;
  max_records_exceeded: boolean;
  /** The run ended inside a source transaction too large for one run (max_transaction_records). */
  partial_transaction: boolean;
  duration_ms: number;
}

export interface RunDeps {
  log: Logger;
  /** Opens the record source; by default a file source or (later) Fluvio, per the config. */
  openSource?: (config: SinkConfig, log: Logger) => Source;
  /** Connects to the target; by default a pg.Client on config.databaseUrl. */
  connect?: (config: SinkConfig) => Promise<pg.Client>;
  /**
   * Wall-clock time (ms since the epoch) by which the run must have committed, e.g. a Lambda's end
   * less a margin. Reading stops early enough to apply what was read; statements and lock waits are
   * bounded by it. A run that still runs out of time halves its batch for the next run.
   */
  deadline?: number;
}

/** Less time than this before the deadline: the run does not start. */
export const MIN_RUN_MS = 2000;

/** The run ran out of the time it was given. */
export class DeadlineError extends SinkError {
  override name = "DeadlineError";
}

function isTimeout(e: unknown): boolean {
  const code = sqlState(e);
  // 57014: statement timeout; 55P03: lock timeout.
  return e instanceof DeadlineError || code === "57014" || code === "55P03";
}

export function defaultOpenSource(config: SinkConfig, log: Logger): Source {
  if (config.source.kind === "file") return new FileSource(config.source.path);
  return new FluvioSource({
    topic: config.topic,
    partition: config.partition,
    endpoint: config.source.endpoint,
    connectTimeoutMs: config.connectTimeoutMs,
    readTimeoutMs: config.readTimeoutMs,
    onLostRecords: config.onLostRecords,
    log,
  });
}

interface Batch {
  events: Event[];
  nextOffset: bigint;
  exceeded: boolean;
  partial: boolean;
  startsInside: boolean;
}

/**
 * Reads whole source transactions from `start`: at least up to max_records when available, never
 * stopping inside a transaction, except past max_transaction_records, where it stops loudly.
 */
async function readBatch(
  source: Source,
  start: bigint,
  state: SinkState,
  config: SinkConfig,
  log: Logger,
  readUntil: number | null,
  deadline: number | null,
): Promise<Batch> {
  const limit = BigInt(state.batchLimit ?? config.maxRecords);
  const events: Event[] = [];
  let open: Event[] = [];
  let inTxn = state.inTransaction;
  let startsInside = state.inTransaction;
  let nextOffset = start;
  let expected = start;
  let partial = false;
  for await (const rec of source.read(start)) {
    if (rec.offset !== expected)
      throw new SinkError(`source returned offset ${rec.offset} where ${expected} was expected`);
    expected++;
    if (deadline !== null && Date.now() >= deadline)
      throw new DeadlineError(
        `ran out of time reading offset ${rec.offset} (a source transaction did not finish in time)`,
      );
    const ev = decodeRecord(rec.offset, rec.value);
    if (ev.kind === "begin") {
      if (open.length > 0) {
        if (startsInside && events.length === 0)
          log.error(
            "a source transaction this sink applied in part never committed; its first part stays applied",
            {
              from: open[0]?.offset,
              to: rec.offset - 1n,
            },
          );
        else
          log.warn("dropping a source transaction that never committed (the inbound connector re-sends it)", {
            from: open[0]?.offset,
            to: rec.offset - 1n,
          });
      }
      if (rec.offset === start) startsInside = false;
      open = [ev];
      inTxn = true;
    } else {
      if (!inTxn)
        throw new RecordError(rec.offset, `${ev.kind} outside a source transaction (no begin before it)`);
      open.push(ev);
    }
    if (ev.kind === "commit") {
      for (const e of open) events.push(e);
      open = [];
      inTxn = false;
      nextOffset = rec.offset + 1n;
      if (nextOffset - start >= limit) break;
      // Leave the rest of the time for applying what was read.
      if (readUntil !== null && Date.now() >= readUntil) break;
    } else if (open.length >= config.maxTransactionRecords) {
      log.warn(
        "source transaction exceeds max_transaction_records: applying it in parts; until it completes the target shows part of it",
        { offset: rec.offset, max_transaction_records: config.maxTransactionRecords },
      );
      for (const e of open) events.push(e);
      open = [];
      nextOffset = rec.offset + 1n;
      partial = true;
      break;
    }
  }
  return {
    events,
    nextOffset,
    exceeded: nextOffset - start > limit,
    partial,
    startsInside: startsInside && events.length > 0 && events[0]?.kind !== "begin",
  };
}

/**
 * One invocation: lock the partition, load state, read a bounded batch of whole source transactions,
 * apply it and the new state in one target transaction, report. Either all of it happens or none.
 */
export async function runOnce(config: SinkConfig, deps: RunDeps): Promise<RunSummary> {
  const started = Date.now();
  const { log } = deps;
  const key: PartitionKey = { connector: config.name, topic: config.topic, partition: config.partition };
  const summary: RunSummary = {
    status: "idle",
    connector: config.name,
    topic: config.topic,
    partition: config.partition,
    records: 0,
    transactions: 0,
    skipped_transactions: 0,
    inserts: 0,
    updates: 0,
    deletes: 0,
    truncates: 0,
    statements: 0,
    missing_rows: 0,
    next_offset: "0",
    lag: null,
    max_records_exceeded: false,
    partial_transaction: false,
    duration_ms: 0,
  };
  const deadline = deps.deadline ?? null;
  if (deadline !== null && deadline - Date.now() < MIN_RUN_MS)
    throw new DeadlineError(
      `only ${Math.max(0, deadline - Date.now())} ms left before the deadline (at least ${MIN_RUN_MS} needed): applied nothing`,
    );
  const client = await (deps.connect ?? connectTarget)(config);
  let source: Source | undefined;
  let loaded: SinkState | null = null;
  try {
    await ensureStateTable(client, config.stateSchema);
    await client.query("BEGIN");
    if (deadline !== null) {
      // The transaction must end before the deadline, waiting on locks included.
      const ms = Math.max(1, deadline - Date.now());
      await client.query(`SET LOCAL statement_timeout = ${ms}`);
      await client.query(`SET LOCAL lock_timeout = ${ms}`);
    }
    if (!(await tryLockPartition(client, key))) {
      await client.query("ROLLBACK");
      log.warn("another run is applying this partition; this run applies nothing", { ...key });
      summary.status = "locked";
      return summary;
    }
    failpoint("after-lock");
    let state = await loadState(client, config.stateSchema, key);
    if (!state) {
      const legacy = await loadLegacyOffset(client);
      state = emptyState(legacy === null ? 0n : legacy + 1n);
      if (legacy !== null) {
        // The Rust sink applied record by record, so it may have stopped inside a transaction.
        state.inTransaction = true;
        log.info("no state yet: starting after the original connector's offset in fluvio.offset", {
          legacy_offset: legacy,
          next_offset: state.nextOffset,
        });
      }
    }
    loaded = state;
    source = (deps.openSource ?? defaultOpenSource)(config, log);
    const start = source.resolveStart ? await source.resolveStart(state.nextOffset) : state.nextOffset;
    // Records lost before the start leave no transaction open across the gap.
    if (start !== state.nextOffset) state.inTransaction = false;
    summary.next_offset = start.toString();
    const readUntil = deadline === null ? null : Date.now() + (deadline - Date.now()) / 2;
    const batch = await readBatch(source, start, state, config, log, readUntil, deadline);
    failpoint("after-read");

    const relations: Relation[] = [];
    const types = new Map(state.types);
    for (const ev of batch.events) {
      if (ev.kind === "relation") relations.push(ev.relation);
      else if (ev.kind === "type") types.set(ev.id, { namespace: ev.namespace, name: ev.name });
    }
    await client.query("SET CONSTRAINTS ALL DEFERRED");
    const catalog = await loadCatalog(client, relations, types);
    const planned = plan(batch.events, { ...state, inTransaction: batch.startsInside }, catalog);
    const executed = await executePlan(client, planned.steps, config.missingRows, (msg, fields) =>
      log.warn(msg, fields),
    );
    failpoint("after-apply");

    const newState: SinkState = {
      nextOffset: batch.nextOffset,
      lastCommitLsn: planned.state.lastCommitLsn,
      inTransaction: batch.partial,
      relations: planned.state.relations,
      types: planned.state.types,
      // After a run that fit in its time, a reduced batch grows back towards max_records.
      batchLimit:
        state.batchLimit === null || state.batchLimit * 2 >= config.maxRecords ? null : state.batchLimit * 2,
    };
    // Nothing consumed means nothing to record: the stored state already says where to resume.
    if (batch.nextOffset !== state.nextOffset) await saveState(client, config.stateSchema, key, newState);
    failpoint("before-commit");
    await client.query("COMMIT");
    failpoint("after-commit");

    const end = await source.endOffset().catch(() => null);
    Object.assign(summary, {
      status: batch.nextOffset === state.nextOffset ? "idle" : "applied",
      records: Number(batch.nextOffset - start),
      transactions: planned.stats.transactions,
      skipped_transactions: planned.stats.skippedTransactions,
      inserts: planned.stats.inserts,
      updates: planned.stats.updates,
      deletes: planned.stats.deletes,
      truncates: planned.stats.truncates,
      statements: executed.statements,
      missing_rows: executed.missingRows,
      next_offset: batch.nextOffset.toString(),
      lag: end === null ? null : Math.max(0, Number(end - batch.nextOffset)),
      max_records_exceeded: batch.exceeded,
      partial_transaction: batch.partial,
    });
    if (batch.exceeded)
      log.info("a source transaction larger than max_records was applied whole", {
        records: summary.records,
        max_records: state.batchLimit ?? config.maxRecords,
      });
    return summary;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    if (deadline !== null && loaded && isTimeout(e)) {
      // Without this a batch too big for the time would fail the same way on every run.
      const limit = Math.max(1, Math.floor((loaded.batchLimit ?? config.maxRecords) / 2));
      await saveBatchLimit(client, config.stateSchema, key, loaded, limit).then(
        () => log.warn("the run ran out of time; the next run takes a smaller batch", { batch_limit: limit }),
        () => {},
      );
      throw new DeadlineError(`${(e as Error).message}; the next run reads at most ${limit} records`, {
        cause: e,
      });
    }
    throw e;
  } finally {
    summary.duration_ms = Date.now() - started;
    await source?.close().catch(() => {});
    await client.end().catch(() => {});
  }
}
