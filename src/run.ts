import type pg from "pg";
import { loadCatalog } from "./apply/catalog.js";
import { loadTargetTraits } from "./apply/constraints.js";
import { type ExecuteResult, executePlan } from "./apply/execute.js";
import { tableOf } from "./apply/model.js";
import { type Plan, type PlanState, plan } from "./apply/plan.js";
import { type ApplyMode, enterReplicaRole, isOrderSensitiveViolation } from "./apply/role.js";
import { readBudgetBytes } from "./budget.js";
import type { SinkConfig } from "./config.js";
import { insertAudit, insertDeadLetter } from "./dead-letter.js";
import { asError, DeadlineError, RecordError, StreamAbort, sqlState } from "./errors.js";
import type { Event, Relation } from "./events/types.js";
import { failpoint, pausepoint } from "./failpoint.js";
import { type Logger, redact } from "./log.js";
import { formatLsn } from "./lsn.js";
import {
  applyUnitByUnit,
  failureText,
  isRecordFault,
  type NarrowResult,
  type SetAside,
  splitUnits,
} from "./poison.js";
import { type Batch, readBatch, recordSha256, recordsBetween } from "./read-batch.js";
import { hideRowValues, scrubError } from "./row-values.js";
import { SegmentedApply, type SegmentedResult } from "./segmented-apply.js";
import { FileSource } from "./source/file.js";
import { FluvioSource } from "./source/fluvio.js";
import type { ResumeHint, Source } from "./source/source.js";
import {
  emptyState,
  ensureStateTable,
  loadLegacyOffset,
  loadState,
  type PartitionKey,
  peekNextOffset,
  recordFailure,
  recordSuccess,
  type SinkState,
  saveBatchLimit,
  saveState,
  secondsSince,
  tryLockPartition,
} from "./state.js";
import { closeTarget, connectTarget, destroyTarget, targetHost } from "./target/connect.js";
import { isSessionFailure, type Phase, TargetError } from "./target/failure.js";
import { appendSample, estimateThroughput, type RunSample, type StopReason } from "./throughput.js";

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
  /** Inserted rows whose key the target already had, updated instead (on_conflict: upsert). */
  upserted_rows: number;
  /** replica: session_replication_role = replica; ordered: statements follow the target's foreign keys. */
  apply_mode: ApplyMode | null;
  /** The optimised plan tripped a constraint and the batch was applied change by change in source order. */
  exact_order: boolean;
  next_offset: string;
  /** Records left after next_offset, when the source knows its end. */
  lag: number | null;
  /**
   * How far the target is behind the source: 0 when no records are left, else the time since the
   * last applied source transaction committed (its commit timestamp); null when unknown.
   */
  seconds_behind_source: number | null;
  max_records_exceeded: boolean;
  /** Bytes of the records consumed (what the memory budget counts). */
  bytes: number;
  /** A single source transaction larger than the memory budget was applied whole. */
  memory_budget_exceeded: boolean;
  /** Why reading stopped: the source's end, max_records, the memory budget, the time kept for reading, or a transaction over max_transaction_records. */
  stopped_by: StopReason | null;
  /** Records per second arriving at the source, over the last runs; null until known. */
  arrival_rate: number | null;
  /** Records per second the schedule can absorb (records a run can take / the schedule's interval). */
  capacity: number | null;
  /** Seconds until the lag is 0 at these rates; 0 when caught up; null when unknown or never. */
  time_to_catch_up: number | null;
  /** Over the last runs the source outran the schedule and the lag did not shrink (also logged as a warning). */
  schedule_outrun: boolean;
  /** The run ended inside a source transaction too large for one run (max_transaction_records). */
  partial_transaction: boolean;
  /** The batch failed and was applied again source transaction by source transaction (poison records). */
  narrowed: boolean;
  /**
   * Segments the batch was applied in while it was read (parameters.segment_bytes); 0 when it was
   * applied whole (an idle run, skip, or a streamed attempt that gave way: poison, the fallback).
   */
  segments: number;
  /** Source transactions set aside in the dead-letter table (on_error: dead_letter). */
  dead_letters: number;
  dead_lettered: SetAsideSummary[];
  /** The transaction `skip` moved past on purpose, or null. */
  skipped: SetAsideSummary | null;
  /** skip without --yes: what would be skipped; nothing was committed. */
  dry_run?: boolean;
  duration_ms: number;
}

