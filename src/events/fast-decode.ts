import { decodeRecord } from "./decode.js";
import { type Event, UNCHANGED, type Value } from "./types.js";

/**
 * One-pass decoding of the records that make up nearly all of a stream (begin, commit, insert,
 * update, delete) in exactly the shape the inbound connector writes them: compact serde_json, keys
 * in struct order. It scans the text once and builds the event directly, with no intermediate JSON
 * tree. Anything else (another message type, other key order, whitespace, escapes it does not know,
 * "Char" values, out-of-range or malformed input) goes to the general decoder, so results and error
 * messages are the general decoder's by construction: this path only ever answers when it is sure.
 */
export function decodeRecordFast(offset: bigint, text: string): Event {
  return fastDecode(offset, text) ?? decodeRecord(offset, text);
}

const U32_MAX = 0xffffffff;
const U64_MAX = 0xffffffffffffffffn;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const utf8 = new TextDecoder("utf-8", { fatal: true });

const Q = 0x22; // "
const BS = 0x5c; // \
const COMMA = 0x2c;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * A copy of a value cut from the record text that holds nothing else alive. V8 cuts substrings of
 * 13 characters or more as views of their parent, and a record's text is itself a view of the
 * source's multi-megabyte chunk: one such value kept for the batch would keep the whole chunk, so a
 * batch would hold all of its source text. Flattening a concatenation copies just the value.
 */
function own(v: string): string {
  return v.length < 13 ? v : ` ${v}`.slice(1);
}

/** Thrown inside the scanner to abandon the fast path; never escapes this module. */
const GIVE_UP = Symbol("give up");
type GiveUp = typeof GIVE_UP;

/** The decoded event, or null when the general decoder must answer. */
export function fastDecode(offset: bigint, text: string): Event | null {
  // One scanner for every record (decoding is synchronous): no object per record to collect.
  scanner.s = text;
  scanner.pos = 0;
  try {
    return scanner.record(offset);
  } catch {
    // GIVE_UP, or anything unexpected: either way the general decoder has the last word.
    return null;
  }
}

/** The width of the last tuple decoded: the likely width of the next. */
let lastWidth = 0;

/** Scratch space for RawText bytes, reused across records (decoding is synchronous). */
let bytes = Buffer.alloc(4096);

class Scanner {
  s = "";
  pos = 0;

  giveUp(): never {
    throw GIVE_UP as GiveUp;
  }

  /** Consumes `lit` exactly at the current position. */
  lit(lit: string): void {
    if (!this.s.startsWith(lit, this.pos)) this.giveUp();
    this.pos += lit.length;
  }

  record(offset: bigint): Event {
    this.lit('{"wal_start":');
    this.skipInt();
    this.lit(',"wal_end":');
    this.skipInt();
    this.lit(',"timestamp":');
    this.skipInt();
    this.lit(',"message":{"type":"');
    const s = this.s;
    let ev: Event;
    // Dispatch on the first letter; each branch checks the whole type name and its keys.
    switch (s.charCodeAt(this.pos)) {
      case 0x69: // insert
        this.lit('insert","rel_id":');
        {
          const relId = this.u32();
          this.lit(',"tuple":');
          ev = { kind: "insert", offset, relId, tuple: this.tuple() };
        }
        break;
      case 0x75: {
        // update
        this.lit('update","rel_id":');
        const relId = this.u32();
        this.lit(',"old_tuple":');
        const oldTuple = this.optionalTuple();
        this.lit(',"key_tuple":');
        const keyTuple = this.optionalTuple();
        this.lit(',"new_tuple":');
        ev = { kind: "update", offset, relId, oldTuple, keyTuple, newTuple: this.tuple() };
        break;
      }
      case 0x64: {
        // delete
        this.lit('delete","rel_id":');
        const relId = this.u32();
        this.lit(',"old_tuple":');
        const oldTuple = this.optionalTuple();
        this.lit(',"key_tuple":');
        const keyTuple = this.optionalTuple();
        if (!oldTuple && !keyTuple) this.giveUp();
        ev = { kind: "delete", offset, relId, oldTuple, keyTuple };
        break;
      }
      case 0x62: {
        // begin
        this.lit('begin","final_lsn":');
        const finalLsn = this.u64();
        this.lit(',"timestamp":');
        const timestamp = this.i64();
        this.lit(',"xid":');
        ev = { kind: "begin", offset, finalLsn, xid: this.u32(), timestamp };
        break;
      }
      case 0x63: {
        // commit; its flags are unused, as in the general decoder.
        this.lit('commit","flags":');
        this.skipInt();
        this.lit(',"commit_lsn":');
        const commitLsn = this.u64();
        this.lit(',"end_lsn":');
        const endLsn = this.u64();
        this.lit(',"timestamp":');
        ev = { kind: "commit", offset, commitLsn, endLsn, timestamp: this.i64() };
        break;
      }
      default:
        // relation, type, origin, truncate: rare, and the general decoder's job.
        return this.giveUp();
    }
    this.lit("}}");
    if (this.pos !== s.length) this.giveUp();
    return ev;
  }

