import { SinkError } from "./errors.js";
import { decodeRecord } from "./events/decode.js";
import type { Event } from "./events/types.js";
import type { Source } from "./source/source.js";

/** Cheap pre-filter: a record that can be a relation or type message (keys never appear in values). */
const SCHEMA_RECORD = /"type"\s*:\s*"(?:relation|type)"/;

/**
 * The relation and type messages from the start of the topic up to and including `upTo`, the last
 * record the original Rust sink applied. That sink rebuilt its relation cache by re-reading the topic
 * on every start; cutting over from it needs the same once. Nothing in these records is applied.
 */
export async function readSchemaHistory(source: Source, upTo: bigint): Promise<Event[]> {
  const out: Event[] = [];
  const gap = (detail: string, cause?: unknown) =>
    new SinkError(
      `cannot cut over from fluvio.offset: the relation messages before offset ${upTo + 1n} are needed to read the records after it, but ${detail}. ` +
        "Re-seed the target from a snapshot of the source and start with parameters.start_lsn (see README, Seeding a target), or restore the topic from its start.",
      cause === undefined ? undefined : { cause },
    );
  let expected = 0n;
  try {
    for await (const group of source.read(0n))
      for (const rec of group) {
        if (rec.offset !== expected)
          throw gap(
            `the topic no longer holds offsets ${expected}..${rec.offset - 1n} (retention removed them)`,
          );
        expected++;
        if (SCHEMA_RECORD.test(rec.value)) {
          const ev = decodeRecord(rec.offset, rec.value);
          if (ev.kind === "relation" || ev.kind === "type") out.push(ev);
        }
        if (rec.offset >= upTo) return out;
      }
  } catch (e) {
    if (e instanceof SinkError && e.message.startsWith("cannot cut over")) throw e;
    if (expected === 0n) throw gap(`reading the topic from offset 0 failed: ${(e as Error).message}`, e);
    throw e;
  }
  throw gap(`the topic ends at offset ${expected}, before the stored offset ${upTo}`);
}
