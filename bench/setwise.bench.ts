/**
 * `node --import tsx bench/setwise.bench.ts`: how set-wise UPDATE and DELETE should carry their rows.
 * On a real PostgreSQL, for 1k, 10k and 50k rows of a 4-column keyed table, client encoding + wire +
 * server, each in a transaction rolled back (median of BENCH_REPEAT, default 5):
 *   text:    unnest($n::text[]) with JS arrays, serialised by node-postgres as array literals;
 *   binary:  the same statement with each text[] built in binary format (src/apply/encode.ts);
 *   staged:  CREATE TEMP TABLE ... ON COMMIT DROP, COPY the rows into it, UPDATE/DELETE ... FROM it,
 *            all three pipelined in one round trip.
 * And net inserts: INSERT ... SELECT unnest (binary text[]) against COPY into the table.
 */
import pg from "pg";
import { copyChunks, textArray } from "../src/apply/encode.js";
import { pipeline, type Sent } from "../src/apply/pipeline.js";
import {
  type Cell,
  deleteRows,
  insertRows,
  paramsOf,
  type TableShape,
  updateRows,
} from "../src/apply/statements.js";
import { startPostgres } from "../test/support/pg.js";

const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
const out = (s: string) => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

const shape: TableShape = {
  schema: "public",
  name: "bw",
  columns: ["id", "a", "b", "c"],
  casts: ['"pg_catalog"."int4"', '"pg_catalog"."text"', '"pg_catalog"."int8"', '"pg_catalog"."timestamptz"'],
};
const key = { cols: [0], mode: "key" as const };

function rowsOf(n: number, from: number): Cell[][] {
  return Array.from({ length: n }, (_, i) => [
    String(from + i),
    `value ${i} with some text, quotes " and a backslash \\ ü`,
    String(2n ** 60n + BigInt(i)),
    "2026-01-02 03:04:05.123456+00",
  ]);
}

async function timed(client: pg.Client, fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    await client.query("BEGIN");
    const t = process.hrtime.bigint();
    await fn();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    await client.query("ROLLBACK");
  }
  return median(ms);
}

const binary = (sql: string, rows: Cell[][], cells: number[]): Sent => ({
  sql,
  params: cells.map((c) => textArray(rows, c)),
});

async function main(): Promise<void> {
  const server = await startPostgres();
  const client = new pg.Client({ connectionString: await server.createDatabase("setwise") });
  await client.connect();
  try {
    await client.query(`CREATE TABLE bw (id int PRIMARY KEY, a text, b bigint, c timestamptz)`);
    await client.query(`INSERT INTO bw SELECT g, 'v' || g, g, now() FROM generate_series(1, 50000) g`);
    await client.query("VACUUM ANALYZE bw");
    out("| rows | op | text[] as text | text[] binary | COPY-staged temp table |");
    out("|---|---|---|---|---|");
    for (const n of [1000, 10000, 50000]) {
      const rows = rowsOf(n, 1);
      const upd = updateRows(shape, key, [1, 2, 3], rows);
      const staged = (op: "update" | "delete"): Sent[] => {
        const cols = op === "update" ? "m0 text, s0 text, s1 text, s2 text" : "m0 text";
        const cells = op === "update" ? [0, 1, 2, 3] : [0];
        const body =
          op === "update"
            ? `UPDATE bw AS t SET a = v.s0::text, b = v.s1::int8, c = v.s2::timestamptz FROM fps_stage AS v WHERE t.id = v.m0::int4`
            : `DELETE FROM bw AS t USING fps_stage AS v WHERE t.id = v.m0::int4`;
        return [
          { sql: `CREATE TEMP TABLE fps_stage (${cols}) ON COMMIT DROP` },
          { sql: "COPY fps_stage FROM STDIN", copy: copyChunks(rows, cells) },
          { sql: body },
        ];
      };
      const updText = await timed(client, () => client.query({ text: upd.sql, values: paramsOf(upd) }));
      const updBin = await timed(client, () =>
        pipeline(client, [binary(upd.sql, rows, upd.cells)], new Set()),
      );
      const updStaged = await timed(client, () => pipeline(client, staged("update"), new Set()));
      out(
        `| ${n} | update | ${updText.toFixed(1)} ms | ${updBin.toFixed(1)} ms | ${updStaged.toFixed(1)} ms |`,
      );
      const del = deleteRows(shape, key, rows);
      const delText = await timed(client, () => client.query({ text: del.sql, values: paramsOf(del) }));
      const delBin = await timed(client, () =>
        pipeline(client, [binary(del.sql, rows, del.cells)], new Set()),
      );
      const delStaged = await timed(client, () => pipeline(client, staged("delete"), new Set()));
      out(
        `| ${n} | delete | ${delText.toFixed(1)} ms | ${delBin.toFixed(1)} ms | ${delStaged.toFixed(1)} ms |`,
      );
      const fresh = rowsOf(n, 100001);
      const copy = insertRows(shape, [0, 1, 2, 3], fresh);
      const ins = insertRows(shape, [0, 1, 2, 3], fresh, [0]);
      const insText = await timed(client, () => client.query({ text: ins.sql, values: paramsOf(ins) }));
      const insBin = await timed(client, () =>
        pipeline(client, [binary(ins.sql, fresh, ins.cells)], new Set()),
      );
      const insCopy = await timed(client, () =>
        pipeline(client, [{ sql: copy.sql, copy: copyChunks(fresh, copy.cells) }], new Set()),
      );
      out(
        `| ${n} | insert (upsert statement / COPY) | ${insText.toFixed(1)} ms | ${insBin.toFixed(1)} ms | COPY into the table: ${insCopy.toFixed(1)} ms |`,
      );
    }
  } finally {
    await client.end();
    await server.stop();
  }
}

await main();