/** A source transaction the run did not apply, for the summary. */
export interface SetAsideSummary {
  /** Dead letter id or audit id. */
  id: string;
  from: string;
  to: string;
  lsn: string | null;
  tables: string[];
  error: string | null;
}

export interface RunDeps {
  log: Logger;
  /** Opens the record source; by default a file source or (later) Fluvio, per the config. */
  openSource?: (config: SinkConfig, log: Logger) => Source;
  /** Connects to the target; by default a pg.Client on config.databaseUrl. */
  connect?: (config: SinkConfig) => Promise<pg.Client>;
  /**
   * Wall-clock time (ms since the epoch) by which the run must have committed, e.g. a Lambda's end
   * less a margin; never later than run_timeout_ms after the start. Reading stops early enough to
   * apply what was read; statements and lock waits are bounded by it. A run that still runs out of
   * time halves its batch for the next run.
   */
  deadline?: number;
  /** Told what is known about a run that fails, before its error is thrown (for metrics). */
  onFailure?: (failure: RunFailure) => void;
  /**
   * The `skip` command: the source transaction starting at `offset` (null: the stored offset) is
   * set aside on purpose with an audit row, and the run ends after it.
   */
  skip?: { offset: bigint | null; reason: string | null; actor: string; dryRun: boolean };
}

/** What a failed run knows about the partition's health. */
export interface RunFailure {
  /** Failed runs in a row, this one included; null when it could not be recorded. */
  consecutive_failures: number | null;
  /** As in RunSummary, when the run saw records it could not apply; else null. */
  seconds_behind_source: number | null;
}

/** Where the last run's count of the source's end ended (file source), if it recorded it. */
function endHintOf(history: RunSample[] | undefined): ResumeHint | undefined {
  const last = history?.[history.length - 1];
  if (last?.end == null || last.end_position === undefined) return undefined;
  return { offset: BigInt(last.end), position: BigInt(last.end_position) };
}

/** The last commit timestamp among the events, or `previous` when they hold no later one. */
function lastCommitTime(events: Event[], previous: bigint | null): bigint | null {
  let t = previous;
  for (const ev of events) if (ev.kind === "commit" && (t === null || ev.timestamp > t)) t = ev.timestamp;
  return t;
}

/**
 * A budget-sized run that ran out of time before it had read its batch: the next one reads at most
 * half of this (the former fixed default).
 */
const TIMEOUT_FALLBACK_RECORDS = 1000;

/**
 * After a run that fit in its time, a reduced batch limit grows back: doubling towards max_records,
 * or, with batches sized by budget, back to the budget once a run ends before reaching the limit.
 */
export function nextBatchLimit(
  limit: number | null,
  maxRecords: number | null,
  stoppedBy: StopReason,
): number | null {
  if (limit === null) return null;
  if (maxRecords === null) return stoppedBy === "max_records" ? limit * 2 : null;
  return limit * 2 >= maxRecords ? null : limit * 2;
}

/** Less time than this before the deadline: the run does not start. */
export const MIN_RUN_MS = 2000;

export { DeadlineError };

/** Past the deadline, the run drops its connection rather than wait on the target any longer. */
export const DEADLINE_GRACE_MS = 1000;

/**
 * Added to the run's time left for the server's idle_in_transaction_session_timeout, so the server
 * ends a session whose client vanished mid-transaction (and frees the partition) soon after.
 */
export const STRANDED_GRACE_MS = 2000;

export { connectTarget };

/** Ran out of time in a way a smaller batch helps with (not a lock another session holds). */
function isTimeout(e: unknown, lockCappedByDeadline: boolean): boolean {
  const code = sqlState(e);
  // 57014: statement timeout; 55P03: lock timeout, when it was the deadline that ended the wait.
  return e instanceof DeadlineError || code === "57014" || (code === "55P03" && lockCappedByDeadline);
}

