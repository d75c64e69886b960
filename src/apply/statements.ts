import { qualified, quoteIdent } from "./sql.js";

/**
 * Set-wise statements. Net inserts are a COPY into the table (the cheapest way in, and the column's
 * own input function parses each text value, as the subscriber's does). Everything else sends each
 * column as one text[] parameter, unnest() turns the arrays back into rows, and every value is cast
 * from PostgreSQL's text form to the target column's type on the server. So one round trip applies
 * any number of rows, and no value is ever spliced into SQL.
 */

export interface TableShape {
  schema: string;
  name: string;
  /** Target column names, in source column order. */
  columns: string[];
  /** Per column, the type to cast text to. */
  casts: string[];
  /** Per column: the target computes it (a generated column), so it is never written. */
  generated?: boolean[];
  /** Per column: GENERATED ALWAYS AS IDENTITY on the target; writing it needs OVERRIDING SYSTEM VALUE. */
  identityAlways?: boolean[];
  /** Every column of the target table it may write (for a row rebuilt by replaceRows). */
  targetColumns?: string[];
}

export type Cell = string | null;

export interface Statement {
  sql: string;
  /** The rows it applies, as the planner built them; never copied or transposed here. */
  rows: Cell[][];
  /**
   * Which cells of each row it sends, in order: the i-th is parameter $i+1 (a text[] holding that
   * cell of every row) or, for a COPY, the i-th column of each line.
   */
  cells: number[];
  /** `sql` is a COPY ... FROM STDIN (text format) that reads `rows`; it touches the rows it inserts. */
  copy?: boolean;
  /** The statement returns one row (n, upserted) instead of a row count: an insert with on_conflict upsert. */
  counts?: boolean;
}

/** The statement's parameters, one array per sent cell (what its text[] parameters hold). */
export function paramsOf(s: Statement): Cell[][] {
  return s.cells.map((c) => s.rows.map((r) => r[c] as Cell));
}

function unnestFrom(arrays: number, names: string[], ordinality = false, rows = 0): string {
  // A table without columns (all dropped on the source) still has rows: count them off instead.
  if (arrays === 0) return `generate_series(1, ${rows}) AS v(ord)`;
  const args = Array.from({ length: arrays }, (_, i) => `$${i + 1}::text[]`).join(", ");
  return `unnest(${args})${ordinality ? " WITH ORDINALITY" : ""} AS v(${[...names, ...(ordinality ? ["ord"] : [])].join(", ")})`;
}

function valueExpr(alias: string, cast: string, rel = "v"): string {
  return `${rel}.${alias}::${cast}`;
}

const writable = (t: TableShape, c: number) => !t.generated?.[c];

/**
 * Inserts rows (each row holds the values of `cols`). Columns the target generates are left to it;
 * GENERATED ALWAYS identity columns take the source's value (COPY writes given identity values as
 * OVERRIDING SYSTEM VALUE does). With `upsertKey`, a row whose key the target already has updates
 * that row (a seeded target) and the statement counts how many did: COPY cannot, so that is an
 * INSERT ... ON CONFLICT.
 */
