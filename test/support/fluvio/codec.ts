import { gunzipSync, gzipSync } from "node:zlib";

/**
 * fluvio-protocol encoding, as much as the test cluster needs: big-endian integers, u16-length
 * strings, u32-count vectors, bool-tagged options, zigzag varints, record batches with CRC-32C.
 */

export class Writer {
  private chunks: Buffer[] = [];
  private size = 0;

  private push(b: Buffer): this {
    this.chunks.push(b);
    this.size += b.length;
    return this;
  }
  u8(v: number) {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    return this.push(b);
  }
  i8(v: number) {
    const b = Buffer.alloc(1);
    b.writeInt8(v);
    return this.push(b);
  }
  bool(v: boolean) {
    return this.u8(v ? 1 : 0);
  }
  i16(v: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return this.push(b);
  }
  u16(v: number) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.push(b);
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.push(b);
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return this.push(b);
  }
  i64(v: bigint | number) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(BigInt(v));
    return this.push(b);
  }
  string(s: string) {
    const b = Buffer.from(s, "utf8");
    return this.u16(b.length).push(b);
  }
  optString(s: string | null) {
    return s === null ? this.bool(false) : this.bool(true).string(s);
  }
  bytes(b: Buffer) {
    return this.push(b);
  }
  vec<T>(items: T[], each: (w: Writer, item: T) => void) {
    this.u32(items.length);
    for (const it of items) each(this, it);
    return this;
  }
  varint(v: number) {
    let z = (v << 1) ^ (v >> 31);
    z >>>= 0;
    const out: number[] = [];
    while (z >= 0x80) {
      out.push((z & 0x7f) | 0x80);
      z >>>= 7;
    }
    out.push(z);
    return this.push(Buffer.from(out));
  }
  get length() {
    return this.size;
  }
  build(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

export class DecodeError extends Error {}

export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  private need(n: number) {
    if (this.pos + n > this.buf.length)
      throw new DecodeError(`need ${n} bytes at ${this.pos}, have ${this.buf.length - this.pos}`);
  }
  u8() {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  i8() {
    this.need(1);
    return this.buf.readInt8(this.pos++);
  }
  bool() {
    const v = this.u8();
    if (v > 1) throw new DecodeError(`bad bool ${v}`);
    return v === 1;
  }
  i16() {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u16() {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i32() {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  i64() {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  string() {
    const n = this.u16();
    this.need(n);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  optString() {
    return this.bool() ? this.string() : null;
  }
  bytes(n: number) {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  vec<T>(each: (r: Reader) => T): T[] {
    const n = this.i32();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(each(this));
    return out;
  }
  varint(): number {
    let shift = 0;
    let z = 0;
    for (;;) {
      const b = this.u8();
      z |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) throw new DecodeError("varint too long");
    }
    z >>>= 0;
    return (z >>> 1) ^ -(z & 1);
  }
  get remaining() {
    return this.buf.length - this.pos;
  }
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC32C_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface StoredRecord {
  key: Buffer | null;
  value: Buffer;
}

/** Compression codes of a batch's attributes (bits 0-2). */
export const Compression = { none: 0, gzip: 1 } as const;
export type CompressionName = keyof typeof Compression;

/**
 * One batch holding `records`, the first at absolute offset `baseOffset`; with gzip the records
 * section (count and records) is compressed as a whole, as Fluvio's producer does.
 */
export function encodeBatch(
  baseOffset: bigint,
  records: StoredRecord[],
  timestamp = 0n,
  compression: CompressionName = "none",
): Buffer {
  const recs = new Writer().u32(records.length);
  records.forEach((r, i) => {
    const body = new Writer().i8(0).varint(0).varint(i);
    if (r.key === null) body.bool(false);
    else body.bool(true).varint(r.key.length).bytes(r.key);
    body.varint(r.value.length).bytes(r.value).varint(0);
    const b = body.build();
    recs.varint(b.length).bytes(b);
  });
  const plain = recs.build();
  const recBytes = compression === "gzip" ? gzipSync(plain) : plain;
  const afterCrc = new Writer()
    .i16(Compression[compression])
    .i32(records.length - 1)
    .i64(timestamp)
    .i64(timestamp)
    .i64(-1n)
    .i16(-1)
    .i32(-1)
    .bytes(recBytes)
    .build();
  return new Writer()
    .i64(baseOffset)
    .i32(45 + recBytes.length)
    .i32(-1)
    .i8(2)
    .u32(crc32c(afterCrc))
    .bytes(afterCrc)
    .build();
}

/** Decodes the batches of a RecordSet body (after its i32 length); uncompressed or gzip. */
export function decodeBatches(r: Reader, end: number): StoredRecord[] {
  return decodeBatchList(r, end).flat();
}

/** The same, batch by batch. */
export function decodeBatchList(r: Reader, end: number): StoredRecord[][] {
  const batches: StoredRecord[][] = [];
  while (r.pos < end) {
    const out: StoredRecord[] = [];
    batches.push(out);
    r.i64(); // base offset: the server assigns it
    const len = r.i32();
    const batchEnd = r.pos + len;
    r.i32();
    r.i8();
    r.u32();
    const attributes = r.i16();
    const codec = attributes & 0x7;
    if (codec !== Compression.none && codec !== Compression.gzip)
      throw new DecodeError(`compression ${codec} is not supported (attributes ${attributes})`);
    r.i32();
    r.i64();
    r.i64();
    r.i64();
    r.i16();
    r.i32();
    if (attributes & 0x10) r.u32();
    if (codec === Compression.gzip) {
      const inner = new Reader(gunzipSync(r.bytes(batchEnd - r.pos)));
      readRecords(inner, out);
    } else readRecords(r, out);
    r.pos = batchEnd;
  }
  return batches;
}

function readRecords(r: Reader, out: StoredRecord[]): void {
  const n = r.i32();
  for (let i = 0; i < n; i++) {
    const recLen = r.varint();
    const recEnd = r.pos + recLen;
    r.i8();
    r.varint();
    r.varint();
    const key = r.bool() ? Buffer.from(r.bytes(r.varint())) : null;
    const value = Buffer.from(r.bytes(r.varint()));
    r.pos = recEnd;
    out.push({ key, value });
  }
}

/** Frames a message: i32 size, then the payload. */
export function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32BE(payload.length);
  return Buffer.concat([head, payload]);
}
