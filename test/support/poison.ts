import { appendFileSync } from "node:fs";
import { decodeRecordFast } from "../../src/events/fast-decode.js";
import { formatLsn } from "../../src/lsn.js";
import type { Pair } from "./harness.js";

/** What the poison tests put in a topic where a record should be: a line that is not JSON. */
export const JUNK = "garbage line";

/** A source transaction by its offsets in the topic, and where it inserted the row looked for. */
export interface Txn {
  from: bigint;
  to: bigint;
  lsn: string;
  insertAt: bigint;
}

/** The source transaction (by offsets in the topic) that inserted `id` into t. */
export function txnInserting(records: string[], id: string): Txn {
  let begin: { offset: bigint; lsn: bigint } | null = null;
  let insertAt: bigint | null = null;
  for (const [i, line] of records.entries()) {
    const offset = BigInt(i);
    if (line === JUNK) continue;
    const ev = decodeRecordFast(offset, line);
    if (ev.kind === "begin") {
      begin = { offset, lsn: ev.finalLsn };
      insertAt = null;
    } else if (ev.kind === "insert" && ev.tuple[0] === id && insertAt === null) insertAt = offset;
    else if (ev.kind === "commit" && insertAt !== null && begin)
      return { from: begin.offset, to: offset, lsn: formatLsn(begin.lsn), insertAt };
  }
  throw new Error(`no transaction inserts ${id}`);
}

/**
 * Moves the source's new transactions into the topic with a line that is not JSON inside the one
 * that inserts `id` into t, right after its begin.
 */
export async function captureWithJunk(p: Pair, id = "11"): Promise<void> {
  const lines = await p.wal_take_lines();
  const base = p.records.length;
  const bad = txnInserting([...p.records, ...lines], id);
  lines.splice(Number(bad.from - BigInt(base)) + 1, 0, JUNK);
  appendFileSync(p.topicFile, `${lines.join("\n")}\n`);
  p.records.push(...lines);
}

/** The error of a run that halts on `bad`, the stored offset staying `stored`. */
export function haltMessage(bad: Txn, detail: string, stored: string, tables = "public.t, public.u"): string {
  return (
    `source transaction at offsets ${bad.from}..${bad.to} (LSN ${bad.lsn}, tables ${tables}) failed: ` +
    `${detail.replace(/\.$/, "")}. Applied nothing; the stored offset stays ${stored}. Fix the cause, e.g. the target table, and ` +
    `run again; or get past it on purpose, audited: fluvio-postgres-sink skip --config <file> --offset ${bad.from} ` +
    `--reason "<why>" --yes; or set parameters.on_error: dead_letter`
  );
}

/** Why t's row inserted at `at` fails: the CHECK (v < 100) only the target has. */
export const checkDetail = (at: bigint) =>
  `offset ${at}, table public.t: insert failed: new row for relation "t" violates check constraint "v_small" ` +
  "(SQLSTATE 23514); Failing row contains (…).";

/** Why the JUNK line at `at` fails. */
export const junkDetail = (at: bigint) =>
  `record at offset ${at}: malformed JSON: unexpected 'g' at character 0`;

/** A table's rows as text, in key order, but for the ids in `except`. */
export async function rows(c: Pair["source"], table: string, except: number[] = []): Promise<string[]> {
  const r = await c.query(`SELECT x::text AS r FROM ${table} x WHERE NOT (id = ANY($1::int[])) ORDER BY id`, [
    except,
  ]);
  return r.rows.map((row) => row.r as string);
}
