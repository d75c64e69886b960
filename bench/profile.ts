import pg from "pg";
import { loadCatalog } from "../src/apply/catalog.js";
import { executePlan } from "../src/apply/execute.js";
import { plan } from "../src/apply/plan.js";
import { decodeRecord } from "../src/events/decode.js";
import { decodeRecordFast, fastDecode } from "../src/events/fast-decode.js";
import type { Event, Relation } from "../src/events/types.js";
import { FileSource } from "../src/source/file.js";
import { emptyState, ensureStateTable, saveState } from "../src/state.js";

export interface Profile {
  stages: { name: string; ms: number }[];
  generalDecodeMs: number;
  fastDecodeMs: number;
  /** Percentage of records the fast path decoded itself. */
  fastShare: number;
}

/**
 * The steps of one run (src/run.ts) over a whole topic file, each timed on its own: where the sink's
 * time goes (with `exact`, in the exact-order fallback's plan). The target is left as a real run leaves it, so it can be checked against the source.
 */
export async function profileRun(topicFile: string, targetUrl: string, exact = false): Promise<Profile> {
  const stages: { name: string; ms: number }[] = [];
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    stages.push({ name, ms: now - t });
    t = now;
  };

  const client = new pg.Client({ connectionString: targetUrl });
  await client.connect();
  await ensureStateTable(client, "fluvio_sink");
  await client.query("BEGIN");
  await client.query("SET CONSTRAINTS ALL DEFERRED");
  lap("connect, state table, begin");

  const source = new FileSource(topicFile);
  const values: { offset: bigint; value: string }[] = [];
  for await (const group of source.read(0n)) values.push(...group);
  lap("read the file");

  const events: Event[] = values.map((r) => decodeRecordFast(r.offset, r.value));
  lap("parse+decode (fast path)");

  const relations: Relation[] = [];
  for (const ev of events) if (ev.kind === "relation") relations.push(ev.relation);
  const catalog = await loadCatalog(client, relations, new Map());
  lap("catalog");

  const state = emptyState();
  // exact: the exact-order fallback's plan (one statement per change, in source order).
  const planned = plan(events, state, catalog, { exact });
  lap("plan");

  await executePlan(client, planned.steps, "skip", () => {});
  lap("execute");

  await saveState(
    client,
    "fluvio_sink",
    { connector: "bench-prof", topic: "bench-topic", partition: 0 },
    { ...state, ...planned.state, nextOffset: BigInt(values.length), batchLimit: null },
  );
  await client.query("COMMIT");
  lap("save state, commit");
  await client.end();

  // The two decoders alone, on the same records, after the above warmed both up.
  const g0 = performance.now();
  for (const r of values) decodeRecord(r.offset, r.value);
  const generalDecodeMs = performance.now() - g0;
  const f0 = performance.now();
  for (const r of values) decodeRecordFast(r.offset, r.value);
  const fastDecodeMs = performance.now() - f0;
  let fast = 0;
  for (const r of values) if (fastDecode(r.offset, r.value) !== null) fast++;
  return { stages, generalDecodeMs, fastDecodeMs, fastShare: (fast * 100) / values.length };
}
