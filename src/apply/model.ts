import type { Relation } from "../events/types.js";

/** A source relation as the sink last applied it, with how to convert each column on the target. */
export interface CachedRelation {
  relation: Relation;
  /** Per source column: the target type its text value is cast to (no typmod; the column applies it). */
  casts: string[];
  /**
   * The target table this rel_id owns. It differs from the relation's name while the table is parked
   * (moved aside so another rel_id could take its name). Absent in states written before ownership
   * was recorded: then it is the relation's own name.
   */
  table?: OwnedTable;
  /** The sink created the table (so it may follow key changes); absent or false: adopted. */
  created?: boolean;
}

export interface OwnedTable {
  schema: string;
  name: string;
}

/** The target table a cached relation's changes go to. */
export function tableOf(c: CachedRelation): OwnedTable {
  return c.table ?? { schema: c.relation.namespace, name: c.relation.name };
}

/** A type on the target: `ddl` declares a column (with typmod), `cast` converts text to it. */
export interface ResolvedType {
  ddl: string;
  cast: string;
}

export interface TargetColumn {
  name: string;
  cast: string;
}

/** What the target database has, as far as the planner needs to know. */
export interface TargetTable {
  schema: string;
  name: string;
  columns: TargetColumn[];
  /** Name of its primary key constraint; null: none; absent: not known. */
  primaryKey?: string | null;
}

export function tableKey(schema: string, name: string): string {
  return JSON.stringify([schema, name]);
}

export function typeKey(typeId: number, typeModifier: number): string {
  return `${typeId}/${typeModifier}`;
}

/** Source type OIDs below this are built into PostgreSQL and mean the same type on every server. */
export const FIRST_NORMAL_OID = 16384;

export interface Catalog {
  tables: Map<string, TargetTable>;
  /** Keyed by typeKey(source type OID, typmod). */
  types: Map<string, ResolvedType>;
}
