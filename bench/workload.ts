import type pg from "pg";

/**
 * The benchmark's source workload: transactions of 50 changes each, round-robin over 3 tables of
 * different shapes. Each transaction inserts 30 new rows, updates 15 older ones and deletes the 5
 * oldest (a table's first transaction, with nothing to update yet, inserts 50).
 */

export const TABLES = ["orders", "events", "accounts"];

export const TABLES_DDL = `
  CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, total numeric(12,2), status text,
    created timestamptz);
  CREATE TABLE events (id bigint PRIMARY KEY, kind varchar(32), payload jsonb, at timestamptz);
  CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint, name text, opened date);`;

const INSERT: Record<string, string> = {
  orders: `INSERT INTO orders SELECT g, g % 1000, (g * 1.25)::numeric(12,2), 'new',
    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series($a, $b) g`,
  events: `INSERT INTO events SELECT g, 'click', jsonb_build_object('n', g, 'tag', 'x' || g),
    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 millisecond' FROM generate_series($a, $b) g`,
  accounts: `INSERT INTO accounts SELECT g, g * 100, 'account ' || g, date '2026-01-01' + g % 365
    FROM generate_series($a, $b) g`,
};
const UPDATE: Record<string, string> = {
  orders: `UPDATE orders SET status = 'paid', total = total + 1 WHERE id BETWEEN $a AND $b`,
  events: `UPDATE events SET kind = 'view', payload = payload || '{"seen": true}' WHERE id BETWEEN $a AND $b`,
  accounts: `UPDATE accounts SET balance = balance + 7 WHERE id BETWEEN $a AND $b`,
};
const DELETE = (t: string) => `DELETE FROM ${t} WHERE id BETWEEN $a AND $b`;

const fill = (sql: string, a: number, b: number) =>
  sql.replaceAll("$a", String(a)).replaceAll("$b", String(b));

/** Where a workload stands, so it can be run in slices. */
export interface WorkloadProgress {
  transactions: number;
  next: Map<string, number>;
  low: Map<string, number>;
}

export const startWorkload = (): WorkloadProgress => ({
  transactions: 0,
  next: new Map(TABLES.map((t) => [t, 1])),
  low: new Map(TABLES.map((t) => [t, 1])),
});

/**
 * Runs `changes` changes (rounded up to whole 50-change transactions) on the source, continuing
 * `progress` (a fresh workload by default).
 */
export async function applyWorkload(
  source: pg.ClientBase,
  changes: number,
  progress: WorkloadProgress = startWorkload(),
): Promise<void> {
  const { next, low } = progress;
  const end = progress.transactions + Math.ceil(changes / 50);
  for (let k = progress.transactions; k < end; k++) {
    const t = TABLES[k % TABLES.length] as string;
    const n = next.get(t) as number;
    const lo = low.get(t) as number;
    const parts: string[] = [];
    if (n - lo < 20) {
      parts.push(fill(INSERT[t] as string, n, n + 49));
      next.set(t, n + 50);
    } else {
      parts.push(fill(INSERT[t] as string, n, n + 29));
      parts.push(fill(UPDATE[t] as string, lo + 5, lo + 19));
      parts.push(fill(DELETE(t), lo, lo + 4));
      next.set(t, n + 30);
      low.set(t, lo + 5);
    }
    await source.query(`BEGIN; ${parts.join("; ")}; COMMIT`);
    progress.transactions = k + 1;
  }
}
