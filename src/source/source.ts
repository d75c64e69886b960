/** Where records come from: a Fluvio partition, or a topic export replayed from a file. */

export interface SourceRecord {
  offset: bigint;
  value: string;
}

export interface Source {
  /** For logs: which partition or file, without credentials. */
  readonly description: string;
  /**
   * Records from offset `from` on, in order, up to the end the source had when the read began. The
   * caller stops pulling when it has enough; the source must then leave nothing running.
   */
  read(from: bigint): AsyncIterable<SourceRecord>;
  /**
   * Where reading from the stored offset `from` really starts: `from`, or past records the source no
   * longer has when the configuration allows skipping them (otherwise it throws).
   */
  resolveStart?(from: bigint): Promise<bigint>;
  /** The offset after the last record, for lag; null when unknown. */
  endOffset(): Promise<bigint | null>;
  close(): Promise<void>;
}
