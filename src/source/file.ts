import { isAscii } from "node:buffer";
import { type FileHandle, open } from "node:fs/promises";
import { RecordError, SinkError } from "../errors.js";
import type { ReadOptions, ResumeHint, Source, SourceRecord } from "./source.js";

/**
 * A topic export: one record value a line, the line's index being its offset. Replays a topic for a
 * backfill, or feeds the sink without a cluster.
 *
 * Records end at LF only: a CR before the LF is dropped (CRLF files), a CR anywhere else is part of
 * the value, so an offset always means the same line. A last line without its LF may still be being
 * written: it is not a record until its LF arrives.
 */

const CHUNK = 1 << 20;
/**
 * The first read's size; each next read doubles up to the chunk size. A small batch (a scheduled
 * run's thousand records, ~300 KB) then reads and decodes about what it uses, not a whole chunk.
 */
const FIRST_READ = 64 * 1024;
/** Counting lines for the lag reads in larger pieces: each read is a trip through the thread pool. */
const COUNT_READ = 4 << 20;

/** A CRLF line end leaves its CR at the end of the line; only there is it not part of the value. */
function stripCr(line: string): string {
  return line.charCodeAt(line.length - 1) === CR ? line.slice(0, -1) : line;
}
const LF = 0x0a;
const CR = 0x0d;

export class FileSource implements Source {
  readonly description: string;
  /** The furthest point the last read scanned: offset `offset` starts at byte `position`. */
  private scanned: { offset: bigint; position: bigint } | null = null;
  /** Where the last endOffset count ended: offset `offset` (the end) starts at byte `position`. */
  private counted: ResumeHint | null = null;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  private readonly lossy = new TextDecoder("utf-8", { ignoreBOM: true });

  /** `chunkBytes`: read size (tests use tiny ones to put lines across chunk boundaries). */
  constructor(
    private readonly path: string,
    private readonly chunkBytes = CHUNK,
  ) {
    this.description = `file ${path}`;
  }

