import { createHash } from "node:crypto";
import type { SinkConfig } from "./config.js";
import { DeadlineError, RecordError, SinkError, StreamAbort } from "./errors.js";
import { decodeRecordFast } from "./events/fast-decode.js";
import type { BeginEvent, Event } from "./events/types.js";
import type { Logger } from "./log.js";
import type { Source, SourceRecord } from "./source/source.js";
import type { AwaitedResend, SinkState } from "./state.js";
import type { StopReason } from "./throughput.js";

export interface Batch {
  events: Event[];
  nextOffset: bigint;
  exceeded: boolean;
  partial: boolean;
  startsInside: boolean;
  /** Where nextOffset starts in the source's bytes (file source), or null. */
  resumePosition: bigint | null;
  /** Fingerprint of the record at nextOffset - 1, or null when none was read. */
  lastRecordSha256: string | null;
  /** Dropped partial transactions whose re-sends are still awaited at nextOffset, by final LSN. */
  awaitedResends: AwaitedResend[];
  /** Bytes of the records in the batch (UTF-16 code units, what the strings take; bytes for ASCII). */
  bytes: number;
  /** A single source transaction larger than the memory budget was read whole. */
  bytesExceeded: boolean;
  stoppedBy: StopReason;
  /**
   * The records read from `start` on, in offset order, when the caller asked to keep them: a
   * transaction set aside (dead letter) or skipped keeps their text. Empty otherwise.
   */
  records: SourceRecord[];
  /** Runs of records around ones that cannot be decoded, in offset order (not in `events`). */
  poisoned: PoisonedUnit[];
}

/**
 * A source transaction with a record that cannot be decoded (not JSON, a bad shape, invalid UTF-8),
 * or such a record between transactions. A record whose own kind is unknown may have been a BEGIN
 * or a COMMIT, so the unit is bounded by what can be known: it starts at the BEGIN of the
 * transaction open at the bad record (or at the bad record itself between transactions) and ends at
 * the next decodable COMMIT (inclusive) or just before the next decodable BEGIN.
 */
export interface PoisonedUnit {
  from: bigint;
  to: bigint;
  finalLsn: bigint | null;
  commitLsn: bigint | null;
  /** The unit's records that did decode, in order (its schema messages still count). */
  events: Event[];
  /** The first record's error. */
  error: RecordError;
}

/** The records of `batch` with offsets from..to, by binary search (offsets ascend, maybe with gaps). */
export function recordsBetween(records: SourceRecord[], from: bigint, to: bigint): SourceRecord[] {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((records[mid] as SourceRecord).offset < from) lo = mid + 1;
    else hi = mid;
  }
  const out: SourceRecord[] = [];
  for (let i = lo; i < records.length && (records[i] as SourceRecord).offset <= to; i++)
    out.push(records[i] as SourceRecord);
  return out;
}