  /**
   * The text of a JSON integer (-?(0|[1-9][0-9]*)) that is not the start of a longer number; the
   * general decoder rejects fractions and exponents where it wants integers, so those give up.
   */
  intText(): string {
    const start = this.pos;
    this.skipInt();
    return this.s.slice(start, this.pos);
  }

  /** Passes over a JSON integer whose value nothing uses (the envelope's, commit flags). */
  skipInt(): void {
    const s = this.s;
    let p = this.pos;
    if (s.charCodeAt(p) === MINUS) p++;
    const first = s.charCodeAt(p);
    if (first === ZERO) p++;
    else if (first > ZERO && first <= NINE) {
      p++;
      for (let c = s.charCodeAt(p); c >= ZERO && c <= NINE; c = s.charCodeAt(++p));
    } else this.giveUp();
    const next = s.charCodeAt(p);
    if (next !== COMMA && next !== RBRACE && next !== RBRACKET) this.giveUp();
    this.pos = p;
  }

  /**
   * A JSON integer in [0, 2^32), computed as it is scanned (no text cut out): up to 10 digits is
   * exact as a double and the range check does the rest. "-0" is 0, as to the general decoder.
   */
  u32(): number {
    const s = this.s;
    let p = this.pos;
    if (s.charCodeAt(p) === MINUS) {
      if (s.charCodeAt(p + 1) !== ZERO) this.giveUp();
      p++;
    }
    const start = p;
    let c = s.charCodeAt(p);
    let n = c - ZERO;
    if (c === ZERO) c = s.charCodeAt(++p);
    else if (c > ZERO && c <= NINE) {
      for (c = s.charCodeAt(++p); c >= ZERO && c <= NINE; c = s.charCodeAt(++p)) n = n * 10 + c - ZERO;
    } else this.giveUp();
    if (p - start > 10 || n > U32_MAX) this.giveUp();
    if (c !== COMMA && c !== RBRACE && c !== RBRACKET) this.giveUp();
    this.pos = p;
    return n;
  }

  u64(): bigint {
    const n = BigInt(this.intText());
    if (n < 0n || n > U64_MAX) this.giveUp();
    return n;
  }

  i64(): bigint {
    const n = BigInt(this.intText());
    if (n < I64_MIN || n > I64_MAX) this.giveUp();
    return n;
  }

  /**
   * An integer in [min, max] (both within ±2^31) as the canonical text BigInt would print: its
   * value is computed as it is scanned (up to 10 digits, exact as a double), so the only string
   * made is the value itself.
   */
  smallInt(min: number, max: number): string {
    const s = this.s;
    const start = this.pos;
    let p = start;
    const negative = s.charCodeAt(p) === MINUS;
    if (negative) p++;
    const digits = p;
    let c = s.charCodeAt(p);
    let n = c - ZERO;
    if (c === ZERO) c = s.charCodeAt(++p);
    else if (c > ZERO && c <= NINE) {
      for (c = s.charCodeAt(++p); c >= ZERO && c <= NINE; c = s.charCodeAt(++p)) n = n * 10 + c - ZERO;
    } else this.giveUp();
    if (c !== COMMA && c !== RBRACE && c !== RBRACKET) this.giveUp();
    if (p - digits > 10) this.giveUp();
    if (negative) n = -n;
    if (n < min || n > max) this.giveUp();
    this.pos = p;
    // "-0" is 0 to the general decoder.
    return n === 0 ? "0" : s.slice(start, p);
  }

