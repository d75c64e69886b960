import type { RecordError } from "../errors.js";

/** Where records come from: a Fluvio partition, or a topic export replayed from a file. */

export interface SourceRecord {
  offset: bigint;
  value: string;
  /** File source: the byte position right after this record, where the next offset starts. */
  end?: number;
  /**
   * Records before this one that the source no longer has and skipped (on_lost_records: skip); the
   * offsets jump from `lost.from` to this record's.
   */
  lost?: { from: bigint; count: bigint };
  /**
   * The value is not valid UTF-8: `value` holds it decoded with U+FFFD for the invalid bytes (for
   * the dead-letter table), and this error says so; the record is poison, never applied.
   */
  invalid?: RecordError;
}

/** Where an offset was found last time: lets a file source seek instead of scanning (verified first). */
export interface ResumeHint {
  /** The offset that starts at `position`. */
  offset: bigint;
  position: bigint;
}

export interface ReadOptions {
  /** Where the next offset started last time (file source: seek instead of scanning). */
  hint?: ResumeHint;
  /**
   * The caller has no fingerprint to check the first record against: a source that can place a read
   * wrongly (a stale Fluvio partition listing) must check the position itself.
   */
  unverified?: boolean;
}

export interface Source {
  /** For logs: which partition or file, without credentials. */
  readonly description: string;
  /**
   * Records from offset `from` on, in order, up to the end the source had when the read began, in
   * runs of consecutive records (a file source hands over a chunk's worth at a time, so there is no
   * per-record await). The caller stops pulling when it has enough; the source must then leave
   * nothing running. A hint for offset `from` or `from + 1` may let the source start without reading
   * what lies before.
   */
  read(from: bigint, opts?: ReadOptions): AsyncIterable<SourceRecord[]>;
  /**
   * Where reading from the stored offset `from` really starts: `from`, or past records the source no
   * longer has when the configuration allows skipping them (otherwise it throws).
   */
  resolveStart?(from: bigint): Promise<bigint>;
  /** Whether the record at `offset` can still be read (false: removed by retention). */
  retains?(offset: bigint): boolean;
  /**
   * The offset after the last record, for lag; null when unknown. `hint`: where an earlier count
   * ended (see `endHint`), so a file source counts only what was appended since.
   */
  endOffset(hint?: ResumeHint): Promise<bigint | null>;
  /** After endOffset: where its count ended (file source: the byte after the last complete line). */
  endHint?(): ResumeHint | null;
  close(): Promise<void>;
}
