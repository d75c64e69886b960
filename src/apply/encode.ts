import type { Cell } from "./statements.js";

/**
 * Wire encodings of the planner's text cells: COPY text-format lines, and text[] parameters in
 * PostgreSQL's binary array format (the server reads them without parsing array literals, and the
 * client builds them without quoting every element).
 */

const SPECIAL = /[\\\t\n\r]/;
const SPECIAL_ALL = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/**
 * One value in COPY text format: NULL is \N, and the characters COPY gives a meaning (backslash,
 * the column and row delimiters tab and newline, and carriage return) are backslash-escaped, so
 * every other character, multi-byte ones included, passes through as is.
 */
export function copyValue(v: Cell): string {
  if (v === null) return "\\N";
  return SPECIAL.test(v) ? v.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string) : v;
}

/** About this many UTF-16 units per CopyData message: large enough to cost nothing per message. */
const CHUNK = 256 * 1024;

/** The rows' `cells`, as COPY text-format lines, in CopyData-sized chunks. */
export function* copyChunks(rows: Cell[][], cells: number[]): Generator<Buffer> {
  let out = "";
  const last = cells.length - 1;
  for (const row of rows) {
    for (let i = 0; i < last; i++) out += `${copyValue(row[cells[i] as number] as Cell)}\t`;
    out += `${copyValue(row[cells[last] as number] as Cell)}\n`;
    if (out.length >= CHUNK) {
      yield Buffer.from(out, "utf8");
      out = "";
    }
  }
  if (out.length > 0) yield Buffer.from(out, "utf8");
}

const TEXT_OID = 25;

/**
 * Cell `cell` of every row as a one-dimensional text[] in binary format (array_recv): dimensions,
 * a has-nulls flag, the element type, then each element as a length (-1 for NULL) and its UTF-8
 * bytes. node-postgres sends a Buffer parameter in binary format as it is.
 */
export function textArray(rows: Cell[][], cell: number): Buffer {
  const n = rows.length;
  if (n === 0) {
    const empty = Buffer.alloc(12);
    empty.writeInt32BE(TEXT_OID, 8);
    return empty;
  }
  let size = 20;
  let hasNull = 0;
  for (let r = 0; r < n; r++) {
    const v = (rows[r] as Cell[])[cell] as Cell;
    if (v === null) {
      hasNull = 1;
      size += 4;
    } else size += 4 + Buffer.byteLength(v, "utf8");
  }
  const buf = Buffer.allocUnsafe(size);
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(hasNull, 4);
  buf.writeInt32BE(TEXT_OID, 8);
  buf.writeInt32BE(n, 12);
  buf.writeInt32BE(1, 16);
  let off = 20;
  for (let r = 0; r < n; r++) {
    const v = (rows[r] as Cell[])[cell] as Cell;
    if (v === null) {
      buf.writeInt32BE(-1, off);
      off += 4;
    } else {
      const len = buf.write(v, off + 4, "utf8");
      buf.writeInt32BE(len, off);
      off += 4 + len;
    }
  }
  return buf;
}