  int8(): string {
    const t = this.intText();
    if (t === "-0") return "0";
    // 18 digits (and a sign) cannot leave the i64 range; longer ones are checked exactly.
    if (t.length > 18) {
      const n = BigInt(t);
      if (n < I64_MIN || n > I64_MAX) this.giveUp();
      return n.toString();
    }
    return t;
  }

  /** A JSON number's text, verbatim, as the general decoder keeps float spellings. */
  numberText(): string {
    const s = this.s;
    const start = this.pos;
    let p = start;
    if (s.charCodeAt(p) === MINUS) p++;
    let c = s.charCodeAt(p);
    if (c === ZERO) c = s.charCodeAt(++p);
    else if (c > ZERO && c <= NINE) {
      do c = s.charCodeAt(++p);
      while (c >= ZERO && c <= NINE);
    } else this.giveUp();
    if (c === 0x2e) {
      c = s.charCodeAt(++p);
      if (!(c >= ZERO && c <= NINE)) this.giveUp();
      do c = s.charCodeAt(++p);
      while (c >= ZERO && c <= NINE);
    }
    if (c === 0x65 || c === 0x45) {
      c = s.charCodeAt(++p);
      if (c === 0x2b || c === MINUS) c = s.charCodeAt(++p);
      if (!(c >= ZERO && c <= NINE)) this.giveUp();
      do c = s.charCodeAt(++p);
      while (c >= ZERO && c <= NINE);
    }
    if (c !== RBRACE) this.giveUp();
    this.pos = p;
    return s.slice(start, p);
  }

  optionalTuple(): Value[] | null {
    if (this.s.startsWith("null", this.pos)) {
      this.pos += 4;
      return null;
    }
    return this.tuple();
  }

  tuple(): Value[] {
    const s = this.s;
    if (s.charCodeAt(this.pos) !== LBRACKET) this.giveUp();
    this.pos++;
    if (s.charCodeAt(this.pos) === RBRACKET) {
      this.pos++;
      return [];
    }
    // A batch holds its tuples: an array grown by push keeps room for 16 values or more, so it is
    // made at the width of the last tuple (most records in a row share a table) and cut if off.
    const out = new Array<Value>(lastWidth);
    let n = 0;
    for (;;) {
      const v = this.value();
      if (n < out.length) out[n] = v;
      else out.push(v);
      n++;
      const c = s.charCodeAt(this.pos++);
      if (c === COMMA) continue;
      if (c !== RBRACKET) this.giveUp();
      lastWidth = n;
      return n === out.length ? out : out.slice(0, n);
    }
  }

  value(): Value {
    const s = this.s;
    const c = s.charCodeAt(this.pos);
    if (c === Q) {
      if (s.startsWith('"Null"', this.pos)) {
        this.pos += 6;
        return null;
      }
      if (s.startsWith('"UnchangedToast"', this.pos)) {
        this.pos += 16;
        return UNCHANGED;
      }
      return this.giveUp();
    }
    if (c !== LBRACE || s.charCodeAt(this.pos + 1) !== Q) this.giveUp();
    this.pos += 2;
    let v: Value;
    // The variant names' first letters, then the rest checked exactly.
    switch (s.charCodeAt(this.pos)) {
      case 0x53: // String
        this.lit('String":');
        v = own(this.string());
        break;
      case 0x52: // RawText
        this.lit('RawText":');
        v = this.rawText();
        break;
      case 0x49: // Int2, Int4, Int8
        this.lit("Int");
        switch (s.charCodeAt(this.pos)) {
          case 0x34:
            this.lit('4":');
            v = this.smallInt(-2147483648, 2147483647);
            break;
          case 0x38:
            this.lit('8":');
            v = own(this.int8());
            break;
          case 0x32:
            this.lit('2":');
            v = this.smallInt(-32768, 32767);
            break;
          default:
            return this.giveUp();
        }
        break;
      case 0x46: // Float4, Float8
        this.lit("Float");
        if (s.charCodeAt(this.pos) !== 0x34 && s.charCodeAt(this.pos) !== 0x38) this.giveUp();
        this.pos++;
        this.lit('":');
        if (s.startsWith("null", this.pos)) {
          this.pos += 4;
          v = null;
        } else v = own(this.numberText());
        break;
      case 0x42: // Bool
        this.lit('Bool":');
        if (s.startsWith("true", this.pos)) {
          this.pos += 4;
          v = "t";
        } else if (s.startsWith("false", this.pos)) {
          this.pos += 5;
          v = "f";
        } else return this.giveUp();
        break;
      case 0x4f: // Oid
        this.lit('Oid":');
        v = this.smallInt(0, U32_MAX);
        break;
      default:
        // Char (whose text form the general decoder owns) and unknown variants.
        return this.giveUp();
    }
    if (s.charCodeAt(this.pos) !== RBRACE) this.giveUp();
    this.pos++;
    return v;
  }