/** `keepClient`: a Fluvio client stays connected for the process's next run (a warm Lambda). */
export function defaultOpenSource(config: SinkConfig, log: Logger, keepClient = false): Source {
  if (config.source.kind === "file") return new FileSource(config.source.path);
  return new FluvioSource({
    topic: config.topic,
    partition: config.partition,
    endpoint: config.source.endpoint,
    connectTimeoutMs: config.connectTimeoutMs,
    readTimeoutMs: config.readTimeoutMs,
    fetchMaxBytes: config.fetchMaxBytes,
    onLostRecords: config.onLostRecords,
    log,
    keepClient,
  });
}

/**
 * One invocation: lock the partition, load state, read a bounded batch of whole source transactions,
 * apply it and the new state in one target transaction, report. Either all of it happens or none.
 * Every wait is bounded: by the deadline, the session's timeouts, and a watchdog that drops the
 * connection shortly after the deadline.
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
    upserted_rows: 0,
    apply_mode: null,
    exact_order: false,
    next_offset: "0",
    lag: null,
    seconds_behind_source: null,
    max_records_exceeded: false,
    bytes: 0,
    memory_budget_exceeded: false,
    stopped_by: null,
    arrival_rate: null,
    capacity: null,
    time_to_catch_up: null,
    schedule_outrun: false,
    partial_transaction: false,
    narrowed: false,
    segments: 0,
    dead_letters: 0,
    dead_lettered: [],
    skipped: null,
    duration_ms: 0,
  };
  const deadline = Math.min(deps.deadline ?? Number.POSITIVE_INFINITY, started + config.runTimeoutMs);
  if (deadline - Date.now() < MIN_RUN_MS)
    throw new DeadlineError(
      `only ${Math.max(0, deadline - Date.now())} ms left before the deadline (at least ${MIN_RUN_MS} needed): applied nothing`,
    );
  const client = await (deps.connect ?? connectTarget)(config);
  const host = targetHost(client);
  let phase: Phase = "lock";
  let offsets: string | undefined;
  // What broke the connection between queries, and when: pg only says "not queryable" afterwards.
  let lost: { error: Error; phase: Phase } | null = null;
  client.on("error", (e: Error) => {
    lost ??= { error: e, phase };
  });
  let deadlinePassed = false;
  const watchdog = setTimeout(
    () => {
      deadlinePassed = true;
      destroyTarget(client);
    },
    deadline - Date.now() + DEADLINE_GRACE_MS,
  );
  watchdog.unref();
  let source: Source | undefined;
  let loaded: SinkState | null = null;
  // A first run cutting over from fluvio.offset: a failure must not leave a state row behind, or the
  // next run would skip the cut-over (and its relation cache rebuild).
  let cuttingOver = false;
  // Whether the run read records past the stored offset: if it fails, they are still to be applied.
  let readPending = false;
  // Records the run read, for the batch limit after a timeout; null until it has read its batch.
  let readCount: number | null = null;
  let lockCappedByDeadline = false;
  try {
    if (deadline - Date.now() < MIN_RUN_MS)
      throw new DeadlineError(
        `only ${Math.max(0, deadline - Date.now())} ms left before the deadline after connecting to target ${host} (at least ${MIN_RUN_MS} needed): applied nothing`,
      );
    await ensureStateTable(client, config.stateSchema);
    // The transaction must end before the deadline, waiting on locks included. A session stranded
    // in it (its client gone) is ended by the server once idle for longer than the run had left.
    const left = Math.max(1, deadline - Date.now());
    lockCappedByDeadline = left < config.lockTimeoutMs;
    await client.query(
      [
        "BEGIN",
        `SET LOCAL statement_timeout = ${Math.min(left, config.statementTimeoutMs)}`,
        `SET LOCAL lock_timeout = ${Math.min(left, config.lockTimeoutMs)}`,
        `SET LOCAL idle_in_transaction_session_timeout = ${left + STRANDED_GRACE_MS}`,
      ].join("; "),
    );
    if (!(await tryLockPartition(client, key))) {
      await client.query("ROLLBACK");
      // The stored offset is readable without the lock (the holder has not committed a new one).
      const stored = await peekNextOffset(client, config.stateSchema, key);
      const legacy = stored === null ? await loadLegacyOffset(client) : null;
      summary.next_offset = (stored ?? (legacy === null ? 0n : legacy + 1n)).toString();
      log.warn("another run is applying this partition; this run applies nothing", {
        ...key,
        next_offset: summary.next_offset,
      });
      summary.status = "locked";
      return summary;
    }
    failpoint("after-lock");
    let state = await loadState(client, config.stateSchema, key);
    let legacy: bigint | null = null;
    if (!state) {
      legacy = await loadLegacyOffset(client);
      state = emptyState(legacy === null ? 0n : legacy + 1n);
      if (legacy !== null) {
        cuttingOver = true;
        // The Rust sink applied record by record, so it may have stopped inside a transaction.
        state.inTransaction = true;
        log.info("no state yet: starting after the original connector's offset in fluvio.offset", {
          legacy_offset: legacy,
          next_offset: state.nextOffset,
        });
      }
    }
    loaded = state;
    phase = "read";
    offsets = `offset ${state.nextOffset}`;
    source = (deps.openSource ?? defaultOpenSource)(config, log);
    const mode = await enterReplicaRole(client);
    summary.apply_mode = mode;
    log.info(
      mode === "replica"
        ? "applying with session_replication_role = replica: target triggers and foreign-key actions do not fire"
        : "the login may not set session_replication_role: applying in foreign-key order; target triggers and foreign-key actions fire",
      { apply_mode: mode },
    );
    if (legacy !== null) await rebuildRelationCache(client, source, legacy, state, log);
    const start = source.resolveStart ? await source.resolveStart(state.nextOffset) : state.nextOffset;
    // Records lost before the start leave no transaction open across the gap.
    if (start !== state.nextOffset) state.inTransaction = false;
    summary.next_offset = start.toString();
    offsets = `offset ${start}`;
    const readUntil = Date.now() + (deadline - Date.now()) / 2;
    const readBytes = readBudgetBytes(config.memoryBudgetMb);
    // Only dead letters and skip need the records' own text; otherwise the batch holds events alone.
    const keepRecords = config.onError === "dead_letter" || deps.skip !== undefined;
    const options = {
      onConflict: config.onConflict,
      startLsn: config.startLsn,
      foreignKeyOrder: mode === "ordered",
    };
    const warn = (msg: string, fields: Record<string, unknown>) => log.warn(msg, fields);
    const recordFault = (e: unknown) =>
      lost === null && !deadlinePassed && !/Query read timeout/.test(asError(e).message) && isRecordFault(e);
    let readOnce = false;
    const afterRead = async (b: Batch) => {
      readPending = b.nextOffset > start;
      readCount = Number(b.nextOffset - start);
      // A batch read again (after a streamed attempt gave way) passes here once.
      if (!readOnce) {
        failpoint("after-read");
        await pausepoint("after-read");
      }
      readOnce = true;
      phase = "apply";
      offsets =
        b.nextOffset > start ? `offsets ${start}..${b.nextOffset - 1n}` : `offset ${start} (nothing read)`;
    };
    // The ordinary case: applied segment by segment while it is read (src/segmented-apply.ts).
    let streamed: { batch: Batch; result: SegmentedResult } | null = null;
    // What the streamed attempt read in full, if it got that far: read again up to the same end.
    let reading: Batch | null = null;
    if (deps.skip === undefined) {
      // The batch's savepoint comes first here: a streamed attempt that gives way rolls back to it.
      await client.query("SAVEPOINT fps_batch");
      const segmented = new SegmentedApply({
        client,
        state: { ...state },
        options,
        segmentBytes: config.segmentBytes,
        missingRows: config.missingRows,
        warn,
      });
      try {
        const b = await readBatch(source, start, state, config, log, readUntil, deadline, {
          readBytes,
          keepRecords,
          consume: segmented.take,
        });
        reading = b;
        await afterRead(b);
        streamed = { batch: b, result: await segmented.finish() };
      } catch (e) {
        await segmented.halt();
        const applying = segmented.threw(e);
        if (applying) {
          phase = "apply";
          // Stopped before its batch was read: the records so far, as a run that read them would say.
          if (offsets === `offset ${start}` && segmented.lastOffset !== null)
            offsets = `offsets ${start}..${segmented.lastOffset}`;
        }
        if (!(e instanceof StreamAbort) && !(applying && (recordFault(e) || isOrderSensitiveViolation(e))))
          throw e;
        log.info("applying this batch whole, as read again: its streamed apply gave way", {
          reason: failureText(e),
          from: start.toString(),
        });
        await client.query("ROLLBACK TO SAVEPOINT fps_batch");
      }
    }
    const batch =
      streamed?.batch ??
      (reading === null
        ? await readBatch(source, start, state, config, log, readUntil, deadline, { readBytes, keepRecords })
        : {
            ...(await readBatch(source, start, state, config, log, null, deadline, {
              keepRecords,
              stopAt: reading.nextOffset,
            })),
            stoppedBy: reading.stoppedBy,
            bytesExceeded: reading.bytesExceeded,
          });
    if (!streamed) await afterRead(batch);
    let applied: Pick<NarrowResult, "state" | "stats" | "executed" | "warnings" | "stoppedAfter">;
    let commitTime: bigint | null = state.lastCommitTime ?? null;
    if (streamed) {
      const r = streamed.result;
      applied = { ...r, stoppedAfter: null };
      summary.segments = r.segments;
      if (r.lastCommitTime !== null && (commitTime === null || r.lastCommitTime > commitTime))
        commitTime = r.lastCommitTime;
    } else {
      const relations: Relation[] = [];
      const types = new Map(state.types);
      for (const ev of [...batch.events, ...batch.poisoned.flatMap((p) => p.events)]) {
        if (ev.kind === "relation") relations.push(ev.relation);
        else if (ev.kind === "type") types.set(ev.id, { namespace: ev.namespace, name: ev.name });
      }
      // Nothing read (an idle run): no statements, so none of the target's catalog is needed.
      const idle = batch.events.length === 0;
      if (!idle) await client.query("SET CONSTRAINTS ALL DEFERRED");
      const owned = relations.flatMap((r) => {
        const c = state.relations.get(r.relId);
        return c ? [tableOf(c)] : [];
      });
      const followed = [
        ...[...state.relations.values()].map(tableOf),
        ...relations.map((r) => ({ schema: r.namespace, name: r.name })),
      ].map((t): [string, string] => [t.schema, t.name]);
      const traits = idle ? new Map() : await loadTargetTraits(client, followed);
      const planState: PlanState = { ...state, inTransaction: batch.startsInside };
      const wholeOptions = { ...options, traits };
      // The exact-order fallback and narrowing roll back to here: nothing of the batch, the lock and state kept.
      await client.query("SAVEPOINT fps_batch");
      const applyWhole = async (): Promise<{ planned: Plan; executed: ExecuteResult }> => {
        let planned: Plan = plan(
          batch.events,
          planState,
          idle ? { tables: new Map(), types: new Map() } : await loadCatalog(client, relations, types, owned),
          wholeOptions,
        );
        let executed: ExecuteResult;
        if (planned.needsExactOrder) {
          log.info(
            "the target's ON DELETE actions could reach rows this batch re-parents: applying it change by change, in source order",
            { from: start.toString(), to: (batch.nextOffset - 1n).toString() },
          );
          planned = plan(batch.events, planState, await loadCatalog(client, relations, types, owned), {
            ...options,
            exact: true,
          });
          summary.exact_order = true;
        }
        try {
          executed = await executePlan(client, planned.steps, config.missingRows, warn);
        } catch (e) {
          if (!isOrderSensitiveViolation(e) || summary.exact_order) throw e;
          log.warn(
            "a set-wise statement tripped a constraint the source order kept: applying this batch again change by change, in source order",
            {
              error: hideRowValues((e as Error).message),
              from: start.toString(),
              to: (batch.nextOffset - 1n).toString(),
            },
          );
          await client.query("ROLLBACK TO SAVEPOINT fps_batch");
          // The catalog is read again: the rolled-back plan's DDL changed the planner's snapshot.
          const catalog = await loadCatalog(client, relations, types, owned);
          planned = plan(batch.events, planState, catalog, { ...wholeOptions, exact: true });
          executed = await executePlan(client, planned.steps, config.missingRows, warn);
          summary.exact_order = true;
        }
        // Deferred constraints would trip at COMMIT, where the batch can no longer be narrowed.
        await client.query("SET CONSTRAINTS ALL IMMEDIATE");
        return { planned, executed };
      };
      const skipAt = deps.skip ? (deps.skip.offset ?? start) : null;
      let whole: { planned: Plan; executed: ExecuteResult } | null = null;
      if (batch.poisoned.length === 0 && skipAt === null) {
        try {
          whole = await applyWhole();
        } catch (e) {
          if (!recordFault(e)) throw e;
          log.warn(
            "the batch failed: applying it again source transaction by source transaction to find the one at fault",
            {
              error: failureText(e),
              from: start.toString(),
              to: (batch.nextOffset - 1n).toString(),
            },
          );
          await client.query("ROLLBACK TO SAVEPOINT fps_batch");
        }
      }
      if (whole) applied = { ...whole.planned, executed: whole.executed, stoppedAfter: null };
      else {
        summary.narrowed = true;
        const narrowed = await applyUnitByUnit({
          client,
          units: splitUnits(batch),
          state: planState,
          catalog: () => loadCatalog(client, relations, types, owned),
          options: wholeOptions,
          missingRows: config.missingRows,
          warn,
          onError: config.onError,
          skipAt,
          storedOffset: state.nextOffset,
          isFault: recordFault,
        });
        await client.query("SET CONSTRAINTS ALL IMMEDIATE");
        await setAsideUnits(client, config, key, narrowed.setAside, batch, skipAt, deps.skip, summary, log);
        applied = narrowed;
      }
      commitTime = lastCommitTime(batch.events, commitTime);
    }
    for (const w of applied.warnings) log.warn(w.message, w.fields);
    failpoint("after-apply");
    await pausepoint("after-apply");
    if (deps.skip?.dryRun) {
      await client.query("ROLLBACK");
      summary.dry_run = true;
      summary.next_offset = state.nextOffset.toString();
      return summary;
    }

    const stop = applied.stoppedAfter;
    const last = stop ? recordsBetween(batch.records, stop.to, stop.to)[0] : undefined;
    const newState: SinkState = {
      nextOffset: stop ? stop.to + 1n : batch.nextOffset,
      lastCommitLsn: applied.state.lastCommitLsn,
      inTransaction: stop ? false : batch.partial,
      relations: applied.state.relations,
      types: applied.state.types,
      batchLimit: nextBatchLimit(state.batchLimit, config.maxRecords, batch.stoppedBy),
      resumePosition: stop ? (last?.end === undefined ? null : BigInt(last.end)) : batch.resumePosition,
      lastRecordSha256: stop ? (last ? recordSha256(last.value) : null) : batch.lastRecordSha256,
      awaitedResends: stop ? state.awaitedResends : batch.awaitedResends,
    };
    // Nothing consumed means nothing to record: the stored state already says where to resume.
    if (newState.nextOffset !== state.nextOffset) await saveState(client, config.stateSchema, key, newState);
    // Read before the commit, so the run's sample of the source's end goes into its transaction.
    const end = await source.endOffset(endHintOf(state.runHistory)).catch(() => null);
    const endAt = end === null ? null : (source.endHint?.() ?? null);
    const sample: RunSample = {
      at: Date.now(),
      end: end === null ? null : end.toString(),
      ...(endAt && { end_position: endAt.position.toString() }),
      next: newState.nextOffset.toString(),
      records: Number(newState.nextOffset - start),
      bytes: batch.bytes,
      ms: Date.now() - started,
      budget_ms: deadline - started,
      stopped_by: batch.stoppedBy,
    };
    const history = appendSample(state.runHistory ?? [], sample);
    await recordSuccess(client, config.stateSchema, key, commitTime, history);
    failpoint("before-commit");
    phase = "commit";
    await client.query("COMMIT");
    failpoint("after-commit");
    clearTimeout(watchdog);

    const rates = estimateThroughput(history, {
      intervalSeconds: config.scheduleIntervalSeconds,
      maxRecords: state.batchLimit ?? config.maxRecords,
      readBytes,
    });
    Object.assign(summary, {
      status: newState.nextOffset === state.nextOffset ? "idle" : "applied",
      records: Number(newState.nextOffset - start),
      transactions: applied.stats.transactions,
      skipped_transactions: applied.stats.skippedTransactions,
      inserts: applied.stats.inserts,
      updates: applied.stats.updates,
      deletes: applied.stats.deletes,
      truncates: applied.stats.truncates,
      statements: applied.executed.statements,
      missing_rows: applied.executed.missingRows,
      upserted_rows: applied.executed.upserts,
      next_offset: newState.nextOffset.toString(),
      lag: end === null ? null : Math.max(0, Number(end - newState.nextOffset)),
      seconds_behind_source:
        end === null
          ? null
          : end <= newState.nextOffset
            ? 0
            : commitTime === null
              ? null
              : secondsSince(commitTime),
      max_records_exceeded: batch.exceeded,
      bytes: batch.bytes,
      memory_budget_exceeded: batch.bytesExceeded,
      stopped_by: batch.stoppedBy,
      arrival_rate: rates.arrival_rate,
      capacity: rates.capacity,
      time_to_catch_up: rates.time_to_catch_up,
      schedule_outrun: rates.outrun,
      partial_transaction: newState.inTransaction,
    });
    if (rates.outrun)
      log.warn(
        "the source outruns the schedule: records arrive faster than the runs can apply them, and the lag keeps growing; shorten the schedule's interval or give runs more time or memory (README, Sizing)",
        {
          arrival_rate: rates.arrival_rate,
          capacity: rates.capacity,
          records_per_run: rates.records_per_run,
          schedule_interval_seconds: rates.schedule_interval_seconds,
          lag: summary.lag,
          runs: history.length,
        },
      );
    if (batch.bytesExceeded)
      log.warn("a source transaction larger than the memory budget was applied whole", {
        bytes: batch.bytes,
        memory_budget_mb: config.memoryBudgetMb,
      });
    if (batch.exceeded)
      log.info("a source transaction larger than max_records was applied whole", {
        records: summary.records,
        max_records: state.batchLimit ?? config.maxRecords,
      });
    return summary;
  } catch (caught) {
    // Errors of the run itself (a bad record, a rejected row) stay as they are, even if the
    // connection broke meanwhile.
    const broken = isSessionFailure(caught);
    const connectionGone =
      lost !== null || deadlinePassed || /Query read timeout/.test(asError(caught).message);
    if (connectionGone) {
      // Nothing more can be said on this connection; the server rolls back when it notices the
      // drop (or at its idle-in-transaction timeout when it cannot notice).
      destroyTarget(client);
    } else await client.query("ROLLBACK").catch(() => {});
    let e: unknown = broken
      ? TargetError.from(caught, {
          host,
          phase,
          config,
          offsets,
          lost: (lost as { error: Error } | null)?.error ?? null,
          lostPhase: (lost as { phase: Phase } | null)?.phase,
          deadlinePassed,
          lockCappedByDeadline,
        })
      : caught;
    if (loaded && !connectionGone && isTimeout(caught, lockCappedByDeadline)) {
      // Without this a batch too big for the time would fail the same way on every run.
      const limit = Math.max(
        1,
        Math.floor((loaded.batchLimit ?? config.maxRecords ?? readCount ?? TIMEOUT_FALLBACK_RECORDS) / 2),
      );
      await saveBatchLimit(client, config.stateSchema, key, loaded, limit).then(
        () => log.warn("the run ran out of time; the next run takes a smaller batch", { batch_limit: limit }),
        () => {},
      );
      e = new DeadlineError(`${asError(e).message}; the next run reads at most ${limit} records`, {
        cause: caught,
      });
    }
    scrubError(e);
    // Recorded apart from the data, which was rolled back; a target that is gone cannot record it.
    const message = hideRowValues(redact(asError(e).message)).slice(0, 2000);
    const failures = connectionGone
      ? null
      : await recordFailure(client, config.stateSchema, key, cuttingOver ? null : loaded, message).catch(
          () => null,
        );
    const pending = readPending || caught instanceof RecordError;
    const behind = pending ? (loaded?.lastCommitTime ?? null) : null;
    deps.onFailure?.({
      consecutive_failures: failures,
      seconds_behind_source: behind === null ? null : secondsSince(behind),
    });
    throw e;
  } finally {
    clearTimeout(watchdog);
    summary.duration_ms = Date.now() - started;
    await source?.close().catch(() => {});
    await closeTarget(client);
  }
}

/**
 * Cut-over from the original Rust sink: its offset table says where to go on, but the relation
 * messages that describe the records after it came before it. Reads them (nothing else) from the
 * topic's start, adopts the target tables they name (creating any the target lacks) and fills the
 * state's relation cache, so the run continues as if it had read them itself.
 */