export function recordSha256(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** An LSN the way PostgreSQL prints it (X/Y, hexadecimal). */
export function lsnText(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export interface ReadBatchOptions {
  /** The next transaction would take the batch's records past this many bytes: stop before it. */
  readBytes?: number;
  /** Keep the records' text (to set a transaction aside or skip it); otherwise only events are held. */
  keepRecords?: boolean;
  /**
   * Streamed apply (src/segmented-apply.ts): each run of whole transactions goes here as it is read,
   * with the bytes of its records, instead of into `events`; a record that cannot be decoded ends
   * the attempt with StreamAbort (the batch is then read again whole).
   */
  consume?: (events: Event[], bytes: number, startsInside: boolean) => Promise<void>;
  /** Read again what an attempt read: stop at the commit that reaches this offset, whatever else. */
  stopAt?: bigint;
}

/**
 * Reads whole source transactions from `start` until the first of: max_records (or the reduced batch
 * limit) reached, `readUntil` passed, the next transaction would take the batch past `readBytes`, or
 * the source's end. Never stops inside a transaction, except past max_transaction_records, where it
 * stops loudly; a first transaction larger than a limit is read whole.
 *
 * On a resume it first re-reads the record before `start` and checks it is the one applied last, so a
 * source whose offsets moved (log start shifted, topic recreated, file replaced) fails instead of
 * applying records under the wrong offsets.
 */
export async function readBatch(
  source: Source,
  start: bigint,
  state: SinkState,
  config: SinkConfig,
  log: Logger,
  readUntil: number | null,
  deadline: number | null,
  opts: ReadBatchOptions = {},
): Promise<Batch> {
  const { readBytes = Number.POSITIVE_INFINITY, keepRecords = true, consume, stopAt } = opts;
  const max = state.batchLimit ?? config.maxRecords;
  const limit = max === null ? null : BigInt(max);
  const resuming = start === state.nextOffset;
  const verify =
    resuming &&
    start > 0n &&
    state.lastRecordSha256 !== null &&
    (source.retains ? source.retains(start - 1n) : true);
  const from = verify ? start - 1n : start;
  const hint =
    resuming && state.resumePosition !== null ? { offset: start, position: state.resumePosition } : undefined;

  const events: Event[] = [];
  /** Events handed over so far (to `events` or `consume`), and the first one's kind. */
  let taken = 0;
  let firstKind: Event["kind"] | null = null;
  let bytesTaken = 0;
  const take = async (run: Event[]) => {
    if (run.length === 0) return;
    firstKind ??= (run[0] as Event).kind;
    taken += run.length;
    if (consume) {
      const b = bytesRead - bytesTaken;
      bytesTaken = bytesRead;
      await consume(run, b, startsInside);
    } else for (const e of run) events.push(e);
  };
  let open: Event[] = [];
  let inTxn = state.inTransaction;
  let startsInside = state.inTransaction;
  let nextOffset = start;
  let resumePosition = resuming ? state.resumePosition : null;
  let lastRecordSha256 = resuming ? state.lastRecordSha256 : null;
  // The record at nextOffset - 1, fingerprinted once at the end rather than at every commit.
  let lastValue: string | null = null;
  let awaited = state.awaitedResends;
  let awaitedAtNext = awaited;
  let lastCommitLsn = state.lastCommitLsn;
  let expected = from;
  let clockTicks = -1;
  let checked = !verify;
  let partial = false;
  let exceeded = false;
  // Bytes read past the stored offset, and those of the whole transactions kept.
  let bytesRead = 0;
  let bytesExceeded = false;
  let bytes = 0;
  let stoppedBy: StopReason = "end";
  const records: SourceRecord[] = [];
  const poisoned: PoisonedUnit[] = [];
  let poison: Omit<PoisonedUnit, "to"> | null = null;
  let prev: SourceRecord | null = null;
  /** Everything up to `rec` is read: the batch may end after it. */
  const endAfter = (rec: SourceRecord) => {
    nextOffset = rec.offset + 1n;
    resumePosition = rec.end === undefined ? null : BigInt(rec.end);
    lastValue = rec.value;
    awaitedAtNext = awaited;
  };
  const startPoison = (rec: SourceRecord, error: RecordError) => {
    if (consume)
      throw new StreamAbort(`the record at offset ${rec.offset} cannot be applied: ${error.message}`);
    if (poison) return;
    const first = open[0];
    poison = {
      from: inTxn && first ? first.offset : rec.offset,
      finalLsn: inTxn && first?.kind === "begin" ? first.finalLsn : null,
      commitLsn: null,
      events: inTxn ? open : [],
      error,
    };
    open = [];
    inTxn = false;
  };
  const closePoison = (last: SourceRecord) => {
    const p = poison as Omit<PoisonedUnit, "to">;
    poisoned.push({ ...p, to: last.offset });
    poison = null;
    endAfter(last);
  };
  /** At a COMMIT that may end the batch: the limit that ends it there, if one does. */
  const stopAtCommit = (): StopReason | null => {
    if (stopAt !== undefined) return nextOffset >= stopAt ? "end" : null;
    if (limit !== null && nextOffset - start >= limit) return "max_records";
    if (bytesRead >= readBytes) return "memory";
    // Leave the rest of the time for applying what was read.
    if (readUntil !== null && Date.now() >= readUntil) return "time";
    return null;
  };
  reading: for await (const run of source.read(from, { hint, unverified: !verify }))
    for (const rec of run) {
      if (rec.lost) {
        // The source skipped records it no longer has: nothing before them can be verified or continued.
        checked = true;
        inTxn = false;
        startsInside = false;
        open = [];
        // An undecodable run cut off by the gap ends with it: nothing after the gap belongs to it.
        poison = null;
        expected = rec.offset;
        if (taken === 0 && poisoned.length === 0) {
          nextOffset = rec.offset;
          resumePosition = null;
          lastRecordSha256 = null;
          lastValue = null;
        }
      }
      if (rec.offset !== expected)
        throw new SinkError(
          `${source.description}: returned offset ${rec.offset} where ${expected} was expected`,
        );
      expected++;
      if (!checked) {
        checked = true;
        if (recordSha256(rec.value) !== state.lastRecordSha256)
          throw new SinkError(
            `${source.description}: the record at offset ${rec.offset} is not the one this sink applied there ` +
              "(its fingerprint differs), so the offsets no longer mean what they meant: records were removed " +
              "at the log start (or the partition listing lags the log start), the topic was recreated, or the " +
              "file was replaced. Applied nothing. Restore the source, or reset this connector's row in the " +
              `state table (${config.stateSchema}.state) to the offset where the sink must continue.`,
          );
        continue;
      }
      // The clock every 128 records: reading that many takes well under a millisecond.
      if (deadline !== null && (++clockTicks & 127) === 0 && Date.now() >= deadline)
        throw new DeadlineError(
          `ran out of time reading offset ${rec.offset} (a source transaction did not finish in time)`,
        );
      bytesRead += rec.value.length;
      // The batch must fit the memory budget: the transaction that would overflow it waits for the
      // next run (read again then), unless it is the first, which is read whole.
      if (bytesRead > readBytes && (taken > 0 || poisoned.length > 0)) {
        stoppedBy = "memory";
        break reading;
      }
      if (keepRecords) records.push(rec);
      const previous = prev;
      prev = rec;
      let ev: Event;
      if (rec.invalid) {
        startPoison(rec, rec.invalid);
        continue;
      }
      try {
        ev = decodeRecordFast(rec.offset, rec.value);
      } catch (e) {
        if (!(e instanceof RecordError)) throw e;
        startPoison(rec, e);
        continue;
      }
      if (poison !== null) {
        const p = poison as Omit<PoisonedUnit, "to">;
        if (ev.kind === "begin") closePoison(previous as SourceRecord);
        else {
          p.events.push(ev);
          if (ev.kind === "commit") {
            p.commitLsn = ev.commitLsn;
            if (lastCommitLsn === null || ev.commitLsn > lastCommitLsn) lastCommitLsn = ev.commitLsn;
            bytes = bytesRead;
            closePoison(rec);
            const stop = stopAtCommit();
            if (stop) {
              stoppedBy = stop;
              break reading;
            }
          }
          continue;
        }
      }
      if (ev.kind === "begin") {
        if (open.length > 0) {
          const dropped = open[0] as Event;
          if (startsInside && taken === 0)
            log.error(
              "a source transaction this sink applied in part never committed; its first part stays applied",
              { from: dropped.offset, to: rec.offset - 1n },
            );
          else if (dropped.kind === "begin" && (lastCommitLsn === null || dropped.finalLsn > lastCommitLsn)) {
            // The inbound connector acknowledges WAL before Fluvio stores it, so a re-send is not
            // guaranteed: it must come before anything later, or the gap is reported.
            awaited = [
              ...awaited.filter((a) => a.finalLsn !== dropped.finalLsn),
              { finalLsn: dropped.finalLsn, from: dropped.offset, to: rec.offset - 1n },
            ].sort((a, b) => (a.finalLsn < b.finalLsn ? -1 : a.finalLsn > b.finalLsn ? 1 : 0));
            log.warn("dropping a source transaction that never committed; its re-send must follow", {
              from: dropped.offset,
              to: rec.offset - 1n,
              final_lsn: lsnText(dropped.finalLsn),
            });
          } else
            log.warn("dropping a source transaction that never committed (applied before)", {
              from: dropped.offset,
              to: rec.offset - 1n,
            });
        }
        if (awaited.length > 0) awaited = checkResend(awaited, ev, log);
        if (rec.offset === start) startsInside = false;
        open = [ev];
        inTxn = true;
      } else {
        if (!inTxn) {
          startPoison(
            rec,
            new RecordError(rec.offset, `${ev.kind} outside a source transaction (no begin before it)`),
          );
          (poison as Omit<PoisonedUnit, "to"> | null)?.events.push(ev);
          continue;
        }
        open.push(ev);
      }
      if (ev.kind === "commit") {
        // Only a single transaction over the limit is worth reporting; stopping past the limit at a
        // commit is how every batch ends.
        if (limit !== null && BigInt(open.length) > limit) exceeded = true;
        if (bytesRead > readBytes) bytesExceeded = true;
        bytes = bytesRead;
        const run = open;
        open = [];
        inTxn = false;
        await take(run);
        if (lastCommitLsn === null || ev.commitLsn > lastCommitLsn) lastCommitLsn = ev.commitLsn;
        endAfter(rec);
        const stop = stopAtCommit();
        if (stop) {
          stoppedBy = stop;
          break reading;
        }
      } else if (open.length >= config.maxTransactionRecords) {
        log.warn(
          "source transaction exceeds max_transaction_records: applying it in parts; until it completes the target shows part of it",
          { offset: rec.offset, max_transaction_records: config.maxTransactionRecords },
        );
        const run = open;
        open = [];
        endAfter(rec);
        partial = true;
        await take(run);
        bytes = bytesRead;
        stoppedBy = "transaction";
        break reading;
      }
    }
  if (!checked)
    throw new SinkError(
      `${source.description}: the record at offset ${start - 1n}, applied last by this sink, is gone (the source ends before it); ` +
        "was the topic recreated or the file truncated? Applied nothing.",
    );
  return {
    events,
    nextOffset,
    exceeded,
    partial,
    startsInside: startsInside && taken > 0 && firstKind !== "begin",
    resumePosition,
    lastRecordSha256: lastValue === null ? lastRecordSha256 : recordSha256(lastValue),
    awaitedResends: awaitedAtNext,
    bytes,
    bytesExceeded,
    stoppedBy,
    records,
    // A unit still open at the end waits for its end: the next run reads it again.
    poisoned,
  };
}

/**
 * Re-sends come in LSN order, so a transaction later than an awaited re-send means the dropped one
 * will never come back. Returns what is still awaited.
 */
function checkResend(awaitedList: AwaitedResend[], begin: BeginEvent, log: Logger): AwaitedResend[] {
  const awaited = awaitedList[0] as AwaitedResend;
  if (begin.finalLsn === awaited.finalLsn) {
    log.info("the dropped source transaction was re-sent", {
      offset: begin.offset,
      final_lsn: lsnText(begin.finalLsn),
    });
    return awaitedList.slice(1);
  }
  if (begin.finalLsn < awaited.finalLsn) return awaitedList;
  throw new SinkError(
    `records were lost upstream: the source transaction at offsets ${awaited.from}..${awaited.to} ` +
      `(final_lsn ${lsnText(awaited.finalLsn)}) never committed and was not re-sent before the transaction ` +
      `at offset ${begin.offset} (final_lsn ${lsnText(begin.finalLsn)}); the target would miss its changes. ` +
      "This run applied nothing. Re-send it from the source (or resynchronise the tables it touched) before going on.",
  );
}
