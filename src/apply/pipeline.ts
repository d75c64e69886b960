import type pg from "pg";

/**
 * Sends many statements in one round trip over node-postgres's connection. pg's Client submits a
 * query only after the previous one's ReadyForQuery, so N statements cost N round trips; here the
 * extended-protocol messages of every statement (Parse, Bind, Execute, and for a COPY its CopyData
 * and CopyDone) go out back to back with a single Sync at the end. The server answers each in turn;
 * on the first error it skips everything up to that Sync (CopyData and CopyDone included), so the
 * statements after a failed one never run and the error names the statement by its position.
 * Inside the run's transaction that Sync commits nothing.
 */

export interface Sent {
  sql: string;
  /** Binary-format parameters (Buffers), sent as they are. */
  params?: Buffer[];
  /** COPY FROM STDIN data, already encoded; sent without waiting for CopyInResponse. */
  copy?: Iterable<Buffer>;
}

export interface Outcome {
  /** The command tag's row count: rows inserted, updated, deleted, copied or selected. */
  rowCount: number;
  /** Result rows, text format (only statements that return rows have any). */
  rows: (string | null)[][];
}

export class PipelineError extends Error {
  constructor(
    /** Position of the statement that failed (every one before it completed). */
    readonly index: number,
    readonly error: Error,
  ) {
    super(error.message, { cause: error });
  }
}

/** Written before letting the socket drain and the replies be read. */
const SLICE_BYTES = 1 << 20;
let seq = 0;

/** What pg's Client calls on the active query (its "submittable" interface). */
class Pipeline {
  callback?: (err: Error | null, res?: Outcome[]) => void;
  /**
   * pg would time the whole pipeline as one query; its query_timeout bounds each reply instead
   * (see `watch`), as it does for a statement sent alone. The largest delay a timer takes.
   */
  readonly query_timeout = 2 ** 31 - 1;
  private readonly outcomes: Outcome[] = [];
  private rows: (string | null)[][] = [];
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private connection: Connection | undefined;

  constructor(
    private readonly statements: Iterable<Sent>,
    /** SQL texts sent more than once: parsed once, as named statements. */
    private readonly repeated: Set<string>,
    /** pg's query_timeout for the client: the longest wait for the next reply. */
    private readonly replyTimeoutMs: number | undefined,
  ) {}

  /** (Re)starts the wait for the next reply; none in time drops the connection, as pg does. */
  private watch(): void {
    if (!this.replyTimeoutMs || this.stopped) return;
    if (this.timer) this.timer.refresh();
    else
      this.timer = setTimeout(() => {
        this.stop(new Error("Query read timeout"));
        this.connection?.stream.destroy();
      }, this.replyTimeoutMs);
  }

  submit(connection: Connection): null {
    this.connection = connection;
    this.watch();
    this.send(connection).catch((e: Error) => {
      // A statement that could not be encoded: nothing reads the replies of a half-sent pipeline,
      // so the connection is not reusable (the run rolls back by losing it).
      this.stop(e);
      connection.stream.destroy(e);
    });
    return null;
  }

  private async send(connection: Connection): Promise<void> {
    const stream = connection.stream;
    const names = new Map<string, string>();
    const batch = ++seq;
    let written = 0;
    // Every SLICE_BYTES, let the socket take what is written (waiting for it to drain, so at most
    // about a slice of the batch is encoded ahead of the server) and the replies so far be read.
    const breathe = async (bytes: number) => {
      written += bytes;
      if (written < SLICE_BYTES) return;
      written = 0;
      stream.uncork();
      await new Promise<void>((resolve) => {
        if (!stream.writableNeedDrain) return setImmediate(resolve);
        const done = () => {
          stream.off("drain", done);
          stream.off("close", done);
          resolve();
        };
        stream.on("drain", done);
        stream.on("close", done);
      });
      // The server took what was written: it is alive, though its next reply may be far off.
      this.watch();
      stream.cork();
    };
    stream.cork();
    try {
      for (const st of this.statements) {
        if (this.stopped) break;
        let name = "";
        if (this.repeated.has(st.sql)) {
          const known = names.get(st.sql);
          if (known) name = known;
          else {
            name = `fps_${batch}_${names.size}`;
            names.set(st.sql, name);
            connection.parse({ text: st.sql, name });
          }
        } else connection.parse({ text: st.sql, name: "" });
        connection.bind({ statement: name, values: st.params ?? [] });
        connection.execute({ portal: "", rows: 0 });
        let bytes = st.sql.length;
        for (const p of st.params ?? []) bytes += p.length;
        if (st.copy) {
          for (const chunk of st.copy) {
            // After an error the server skips CopyData up to the Sync: no need to send the rest.
            if (this.stopped) break;
            connection.sendCopyFromChunk(chunk);
            await breathe(chunk.length);
          }
          connection.endCopyFrom();
        }
        await breathe(bytes);
      }
      // Prepared statements live as long as the session: close them (skipped after an error,
      // when the server ignores everything up to the Sync; the run's connection ends with the run).
      for (const name of names.values()) connection.close({ type: "S", name });
      connection.sync();
    } finally {
      stream.uncork();
    }
  }

  private stop(e: Error | null): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const cb = this.callback;
    this.callback = undefined;
    if (e) cb?.(new PipelineError(this.outcomes.length, e));
    else cb?.(null, this.outcomes);
  }

  handleRowDescription(): void {}
  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.watch();
    this.rows.push(msg.fields);
  }
  handleCommandComplete(msg: { text: string }): void {
    this.watch();
    const tag = msg.text;
    const n = Number(tag.slice(tag.lastIndexOf(" ") + 1));
    this.outcomes.push({ rowCount: Number.isFinite(n) ? n : 0, rows: this.rows });
    this.rows = [];
  }
  handleEmptyQuery(): void {
    this.watch();
    this.outcomes.push({ rowCount: 0, rows: [] });
  }
  handlePortalSuspended(): void {}
  /** The data follows the COPY on the wire already. */
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  handleError(err: Error): void {
    this.stop(err);
  }
  handleReadyForQuery(): void {
    this.stop(null);
  }
}

interface Connection {
  stream: NodeJS.WritableStream & {
    off(event: string, fn: () => void): void;
    cork(): void;
    uncork(): void;
    writableNeedDrain: boolean;
    destroy(e?: Error): void;
  };
  parse(q: { text: string; name: string }): void;
  bind(c: { statement: string; values: Buffer[] }): void;
  execute(c: { portal: string; rows: number }): void;
  close(c: { type: "S"; name: string }): void;
  sync(): void;
  sendCopyFromChunk(b: Buffer): void;
  endCopyFrom(): void;
}

/**
 * Runs the statements in order in one round trip; resolves with each one's outcome, or rejects
 * with a PipelineError naming the first that failed.
 */
export function pipeline(
  client: pg.ClientBase,
  statements: Iterable<Sent>,
  repeated: Set<string>,
): Promise<Outcome[]> {
  const timeout = (client as unknown as { connectionParameters?: { query_timeout?: number } })
    .connectionParameters?.query_timeout;
  const p = new Pipeline(statements, repeated, timeout);
  return new Promise((resolve, reject) => {
    p.callback = (err, res) => (err ? reject(err) : resolve(res as Outcome[]));
    (client as unknown as { query(q: Pipeline): void }).query(p);
  });
}