async function rebuildRelationCache(
  client: pg.ClientBase,
  source: Source,
  legacy: bigint,
  state: SinkState,
  log: Logger,
): Promise<void> {
  // Loaded here: only the one cut-over run needs it.
  const { readSchemaHistory } = await import("./cutover.js");
  const history = await readSchemaHistory(source, legacy);
  // The Rust sink followed every schema change up to its offset: the last description of each
  // table is what the target has.
  const last = new Map<number, Event>();
  const types: Event[] = [];
  for (const ev of history) {
    if (ev.kind === "relation") {
      last.delete(ev.relation.relId);
      last.set(ev.relation.relId, ev);
    } else types.push(ev);
  }
  const events = [...types, ...last.values()];
  const relations = [...last.values()].flatMap((ev) => (ev.kind === "relation" ? [ev.relation] : []));
  const typeMap = new Map(state.types);
  for (const ev of types)
    if (ev.kind === "type") typeMap.set(ev.id, { namespace: ev.namespace, name: ev.name });
  const catalog = await loadCatalog(client, relations, typeMap);
  const planned = plan(
    events,
    { relations: new Map(), types: state.types, lastCommitLsn: null, inTransaction: true },
    catalog,
  );
  await executePlan(client, planned.steps, "error", () => {});
  state.relations = planned.state.relations;
  state.types = planned.state.types;
  log.info("rebuilt the relation cache from the topic's start for the cut-over from fluvio.offset", {
    relations: relations.length,
    up_to_offset: legacy.toString(),
  });
}

