import { qualified, quoteIdent } from "./sql.js";

/**
 * Set-wise statements: each column travels as one text[] parameter, unnest() turns the arrays back
 * into rows, and every value is cast from PostgreSQL's text form to the target column's type on the
 * server. So one round trip applies any number of rows, and no value is ever spliced into SQL.
 */

export interface TableShape {
  schema: string;
  name: string;
  /** Target column names, in source column order. */
  columns: string[];
  /** Per column, the type to cast text to. */
  casts: string[];
}

export type Cell = string | null;

export interface Statement {
  sql: string;
  params: Cell[][];
}

function unnestFrom(arrays: number, names: string[], ordinality = false): string {
  const args = Array.from({ length: arrays }, (_, i) => `$${i + 1}::text[]`).join(", ");
  return `unnest(${args})${ordinality ? " WITH ORDINALITY" : ""} AS v(${[...names, ...(ordinality ? ["ord"] : [])].join(", ")})`;
}

function valueExpr(alias: string, cast: string, rel = "v"): string {
  return `${rel}.${alias}::${cast}`;
}

/** Transposes rows into one array per column. */
function columnsOf(rows: Cell[][], width: number): Cell[][] {
  const out: Cell[][] = Array.from({ length: width }, () => new Array<Cell>(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as Cell[];
    for (let c = 0; c < width; c++) (out[c] as Cell[])[r] = row[c] as Cell;
  }
  return out;
}

export function insertRows(t: TableShape, cols: number[], rows: Cell[][]): Statement {
  const aliases = cols.map((_, i) => `c${i}`);
  const sql =
    `INSERT INTO ${qualified(t.schema, t.name)} (${cols.map((c) => quoteIdent(t.columns[c] as string)).join(", ")}) ` +
    `SELECT ${cols.map((c, i) => valueExpr(aliases[i] as string, t.casts[c] as string)).join(", ")} ` +
    `FROM ${unnestFrom(cols.length, aliases)}`;
  return { sql, params: columnsOf(rows, cols.length) };
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
  // Row text output tells NULL from '' and is hashable, so the join need not be a nested loop.
  const left = m.cols.map((c) => `${table}.${quoteIdent(t.columns[c] as string)}::text`).join(", ");
  const right = m.cols
    .map((c, i) => `(${valueExpr(aliases[i] as string, t.casts[c] as string)})::text`)
    .join(", ");
  return `(ROW(${left}, NULL))::text = (ROW(${right}, NULL))::text`;
}

/** UPDATE rows: each row is [...match values, ...set values]. */
export function updateRows(t: TableShape, match: MatchSpec, setCols: number[], rows: Cell[][]): Statement {
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
    return { sql, params: columnsOf(rows, width) };
  }
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(width, [...mAliases, ...sAliases], true)}), ` +
    `hit AS (SELECT DISTINCT ON (v.ord) x.ctid AS tid, v.* FROM ${target} AS x JOIN v ON ${matchCondition(t, match, mAliases, "x")} ORDER BY v.ord, x.ctid) ` +
    `UPDATE ${target} AS t SET ${set("hit")} FROM hit WHERE t.ctid = hit.tid`;
  return { sql, params: columnsOf(rows, width) };
}

export function deleteRows(t: TableShape, match: MatchSpec, rows: Cell[][]): Statement {
  const aliases = match.cols.map((_, i) => `m${i}`);
  const target = qualified(t.schema, t.name);
  if (match.mode === "key") {
    const sql = `DELETE FROM ${target} AS t USING ${unnestFrom(aliases.length, aliases)} WHERE ${matchCondition(t, match, aliases, "t")}`;
    return { sql, params: columnsOf(rows, aliases.length) };
  }
  const sql =
    `WITH v AS (SELECT * FROM ${unnestFrom(aliases.length, aliases, true)}), ` +
    `hit AS (SELECT DISTINCT ON (v.ord) x.ctid AS tid FROM ${target} AS x JOIN v ON ${matchCondition(t, match, aliases, "x")} ORDER BY v.ord, x.ctid) ` +
    `DELETE FROM ${target} AS t USING hit WHERE t.ctid = hit.tid`;
  return { sql, params: columnsOf(rows, aliases.length) };
}
