import { asError, RecordError, SinkError } from "../errors.js";
import { JsonNumber, type JsonValue, parseJsonLossless } from "../events/json.js";
import type { Logger } from "../log.js";
import type { ReadOptions, Source, SourceRecord } from "./source.js";

/**
 * A bounded read of one Fluvio partition with the native @fluvio/client.
 *
 * That client can only stream forever: a read with nothing to return never settles, keeps the
 * process alive and cannot be cancelled. So the read first learns the partition's start and end from
 * the cluster, then asks for exactly the records in between, each under a timeout, and never leaves a
 * read pending. A timeout leaves the native call behind: the CLI exits the process when it is done.
 */

export interface FluvioSourceOptions {
  topic: string;
  partition: number;
  /** host:port of the SC; null: the Fluvio profile (FLV_PROFILE_PATH or ~/.fluvio/config). */
  endpoint: string | null;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /**
   * The most bytes one fetch response may carry. A record batch larger than this is never delivered
   * (the SPU cuts the response short and the client drops the incomplete batch), so it must exceed
   * the largest batch in the topic.
   */
  fetchMaxBytes: number;
  /** When the stored offset is below the partition's start (retention removed records). */
  onLostRecords: "error" | "skip";
  log: Logger;
  /**
   * Keep the connected client in module scope for the next source of the same cluster (a warm
   * Lambda's next invocation): connecting costs more than a small batch. Checked on every use; kept
   * only after a run that read each stream it opened to its end (see close()).
   */
  keepClient?: boolean;
}

/**
 * Connected clients kept between runs in one process, by cluster. Kept only while every call on
 * them answered and every stream opened on them was read to its end: a later run never shares a
 * connection with a pending read or a stream left with records to deliver.
 */
const kept_ = new Map<string, Native>();

let connections = 0;

/** Forgets every kept client (tests). */
export function forgetFluvioClients(): void {
  kept_.clear();
}

/** How many connections to a cluster this process has made (tests of the reuse). */
export function fluvioConnectionsMade(): number {
  return connections;
}

interface PartitionBounds {
  start: bigint;
  end: bigint;
}

// biome-ignore lint/suspicious/noExplicitAny: the native client's typings do not match its runtime.
type Native = any;

interface NativeRecord {
  value(): ArrayBuffer;
}

