import type pg from "pg";
import { SinkError } from "../errors.js";
import { describeDbError } from "../row-values.js";
import { copyChunks, textArray } from "./encode.js";
import { type Outcome, PipelineError, pipeline, type Sent } from "./pipeline.js";
import type { Step } from "./plan.js";
import type { Cell } from "./statements.js";

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

type DmlStep = Extract<Step, { kind: "dml" }>;

const sameCopy = (a: DmlStep, b: DmlStep) =>
  a.statement.sql === b.statement.sql && a.statement.cells.join() === b.statement.cells.join();

/**
 * Joins consecutive COPYs into the same table and columns into one, rows in order: the rows, their
 * order and every constraint's verdict are those of the separate statements (a COPY inserts rows one
 * by one), and it spares the exact-order fallback a statement per inserted row.
 */
export function coalesceCopies(steps: Step[]): Step[] {
  const out: Step[] = [];
  let group: DmlStep[] = [];
  const close = () => {
    const first = group[0];
    if (!first) return;
    if (group.length === 1) out.push(first);
    else {
      let from = first.fromOffset;
      let to = first.toOffset;
      let n = 0;
      const rows: Cell[][] = [];
      for (const g of group) {
        if (g.fromOffset < from) from = g.fromOffset;
        if (g.toOffset > to) to = g.toOffset;
        n += g.rows;
        for (const r of g.statement.rows) rows.push(r);
      }
      out.push({
        ...first,
        statement: { ...first.statement, rows },
        fromOffset: from,
        toOffset: to,
        rows: n,
      });
    }
    group = [];
  };
  for (const step of steps) {
    if (step.kind === "dml" && step.statement.copy) {
      const prev = group[0];
      if (prev && !sameCopy(prev, step)) close();
      group.push(step);
    } else {
      close();
      out.push(step);
    }
  }
  close();
  return out;
}

function* wire(steps: Step[]): Generator<Sent> {
  for (const step of steps) {
    if (step.kind !== "dml") {
      yield { sql: step.sql };
      continue;
    }
    const st = step.statement;
    // Encoded as the pipeline reaches the statement, so only a slice of the batch is on the wire at once.
    if (st.copy) yield { sql: st.sql, copy: copyChunks(st.rows, st.cells) };
    else yield { sql: st.sql, params: st.cells.map((c) => textArray(st.rows, c)) };
  }
}

function sqlOf(step: Step): string {
  return step.kind === "dml" ? step.statement.sql : step.sql;
}

/**
 * Runs the plan's statements in order on an open transaction, all in one round trip (pipeline.ts):
 * the exact-order fallback's one statement per change costs server time, not a round trip each.
 */
export async function executePlan(
  client: pg.ClientBase,
  steps: Step[],
  missingRows: MissingRows,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): Promise<ExecuteResult> {
  const result: ExecuteResult = { statements: 0, rows: 0, missingRows: 0, upserts: 0 };
  steps = coalesceCopies(steps);
  if (steps.length === 0) return result;
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const step of steps) {
    const sql = sqlOf(step);
    if (seen.has(sql)) repeated.add(sql);
    else seen.add(sql);
  }
  let outcomes: Outcome[];
  try {
    outcomes = await pipeline(client, wire(steps), repeated);
  } catch (e) {
    if (!(e instanceof PipelineError)) throw e;
    const step = steps[e.index];
    if (!step) throw e.error;
    const what = step.kind === "dml" ? step.op : step.kind === "ddl" ? "schema change" : "truncate";
    throw new SinkError(`${describe(step)}: ${what} failed: ${describeDbError(e.error)}`, { cause: e.error });
  }
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i] as Step;
    const out = outcomes[i] as Outcome;
    result.statements++;
    if (step.kind !== "dml") continue;
    let touched = out.rowCount;
    if (step.statement.counts) {
      const row = out.rows[0] as (string | null)[];
      touched = Number(row[0]);
      result.upserts += Number(row[1]);
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
