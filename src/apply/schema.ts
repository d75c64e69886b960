import { RecordError } from "../errors.js";
import type { Column, Relation } from "../events/types.js";
import {
  type CachedRelation,
  type Catalog,
  type OwnedTable,
  type ResolvedType,
  type TargetTable,
  tableKey,
  tableOf,
  typeKey,
} from "./model.js";
import { displayName, qualified, quoteIdent } from "./sql.js";

/**
 * Schema following: turns a relation message into the DDL that makes the target table match it.
 *
 * Pure: it sees the relation cache and a snapshot of the target's catalog, and keeps its own model of
 * the target as its DDL would leave it. Two questions are answered here and nowhere else:
 * - which target table a rel_id owns (ownership moves tables aside so renames that collide resolve in
 *   the order the source made them), and
 * - how the old columns continue into the new ones (mapColumns: by position, as PostgreSQL changes a
 *   table: ADD COLUMN appends, DROP removes, RENAME and type changes keep the place).
 */

export interface SchemaWarning {
  message: string;
  fields: Record<string, unknown>;
}

export interface SchemaChange {
  /** DDL statements, in order. */
  ddl: string[];
  /** rel_ids whose queued row changes must be applied before the DDL (their tables change). */
  flushFirst: number[];
  warnings: SchemaWarning[];
}

/** PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes. */
const MAX_IDENT_BYTES = 63;

/** `base` shortened (on a character boundary) so that `base + suffix` fits in an identifier. */
export function fitName(base: string, suffix: string): string {
  let b = base;
  while (Buffer.byteLength(b + suffix) > MAX_IDENT_BYTES) b = [...b].slice(0, -1).join("");
  return b + suffix;
}

/** Where a rel_id's table waits while another rel_id holds its name. */
export function parkedName(name: string, relId: number): string {
  return fitName(name, `__rel${relId}`);
}

/** Primary key constraints of tables the sink creates are named, so a key change can drop them. */
export function primaryKeyName(table: string, relId: number): string {
  return fitName(table, `__rel${relId}_pkey`);
}

const sameType = (a: Column, b: Column) => a.typeId === b.typeId && a.typeModifier === b.typeModifier;

/**
 * How each new column continues an old one: `from[j]` is the old index of new column j, or -1 for an
 * added column. The survivors of a table change are an order-preserving subsequence of the old
 * columns that fills the prefix of the new list; whatever follows was added. Relation messages do
 * not say which subsequence, so the one that loses the least is taken: the most survivors that kept
 * their name or their type (a column that changed both may as well have been dropped and another
 * added, and a type conversion it does not need can fail), then the most survivors at all, then the
 * most same-name, then same-type pairs.
 */
export function mapColumns(old: Column[], next: Column[]): number[] {
  const m = old.length;
  const n = next.length;
  // The criteria as one number, most significant first (PostgreSQL allows at most 1600 columns).
  const B = 2048;
  const pair = (i: number, j: number) => {
    const name = (old[i] as Column).name === (next[j] as Column).name;
    const type = sameType(old[i] as Column, next[j] as Column);
    return (name || type ? B ** 3 : 0) + B ** 2 + (name ? B : 0) + (type ? 1 : 0);
  };
  // best[i][j]: old[0..i) has become next[0..j) (j survivors), the rest of old[0..i) dropped.
  const best: number[][] = Array.from({ length: m + 1 }, () => new Array<number>(n + 1).fill(-1));
  for (let i = 0; i <= m; i++) (best[i] as number[])[0] = 0;
  for (let i = 1; i <= m; i++)
    for (let j = 1; j <= Math.min(i, n); j++)
      (best[i] as number[])[j] = Math.max(
        (best[i - 1] as number[])[j] as number,
        ((best[i - 1] as number[])[j - 1] as number) + pair(i - 1, j - 1),
      );
  let k = 0;
  for (let j = 1; j <= Math.min(m, n); j++)
    if (((best[m] as number[])[j] as number) > ((best[m] as number[])[k] as number)) k = j;
  const from = new Array<number>(n).fill(-1);
  for (let i = m, j = k; j > 0; i--) {
    const keep = ((best[i - 1] as number[])[j - 1] as number) + pair(i - 1, j - 1);
    if (keep === (best[i] as number[])[j]) {
      from[j - 1] = i - 1;
      j--;
    }
  }
  return from;
}

/**
 * The history that matches columns by name only (drop the old names that are gone, add the new ones),
 * if the new list is consistent with it; null when it is not (some column must have been renamed).
 */