/**
 * Writes what narrowing set aside, in the run's transaction: a dead letter per failed source
 * transaction (its records' text and error), or the audit row of the one `skip` moved past.
 */
async function setAsideUnits(
  client: pg.ClientBase,
  config: SinkConfig,
  key: PartitionKey,
  setAside: SetAside[],
  batch: Batch,
  skipAt: bigint | null,
  skip: RunDeps["skip"],
  summary: RunSummary,
  log: Logger,
): Promise<void> {
  for (const aside of setAside) {
    const { unit } = aside;
    const lsn = unit.lsn === null ? null : formatLsn(unit.lsn);
    const fields = { from: unit.from.toString(), to: unit.to.toString(), lsn, tables: aside.tables };
    if (skip && unit.from === skipAt) {
      const id = await insertAudit(client, config.stateSchema, key, {
        action: "skip",
        from: unit.from,
        to: unit.to,
        lsn: unit.lsn,
        deadLetterId: null,
        reason: skip.reason,
        actor: skip.actor,
      });
      summary.skipped = { id, ...fields, error: aside.error };
      log.warn("skipped a source transaction on purpose (audited)", { ...fields, audit_id: id });
      continue;
    }
    const records = recordsBetween(batch.records, unit.from, unit.to);
    const id = await insertDeadLetter(client, config.stateSchema, key, aside, records);
    summary.dead_lettered.push({ id, ...fields, error: aside.error });
    summary.dead_letters++;
    log.warn("a source transaction failed and was set aside in the dead-letter table", {
      ...fields,
      dead_letter_id: id,
      error: aside.error,
    });
  }
}
