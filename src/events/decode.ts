import { RecordError } from "../errors.js";
import { JsonNumber, type JsonValue, parseJsonLossless } from "./json.js";
import { type Column, type Event, type ReplicaIdentity, UNCHANGED, type Value } from "./types.js";

const U32_MAX = 0xffffffffn;
const U64_MAX = 0xffffffffffffffffn;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const utf8 = new TextDecoder("utf-8", { fatal: true });

type Obj = { [key: string]: JsonValue };

/** Decodes one record value (the inbound connector's JSON) into a typed event. */
export function decodeRecord(offset: bigint, text: string): Event {
  let doc: JsonValue;
  try {
    doc = parseJsonLossless(text);
  } catch (e) {
    throw new RecordError(offset, `malformed JSON: ${(e as Error).message}`);
  }
  const d = new Decoder(offset);
  const envelope = d.object(doc, "record");
  const msg = d.object(envelope.message, "message");
  const type = d.string(msg.type, "message.type");
  const at = { offset };
  switch (type) {
    case "begin":
      return {
        kind: "begin",
        ...at,
        finalLsn: d.u64(msg.final_lsn, "message.final_lsn"),
        xid: d.u32(msg.xid, "message.xid"),
        timestamp: d.i64(msg.timestamp, "message.timestamp"),
      };
    case "commit":
      return {
        kind: "commit",
        ...at,
        commitLsn: d.u64(msg.commit_lsn, "message.commit_lsn"),
        endLsn: d.u64(msg.end_lsn, "message.end_lsn"),
        timestamp: d.i64(msg.timestamp, "message.timestamp"),
      };
    case "origin":
      return {
        kind: "origin",
        ...at,
        commitLsn: d.u64(msg.commit_lsn, "message.commit_lsn"),
        name: d.string(msg.name, "message.name"),
      };
    case "relation":
      return {
        kind: "relation",
        ...at,
        relation: {
          relId: d.u32(msg.rel_id, "message.rel_id"),
          namespace: d.string(msg.namespace, "message.namespace"),
          name: d.nonEmptyString(msg.name, "message.name"),
          replicaIdentity: d.replicaIdentity(msg.replica_identity),
          columns: d.columns(msg.columns),
        },
      };
    case "type":
      return {
        kind: "type",
        ...at,
        id: d.u32(msg.id, "message.id"),
        namespace: d.string(msg.namespace, "message.namespace"),
        name: d.nonEmptyString(msg.name, "message.name"),
      };
    case "insert":
      return {
        kind: "insert",
        ...at,
        relId: d.u32(msg.rel_id, "message.rel_id"),
        tuple: d.tuple(msg.tuple, "message.tuple"),
      };
    case "update":
      return {
        kind: "update",
        ...at,
        relId: d.u32(msg.rel_id, "message.rel_id"),
        oldTuple: d.optionalTuple(msg.old_tuple, "message.old_tuple"),
        keyTuple: d.optionalTuple(msg.key_tuple, "message.key_tuple"),
        newTuple: d.tuple(msg.new_tuple, "message.new_tuple"),
      };
    case "delete": {
      const oldTuple = d.optionalTuple(msg.old_tuple, "message.old_tuple");
      const keyTuple = d.optionalTuple(msg.key_tuple, "message.key_tuple");
      if (!oldTuple && !keyTuple) d.fail("delete has neither old_tuple nor key_tuple");
      return { kind: "delete", ...at, relId: d.u32(msg.rel_id, "message.rel_id"), oldTuple, keyTuple };
    }
    case "truncate": {
      const options = d.int(msg.options, "message.options", -128n, 127n);
      const relIdsJson = d.array(msg.rel_ids, "message.rel_ids");
      if (relIdsJson.length === 0) d.fail("message.rel_ids is empty");
      return {
        kind: "truncate",
        ...at,
        relIds: relIdsJson.map((v, i) => d.u32(v, `message.rel_ids[${i}]`)),
        cascade: (options & 1n) !== 0n,
        restartIdentity: (options & 2n) !== 0n,
      };
    }
    default:
      return d.fail(`unknown message.type ${JSON.stringify(type)}`);
  }
}

class Decoder {
  constructor(private readonly offset: bigint) {}

  fail(detail: string): never {
    throw new RecordError(this.offset, detail);
  }

  object(v: JsonValue | undefined, where: string): Obj {
    if (v === null || v === undefined || typeof v !== "object" || Array.isArray(v) || v instanceof JsonNumber)
      this.fail(`${where} must be an object`);
    return v as Obj;
  }

  array(v: JsonValue | undefined, where: string): JsonValue[] {
    if (!Array.isArray(v)) this.fail(`${where} must be an array`);
    return v as JsonValue[];
  }

  string(v: JsonValue | undefined, where: string): string {
    if (typeof v !== "string") this.fail(`${where} must be a string`);
    return v as string;
  }