export function insertRows(t: TableShape, cols: number[], rows: Cell[][], upsertKey?: number[]): Statement {
  const cells = cols.flatMap((c, i) => (writable(t, c) ? [i] : []));
  const used = cells.map((i) => cols[i] as number);
  const names = used.map((c) => quoteIdent(t.columns[c] as string)).join(", ");
  // A table with nothing to write (every column dropped or generated) still takes rows: INSERT them.
  if (!upsertKey && used.length > 0)
    return { sql: `COPY ${qualified(t.schema, t.name)} (${names}) FROM STDIN`, rows, cells, copy: true };
  const aliases = used.map((_, i) => `c${i}`);
  const overriding = used.some((c) => t.identityAlways?.[c]) ? " OVERRIDING SYSTEM VALUE" : "";
  const list = used.length > 0 ? ` (${names})` : "";
  let sql =
    `INSERT INTO ${qualified(t.schema, t.name)}${list}${overriding} ` +
    `SELECT ${used.map((c, i) => valueExpr(aliases[i] as string, t.casts[c] as string)).join(", ")} ` +
    `FROM ${unnestFrom(used.length, aliases, false, rows.length)}`;
  if (!upsertKey) return { sql, rows, cells };
  const keySet = new Set(upsertKey);
  const set = used.filter((c) => !keySet.has(c) && !t.identityAlways?.[c]);
  const col = (c: number) => quoteIdent(t.columns[c] as string);
  sql +=
    ` ON CONFLICT (${upsertKey.map(col).join(", ")}) ` +
    (set.length > 0
      ? `DO UPDATE SET ${set.map((c) => `${col(c)} = EXCLUDED.${col(c)}`).join(", ")}`
      : "DO NOTHING");
  // xmax is set on a row ON CONFLICT updated and 0 on one it inserted; DO NOTHING returns no row.
  const counts =
    set.length > 0
      ? "count(*)::int AS n, count(*) FILTER (WHERE up)::int AS upserted"
      : `${rows.length}::int AS n, ${rows.length}::int - count(*)::int AS upserted`;
  return {
    sql: `WITH r AS (${sql} RETURNING xmax::text <> '0' AS up) SELECT ${counts} FROM r`,
    rows,
    cells,
    counts: true,
  };
}

export interface MatchSpec {
  /** Columns that identify the row. */
  cols: number[];
  /**
   * "key": equality on key columns (index-friendly). "full": every old column must be equal, NULLs
   * included, compared by text form so types without an equality operator (json, point) work too;
   * each change then touches exactly one row even among duplicates.
   */
  mode: "key" | "full";
}

function matchCondition(t: TableShape, m: MatchSpec, aliases: string[], table: string): string {
  if (m.mode === "key") {
    return m.cols
      .map(
        (c, i) =>
          `${table}.${quoteIdent(t.columns[c] as string)} = ${valueExpr(aliases[i] as string, t.casts[c] as string)}`,
      )
      .join(" AND ");
  }
  // No columns: every row matches (each change still touches exactly one).
  if (m.cols.length === 0) return "true";
  // Row text output tells NULL from '' and is hashable, so the join need not be a nested loop.
  const left = m.cols.map((c) => `${table}.${quoteIdent(t.columns[c] as string)}::text`).join(", ");
  const right = m.cols
    .map((c, i) => `(${valueExpr(aliases[i] as string, t.casts[c] as string)})::text`)
    .join(", ");
  return `(ROW(${left}, NULL))::text = (ROW(${right}, NULL))::text`;
}

