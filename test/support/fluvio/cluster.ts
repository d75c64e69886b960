import { createServer, type Server, type Socket } from "node:net";
import {
  type CompressionName,
  DecodeError,
  decodeBatchList,
  encodeBatch,
  frame,
  Reader,
  type StoredRecord,
  Writer,
} from "./codec.js";

/**
 * A Fluvio-compatible cluster for tests and the demo, speaking the wire protocol of the published
 * @fluvio/client@0.14.9 (Fluvio 0.11.11): an SC (versions, metadata watches, topic create/list/delete)
 * and one SPU (produce, fetch offsets, stream fetch, update offsets) on loopback ports. It keeps
 * records in memory. It is not a Fluvio server for real use.
 */

const PLATFORM_VERSION = "0.11.11";
const SPU_ID = 5001;

/** API keys; the SC and the SPU reuse numbers for different requests. */
export const Api = {
  Produce: 0,
  SpuFetchOffsets: 1002,
  SpuStreamFetch: 1003,
  SpuUpdateOffsets: 1005,
  ApiVersions: 18,
  Create: 1001,
  Delete: 1002,
  List: 1003,
  Watch: 1004,
} as const;

interface Partition {
  /** Offset of records[0]: the SPU's log start. */
  logStart: bigint;
  /** The log start the SC's partition listing reports, when it lags the SPU's (null: the same). */
  listedLogStart: bigint | null;
  records: StoredRecord[];
  /** Base offsets of the stored batches, ascending: the SPU serves whole batches. */
  batchBases: bigint[];
}

interface Topic {
  name: string;
  partitions: Partition[];
  /** How the SPU stores (and serves) its batches. */
  compression: CompressionName;
}

interface Request {
  apiKey: number;
  version: number;
  correlationId: number;
  clientId: string;
  body: Reader;
}

interface FetchSession {
  socket: Socket;
  correlationId: number;
  streamId: number;
  topic: string;
  partition: number;
  /** Next offset to push. */
  next: bigint;
  /** The client's max_bytes: a response carries at most this many bytes of batches. */
  maxBytes: number;
  /** dropStreamsAfter hit: nothing more is sent before the connection closes. */
  closing?: boolean;
}

type Kind = "SPU" | "Partition" | "Topic";

export interface ClusterOptions {
  /** Accept connections and never answer (a hung cluster). */
  silent?: boolean;
}

export class FluvioTestCluster {
  readonly topics = new Map<string, Topic>();
  private sc!: Server;
  private spu!: Server;
  private readonly sockets = new Set<Socket>();
  private readonly spuSockets = new Set<Socket>();
  private readonly watches: { socket: Socket; correlationId: number; version: number; kind: Kind }[] = [];
  private readonly sessions: FetchSession[] = [];
  private epoch = 1n;
  private nextStreamId = 1;
  scPort = 0;
  spuPort = 0;
  silent: boolean;
  /** When set, a stream gets this many records, then its connection is closed mid-read. */
  dropStreamsAfter: number | null = null;
  /** Requests seen, by API key, for tests that look at what the client did. */
  readonly seen: { server: "sc" | "spu"; apiKey: number; version: number }[] = [];
  /** max_bytes of each stream fetch request, for tests of the client's fetch size. */
  readonly fetchMaxBytes: number[] = [];
  /**
   * When set, retention moves the SPU's log start to this offset right after it answers a
   * FetchOffsets request: the client's resolved start is then evicted when its stream fetch arrives.
   */
  evictAfterFetchOffsets: bigint | null = null;

  constructor(opts: ClusterOptions = {}) {
    this.silent = opts.silent ?? false;
  }