function byNameHistory(old: Column[], next: Column[]): number[] | null {
  const newNames = new Set(next.map((c) => c.name));
  const kept = old.flatMap((c, i) => (newNames.has(c.name) ? [i] : []));
  if (!kept.every((i, j) => (old[i] as Column).name === (next[j] as Column).name)) return null;
  return next.map((_, j) => (j < kept.length ? (kept[j] as number) : -1));
}

function describeHistory(old: Column[], next: Column[], from: number[]): string[] {
  const used = new Set(from);
  const ops = old.flatMap((c, i) => (used.has(i) ? [] : [`drop ${c.name}`]));
  from.forEach((i, j) => {
    const n = next[j] as Column;
    if (i < 0) ops.push(`add ${n.name}`);
    else {
      const o = old[i] as Column;
      if (o.name !== n.name) ops.push(`rename ${o.name} to ${n.name}`);
      if (!sameType(o, n)) ops.push(`change the type of ${n.name}`);
    }
  });
  return ops;
}

/** Key column indices of a relation if the sink gives its table a primary key, else null. */
function primaryKeyOf(rel: Relation): number[] | null {
  if (rel.replicaIdentity !== "default" && rel.replicaIdentity !== "index") return null;
  const key = rel.columns.flatMap((c, i) => (c.key ? [i] : []));
  return key.length > 0 ? key : null;
}