  /** A JSON string with the escapes JSON defines; control characters give up. */
  string(): string {
    const s = this.s;
    if (s.charCodeAt(this.pos) !== Q) this.giveUp();
    let p = this.pos + 1;
    let chunk = p;
    let out = "";
    for (;;) {
      const c = s.charCodeAt(p);
      if (c === Q) break;
      if (c < 0x20 || Number.isNaN(c)) this.giveUp();
      if (c !== BS) {
        p++;
        continue;
      }
      out += s.slice(chunk, p);
      switch (s.charCodeAt(p + 1)) {
        case Q:
          out += '"';
          break;
        case BS:
          out += "\\";
          break;
        case 0x2f:
          out += "/";
          break;
        case 0x62:
          out += "\b";
          break;
        case 0x66:
          out += "\f";
          break;
        case 0x6e:
          out += "\n";
          break;
        case 0x72:
          out += "\r";
          break;
        case 0x74:
          out += "\t";
          break;
        case 0x75: {
          let code = 0;
          for (let i = p + 2; i < p + 6; i++) {
            const h = s.charCodeAt(i);
            const d =
              h >= ZERO && h <= NINE
                ? h - ZERO
                : h >= 0x61 && h <= 0x66
                  ? h - 0x57
                  : h >= 0x41 && h <= 0x46
                    ? h - 0x37
                    : -1;
            if (d < 0) this.giveUp();
            code = code * 16 + d;
          }
          // Each \u unit on its own, as the general parser does: pairs join into one character.
          out += String.fromCharCode(code);
          p += 4;
          break;
        }
        default:
          return this.giveUp();
      }
      p += 2;
      chunk = p;
    }
    this.pos = p + 1;
    return out + s.slice(chunk, p);
  }

  /** PostgreSQL's text output as a JSON array of its UTF-8 bytes. */
  rawText(): string {
    const s = this.s;
    if (s.charCodeAt(this.pos) !== LBRACKET) this.giveUp();
    let p = this.pos + 1;
    let n = 0;
    let ascii = true;
    if (s.charCodeAt(p) === RBRACKET) {
      this.pos = p + 1;
      return "";
    }
    for (;;) {
      let c = s.charCodeAt(p);
      if (!(c >= ZERO && c <= NINE)) this.giveUp();
      let b = c - ZERO;
      c = s.charCodeAt(++p);
      // At most three digits, as the general decoder's /^\d{1,3}$/ allows (leading zeros are not JSON).
      if (b !== 0 && c >= ZERO && c <= NINE) {
        b = b * 10 + c - ZERO;
        c = s.charCodeAt(++p);
        if (c >= ZERO && c <= NINE) {
          b = b * 10 + c - ZERO;
          c = s.charCodeAt(++p);
        }
      }
      if (b > 255) this.giveUp();
      if (b > 0x7f) ascii = false;
      if (n === bytes.length) {
        const grown = Buffer.alloc(bytes.length * 2);
        bytes.copy(grown);
        bytes = grown;
      }
      bytes[n++] = b;
      p++;
      if (c === COMMA) continue;
      if (c === RBRACKET) break;
      this.giveUp();
    }
    this.pos = p;
    // ASCII is its own UTF-8 and latin1 decoding is the cheapest native copy.
    if (ascii) return bytes.toString("latin1", 0, n);
    try {
      return utf8.decode(bytes.subarray(0, n));
    } catch {
      return this.giveUp();
    }
  }
}

const scanner = new Scanner();