  private async openFile(): Promise<{ fh: FileHandle; size: bigint }> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, "r");
    } catch (e) {
      const code = (e as { code?: string }).code ?? (e as Error).message;
      throw new SinkError(`parameters.source: the topic export ${this.path} cannot be read (${code})`);
    }
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) {
      await fh.close();
      throw new SinkError(
        `parameters.source: ${this.path} is ${st.isDirectory() ? "a directory" : "not a regular file"}; it must name a topic export file`,
      );
    }
    return { fh, size: st.size };
  }

  async *read(from: bigint, opts: ReadOptions = {}): AsyncIterable<SourceRecord[]> {
    const { fh, size } = await this.openFile();
    try {
      let offset = 0n;
      let pos = 0;
      const seek = await this.seekable(fh, size, from, opts.hint);
      if (seek) {
        offset = seek.offset;
        pos = Number(seek.position);
      }
      this.scanned = { offset, position: BigInt(pos) };
      const total = Number(size);
      const buf = Buffer.allocUnsafe(this.chunkBytes);
      // The start of a line that runs past the chunk read so far, when it is a record to return.
      let carry: Buffer[] = [];
      let readSize = Math.min(FIRST_READ, this.chunkBytes);
      while (pos < total) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(readSize, total - pos), pos);
        readSize = Math.min(readSize * 2, this.chunkBytes);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        const chunkStart = pos;
        pos += bytesRead;
        let lineStart = 0;
        // Lines before `from`: counted, not decoded.
        while (offset < from) {
          const lf = chunk.indexOf(LF, lineStart);
          if (lf === -1) break;
          offset++;
          lineStart = lf + 1;
        }
        this.scanned = { offset, position: BigInt(chunkStart + lineStart) };
        if (offset < from) continue;
        const records: SourceRecord[] = [];
        let lf = chunk.indexOf(LF, lineStart);
        if (lf !== -1 && carry.length > 0) {
          const first = Buffer.concat([...carry, chunk.subarray(lineStart, lf)]);
          records.push(this.record(offset, first, chunkStart + lf + 1));
          offset++;
          carry = [];
          lineStart = lf + 1;
          lf = chunk.indexOf(LF, lineStart);
        }
        if (lf !== -1) {
          // All complete lines of the chunk at once; line by line only when some are not ASCII.
          const lastLf = chunk.lastIndexOf(LF);
          const body = chunk.subarray(lineStart, lastLf);
          if (isAscii(body)) {
            // ASCII is its own UTF-8 (nothing to validate), latin1 is the cheapest native copy,
            // and a character is a byte, so the lines' lengths give their byte positions.
            const values = body.toString("latin1").split("\n");
            let end = chunkStart + lineStart;
            for (const value of values) {
              end += value.length + 1;
              records.push({ offset, value: stripCr(value), end });
              offset++;
            }
            lineStart = lastLf + 1;
          } else {
            const text = this.decode(body);
            const values = text === null ? null : text.split("\n");
            for (let i = 0; lf !== -1; lf = chunk.indexOf(LF, lf + 1), i++) {
              const value = values ? (values[i] as string) : null;
              records.push(
                value !== null
                  ? { offset, value: stripCr(value), end: chunkStart + lf + 1 }
                  : this.record(offset, chunk.subarray(lineStart, lf), chunkStart + lf + 1),
              );
              offset++;
              lineStart = lf + 1;
            }
          }
        }
        const last = records[records.length - 1];
        if (last) this.scanned = { offset: last.offset + 1n, position: BigInt(last.end as number) };
        if (records.length > 0) yield records;
        if (lineStart < chunk.length) carry.push(Buffer.from(chunk.subarray(lineStart)));
      }
    } finally {
      await fh.close();
    }
  }

  /** One line's record: its text, or, for a line that is not UTF-8, its lossy text flagged invalid. */
  private record(offset: bigint, line: Uint8Array, end: number): SourceRecord {
    const value = this.decode(line);
    if (value !== null) return { offset, value: stripCr(value), end };
    // Handed on, flagged: it belongs to a source transaction that poison handling sets aside.
    return { offset, value: stripCr(this.lossy.decode(line)), end, invalid: this.invalid(offset) };
  }

  private decode(bytes: Uint8Array): string | null {
    try {
      return this.decoder.decode(bytes);
    } catch {
      return null;
    }
  }

  private invalid(offset: bigint): RecordError {
    return new RecordError(offset, `not valid UTF-8 (in ${this.path})`);
  }

  /**
   * Where to start without scanning from the top: the stored position, when it still looks like the
   * start of a line inside the file (the byte before it is LF); for `from` one before the hinted
   * offset, the start of the line before it. null: scan from the top.
   */
  private async seekable(
    fh: FileHandle,
    size: bigint,
    from: bigint,
    hint: ResumeHint | undefined,
  ): Promise<{ offset: bigint; position: bigint } | null> {
    if (!hint || hint.position <= 0n) return null;
    if (from !== hint.offset && from !== hint.offset - 1n) return null;
    if (!(await this.lineStart(fh, size, hint.position))) return null;
    if (from === hint.offset) return hint;
    // Back to the LF before the previous line (or the top): one record's bytes.
    let end = hint.position - 1n;
    const buf = Buffer.allocUnsafe(64 * 1024);
    while (end > 0n) {
      const start = end > BigInt(buf.length) ? end - BigInt(buf.length) : 0n;
      const n = Number(end - start);
      await fh.read(buf, 0, n, Number(start));
      const lf = buf.subarray(0, n).lastIndexOf(LF);
      if (lf !== -1) {
        if (from === 0n) return null;
        return { offset: from, position: start + BigInt(lf + 1) };
      }
      end = start;
    }
    return from === 0n ? { offset: 0n, position: 0n } : null;
  }

  /**
   * Complete lines in the file: counted on from where the last read stopped, not from the top, or
   * from where an earlier count ended (`hint`) when that is further on and still the start of a line.
   */
  async endOffset(hint?: ResumeHint): Promise<bigint> {
    const { fh, size } = await this.openFile();
    try {
      let { offset, position } = this.scanned ?? { offset: 0n, position: 0n };
      if (position > size) ({ offset, position } = { offset: 0n, position: 0n });
      if (
        hint &&
        hint.position > position &&
        hint.offset >= offset &&
        (await this.lineStart(fh, size, hint.position))
      )
        ({ offset, position } = hint);
      let lineEnd = position;
      const buf = Buffer.allocUnsafe(Math.max(this.chunkBytes, COUNT_READ));
      const most = BigInt(buf.length);
      while (position < size) {
        const want = Number(size - position < most ? size - position : most);
        const { bytesRead } = await fh.read(buf, 0, want, Number(position));
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        let last = -1;
        for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
          offset++;
          last = i;
        }
        if (last !== -1) lineEnd = position + BigInt(last + 1);
        position += BigInt(bytesRead);
      }
      this.counted = { offset, position: lineEnd };
      return offset;
    } finally {
      await fh.close();
    }
  }

  endHint(): ResumeHint | null {
    return this.counted;
  }

  /** Whether `position` starts a line: the file's top, or just after an LF. */
  private async lineStart(fh: FileHandle, size: bigint, position: bigint): Promise<boolean> {
    if (position === 0n) return true;
    if (position > size) return false;
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, Number(position - 1n));
    return one[0] === LF;
  }

  async close(): Promise<void> {}
}
