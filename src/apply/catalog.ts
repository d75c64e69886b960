import type pg from "pg";
import type { Relation } from "../events/types.js";
import {
  type Catalog,
  FIRST_NORMAL_OID,
  type ResolvedType,
  type TargetTable,
  tableKey,
  typeKey,
} from "./model.js";

/**
 * Reads, in two queries, what the planner needs to know about the target: the tables that relation
 * messages name (to adopt them) and how each source column type is spelled on the target.
 *
 * Casts use the type's internal name (pg_catalog.bpchar, not "character"): the SQL spellings imply a
 * default typmod (character = char(1), bit = bit(1)) and would silently truncate. The column's own
 * typmod is applied by the assignment, with the same checks the source had.
 */
export async function loadCatalog(
  client: pg.ClientBase,
  relations: Relation[],
  customTypes: Map<number, { namespace: string; name: string }>,
  /** Tables the batch's rel_ids own under other names (renamed or parked since). */
  ownedTables: { schema: string; name: string }[] = [],
): Promise<Catalog> {
  const tables = new Map<string, TargetTable>();
  const types = new Map<string, ResolvedType>();
  if (relations.length === 0) return { tables, types };

  const names = new Map<string, [string, string]>();
  for (const r of relations) names.set(tableKey(r.namespace, r.name), [r.namespace, r.name]);
  for (const o of ownedTables) names.set(tableKey(o.schema, o.name), [o.schema, o.name]);
  const t = await client.query<{ s: string; t: string; col: string | null; cast: string; pk: string | null }>(
    `SELECT n.nspname AS s, c.relname AS t, a.attname AS col,
            CASE WHEN a.attname IS NOT NULL THEN format('%I.%I', tn.nspname, ty.typname) END AS cast,
            (SELECT k.conname FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS pk
       FROM unnest($1::text[], $2::text[]) AS w(s, t)
       JOIN pg_namespace n ON n.nspname = w.s
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.t AND c.relkind IN ('r', 'p')
       LEFT JOIN (pg_attribute a
            JOIN pg_type ty ON ty.oid = a.atttypid
            JOIN pg_namespace tn ON tn.oid = ty.typnamespace)
         ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY n.nspname, c.relname, a.attnum`,
    [[...names.values()].map((x) => x[0]), [...names.values()].map((x) => x[1])],
  );
  for (const row of t.rows) {
    const key = tableKey(row.s, row.t);
    const table = tables.get(key) ?? { schema: row.s, name: row.t, columns: [], primaryKey: row.pk };
    tables.set(key, table);
    // A table without columns still exists (one row, col NULL).
    if (row.col !== null) table.columns.push({ name: row.col, cast: row.cast });
  }

  const wanted = new Map<string, { oid: number; mod: number }>();
  for (const r of relations)
    for (const c of r.columns)
      wanted.set(typeKey(c.typeId, c.typeModifier), { oid: c.typeId, mod: c.typeModifier });
  const builtin = [...wanted.values()].filter((w) => w.oid < FIRST_NORMAL_OID);
  const custom = [...wanted.values()].filter((w) => w.oid >= FIRST_NORMAL_OID && customTypes.has(w.oid));
  if (builtin.length > 0) {
    const r = await client.query<{ oid: string; mod: number; ddl: string; cast: string }>(
      `SELECT x.o::text AS oid, x.m AS mod, format_type(t.oid, x.m) AS ddl, format('%I.%I', n.nspname, t.typname) AS cast
         FROM unnest($1::int8[], $2::int4[]) AS x(o, m)
         JOIN pg_type t ON t.oid = x.o::oid JOIN pg_namespace n ON n.oid = t.typnamespace`,
      [builtin.map((w) => String(w.oid)), builtin.map((w) => w.mod)],
    );
    for (const row of r.rows) types.set(typeKey(Number(row.oid), row.mod), { ddl: row.ddl, cast: row.cast });
  }
  if (custom.length > 0) {
    // Custom types are matched by name: OIDs differ between servers. The inbound connector sends
    // the type's name as its namespace too, so a real schema match is preferred but not required.
    const r = await client.query<{ src: string; mod: number; ddl: string; cast: string }>(
      `SELECT DISTINCT ON (x.src, x.m) x.src::text AS src, x.m AS mod,
              format_type(t.oid, x.m) AS ddl, format('%I.%I', n.nspname, t.typname) AS cast
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::int4[]) AS x(src, ns, name, m)
         JOIN pg_type t ON t.typname = x.name
         JOIN pg_namespace n ON n.oid = t.typnamespace
        ORDER BY x.src, x.m, (n.nspname = x.ns) DESC, pg_type_is_visible(t.oid) DESC, (n.nspname = 'public') DESC, n.nspname`,
      [
        custom.map((w) => String(w.oid)),
        custom.map((w) => customTypes.get(w.oid)?.namespace ?? ""),
        custom.map((w) => customTypes.get(w.oid)?.name ?? ""),
        custom.map((w) => w.mod),
      ],
    );
    for (const row of r.rows) types.set(typeKey(Number(row.src), row.mod), { ddl: row.ddl, cast: row.cast });
  }
  return { tables, types };
}
