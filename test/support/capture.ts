import type pg from "pg";

/**
 * Captures real logical decoding from a source database and writes it in the inbound connector's
 * record format: pgoutput (protocol 1) via pg_logical_slot_get_binary_changes, one JSON record per
 * replication message, values typed by column type OID the way the inbound connector types them.
 */

const BIG = "__big__";
const big = (v: bigint | string) => `${BIG}${v}${BIG}`;
/** JSON text in which marked integers appear as bare digits, never passing through a JS number. */
function stringify(v: unknown): string {
  return JSON.stringify(v).replace(new RegExp(`"${BIG}([-0-9.eE+]+)${BIG}"`, "g"), "$1");
}

class Reader {
  pos = 0;
  constructor(private readonly b: Buffer) {}
  u8() {
    return this.b.readUInt8(this.pos++);
  }
  i8() {
    return this.b.readInt8(this.pos++);
  }
  u16() {
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32() {
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  i32() {
    const v = this.b.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64() {
    const v = this.b.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  i64() {
    const v = this.b.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  cstr() {
    const end = this.b.indexOf(0, this.pos);
    const s = this.b.toString("utf8", this.pos, end);
    this.pos = end + 1;
    return s;
  }
  bytes(n: number) {
    const s = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

const IDENTITY: Record<string, string> = { d: "Default", n: "Nothing", f: "Full", i: "Index" };

/** The real inbound connector drops a change whose values it cannot parse; so does this helper. */
class DroppedChange extends Error {}

function typed(typeId: number, raw: Buffer): unknown {
  const text = raw.toString("utf8");
  switch (typeId) {
    case 16:
      return { Bool: text === "t" };
    case 18: {
      // "char": the inbound connector parses the text as an i8, so a digit arrives as its value.
      // Any other character fails that parse, and the real connector then drops the whole change.
      if (!/^[0-9]$/.test(text)) throw new DroppedChange();
      return { Char: Number(text) };
    }
    case 21:
      return { Int2: Number(text) };
    case 23:
      return { Int4: Number(text) };
    case 20:
      return { Int8: big(text) };
    case 26:
      return { Oid: Number(text) };
    case 700:
    case 701: {
      const key = typeId === 700 ? "Float4" : "Float8";
      // serde_json writes NaN and infinities as null.
      if (!/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(text)) return { [key]: null };
      return { [key]: big(text) };
    }
    case 25:
    case 1043:
    case 1042:
    case 19:
      return { String: text };
    default:
      return { RawText: [...raw] };
  }
}

export class WalCapture {
  private readonly relTypes = new Map<number, number[]>();

  private constructor(
    private readonly client: pg.ClientBase,
    readonly slot: string,
    readonly publication: string,
  ) {}

  /** Creates a publication for all tables and a pgoutput slot; changes from now on are captured. */
  static async create(client: pg.ClientBase, name = "fps_capture"): Promise<WalCapture> {
    await client.query(`CREATE PUBLICATION ${name} FOR ALL TABLES`);
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [name]);
    return new WalCapture(client, name, name);
  }

  /** Everything committed since the last call, as inbound-format JSON lines. */
  async take(): Promise<string[]> {
    const r = await this.client.query<{ lsn: string; data: Buffer }>(
      `SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
         'proto_version', '1', 'publication_names', $2)`,
      [this.slot, this.publication],
    );
    const out: string[] = [];
    for (const row of r.rows) {
      const [hi, lo] = row.lsn.split("/") as [string, string];
      const lsn = (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
      let message: Record<string, unknown>;
      try {
        message = this.decode(row.data);
      } catch (e) {
        if (e instanceof DroppedChange) continue;
        throw e;
      }
      // The real connector sends relation and type records with zero envelope LSNs.
      const envLsn = message.type === "relation" || message.type === "type" ? 0n : lsn;
      out.push(stringify({ wal_start: big(envLsn), wal_end: big(envLsn), timestamp: 0, message }));
    }
    return out;
  }

  private tuple(r: Reader, relId: number): unknown[] {
    const types = this.relTypes.get(relId) ?? [];
    const n = r.u16();
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const kind = String.fromCharCode(r.u8());
      if (kind === "n") out.push("Null");
      else if (kind === "u") out.push("UnchangedToast");
      else if (kind === "t") out.push(typed(types[i] ?? 25, r.bytes(r.u32())));
      else throw new Error(`unexpected tuple kind ${kind}`);
    }
    return out;
  }

  private decode(data: Buffer): Record<string, unknown> {
    const r = new Reader(data);
    const tag = String.fromCharCode(r.u8());
    switch (tag) {
      case "B":
        return { type: "begin", final_lsn: big(r.u64()), timestamp: big(r.i64()), xid: r.u32() };
      case "C":
        return {
          type: "commit",
          flags: r.i8(),
          commit_lsn: big(r.u64()),
          end_lsn: big(r.u64()),
          timestamp: big(r.i64()),
        };
      case "O":
        return { type: "origin", commit_lsn: big(r.u64()), name: r.cstr() };
      case "R": {
        const relId = r.u32();
        const namespace = r.cstr();
        const name = r.cstr();
        const identity = IDENTITY[String.fromCharCode(r.u8())];
        const n = r.u16();
        const columns = [];
        for (let i = 0; i < n; i++)
          columns.push({ flags: r.i8(), name: r.cstr(), type_id: r.u32(), type_modifier: r.i32() });
        this.relTypes.set(
          relId,
          columns.map((c) => c.type_id),
        );
        return { type: "relation", rel_id: relId, namespace, name, replica_identity: identity, columns };
      }
      case "Y": {
        const id = r.u32();
        r.cstr();
        const name = r.cstr();
        // The inbound connector puts the type's name in namespace too.
        return { type: "type", id, namespace: name, name };
      }
      case "I": {
        const relId = r.u32();
        r.u8(); // 'N'
        return { type: "insert", rel_id: relId, tuple: this.tuple(r, relId) };
      }
      case "U": {
        const relId = r.u32();
        let kind = String.fromCharCode(r.u8());
        let old_tuple: unknown = null;
        let key_tuple: unknown = null;
        if (kind === "K" || kind === "O") {
          const t = this.tuple(r, relId);
          if (kind === "K") key_tuple = t;
          else old_tuple = t;
          kind = String.fromCharCode(r.u8());
        }
        return { type: "update", rel_id: relId, old_tuple, key_tuple, new_tuple: this.tuple(r, relId) };
      }
      case "D": {
        const relId = r.u32();
        const kind = String.fromCharCode(r.u8());
        const t = this.tuple(r, relId);
        return {
          type: "delete",
          rel_id: relId,
          old_tuple: kind === "O" ? t : null,
          key_tuple: kind === "K" ? t : null,
        };
      }
      case "T": {
        const n = r.u32();
        const options = r.i8();
        const rel_ids = [];
        for (let i = 0; i < n; i++) rel_ids.push(r.u32());
        return { type: "truncate", options, rel_ids };
      }
      default:
        throw new Error(`unexpected pgoutput message ${tag}`);
    }
  }
}