/** The real SPU's answer for a fetch below its log start (ErrorCode::OffsetEvicted). */
const EVICTED = /Offset (\d+) is evicted\. The next available is (\d+)/;

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SinkError(`${what()}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p.catch((e) => Promise.reject(asError(e))), timeout]).finally(() =>
    clearTimeout(timer),
  );
}

export class FluvioSource implements Source {
  readonly description: string;
  private client: Native;
  private admin: Native;
  private consumer: Native;
  /** The client came from an earlier invocation (keepClient). */
  private reused = false;
  /** Streams this run opened on the client and left before their end (none can be closed). */
  private openStreams = 0;
  private bounds: PartitionBounds | null = null;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor(private readonly o: FluvioSourceOptions) {
    this.description = `fluvio ${o.endpoint ?? "profile"} topic ${o.topic} partition ${o.partition}`;
  }

  private where(): string {
    return `Fluvio cluster ${this.o.endpoint ?? "(profile)"}, topic ${this.o.topic} partition ${this.o.partition}`;
  }

  /** Which cached connection fits these options: the same cluster, by endpoint or profile file. */
  private cacheKey(): string {
    return this.o.endpoint ?? `profile:${process.env.FLV_PROFILE_PATH ?? "~/.fluvio/config"}`;
  }

  private async connect(): Promise<Native> {
    if (this.client) return this.client;
    if (this.o.keepClient) {
      const kept = kept_.get(this.cacheKey());
      if (kept) {
        this.client = kept;
        this.reused = true;
        return kept;
      }
    }
    // The native module prints its tracing to stdout, which carries only the run summary.
    process.env.RUST_LOG ??= "off";
    let Fluvio: Native;
    try {
      // A CommonJS module whose class is `exports.default`: under Node's own ESM loader the class is
      // one `default` deeper than under transpilers.
      const mod: Native = await import("@fluvio/client");
      Fluvio = typeof mod.default === "function" ? mod.default : mod.default?.default;
    } catch (e) {
      throw new SinkError(
        `cannot load @fluvio/client (needs Linux x86_64 with glibc 2.34): ${asError(e).message}`,
      );
    }
    const [host, port] = this.o.endpoint
      ? (this.o.endpoint.split(":") as [string, string])
      : [undefined, undefined];
    const client = host ? new Fluvio({ host, port: Number(port) }) : new Fluvio();
    try {
      await withTimeout(
        Promise.resolve(client.connect()),
        this.o.connectTimeoutMs,
        () => `connecting to ${this.where()}`,
      );
    } catch (e) {
      throw new SinkError(`cannot connect to ${this.where()}: ${asError(e).message}`);
    }
    connections++;
    this.client = client;
    this.reused = false;
    if (this.o.keepClient) kept_.set(this.cacheKey(), client);
    return client;
  }

  /**
   * A kept client that failed or timed out is never used again: its connection may be gone, and a
   * native call that timed out may still be pending on it.
   */
  private forget(): void {
    if (this.client && kept_.get(this.cacheKey()) === this.client) kept_.delete(this.cacheKey());
    this.client = undefined;
    this.admin = undefined;
    this.consumer = undefined;
    this.openStreams = 0;
  }

  /** Runs `fn` on this run's client; any failure retires the client from the cache. */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      this.forget();
      throw e;
    }
  }

  /**
   * The partition's log start and end (high watermark), as the cluster reports them now. On a client
   * kept from an earlier invocation this is also the check that it still works: if not, it is
   * dropped and the listing asked once more on a fresh connection.
   */
  async partitionBounds(): Promise<PartitionBounds> {
    await this.connect();
    if (!this.reused) return this.guarded(() => this.listBounds());
    try {
      return await this.listBounds();
    } catch (e) {
      this.o.log.info("the Fluvio connection kept from an earlier invocation failed: connecting again", {
        error: asError(e).message,
      });
      this.forget();
      await this.connect();
      return this.guarded(() => this.listBounds());
    }
  }

  private async listBounds(): Promise<PartitionBounds> {
    const client = this.client;
    const ms = this.o.connectTimeoutMs;
    this.admin ??= await withTimeout(
      Promise.resolve(client.admin()),
      ms,
      () => `opening admin on ${this.where()}`,
    );
    const json = await withTimeout(
      Promise.resolve(this.admin.listPartitions()),
      ms,
      () => `listing partitions of ${this.where()}`,
    );
    const name = `${this.o.topic}-${this.o.partition}`;
    // Parsed losslessly: offsets are 64-bit.
    const all = parseJsonLossless(String(json));
    const entry = Array.isArray(all)
      ? (all.find(
          (p) =>
            typeof p === "object" &&
            p !== null &&
            !Array.isArray(p) &&
            !(p instanceof JsonNumber) &&
            p.name === name,
        ) as { [k: string]: JsonValue } | undefined)
      : undefined;
    if (!entry) throw new SinkError(`${this.where()}: no such topic partition`);
    const num = (v: JsonValue | undefined, what: string): bigint => {
      if (v instanceof JsonNumber && /^\d+$/.test(v.text)) return BigInt(v.text);
      if (v === undefined || v === null) return 0n;
      throw new SinkError(`${this.where()}: unexpected ${what} in the partition listing`);
    };
    const status = entry.status as { [k: string]: JsonValue } | undefined;
    const leader = status?.leader as { [k: string]: JsonValue } | undefined;
    return { start: num(status?.baseOffset, "baseOffset"), end: num(leader?.hw, "high watermark") };
  }

  async resolveStart(from: bigint): Promise<bigint> {
    const b = await this.partitionBounds();
    this.bounds = b;
    if (from >= b.start) return from;
    const lost = b.start - from;
    if (this.o.onLostRecords === "error") throw new SinkError(this.lostMessage(from, b.start - 1n));
    this.o.log.error(
      "records were removed by retention before this sink applied them; continuing after them",
      {
        from,
        to: b.start - 1n,
        lost,
      },
    );
    return b.start;
  }

  retains(offset: bigint): boolean {
    return this.bounds === null || offset >= this.bounds.start;
  }

  private lostMessage(from: bigint, to: bigint): string {
    return (
      `${this.where()}: offsets ${from}..${to} (${to - from + 1n} records) were removed by retention before this sink applied them; ` +
      "the target is missing their changes. Set parameters.on_lost_records: skip to continue after them."
    );
  }

  /** A stream from `index` records after the SPU's log start ('beginning') or before its end. */
  private async openStream(index: number, from: "beginning" | "end" = "beginning"): Promise<Native> {
    const ms = this.o.readTimeoutMs;
    this.openStreams++;
    this.consumer ??= await withTimeout(
      Promise.resolve(this.client.partitionConsumer(this.o.topic, this.o.partition)),
      ms,
      () => `opening a consumer on ${this.where()}`,
    );
    const consumer = this.consumer;
    // smartmoduleType is required by the binding and unused without a SmartModule; the config is the
    // only way to set the fetch size (the default, 1 MB, never delivers a larger batch).
    return withTimeout(
      Promise.resolve(
        consumer.streamWithConfig(
          { index, from },
          { smartmoduleType: "filter", maxBytes: this.o.fetchMaxBytes },
        ),
      ),
      ms,
      () => `opening a stream on ${this.where()}`,
    );
  }

  async *read(start: bigint, opts: ReadOptions = {}): AsyncIterable<SourceRecord[]> {
    try {
      yield* this.records(start, opts);
    } catch (e) {
      this.forget();
      throw e;
    }
  }

  private async *records(start: bigint, opts: ReadOptions): AsyncIterable<SourceRecord[]> {
    const b = this.bounds ?? (await this.partitionBounds());
    this.bounds = b;
    if (start < b.start)
      throw new SinkError(`${this.where()}: offset ${start} is below the log start ${b.start}`);
    if (start > b.end)
      throw new SinkError(
        `${this.where()}: the stored offset ${start} is past the partition's end ${b.end} (was the topic recreated?)`,
      );
    if (start === b.end) return;
    if (start - b.start > 0xffffffffn)
      throw new SinkError(`${this.where()}: offsets more than 2^32 past the log start are not supported`);
    const ms = this.o.readTimeoutMs;
    // The only absolute position this client can express: n records after the log start. The SPU's
    // log start can be ahead of the listing's; the caller's fingerprint check catches that.
    let stream: Native;
    try {
      stream = await this.openStream(Number(start - b.start));
    } catch (e) {
      if (!this.reused) throw e;
      // A kept connection that lists but cannot open a stream: once more on a new one.
      this.o.log.info("the Fluvio connection kept from an earlier invocation failed: connecting again", {
        error: asError(e).message,
      });
      this.forget();
      await this.connect();
      stream = await this.openStream(Number(start - b.start));
    }
    let lost: SourceRecord["lost"];
    for (let offset = start; offset < b.end; offset++) {
      let r: { done: boolean; value?: NativeRecord };
      try {
        r = await withTimeout(
          Promise.resolve(stream.next()),
          ms,
          () =>
            `reading offset ${offset} from ${this.where()}: no record within ${ms} ms ` +
            `(a record batch larger than parameters.fetch_max_bytes, ${this.o.fetchMaxBytes}, is never delivered` +
            // A stream placed past the SPU's end waits for records that will not come.
            `${offset === start ? "; nor is anything when the partition listing's log start lags the SPU's" : ""})`,
        );
      } catch (e) {
        const msg = asError(e).message;
        const evicted = EVICTED.exec(msg);
        if (!evicted) throw new SinkError(`reading offset ${offset} from ${this.where()} failed: ${msg}`);
        // The SPU removed records since the listing: the same choice as for the listing's log start.
        const next = BigInt(evicted[2] as string);
        if (next <= offset)
          throw new SinkError(`reading offset ${offset} from ${this.where()} failed: ${msg}`);
        if (this.o.onLostRecords === "error") throw new SinkError(this.lostMessage(offset, next - 1n));
        this.o.log.error(
          "records were removed by retention before this sink applied them; continuing after them",
          { from: offset, to: next - 1n, lost: next - offset },
        );
        lost = { from: offset, count: next - offset };
        this.bounds = { start: next, end: b.end };
        // The stream that answered with the error delivers nothing more.
        this.openStreams--;
        if (next >= b.end) return;
        // Index 0: the first record the SPU has, which its error just named.
        stream = await this.openStream(0);
        offset = next - 1n;
        continue;
      }
      if (r.done || !r.value)
        throw new SinkError(`${this.where()}: the stream ended at offset ${offset}, before the end ${b.end}`);
      let value: string;
      let invalid: RecordError | undefined;
      try {
        value = this.decoder.decode(r.value.value());
      } catch {
        // Handed on, flagged: it belongs to a source transaction that poison handling sets aside.
        value = new TextDecoder("utf-8", { ignoreBOM: true }).decode(r.value.value());
        invalid = new RecordError(offset, `not valid UTF-8 (in ${this.where()})`);
      }
      if (opts.unverified) {
        await this.checkPosition(offset, r.value.value(), b.end);
        opts = { ...opts, unverified: false };
      }
      // The last record up to the end the cluster reported: nothing of the stream is left undelivered
      // (counted before handing it over, as the caller may stop right after it).
      if (offset + 1n === b.end) this.openStreams--;
      // One at a time: the client hands over one record per call.
      yield [{ offset, value, ...(lost && { lost }), ...(invalid && { invalid }) }];
      lost = undefined;
    }
  }

  /** The first record of a stream placed `back` records before the SPU's end. */
  private async probe(back: bigint, offset: bigint): Promise<Buffer | null> {
    const stream = await this.openStream(Number(back), "end");
    const r: { done: boolean; value?: NativeRecord } = await withTimeout(
      Promise.resolve(stream.next()),
      this.o.readTimeoutMs,
      () => `checking the position of offset ${offset} on ${this.where()}`,
    );
    return r.value ? Buffer.from(r.value.value()) : null;
  }

  /**
   * The stream was placed by the listing's log start, which can lag the SPU's (a quiet topic after
   * retention): then every record would carry the wrong offset. A second read placed by the end (the
   * high watermark, exact on a quiet topic) must find the same record. Where the SPU has evicted the
   * offset, both reads are clamped to its log start and agree; only at the listing's log start can
   * that hide, so there a read one record later must find a different one. Used only when there is
   * no fingerprint to check (a sink's first run), as it costs extra streams.
   */
  private async checkPosition(offset: bigint, bytes: ArrayBuffer, end: bigint): Promise<void> {
    const first = await this.probe(end - offset, offset);
    let ok = first?.equals(Buffer.from(bytes)) ?? false;
    if (ok && offset === this.bounds?.start && offset + 1n < end)
      ok = !(await this.probe(end - offset - 1n, offset))?.equals(first as Buffer);
    if (!ok)
      throw new SinkError(
        `${this.where()}: cannot place offset ${offset}: counted from the log start the partition listing ` +
          `reports (${this.bounds?.start}) and from its end (${end}) it is not the same record, so the ` +
          "listing lags the SPU (after retention, or while records are being written). Applied nothing; " +
          "a later run retries.",
      );
  }

  /** The high watermark read for this run (or now, if nothing was read). */
  async endOffset(): Promise<bigint> {
    return (this.bounds ?? (await this.partitionBounds())).end;
  }

  async close(): Promise<void> {
    // The native client has no close(); its sockets do not keep the process alive, pending reads do,
    // and a bounded read leaves none. Nor can a stream be closed: one left before its end goes on
    // receiving what the SPU pushes, on the connection a later stream would share, where it can hold
    // up that stream's opening. So a client is kept for the next run only if every stream this run
    // opened was read to the end the cluster reported (a run that caught up, an idle run's check of
    // its last record); a stream opened on a kept client that does not answer is retried once on a
    // new connection.
    if (this.openStreams > 0) this.forget();
    this.admin = undefined;
    this.consumer = undefined;
  }
}
