import type pg from "pg";
import { tableKey } from "./model.js";

/**
 * What the target's own definitions demand of the sink's writes, for the tables it follows: which
 * columns it generates itself or fills as GENERATED ALWAYS identities, and which tables reference
 * which through foreign keys (to order statements where the replica role cannot be set).
 */

export interface TableTraits {
  /** Columns the target computes (attgenerated): never written. */
  generated: Set<string>;
  /** GENERATED ALWAYS AS IDENTITY columns: written with OVERRIDING SYSTEM VALUE. */
  identityAlways: Set<string>;
  /** Every column of the table the sink may write, in table order. */
  columns: string[];
  /** tableKey of each other table this one references by a foreign key. */
  parents: Set<string>;
  /** tableKey of each table (itself included) whose foreign key acts ON DELETE (CASCADE, SET NULL/DEFAULT) on this one. */
  actedOnBy: Set<string>;
}

/** Keyed by tableKey(schema, name). */
export type TargetTraits = Map<string, TableTraits>;

/** Reads the traits of the named tables (those that exist) in two queries. */
export async function loadTargetTraits(
  client: pg.ClientBase,
  tables: Iterable<[schema: string, name: string]>,
): Promise<TargetTraits> {
  const traits: TargetTraits = new Map();
  const names = new Map<string, [string, string]>();
  for (const [s, t] of tables) names.set(tableKey(s, t), [s, t]);
  if (names.size === 0) return traits;
  const params = [[...names.values()].map((x) => x[0]), [...names.values()].map((x) => x[1])];
  const cols = await client.query<{ s: string; t: string; col: string; gen: boolean; always: boolean }>(
    `SELECT n.nspname AS s, c.relname AS t, a.attname AS col, a.attgenerated <> '' AS gen, a.attidentity = 'a' AS always
       FROM unnest($1::text[], $2::text[]) AS w(s, t)
       JOIN pg_namespace n ON n.nspname = w.s
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t AND c.relkind IN ('r', 'p')
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY n.nspname, c.relname, a.attnum`,
    params,
  );
  for (const r of cols.rows) {
    const key = tableKey(r.s, r.t);
    let t = traits.get(key);
    if (!t) {
      t = {
        generated: new Set(),
        identityAlways: new Set(),
        columns: [],
        parents: new Set(),
        actedOnBy: new Set(),
      };
      traits.set(key, t);
    }
    if (r.gen) t.generated.add(r.col);
    else t.columns.push(r.col);
    if (r.always) t.identityAlways.add(r.col);
  }
  const fks = await client.query<{ cs: string; ct: string; ps: string; pt: string; acts: boolean }>(
    `WITH w AS (
       SELECT c.oid FROM unnest($1::text[], $2::text[]) AS w(s, t)
         JOIN pg_namespace n ON n.nspname = w.s
         JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t)
     SELECT DISTINCT cn.nspname AS cs, c.relname AS ct, pn.nspname AS ps, p.relname AS pt,
            k.confdeltype IN ('c', 'n', 'd') AS acts
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE k.contype = 'f' AND k.conrelid IN (SELECT oid FROM w) AND k.confrelid IN (SELECT oid FROM w)`,
    params,
  );
  for (const r of fks.rows) {
    const child = tableKey(r.cs, r.ct);
    const parent = tableKey(r.ps, r.pt);
    if (child !== parent) traits.get(child)?.parents.add(parent);
    if (r.acts) traits.get(parent)?.actedOnBy.add(child);
  }
  return traits;
}

/**
 * Orders tables so that each comes after the tables it references (parents first). Tables in a
 * cycle keep their given order; a statement that then trips a constraint sends the batch to the
 * exact-order fallback.
 */
export function parentsFirst<T>(items: T[], keyOf: (item: T) => string, traits: TargetTraits): T[] {
  const byKey = new Map(items.map((it) => [keyOf(it), it]));
  const out: T[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (key: string) => {
    if (state.has(key)) return;
    state.set(key, "visiting");
    for (const p of traits.get(key)?.parents ?? []) if (byKey.has(p)) visit(p);
    state.set(key, "done");
    out.push(byKey.get(key) as T);
  };
  for (const it of items) visit(keyOf(it));
  return out;
}