  static async start(opts: ClusterOptions = {}): Promise<FluvioTestCluster> {
    const c = new FluvioTestCluster(opts);
    c.sc = createServer((s) => c.accept(s, "sc"));
    c.spu = createServer((s) => c.accept(s, "spu"));
    c.scPort = await listen(c.sc);
    c.spuPort = await listen(c.spu);
    return c;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.scPort}`;
  }

  // ---- test API ------------------------------------------------------------------------------

  createTopic(name: string, partitions = 1, opts: { compression?: CompressionName } = {}): void {
    if (this.topics.has(name)) throw new Error(`topic ${name} exists`);
    this.topics.set(name, {
      name,
      partitions: Array.from({ length: partitions }, () => emptyPartition()),
      compression: opts.compression ?? "none",
    });
    this.broadcast("Topic");
    this.broadcast("Partition");
  }

  deleteTopic(name: string): void {
    const t = this.topics.get(name);
    if (!t) return;
    this.topics.delete(name);
    this.broadcast("Topic", { deleted: [name] });
    this.broadcast("Partition", { deleted: t.partitions.map((_, i) => `${name}-${i}`) });
  }

  /** Appends records as one batch, as a producer would; returns the first offset. */
  append(topic: string, partition: number, values: (string | Buffer)[]): bigint {
    const p = this.partition(topic, partition);
    const base = p.logStart + BigInt(p.records.length);
    if (values.length === 0) return base;
    p.batchBases.push(base);
    for (const v of values)
      p.records.push({ key: Buffer.alloc(0), value: typeof v === "string" ? Buffer.from(v) : v });
    this.pump();
    return base;
  }

  /** Stores everything in the partition again as batches of `size` records (the last may be shorter). */
  rebatch(topic: string, partition: number, size: number): void {
    const p = this.partition(topic, partition);
    p.batchBases = [];
    for (let i = 0; i < p.records.length; i += size) p.batchBases.push(p.logStart + BigInt(i));
  }

  /** The values stored in a partition, from its log start. */
  values(topic: string, partition = 0): string[] {
    return this.partition(topic, partition).records.map((r) => r.value.toString("utf8"));
  }

  highWatermark(topic: string, partition = 0): bigint {
    const p = this.partition(topic, partition);
    return p.logStart + BigInt(p.records.length);
  }

  /**
   * Drops records below `offset`, as retention would. With staleListing the SC's partition listing
   * keeps reporting the old log start, as a real SC does for a quiet topic until the SPU reports again.
   */
  setLogStart(topic: string, partition: number, offset: bigint, opts: { staleListing?: boolean } = {}): void {
    const p = this.partition(topic, partition);
    const drop = Number(offset - p.logStart);
    if (opts.staleListing) p.listedLogStart ??= p.logStart;
    else p.listedLogStart = null;
    p.records = p.records.slice(drop);
    p.logStart = offset;
    // Retention removes whole segments; a batch cut here starts at the new log start.
    const kept = p.batchBases.filter((b) => b >= offset);
    if (p.records.length > 0 && kept[0] !== offset) kept.unshift(offset);
    p.batchBases = kept;
  }

  /** Closes every client connection (to the SPU, or all). */
  dropConnections(which: "spu" | "all" = "all"): void {
    for (const s of which === "spu" ? this.spuSockets : this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all([close(this.sc), close(this.spu)]);
  }

  private partition(topic: string, partition: number): Partition {
    const p = this.topics.get(topic)?.partitions[partition];
    if (!p) throw new Error(`no partition ${topic}-${partition}`);
    return p;
  }

  // ---- connections -----------------------------------------------------------------------------

  private accept(socket: Socket, server: "sc" | "spu"): void {
    this.sockets.add(socket);
    if (server === "spu") this.spuSockets.add(socket);
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    socket.on("data", (d) => {
      if (this.silent) return;
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4) {
        const size = buf.readInt32BE(0);
        if (buf.length < 4 + size) break;
        const payload = buf.subarray(4, 4 + size);
        buf = buf.subarray(4 + size);
        try {
          this.handle(socket, server, payload);
        } catch (e) {
          // A request we cannot decode: the client would wait forever, so hang up on it.
          process.stderr.write(`fluvio test cluster: ${(e as Error).message}\n`);
          socket.destroy();
          return;
        }
      }
    });
    const gone = () => {
      this.sockets.delete(socket);
      this.spuSockets.delete(socket);
      for (let i = this.watches.length - 1; i >= 0; i--)
        if (this.watches[i]?.socket === socket) this.watches.splice(i, 1);
      for (let i = this.sessions.length - 1; i >= 0; i--)
        if (this.sessions[i]?.socket === socket) this.sessions.splice(i, 1);
    };
    socket.on("close", gone);
    socket.on("error", gone);
  }

  private send(socket: Socket, correlationId: number, body: Buffer): void {
    if (socket.destroyed) return;
    socket.write(frame(Buffer.concat([new Writer().i32(correlationId).build(), body])));
  }

  private handle(socket: Socket, server: "sc" | "spu", payload: Buffer): void {
    const r = new Reader(payload);
    const req: Request = {
      apiKey: r.u16(),
      version: r.i16(),
      correlationId: r.i32(),
      clientId: r.string(),
      body: r,
    };
    this.seen.push({ server, apiKey: req.apiKey, version: req.version });
    if (req.apiKey === Api.ApiVersions) {
      this.apiVersions(socket, req, server);
      return;
    }
    if (server === "sc") {
      switch (req.apiKey) {
        case Api.Watch:
          this.watch(socket, req);
          return;
        case Api.Create:
          this.create(socket, req);
          return;
        case Api.List:
          this.list(socket, req);
          return;
        case Api.Delete:
          this.delete(socket, req);
          return;
      }
    } else {
      switch (req.apiKey) {
        case Api.Produce:
          this.produce(socket, req);
          return;
        case Api.SpuFetchOffsets:
          this.fetchOffsets(socket, req);
          return;
        case Api.SpuStreamFetch:
          this.streamFetch(socket, req);
          return;
        case Api.SpuUpdateOffsets:
          this.updateOffsets(socket, req);
          return;
      }
    }
    throw new DecodeError(`unsupported api key ${req.apiKey} on the ${server}`);
  }

  private apiVersions(socket: Socket, req: Request, server: "sc" | "spu"): void {
    const keys: [number, number, number][] =
      server === "sc"
        ? [
            [Api.ApiVersions, 0, 2],
            [Api.Create, 0, 16],
            [Api.Delete, 0, 16],
            [Api.List, 0, 16],
            [Api.Watch, 0, 16],
          ]
        : [
            [Api.ApiVersions, 0, 2],
            [Api.Produce, 0, 23],
            [Api.SpuFetchOffsets, 0, 23],
            [Api.SpuStreamFetch, 0, 23],
            [Api.SpuUpdateOffsets, 0, 0],
          ];
    const w = new Writer()
      .i16(0)
      .vec(keys, (w, [k, min, max]) => w.i16(k).i16(min).i16(max))
      .string(server === "sc" ? PLATFORM_VERSION : "0.0.0");
    this.send(socket, req.correlationId, w.build());
  }

  // ---- SC: metadata ------------------------------------------------------------------------------

  private spuMeta(w: Writer): void {
    w.string(String(SPU_ID));
    w.i32(SPU_ID).u8(1); // custom SPU
    w.u16(this.spuPort)
      .vec([0], (w) => w.bool(false).optString("127.0.0.1"))
      .u8(0);
    w.u16(this.spuPort).string("127.0.0.1").u8(0);
    w.bool(false); // rack
    w.bool(false); // public_endpoint_local
    w.u8(0); // Online
  }

  private partitionMeta(w: Writer, topic: Topic, i: number): void {
    const p = topic.partitions[i] as Partition;
    const hw = p.logStart + BigInt(p.records.length);
    w.string(`${topic.name}-${i}`);
    w.i32(SPU_ID)
      .vec([SPU_ID], (w, id) => w.i32(id))
      .bool(false)
      .bool(false)
      .u8(4)
      .bool(false)
      .bool(false)
      .bool(false);
    w.u8(1).i32(SPU_ID).i64(hw).i64(hw).u32(0);
    w.vec([] as number[], () => {});
    w.i64(p.records.reduce((n, r) => n + r.value.length, 0));
    w.bool(false);
    w.i64(p.listedLogStart ?? p.logStart);
  }

  private topicMeta(w: Writer, topic: Topic): void {
    w.string(topic.name);
    w.u8(1).u32(topic.partitions.length).u32(1).bool(false);
    w.bool(false).bool(false).u8(4).bool(false).bool(false);
    w.u8(4);
    w.u16(topic.partitions.length);
    for (let i = 0; i < topic.partitions.length; i++) w.u32(i).vec([SPU_ID], (w, id) => w.i32(id));
    w.u16(0);
    w.string("");
  }

  private metas(kind: Kind): ((w: Writer) => void)[] {
    if (kind === "SPU") return [(w) => this.spuMeta(w)];
    const out: ((w: Writer) => void)[] = [];
    for (const t of this.topics.values()) {
      if (kind === "Topic") out.push((w) => this.topicMeta(w, t));
      else for (let i = 0; i < t.partitions.length; i++) out.push((w) => this.partitionMeta(w, t, i));
    }
    return out;
  }

  private typeBuffer(kind: Kind, inner: Buffer): Buffer {
    return new Writer().string(kind).u32(inner.length).bytes(inner).build();
  }

  private watchUpdate(kind: Kind, deleted: string[] = []): Buffer {
    const all = this.metas(kind);
    const w = new Writer().i64(this.epoch++);
    if (all.length === 0 && deleted.length > 0) {
      // An empty `all` is ignored by the client: deletions travel as DELETE changes.
      w.vec(deleted, (w, name) => {
        w.u8(1);
        if (kind === "Topic") this.topicMeta(w, { name, partitions: [], compression: "none" });
        else
          this.partitionMeta(
            w,
            {
              name: name.slice(0, name.lastIndexOf("-")),
              partitions: [emptyPartition()],
              compression: "none",
            },
            0,
          );
      });
      w.u32(0);
    } else {
      w.u32(0);
      w.vec(all, (w, m) => m(w));
    }
    return this.typeBuffer(kind, w.build());
  }

  private watch(socket: Socket, req: Request): void {
    const kind = req.body.string() as Kind;
    this.watches.push({ socket, correlationId: req.correlationId, version: req.version, kind });
    this.send(socket, req.correlationId, this.watchUpdate(kind));
  }

  private broadcast(kind: Kind, opts: { deleted?: string[] } = {}): void {
    for (const wch of this.watches)
      if (wch.kind === kind) this.send(wch.socket, wch.correlationId, this.watchUpdate(kind, opts.deleted));
  }

  private status(name: string, code: number, message: string | null): Buffer {
    return new Writer().string(name).i16(code).optString(message).build();
  }

  private create(socket: Socket, req: Request): void {
    const r = req.body;
    r.string(); // kind
    r.u32();
    const name = r.string();
    r.bool(); // dry run
    if (req.version >= 7 && r.bool()) r.u32();
    const tag = r.u8();
    let partitions = 1;
    if (tag === 1) partitions = r.u32();
    else if (tag === 0)
      partitions = r.vec((r) => {
        r.u32();
        r.vec((r) => r.i32());
        if (req.version >= 14 && r.bool()) throw new DecodeError("mirror maps are not supported");
        return 0;
      }).length;
    if (this.topics.has(name)) {
      this.send(socket, req.correlationId, this.status(name, 2002, `topic ${name} exists`));
      return;
    }
    this.createTopic(name, Math.max(1, partitions));
    this.send(socket, req.correlationId, this.status(name, 0, null));
  }

  private list(socket: Socket, req: Request): void {
    const kind = req.body.string() as Kind;
    req.body.u32();
    const filters = req.body.vec((r) => r.string());
    const metas = this.metas(kind).filter((_, i) => {
      if (filters.length === 0 || kind === "SPU") return true;
      const names =
        kind === "Topic"
          ? [...this.topics.keys()]
          : [...this.topics.values()].flatMap((t) => t.partitions.map((_, j) => `${t.name}-${j}`));
      return (
        filters.includes(names[i] as string) || filters.some((f) => (names[i] as string).startsWith(`${f}-`))
      );
    });
    const inner = new Writer().vec(metas, (w, m) => m(w)).build();
    this.send(socket, req.correlationId, this.typeBuffer(kind, inner));
  }

  private delete(socket: Socket, req: Request): void {
    req.body.string();
    req.body.u32();
    const name = req.body.string();
    if (!this.topics.has(name)) {
      this.send(socket, req.correlationId, this.status(name, 2001, `topic ${name} not found`));
      return;
    }
    this.deleteTopic(name);
    this.send(socket, req.correlationId, this.status(name, 0, null));
  }

  // ---- SPU: data -------------------------------------------------------------------------------

  private produce(socket: Socket, req: Request): void {
    const r = req.body;
    r.optString();
    r.i16();
    r.i32();
    const results = r.vec((r) => {
      const name = r.string();
      const parts = r.vec((r) => {
        const index = r.u32();
        const len = r.i32();
        const batches = decodeBatchList(r, r.pos + len);
        const p = this.topics.get(name)?.partitions[index];
        if (!p) return { index, code: 3001, base: -1n };
        const base = p.logStart + BigInt(p.records.length);
        for (const b of batches) {
          if (b.length === 0) continue;
          p.batchBases.push(p.logStart + BigInt(p.records.length));
          p.records.push(...b);
        }
        return { index, code: 0, base };
      });
      return { name, parts };
    });
    const w = new Writer().vec(results, (w, t) =>
      w.string(t.name).vec(t.parts, (w, p) => {
        w.u32(p.index).i16(p.code).i64(p.base);
        if (req.version >= 2) w.i64(-1n);
        if (req.version >= 5) w.i64(0n);
      }),
    );
    if (req.version >= 1) w.i32(0);
    this.send(socket, req.correlationId, w.build());
    this.pump();
  }

  private fetchOffsets(socket: Socket, req: Request): void {
    const topics = req.body.vec((r) => ({ name: r.string(), partitions: r.vec((r) => r.u32()) }));
    const w = new Writer().vec(topics, (w, t) =>
      w.string(t.name).vec(t.partitions, (w, i) => {
        const p = this.topics.get(t.name)?.partitions[i];
        const start = p?.logStart ?? 0n;
        w.i16(p ? 0 : 2001)
          .u32(i)
          .i64(start)
          .i64(start + BigInt(p?.records.length ?? 0));
      }),
    );
    this.send(socket, req.correlationId, w.build());
    if (this.evictAfterFetchOffsets !== null) {
      const to = this.evictAfterFetchOffsets;
      this.evictAfterFetchOffsets = null;
      for (const t of topics) for (const i of t.partitions) this.setLogStart(t.name, i, to);
    }
  }

  private streamFetch(socket: Socket, req: Request): void {
    const topic = req.body.string();
    const partition = req.body.u32();
    const offset = req.body.i64();
    const maxBytes = req.body.i32();
    this.fetchMaxBytes.push(maxBytes);
    const session: FetchSession = {
      socket,
      correlationId: req.correlationId,
      streamId: this.nextStreamId++,
      topic,
      partition,
      next: offset,
      maxBytes,
    };
    this.sessions.push(session);
    this.pushTo(session, true);
  }

  private updateOffsets(socket: Socket, req: Request): void {
    const offsets = req.body.vec((r) => ({ offset: r.i64(), session: r.u32() }));
    const w = new Writer().vec(offsets, (w, o) => w.u32(o.session).i16(0));
    this.send(socket, req.correlationId, w.build());
    // The real SPU sends more once the consumer reports what it took (flow control by max_bytes).
    for (const o of offsets)
      for (const s of this.sessions)
        if (s.socket === socket && s.streamId === o.session) this.pushTo(s, false);
  }

  private pump(): void {
    for (const s of this.sessions) this.pushTo(s, false);
  }

  /**
   * Sends a session the records it has not seen yet (or, first time, an empty response if none), as
   * the real SPU does: whole stored batches from the one holding the next offset (so the first may
   * start before it), cut at the session's max_bytes even inside a batch, which the client then drops.
   * An offset below the log start gets the SPU's OffsetEvicted error.
   */
  private pushTo(s: FetchSession, first: boolean): void {
    const t = this.topics.get(s.topic);
    const p = t?.partitions[s.partition];
    if (!t || !p || s.closing) return;
    const hw = p.logStart + BigInt(p.records.length);
    if (s.next < p.logStart) {
      this.sendEvicted(s, p, hw);
      return;
    }
    if (s.next >= hw && !first) return;
    let end = hw;
    const drop = this.dropStreamsAfter !== null && hw - s.next > BigInt(this.dropStreamsAfter);
    if (drop) end = s.next + BigInt(this.dropStreamsAfter ?? 0);
    let i = p.batchBases.length - 1;
    while (i > 0 && (p.batchBases[i] as bigint) > s.next) i--;
    const pieces: { bytes: Buffer; end: bigint }[] = [];
    for (; i < p.batchBases.length && s.next < end; i++) {
      const base = p.batchBases[i] as bigint;
      if (base >= end) break;
      const next = p.batchBases[i + 1] ?? hw;
      const stop = next < end ? next : end;
      const recs = p.records.slice(Number(base - p.logStart), Number(stop - p.logStart));
      pieces.push({ bytes: encodeBatch(base, recs, 0n, t.compression), end: stop });
    }
    let size = 0;
    let delivered = s.next;
    for (const piece of pieces) {
      if (size + piece.bytes.length > s.maxBytes) break;
      size += piece.bytes.length;
      delivered = piece.end;
    }
    let batch = Buffer.concat(pieces.map((x) => x.bytes));
    if (batch.length > s.maxBytes) batch = batch.subarray(0, s.maxBytes);
    const w = new Writer()
      .string(s.topic)
      .u32(s.streamId)
      .u32(s.partition)
      .i16(0)
      .i64(hw)
      .i64(0n)
      .i64(p.logStart)
      .bool(false)
      .i32(batch.length)
      .bytes(batch);
    s.next = delivered;
    if (batch.length > 0 || first) this.send(s.socket, s.correlationId, w.build());
    if (drop) {
      s.closing = true;
      setTimeout(() => s.socket.destroy(), 50);
    }
  }

  /** ErrorCode::OffsetEvicted (tag 71) with the offset asked for and the next available; the stream ends. */
  private sendEvicted(s: FetchSession, p: Partition, hw: bigint): void {
    const w = new Writer()
      .string(s.topic)
      .u32(s.streamId)
      .u32(s.partition)
      .i16(71)
      .i64(s.next)
      .i64(p.logStart)
      .i64(hw)
      .i64(0n)
      .i64(p.logStart)
      .bool(false)
      .i32(0);
    this.send(s.socket, s.correlationId, w.build());
    const i = this.sessions.indexOf(s);
    if (i !== -1) this.sessions.splice(i, 1);
  }
}

function emptyPartition(): Partition {
  return { logStart: 0n, listedLogStart: null, records: [], batchBases: [] };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : 0);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
