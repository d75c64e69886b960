import { createReadStream } from "node:fs";
import { access } from "node:fs/promises";
import { createInterface } from "node:readline";
import { SinkError } from "../errors.js";
import type { Source, SourceRecord } from "./source.js";

/**
 * A topic export: one record value a line, the line's index being its offset. Replays a topic for a
 * backfill, or feeds the sink without a cluster.
 */
export class FileSource implements Source {
  readonly description: string;

  constructor(private readonly path: string) {
    this.description = `file ${path}`;
  }

  async *read(from: bigint): AsyncIterable<SourceRecord> {
    await this.check();
    const lines = createInterface({
      input: createReadStream(this.path, { encoding: "utf8" }),
      crlfDelay: Infinity,
    });
    let offset = 0n;
    try {
      for await (const line of lines) {
        if (offset >= from) yield { offset, value: line };
        offset++;
      }
    } finally {
      lines.close();
    }
  }

  async endOffset(): Promise<bigint> {
    await this.check();
    let count = 0n;
    let last = 0x0a;
    for await (const chunk of createReadStream(this.path) as AsyncIterable<Buffer>) {
      let i = chunk.indexOf(0x0a);
      while (i !== -1) {
        count++;
        i = chunk.indexOf(0x0a, i + 1);
      }
      if (chunk.length > 0) last = chunk[chunk.length - 1] as number;
    }
    return last === 0x0a ? count : count + 1n;
  }

  async close(): Promise<void> {}

  private async check(): Promise<void> {
    try {
      await access(this.path);
    } catch {
      throw new SinkError(`source file ${this.path} cannot be read`);
    }
  }
}