  nonEmptyString(v: JsonValue | undefined, where: string): string {
    const s = this.string(v, where);
    if (s === "") this.fail(`${where} must not be empty`);
    return s;
  }

  int(v: JsonValue | undefined, where: string, min: bigint, max: bigint): bigint {
    if (!(v instanceof JsonNumber) || !/^-?\d+$/.test(v.text)) this.fail(`${where} must be an integer`);
    const n = BigInt((v as JsonNumber).text);
    if (n < min || n > max) this.fail(`${where} is out of range (${n})`);
    return n;
  }

  u32(v: JsonValue | undefined, where: string): number {
    return Number(this.int(v, where, 0n, U32_MAX));
  }

  u64(v: JsonValue | undefined, where: string): bigint {
    return this.int(v, where, 0n, U64_MAX);
  }

  i64(v: JsonValue | undefined, where: string): bigint {
    return this.int(v, where, I64_MIN, I64_MAX);
  }

  replicaIdentity(v: JsonValue | undefined): ReplicaIdentity {
    switch (v) {
      case "Default":
        return "default";
      case "Nothing":
        return "nothing";
      case "Full":
        return "full";
      case "Index":
        return "index";
      default:
        return this.fail(`message.replica_identity must be Default, Nothing, Full or Index`);
    }
  }

  columns(v: JsonValue | undefined): Column[] {
    // Zero columns is valid: a table whose columns were all dropped (its tuples are []).
    const cols = this.array(v, "message.columns");
    return cols.map((c, i) => {
      const where = `message.columns[${i}]`;
      const o = this.object(c, where);
      const flags = this.int(o.flags, `${where}.flags`, -128n, 127n);
      return {
        name: this.nonEmptyString(o.name, `${where}.name`),
        typeId: Number(this.int(o.type_id, `${where}.type_id`, -(2n ** 31n), U32_MAX)) >>> 0,
        typeModifier: Number(
          this.int(o.type_modifier, `${where}.type_modifier`, -(2n ** 31n), 2n ** 31n - 1n),
        ),
        key: (flags & 1n) !== 0n,
      };
    });
  }

  optionalTuple(v: JsonValue | undefined, where: string): Value[] | null {
    if (v === null || v === undefined) return null;
    return this.tuple(v, where);
  }

  tuple(v: JsonValue | undefined, where: string): Value[] {
    return this.array(v, where).map((e, i) => this.value(e, `${where}[${i}]`));
  }

  /** One tuple element to PostgreSQL's text form, which the target converts with the column's type. */
  value(v: JsonValue, where: string): Value {
    if (v === "Null") return null;
    if (v === "UnchangedToast") return UNCHANGED;
    const o = this.object(v, where);
    const keys = Object.keys(o);
    if (keys.length !== 1) this.fail(`${where} must have exactly one variant`);
    const variant = keys[0] as string;
    const x = o[variant] as JsonValue;
    const at = `${where}.${variant}`;
    switch (variant) {
      case "Bool":
        if (typeof x !== "boolean") this.fail(`${at} must be true or false`);
        return x ? "t" : "f";
      case "Char": {
        // The inbound connector parses "char" text as an i8, so only the digits '0'..'9' survive it,
        // as their numeric value: write back that digit. Anything else is not what it sends.
        const n = this.int(x, at, -128n, 127n);
        if (n < 0n || n > 9n)
          this.fail(`${at} is ${n}: "char" values arrive as the digits 0..9 (the inbound connector's form)`);
        return n.toString();
      }
      case "Int2":
        return this.int(x, at, -32768n, 32767n).toString();
      case "Int4":
        return this.int(x, at, -(2n ** 31n), 2n ** 31n - 1n).toString();
      case "Int8":
        return this.int(x, at, I64_MIN, I64_MAX).toString();
      case "Oid":
        return this.int(x, at, 0n, U32_MAX).toString();
      case "Float4":
      case "Float8":
        // serde_json writes NaN and ±Infinity as null: the value is gone before it reaches us.
        if (x === null) return null;
        if (!(x instanceof JsonNumber)) this.fail(`${at} must be a number or null`);
        return (x as JsonNumber).text;
      case "String":
        return this.string(x, at);
      case "RawText": {
        const bytes = this.array(x, at);
        const buf = new Uint8Array(bytes.length);
        for (let i = 0; i < bytes.length; i++) {
          const b = bytes[i];
          if (!(b instanceof JsonNumber) || !/^\d{1,3}$/.test(b.text) || Number(b.text) > 255)
            this.fail(`${at}[${i}] must be a byte (0-255)`);
          buf[i] = Number((b as JsonNumber).text);
        }
        try {
          return utf8.decode(buf);
        } catch {
          return this.fail(`${at} is not valid UTF-8`);
        }
      }
      default:
        return this.fail(`${where} has unknown variant ${JSON.stringify(variant)}`);
    }
  }
}
