import type pg from "pg";
import { SinkError } from "../errors.js";
import { describeDbError } from "../row-values.js";
import type { Step } from "./plan.js";

export interface ExecuteResult {
  statements: number;
  rows: number;
  /** Rows an UPDATE or DELETE did not find on the target (skipped, as PostgreSQL's subscriber does). */
  missingRows: number;
  /** Inserted rows whose key the target already had, updated instead (on_conflict: upsert). */
  upserts: number;
}

export type MissingRows = "skip" | "error";

function describe(step: Step): string {
  const at =
    step.kind === "dml"
      ? step.fromOffset === step.toOffset
        ? `offset ${step.fromOffset}`
        : `offsets ${step.fromOffset}..${step.toOffset}`
      : `offset ${step.offset}`;
  return `${at}, table ${step.table}`;
}

/** Runs the plan's statements in order on an open transaction; one round trip per statement. */
export async function executePlan(
  client: pg.ClientBase,
  steps: Step[],
  missingRows: MissingRows,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Promise<ExecuteResult> {
  const result: ExecuteResult = { statements: 0, rows: 0, missingRows: 0, upserts: 0 };
  for (const step of steps) {
    let res: pg.QueryResult;
    try {
      res =
        step.kind === "dml"
          ? await client.query({ text: step.statement.sql, values: step.statement.params })
          : await client.query(step.sql);
    } catch (e) {
      const what = step.kind === "dml" ? step.op : step.kind === "ddl" ? "schema change" : "truncate";
      throw new SinkError(`${describe(step)}: ${what} failed: ${describeDbError(e)}`, { cause: e });
    }
    result.statements++;
    if (step.kind !== "dml") continue;
    let touched = res.rowCount ?? 0;
    if (step.statement.counts) {
      const row = res.rows[0] as { n: number; upserted: number };
      touched = row.n;
      result.upserts += row.upserted;
    }
    result.rows += touched;
    if (touched < step.rows) {
      const missing = step.rows - touched;
      const msg = `${describe(step)}: ${step.op} found ${touched} of ${step.rows} rows on the target`;
      if (missingRows === "error") throw new SinkError(msg);
      result.missingRows += missing;
      warn(`${msg}; ${missing} skipped`, { table: step.table, op: step.op, missing });
    }
  }
  return result;
}