/** UPDATE rows: each row is [...match values, ...set values]. */
export function updateRows(t: TableShape, match: MatchSpec, allSetCols: number[], rows: Cell[][]): Statement {
  const n = match.cols.length;
  const keep = allSetCols.flatMap((c, i) => (writable(t, c) ? [i] : []));
  const setCols = keep.map((i) => allSetCols[i] as number);
  const cells = [...match.cols.keys(), ...keep.map((i) => n + i)];
  if (setCols.length === 0) {
    // Nothing the target lets us write: still find the rows, so missing ones are counted.
    return touchRows(t, match, rows);
  }
  const mAliases = match.cols.map((_, i) => `m${i}`);
  const sAliases = setCols.map((_, i) => `s${i}`);
  const target = qualified(t.schema, t.name);
  const set = (rel: string) =>
    setCols
      .map(
        (c, i) =>
          `${quoteIdent(t.columns[c] as string)} = ${valueExpr(sAliases[i] as string, t.casts[c] as string, rel)}`,
      )
      .join(", ");
  const width = mAliases.length + sAliases.length;
  if (match.mode === "key") {
    const sql =
      `UPDATE ${target} AS t SET ${set("v")} FROM ${unnestFrom(width, [...mAliases, ...sAliases])} ` +
      `WHERE ${matchCondition(t, match, mAliases, "t")}`;
    return { sql, rows, cells };
  }
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(width, [...mAliases, ...sAliases], true, rows.length)}), ` +
    `hit AS (SELECT DISTINCT ON (v.ord) x.ctid AS tid, v.* FROM ${target} AS x JOIN v ON ${matchCondition(t, match, mAliases, "x")} ORDER BY v.ord, x.ctid) ` +
    `UPDATE ${target} AS t SET ${set("hit")} FROM hit WHERE t.ctid = hit.tid`;
  return { sql, rows, cells };
}

export function deleteRows(t: TableShape, match: MatchSpec, rows: Cell[][]): Statement {
  const aliases = match.cols.map((_, i) => `m${i}`);
  const target = qualified(t.schema, t.name);
  if (match.mode === "key") {
    const sql = `DELETE FROM ${target} AS t USING ${unnestFrom(aliases.length, aliases)} WHERE ${matchCondition(t, match, aliases, "t")}`;
    return { sql, rows, cells: [...match.cols.keys()] };
  }
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(aliases.length, aliases, true, rows.length)}), ` +
    `hit AS (SELECT DISTINCT ON (v.ord) x.ctid AS tid FROM ${target} AS x JOIN v ON ${matchCondition(t, match, aliases, "x")} ORDER BY v.ord, x.ctid) ` +
    `DELETE FROM ${target} AS t USING hit WHERE t.ctid = hit.tid`;
  return { sql, rows, cells: [...match.cols.keys()] };
}

/** Selects (and locks) the rows an update would touch, for an update that writes nothing. */
function touchRows(t: TableShape, match: MatchSpec, rows: Cell[][]): Statement {
  const aliases = match.cols.map((_, i) => `m${i}`);
  const target = qualified(t.schema, t.name);
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(aliases.length, aliases, true, rows.length)}) ` +
    `SELECT DISTINCT ON (v.ord) x.ctid FROM ${target} AS x JOIN v ON ${matchCondition(t, match, aliases, "x")} ORDER BY v.ord, x.ctid FOR UPDATE OF x`;
  return { sql, rows, cells: [...match.cols.keys()] };
}

/**
 * An update that must write a GENERATED ALWAYS identity column (its key moved): UPDATE may only set
 * such a column to DEFAULT, so the row is deleted and inserted again with OVERRIDING SYSTEM VALUE, in
 * one statement. Columns the update does not carry (unchanged TOAST, columns only the target has)
 * keep the deleted row's values. Rows are [...match values, ...set values], as for updateRows.
 */
export function replaceRows(t: TableShape, match: MatchSpec, setCols: number[], rows: Cell[][]): Statement {
  const mAliases = match.cols.map((_, i) => `m${i}`);
  const sAliases = setCols.map((_, i) => `s${i}`);
  const target = qualified(t.schema, t.name);
  const bySource = new Map(setCols.map((c, i) => [t.columns[c] as string, i]));
  const columns = (t.targetColumns ?? t.columns).filter((name) => {
    const c = t.columns.indexOf(name);
    return c === -1 || writable(t, c);
  });
  const exprs = columns.map((name) => {
    const i = bySource.get(name);
    if (i === undefined) return `d.${quoteIdent(name)}`;
    const c = setCols[i] as number;
    return valueExpr(sAliases[i] as string, t.casts[c] as string);
  });
  const width = mAliases.length + sAliases.length;
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(width, [...mAliases, ...sAliases])}), ` +
    `d AS (DELETE FROM ${target} AS t USING v WHERE ${matchCondition(t, match, mAliases, "t")} RETURNING t.*) ` +
    `INSERT INTO ${target} (${columns.map(quoteIdent).join(", ")}) OVERRIDING SYSTEM VALUE ` +
    `SELECT ${exprs.join(", ")} FROM d JOIN v ON ${matchCondition(t, match, mAliases, "d")}`;
  return { sql, rows, cells: Array.from({ length: width }, (_, c) => c) };
}