function sameRelation(a: Relation, b: Relation): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class SchemaFollower {
  /** The relation cache as the DDL so far leaves it. */
  readonly relations: Map<number, CachedRelation>;
  /** What the target has (as far as the catalog snapshot told) after the DDL so far. */
  private readonly tables: Map<string, TargetTable>;
  private readonly types: Map<string, ResolvedType>;

  constructor(
    relations: Map<number, CachedRelation>,
    catalog: Catalog,
    /** Custom source types by OID (from type messages), to name them in errors. */
    private readonly customTypes: Map<number, { namespace: string; name: string }>,
  ) {
    this.relations = new Map(relations);
    this.tables = new Map([...catalog.tables].map(([k, t]) => [k, { ...t, columns: [...t.columns] }]));
    this.types = catalog.types;
  }

  /** Tables and types read from the target later (see Planner.learn); what is known stays. */
  learn(catalog: Catalog): void {
    for (const [k, t] of catalog.tables)
      if (!this.tables.has(k)) this.tables.set(k, { ...t, columns: [...t.columns] });
    for (const [k, t] of catalog.types) if (!this.types.has(k)) this.types.set(k, t);
  }

  /** Follows one relation message; null when it changes nothing. */
  follow(rel: Relation, offset: bigint): SchemaChange | null {
    const cached = this.relations.get(rel.relId);
    if (cached) {
      const t = tableOf(cached);
      if (sameRelation(cached.relation, rel) && t.schema === rel.namespace && t.name === rel.name)
        return null;
    }
    const change: SchemaChange = { ddl: [], flushFirst: [rel.relId], warnings: [] };
    const next = cached ? this.evolve(cached, rel, offset, change) : this.adoptOrCreate(rel, offset, change);
    this.relations.set(rel.relId, next);
    return change;
  }

  private resolve(rel: Relation, col: number, offset: bigint): ResolvedType {
    const c = rel.columns[col] as Column;
    const t = this.types.get(typeKey(c.typeId, c.typeModifier));
    if (t) return t;
    const custom = this.customTypes.get(c.typeId);
    throw new RecordError(
      offset,
      custom
        ? `column "${c.name}" has type ${custom.name} (source OID ${c.typeId}), which the target database does not have`
        : `column "${c.name}" has type OID ${c.typeId}, which is not built in and no type message named it`,
      displayName(rel.namespace, rel.name),
    );
  }

  private ownerOf(schema: string, name: string, except: number): number | null {
    for (const [id, c] of this.relations) {
      const t = tableOf(c);
      if (id !== except && t.schema === schema && t.name === name) return id;
    }
    return null;
  }

  private occupied(schema: string, name: string): boolean {
    return this.tables.has(tableKey(schema, name)) || this.ownerOf(schema, name, -1) !== null;
  }

  /** Renames a table in the model and in SQL. */
  private renameTable(from: OwnedTable, to: OwnedTable, change: SchemaChange): void {
    const setSchema = (name: string) => {
      change.ddl.push(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(to.schema)}`);
      change.ddl.push(`ALTER TABLE ${qualified(from.schema, name)} SET SCHEMA ${quoteIdent(to.schema)}`);
    };
    const rename = (schema: string) =>
      change.ddl.push(`ALTER TABLE ${qualified(schema, from.name)} RENAME TO ${quoteIdent(to.name)}`);
    if (from.schema === to.schema) {
      if (from.name !== to.name) rename(from.schema);
    } else if (from.name === to.name) setSchema(from.name);
    else if (this.occupied(to.schema, from.name)) {
      // Moving first would collide with the new schema's table of the old name: rename first.
      rename(from.schema);
      setSchema(to.name);
    } else {
      setSchema(from.name);
      rename(to.schema);
    }
    const key = tableKey(from.schema, from.name);
    const model = this.tables.get(key);
    this.tables.delete(key);
    if (model) this.tables.set(tableKey(to.schema, to.name), { ...model, schema: to.schema, name: to.name });
  }

  /**
   * Frees a table name for `relId`: a table another rel_id owns under it is parked, to be followed to
   * its real name when that rel_id's next relation message arrives (the source renamed or dropped it
   * before it gave the name to `relId`).
   */
  private claim(schema: string, name: string, relId: number, change: SchemaChange): void {
    const owner = this.ownerOf(schema, name, relId);
    if (owner === null) return;
    const cached = this.relations.get(owner) as CachedRelation;
    const parked = { schema, name: parkedName(name, owner) };
    this.renameTable({ schema, name }, parked, change);
    this.relations.set(owner, { ...cached, table: parked });
    change.flushFirst.push(owner);
  }

  private adoptOrCreate(rel: Relation, offset: bigint, change: SchemaChange): CachedRelation {
    this.claim(rel.namespace, rel.name, rel.relId, change);
    const table = { schema: rel.namespace, name: rel.name };
    const key = tableKey(rel.namespace, rel.name);
    const existing = this.tables.get(key);
    if (existing) {
      const casts = rel.columns.map((c, i) => {
        const tc = existing.columns.find((x) => x.name === c.name);
        if (tc) return tc.cast;
        const t = this.resolve(rel, i, offset);
        change.ddl.push(
          `ALTER TABLE ${qualified(rel.namespace, rel.name)} ADD COLUMN ${quoteIdent(c.name)} ${t.ddl}`,
        );
        existing.columns.push({ name: c.name, cast: t.cast });
        return t.cast;
      });
      return { relation: rel, casts, table, created: false };
    }
    const types = rel.columns.map((_, i) => this.resolve(rel, i, offset));
    const defs = rel.columns.map((c, i) => `${quoteIdent(c.name)} ${(types[i] as ResolvedType).ddl}`);
    const key0 = primaryKeyOf(rel);
    const pk = key0 ? primaryKeyName(rel.name, rel.relId) : null;
    if (key0 && pk)
      defs.push(
        `CONSTRAINT ${quoteIdent(pk)} PRIMARY KEY (${key0.map((i) => quoteIdent((rel.columns[i] as Column).name)).join(", ")})`,
      );
    change.ddl.push(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(rel.namespace)}`);
    change.ddl.push(`CREATE TABLE ${qualified(rel.namespace, rel.name)} (${defs.join(", ")})`);
    const casts = types.map((t) => t.cast);
    this.tables.set(key, {
      schema: rel.namespace,
      name: rel.name,
      columns: rel.columns.map((c, i) => ({ name: c.name, cast: casts[i] as string })),
      primaryKey: pk,
    });
    return { relation: rel, casts, table, created: true };
  }

  private evolve(
    cached: CachedRelation,
    rel: Relation,
    offset: bigint,
    change: SchemaChange,
  ): CachedRelation {
    const old = cached.relation;
    const cur = tableOf(cached);
    const table = { schema: rel.namespace, name: rel.name };
    if (cur.schema !== table.schema || cur.name !== table.name) {
      this.claim(table.schema, table.name, rel.relId, change);
      this.renameTable(cur, table, change);
    }
    const key = tableKey(table.schema, table.name);
    const model: TargetTable = this.tables.get(key) ?? {
      ...table,
      columns: old.columns.map((c, i) => ({ name: c.name, cast: cached.casts[i] as string })),
    };
    this.tables.set(key, model);
    const q = qualified(table.schema, table.name);
    const ddl = (sql: string) => change.ddl.push(`ALTER TABLE ${q} ${sql}`);

    const from = mapColumns(old.columns, rel.columns);
    const alternative = byNameHistory(old.columns, rel.columns);
    if (alternative && alternative.join() !== from.join()) {
      const assumed = describeHistory(old.columns, rel.columns, from);
      const other = describeHistory(old.columns, rel.columns, alternative);
      change.warnings.push({
        message: `the relation message cannot tell two histories apart; assumed "${assumed.join(", ")}" (keeps the data), not "${other.join(", ")}"`,
        fields: { table: displayName(rel.namespace, rel.name), offset: offset.toString(), assumed, other },
      });
    }

    // A key change on a table the sink created: drop the old key before its columns change.
    const oldKey = primaryKeyOf(old);
    const newKey = primaryKeyOf(rel);
    const oldKeyMapped = oldKey?.map((i) => from.indexOf(i)) ?? null;
    const keyChanged = (oldKeyMapped?.join() ?? null) !== (newKey?.join() ?? null);
    const followKey = keyChanged && cached.created === true;
    if (followKey && oldKey) {
      if (model.primaryKey === undefined)
        throw new RecordError(
          offset,
          `the replica identity key changed, but the primary key constraint of target table ${displayName(table.schema, table.name)} is not known`,
          displayName(rel.namespace, rel.name),
        );
      if (model.primaryKey !== null) ddl(`DROP CONSTRAINT IF EXISTS ${quoteIdent(model.primaryKey)}`);
      model.primaryKey = null;
    }

    const survivors = new Set(from.filter((i) => i >= 0));
    old.columns.forEach((c, i) => {
      if (survivors.has(i)) return;
      ddl(`DROP COLUMN ${quoteIdent(c.name)}`);
      model.columns = model.columns.filter((x) => x.name !== c.name);
    });
    this.renameColumns(
      from.flatMap((i, j) =>
        i >= 0 ? [{ from: (old.columns[i] as Column).name, to: (rel.columns[j] as Column).name }] : [],
      ),
      model,
      ddl,
    );
    const casts = rel.columns.map((n, j) => {
      const i = from[j] as number;
      const mc = () => model.columns.find((x) => x.name === n.name);
      if (i >= 0 && sameType(old.columns[i] as Column, n)) return cached.casts[i] as string;
      const t = this.resolve(rel, j, offset);
      if (i >= 0) {
        ddl(`ALTER COLUMN ${quoteIdent(n.name)} TYPE ${t.ddl} USING ${quoteIdent(n.name)}::${t.ddl}`);
        const c = mc();
        if (c) c.cast = t.cast;
      } else {
        ddl(`ADD COLUMN ${quoteIdent(n.name)} ${t.ddl}`);
        model.columns.push({ name: n.name, cast: t.cast });
      }
      return t.cast;
    });

    if (followKey && newKey) {
      const pk = primaryKeyName(rel.name, rel.relId);
      ddl(
        `ADD CONSTRAINT ${quoteIdent(pk)} PRIMARY KEY (${newKey.map((j) => quoteIdent((rel.columns[j] as Column).name)).join(", ")})`,
      );
      model.primaryKey = pk;
    }
    return { relation: rel, casts, table, created: cached.created === true };
  }

  /**
   * Renames so that no step collides with a name still in use: a rename waits until its new name is
   * free, and a cycle (a swap) moves one column to a temporary name first.
   */
  private renameColumns(
    renames: { from: string; to: string }[],
    model: TargetTable,
    ddl: (sql: string) => void,
  ): void {
    const todo = renames.filter((r) => r.from !== r.to);
    const rename = (r: { from: string }, to: string) => {
      ddl(`RENAME COLUMN ${quoteIdent(r.from)} TO ${quoteIdent(to)}`);
      const c = model.columns.find((x) => x.name === r.from);
      if (c) c.name = to;
      r.from = to;
    };
    let tmp = 0;
    while (todo.length > 0) {
      const free = todo.findIndex((r) => !todo.some((o) => o.from === r.to));
      if (free >= 0) {
        rename(todo[free] as { from: string; to: string }, (todo[free] as { to: string }).to);
        todo.splice(free, 1);
        continue;
      }
      const taken = new Set([...model.columns.map((c) => c.name), ...renames.map((r) => r.to)]);
      let name = `__fps_tmp_${tmp}`;
      while (taken.has(name)) name = `__fps_tmp_${++tmp}`;
      rename(todo[0] as { from: string }, name);
    }
  }
}
