import { RecordError } from "../errors.js";
import {
  type DeleteEvent,
  type Event,
  type InsertEvent,
  type Relation,
  type RelationEvent,
  type TruncateEvent,
  UNCHANGED,
  type UpdateEvent,
  type Value,
} from "../events/types.js";
import { parentsFirst, type TableTraits, type TargetTraits } from "./constraints.js";
import { type CachedRelation, type Catalog, tableKey, tableOf } from "./model.js";
import { SchemaFollower, type SchemaWarning } from "./schema.js";
import { displayName, qualified } from "./sql.js";
import {
  type Cell,
  deleteRows,
  insertRows,
  type MatchSpec,
  replaceRows,
  type Statement,
  type TableShape,
  updateRows,
} from "./statements.js";

/**
 * Turns decoded events into the statements that make the target equal the source.
 *
 * Pure: it sees the relation cache, a snapshot of the target's catalog and the events, never a
 * connection. The meaning of each message follows PostgreSQL's own apply worker; the speed comes
 * from collapsing the changes to each row of a keyed table into their net effect and applying each
 * table's net changes as a handful of set-wise statements. That reordering is invisible because the
 * whole batch commits as one target transaction, and it never crosses a DDL or TRUNCATE.
 */

export interface PlanState {
  relations: Map<number, CachedRelation>;
  /** Custom (non built-in) source types by OID, from `type` messages. */
  types: Map<number, { namespace: string; name: string }>;
  lastCommitLsn: bigint | null;
  /** The batch starts inside a source transaction whose first part an earlier run applied. */
  inTransaction: boolean;
}

export type Step =
  | { kind: "ddl"; sql: string; table: string; offset: bigint }
  | {
      kind: "dml";
      op: "insert" | "update" | "delete";
      statement: Statement;
      table: string;
      fromOffset: bigint;
      toOffset: bigint;
      /** Rows this statement must touch; fewer means rows the target lacks. */
      rows: number;
    }
  | { kind: "truncate"; sql: string; table: string; offset: bigint };

export interface PlanStats {
  transactions: number;
  skippedTransactions: number;
  inserts: number;
  updates: number;
  deletes: number;
  truncates: number;
}

export function emptyPlanStats(): PlanStats {
  return { transactions: 0, skippedTransactions: 0, inserts: 0, updates: 0, deletes: 0, truncates: 0 };
}

export interface Plan {
  steps: Step[];
  state: PlanState;
  stats: PlanStats;
  /** Things the run should log (ambiguous schema histories). */
  warnings: SchemaWarning[];
  /**
   * With foreignKeyOrder: some set-wise order would let a target ON DELETE action (CASCADE, SET
   * NULL) reach a row the source kept, silently; only exact source order is safe for this batch.
   */
  needsExactOrder: boolean;
}

export interface PlanOptions {
  /**
   * No collapsing: every change becomes its own statement, in source order. The fallback when a
   * statement of the optimised plan trips a constraint the source order kept.
   */
  exact?: boolean;
  /** The target's generated/identity columns and foreign keys (see constraints.ts). */
  traits?: TargetTraits;
  /** upsert: an insert of a key the target already has updates that row (a seeded target). */
  onConflict?: "error" | "upsert";
  /**
   * Order statements by the target's foreign keys (traits): the login may not set the replica
   * role, so the target's foreign-key checks and actions fire on every statement.
   */
  foreignKeyOrder?: boolean;
  /**
   * The seed snapshot's consistent point: source transactions whose commit LSN is before it are in
   * the target's seed and skipped. One whose commit record starts exactly there is not in the
   * snapshot (logical decoding decodes it: SnapBuildXactNeedsSkip), so it is applied.
   */
  startLsn?: bigint | null;
}

export function plan(
  events: Iterable<Event>,
  state: PlanState,
  catalog: Catalog,
  options: PlanOptions = {},
): Plan {
  const p = new Planner(state, catalog, options);
  for (const ev of events) p.add(ev);
  return p.finish();
}

type EntryState = "insert" | "update" | "delete" | "replace" | "gone";

/** The net effect so far of the changes to one row (by key) of a keyed table. */
interface Entry {
  state: EntryState;
  /** Key the row had before the batch touched it (how the target finds it). */
  match: Value[];
  /** Full row image after the changes; may hold UNCHANGED for "update". */
  image: Value[] | null;
  /** `image` is the planner's own array (events stay untouched: a fallback plans them again). */
  ownImage: boolean;
  from: bigint;
  to: bigint;
}

interface KeyedPending {
  kind: "keyed";
  rel: CachedRelation;
  keyCols: number[];
  entries: Map<string, Entry>;
}

interface Run {
  op: "insert" | "update" | "delete";
  setCols: number[];
  rows: Cell[][];
  seen: Set<string>;
  from: bigint;
  to: bigint;
}

/** Tables without a key (REPLICA IDENTITY FULL): changes stay in order, one row touched each. */
interface OrderedPending {
  kind: "ordered";
  rel: CachedRelation;
  runs: Run[];
}

type Pending = KeyedPending | OrderedPending;

interface Phases {
  /** Rows deleted and inserted again under the same key: the delete frees the key. */
  replaces: Step[];
  deletes: Step[];
  updates: Step[];
  inserts: Step[];
}

function shapeOf(rel: CachedRelation, traits?: TableTraits): TableShape {
  const t = tableOf(rel);
  const columns = rel.relation.columns.map((c) => c.name);
  return {
    schema: t.schema,
    name: t.name,
    columns,
    casts: rel.casts,
    ...(traits && {
      generated: columns.map((c) => traits.generated.has(c)),
      identityAlways: columns.map((c) => traits.identityAlways.has(c)),
      targetColumns: traits.columns,
    }),
  };
}

function nameOf(r: Relation): string {
  return displayName(r.namespace, r.name);
}

/**
 * The identity of a row as one string, for the planner's sets: equal exactly when the values are.
 * Each value is written as its length, a colon and its text, or as "N" for NULL and "U" for an
 * unchanged TOAST value, so the string reads back one way only: no text can pass for another split
 * of the values, for a NULL, or for an empty string, and no row for one of another width.
 */
export function rowKey(values: readonly Value[]): string {
  let k = "";
  for (const v of values)
    k += v === null ? "N" : v === UNCHANGED ? "U" : `${(v as string).length}:${v as string}`;
  return k;
}

/**
 * A replica identity key (never NULL or unchanged: keyOf refuses those) as one string, for a
 * table's map of pending rows. A one-column key is its own text: every key in one map has the same
 * number of columns, and among one-column keys the text alone tells them apart.
 */
export function keyString(key: readonly Value[]): string {
  return key.length === 1 && typeof key[0] === "string" ? key[0] : rowKey(key);
}

/** The key columns' values of a tuple. */
function keyValues(tuple: readonly Value[], cols: readonly number[]): Value[] {
  const key = new Array<Value>(cols.length);
  for (let i = 0; i < cols.length; i++) key[i] = tuple[cols[i] as number] as Value;
  return key;
}

/** `newer` with its unchanged-TOAST values taken from `older`, written into `into`. */
function merge(newer: readonly Value[], older: readonly Value[], into: Value[]): Value[] {
  for (let i = 0; i < newer.length; i++) {
    const v = newer[i] as Value;
    into[i] = v === UNCHANGED ? (older[i] as Value) : v;
  }
  return into;
}

function hasState(p: KeyedPending, state: EntryState): boolean {
  for (const e of p.entries.values()) if (e.state === state) return true;
  return false;
}

/** No match values (an insert's entry): one array for all of them. */
const NO_MATCH: Value[] = [];

/**
 * A planner fed a batch piece by piece (segmented apply, src/segmented-apply.ts): `cut` hands over
 * the statements for everything added so far, as if the batch ended there, while the relation
 * cache, the schema it follows and the open transaction carry on into the next piece.
 */
export class Planner {
  private readonly steps: Step[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly schema: SchemaFollower;
  private readonly relations: Map<number, CachedRelation>;
  private readonly types: Map<number, { namespace: string; name: string }>;
  private readonly warnings: SchemaWarning[] = [];
  private lastCommitLsn: bigint | null;
  private inTxn: boolean;
  private skipping = false;
  /** The transaction being skipped is older than start_lsn (in the seed), not a re-send. */
  private seeded = false;
  private needsExactOrder = false;
  private txnLsn: bigint | null = null;
  private readonly stats: PlanStats = emptyPlanStats();

  constructor(
    state: PlanState,
    catalog: Catalog,
    private readonly options: PlanOptions = {},
  ) {
    this.types = new Map(state.types);
    this.schema = new SchemaFollower(state.relations, catalog, this.types);
    this.relations = this.schema.relations;
    this.lastCommitLsn = state.lastCommitLsn;
    this.inTxn = state.inTransaction;
  }

  add(ev: Event): void {
    this.dispatch(ev);
    if (this.options.exact) this.flushAll();
  }

  private dispatch(ev: Event): void {
    switch (ev.kind) {
      case "begin":
        if (this.inTxn)
          throw new RecordError(ev.offset, "begin inside a source transaction that never committed");
        this.inTxn = true;
        this.txnLsn = ev.finalLsn;
        // The inbound connector re-sends transactions after a restart; commit LSNs tell them apart.
        this.skipping = this.lastCommitLsn !== null && ev.finalLsn <= this.lastCommitLsn;
        this.seeded =
          !this.skipping &&
          this.options.startLsn !== undefined &&
          this.options.startLsn !== null &&
          ev.finalLsn < this.options.startLsn;
        if (this.seeded) this.skipping = true;
        return;
      case "commit":
        if (!this.inTxn) throw new RecordError(ev.offset, "commit without a begin");
        if (this.txnLsn !== null && ev.commitLsn !== this.txnLsn)
          throw new RecordError(
            ev.offset,
            `commit_lsn ${ev.commitLsn} does not match the begin's final_lsn ${this.txnLsn}`,
          );
        if (this.skipping) this.stats.skippedTransactions++;
        else {
          this.stats.transactions++;
          this.lastCommitLsn = ev.commitLsn;
        }
        this.inTxn = false;
        this.skipping = false;
        this.seeded = false;
        this.txnLsn = null;
        return;
      case "origin":
        return;
      case "type":
        this.types.set(ev.id, { namespace: ev.namespace, name: ev.name });
        return;
    }
    if (!this.inTxn)
      throw new RecordError(ev.offset, `${ev.kind} outside a source transaction (no begin before it)`);
    if (this.skipping) {
      // The seed snapshot already holds this transaction's tables as its relation describes them:
      // (re)adopt the table by that description instead of replaying how it got there.
      if (this.seeded && ev.kind === "relation") {
        this.flushTable(ev.relation.relId);
        this.relations.delete(ev.relation.relId);
        this.onRelation(ev);
      }
      return;
    }
    switch (ev.kind) {
      case "relation":
        this.onRelation(ev);
        return;
      case "insert":
        this.onInsert(ev);
        return;
      case "update":
        this.onUpdate(ev);
        return;
      case "delete":
        this.onDelete(ev);
        return;
      case "truncate":
        this.onTruncate(ev);
        return;
    }
  }

  /**
   * The statements for everything added since the last cut, in an order the target's constraints
   * can take; `needsExactOrder` as in Plan (then only exact source order is safe for these changes).
   */
  cut(): { steps: Step[]; needsExactOrder: boolean } {
    this.flushAll();
    const steps = this.steps.splice(0, this.steps.length);
    return { steps, needsExactOrder: this.needsExactOrder };
  }

  /** The relation cache as the changes added so far leave it. */
  get relationCache(): ReadonlyMap<number, CachedRelation> {
    return this.relations;
  }

  /**
   * More of the target's catalog, read after every statement cut so far was applied: tables and
   * types this planner did not know yet (what it knows, it has followed through its own DDL).
   */
  learn(catalog: Catalog): void {
    this.schema.learn(catalog);
  }

  finish(): Plan {
    this.flushAll();
    return {
      steps: this.steps,
      state: {
        relations: this.relations,
        types: this.types,
        lastCommitLsn: this.lastCommitLsn,
        inTransaction: this.inTxn,
      },
      stats: this.stats,
      warnings: this.warnings,
      needsExactOrder: this.needsExactOrder,
    };
  }

  // ---- relations and DDL -------------------------------------------------------------------

  private onRelation(ev: RelationEvent): void {
    const change = this.schema.follow(ev.relation, ev.offset);
    if (!change) return;
    // Changes queued under the old shape (or the old table name) must land before the table changes.
    for (const id of change.flushFirst) this.flushTable(id);
    const table = nameOf(ev.relation);
    for (const sql of change.ddl) this.steps.push({ kind: "ddl", sql, table, offset: ev.offset });
    this.warnings.push(...change.warnings);
  }

  // ---- changes ----------------------------------------------------------------------------

  /** The change's relation, its tuples checked against its width (no array of them per change). */
  private relationFor(
    ev: InsertEvent | UpdateEvent | DeleteEvent,
    a: Value[] | null,
    b: Value[] | null = null,
    c: Value[] | null = null,
  ): CachedRelation {
    const rel = this.relations.get(ev.relId);
    if (!rel)
      throw new RecordError(
        ev.offset,
        `unknown rel_id ${ev.relId}: no relation message for it came before this ${ev.kind}`,
      );
    const n = rel.relation.columns.length;
    if ((a && a.length !== n) || (b && b.length !== n) || (c && c.length !== n)) {
      const t = (a && a.length !== n ? a : b && b.length !== n ? b : c) as Value[];
      throw new RecordError(
        ev.offset,
        `tuple has ${t.length} values but the relation has ${n} columns`,
        nameOf(rel.relation),
      );
    }
    return rel;
  }

  private pendingFor(rel: CachedRelation): Pending {
    const id = rel.relation.relId;
    let p = this.pending.get(id);
    if (!p) {
      // Without a key (FULL, or no primary key at all, which only allows inserts) rows have no
      // identity to collapse changes by.
      const keyless = !rel.relation.columns.some((c) => c.key);
      if (rel.relation.replicaIdentity === "full" || keyless) p = { kind: "ordered", rel, runs: [] };
      else
        p = {
          kind: "keyed",
          rel,
          keyCols: rel.relation.columns.flatMap((c, i) => (c.key ? [i] : [])),
          entries: new Map(),
        };
      this.pending.set(id, p);
    }
    return p;
  }

  private keyOf(p: KeyedPending, tuple: Value[], offset: bigint, what: string): Value[] {
    if (p.keyCols.length === 0)
      throw new RecordError(
        offset,
        `${what} on a table without a replica identity key (replica identity ${p.rel.relation.replicaIdentity})`,
        nameOf(p.rel.relation),
      );
    const key = keyValues(tuple, p.keyCols);
    for (const v of key)
      if (v === UNCHANGED || v === null)
        throw new RecordError(offset, `${what} has a NULL or missing key value`, nameOf(p.rel.relation));
    return key;
  }

  /** keyString(keyOf(...)), without the key's array for a one-column key (most tables). */
  private keyTextOf(p: KeyedPending, tuple: Value[], offset: bigint, what: string): string {
    if (p.keyCols.length !== 1) return keyString(this.keyOf(p, tuple, offset, what));
    const v = tuple[p.keyCols[0] as number] as Value;
    if (v === UNCHANGED || v === null)
      throw new RecordError(offset, `${what} has a NULL or missing key value`, nameOf(p.rel.relation));
    return v as string;
  }

  private onInsert(ev: InsertEvent): void {
    const rel = this.relationFor(ev, ev.tuple);
    if (ev.tuple.includes(UNCHANGED))
      throw new RecordError(ev.offset, "insert carries an unchanged-TOAST value", nameOf(rel.relation));
    this.stats.inserts++;
    let p = this.pendingFor(rel);
    if (p.kind === "ordered") {
      this.addRun(p, "insert", ev.offset, ev.tuple, null);
      return;
    }
    const k = this.keyTextOf(p, ev.tuple, ev.offset, "insert");
    let e = p.entries.get(k);
    if (e && e.state !== "delete" && e.state !== "gone") {
      // Two live inserts of one key: let the target judge them in order.
      p = this.refresh(rel);
      e = undefined;
    }
    if (!e)
      p.entries.set(k, {
        state: "insert",
        match: NO_MATCH,
        image: ev.tuple,
        ownImage: false,
        from: ev.offset,
        to: ev.offset,
      });
    else {
      e.state = e.state === "delete" ? "replace" : "insert";
      e.image = ev.tuple;
      e.ownImage = false;
      e.to = ev.offset;
    }
  }

  private onUpdate(ev: UpdateEvent): void {
    const rel = this.relationFor(ev, ev.newTuple, ev.oldTuple, ev.keyTuple);
    this.stats.updates++;
    let p = this.pendingFor(rel);
    if (p.kind === "ordered") {
      if (!ev.oldTuple)
        throw new RecordError(
          ev.offset,
          `update without old_tuple on a table without a replica identity key (replica identity ${rel.relation.replicaIdentity})`,
          nameOf(rel.relation),
        );
      this.addRun(p, "update", ev.offset, ev.oldTuple, ev.newTuple);
      return;
    }
    const k = this.keyTextOf(p, ev.newTuple, ev.offset, "update");
    const oldKey = ev.keyTuple ? this.keyOf(p, ev.keyTuple, ev.offset, "update key_tuple") : null;
    if (oldKey && keyString(oldKey) !== k) {
      // The key moved: apply everything queued for the table, then move this one row in place.
      this.flushTable(rel.relation.relId);
      const setCols = ev.newTuple.flatMap((v, i) => (v === UNCHANGED ? [] : [i]));
      const row = [...oldKey, ...setCols.map((c) => ev.newTuple[c] as Cell)] as Cell[];
      this.steps.push({
        kind: "dml",
        op: "update",
        statement: this.updateStatement(rel, { cols: p.keyCols, mode: "key" }, setCols, [row]),
        table: nameOf(rel.relation),
        fromOffset: ev.offset,
        toOffset: ev.offset,
        rows: 1,
      });
      return;
    }
    let e = p.entries.get(k);
    if (e && (e.state === "delete" || e.state === "gone")) {
      p = this.refresh(rel);
      e = undefined;
    }
    if (!e)
      p.entries.set(k, {
        state: "update",
        match: keyValues(ev.newTuple, p.keyCols),
        image: ev.newTuple,
        ownImage: false,
        from: ev.offset,
        to: ev.offset,
      });
    else {
      const older = e.image as Value[];
      // The first merge copies (the tuple belongs to an event); later ones write in place.
      const into =
        e.ownImage && older.length === ev.newTuple.length ? older : new Array<Value>(ev.newTuple.length);
      e.image = merge(ev.newTuple, older, into);
      e.ownImage = true;
      e.to = ev.offset;
    }
  }

  private onDelete(ev: DeleteEvent): void {
    const rel = this.relationFor(ev, ev.oldTuple, ev.keyTuple);
    this.stats.deletes++;
    let p = this.pendingFor(rel);
    if (p.kind === "ordered") {
      if (!ev.oldTuple)
        throw new RecordError(
          ev.offset,
          `delete without old_tuple on a table without a replica identity key (replica identity ${rel.relation.replicaIdentity})`,
          nameOf(rel.relation),
        );
      this.addRun(p, "delete", ev.offset, ev.oldTuple, null);
      return;
    }
    const tuple = (ev.keyTuple ?? ev.oldTuple) as Value[];
    const k = this.keyTextOf(p, tuple, ev.offset, "delete");
    let e = p.entries.get(k);
    if (e && (e.state === "delete" || e.state === "gone")) {
      p = this.refresh(rel);
      e = undefined;
    }
    if (!e)
      p.entries.set(k, {
        state: "delete",
        match: keyValues(tuple, p.keyCols),
        image: null,
        ownImage: false,
        from: ev.offset,
        to: ev.offset,
      });
    else {
      e.state = e.state === "insert" ? "gone" : "delete";
      e.image = null;
      e.ownImage = false;
      e.to = ev.offset;
    }
  }

  /** Applies what is queued for a table and starts a fresh queue for it. */
  private refresh(rel: CachedRelation): KeyedPending {
    this.flushTable(rel.relation.relId);
    return this.pendingFor(rel) as KeyedPending;
  }

  /** Queues a change to a FULL table; `matchOrRow` is the inserted row or the old row to find. */
  private addRun(
    p: OrderedPending,
    op: Run["op"],
    offset: bigint,
    matchOrRow: Value[],
    newTuple: Value[] | null,
  ): void {
    if (op !== "insert" && matchOrRow.includes(UNCHANGED))
      throw new RecordError(offset, "old_tuple carries an unchanged-TOAST value", nameOf(p.rel.relation));
    // An identity the target fills GENERATED ALWAYS cannot be SET; one that did not change is left out.
    const always = this.shape(p.rel).identityAlways;
    const setCols = newTuple
      ? newTuple.flatMap((v, i) => (v === UNCHANGED || (always?.[i] && v === matchOrRow[i]) ? [] : [i]))
      : [];
    const oldKey = rowKey(matchOrRow);
    let run = p.runs[p.runs.length - 1];
    // One statement sees the table as it was before it; a row it changes twice needs two.
    if (
      !run ||
      run.op !== op ||
      run.setCols.join() !== setCols.join() ||
      (op !== "insert" && run.seen.has(oldKey))
    ) {
      run = { op, setCols, rows: [], seen: new Set(), from: offset, to: offset };
      p.runs.push(run);
    }
    const row: Cell[] = [...(matchOrRow as Cell[]), ...setCols.map((c) => (newTuple as Value[])[c] as Cell)];
    run.rows.push(row);
    if (op !== "insert") {
      run.seen.add(oldKey);
      if (newTuple) run.seen.add(rowKey(merge(newTuple, matchOrRow, new Array<Value>(newTuple.length))));
    }
    run.to = offset;
  }

  private onTruncate(ev: TruncateEvent): void {
    const rels = ev.relIds.map((id) => {
      const r = this.relations.get(id);
      if (!r)
        throw new RecordError(
          ev.offset,
          `unknown rel_id ${id} in truncate: no relation message for it came before`,
        );
      return r;
    });
    // TRUNCATE (and its CASCADE) reaches beyond one table: everything queued goes first.
    this.flushAll();
    this.stats.truncates++;
    // Like PostgreSQL's subscriber (apply_handle_truncate), never CASCADE on the target: the source
    // already listed every table its CASCADE reached, and the target's other tables are not ours to empty.
    const opts = ev.restartIdentity ? " RESTART IDENTITY" : "";
    this.steps.push({
      kind: "truncate",
      sql: `TRUNCATE TABLE ${rels
        .map((r) => tableOf(r))
        .map((t) => qualified(t.schema, t.name))
        .join(", ")}${opts}`,
      table: rels.map((r) => nameOf(r.relation)).join(", "),
      offset: ev.offset,
    });
  }

  // ---- flushing queued changes into statements ------------------------------------------------

  private flushTable(relId: number): void {
    const p = this.pending.get(relId);
    if (!p) return;
    // A table tied by a foreign key to another table with queued changes goes with it, so the
    // parent/child order of flushAll still holds.
    if (this.relatedPending(p)) {
      this.flushAll();
      return;
    }
    this.pending.delete(relId);
    this.emit([this.phases(p)]);
  }

  private relatedPending(p: Pending): boolean {
    const traits = this.options.traits;
    if (!traits || this.pending.size < 2) return false;
    const key = this.keyOfPending(p);
    const mine = traits.get(key)?.parents;
    for (const q of this.pending.values()) {
      if (q === p) continue;
      const other = this.keyOfPending(q);
      if (mine?.has(other) || traits.get(other)?.parents.has(key)) return true;
    }
    return false;
  }

  private keyOfPending(p: Pending): string {
    const t = tableOf(p.rel);
    return tableKey(t.schema, t.name);
  }

  private flushAll(): void {
    const pending = parentsFirst(
      [...this.pending.values()],
      (p) => this.keyOfPending(p),
      this.options.traits ?? new Map(),
    );
    this.pending.clear();
    if (this.options.foreignKeyOrder && !this.options.exact) this.checkDeleteActions(pending);
    this.emit(pending.map((p) => this.phases(p)));
  }

  /**
   * Keys deleted and inserted again must be freed before the inserts, but a row that another
   * changed row still references at that moment would be cascaded or nulled by the target: when a
   * table with such deletes is acted on by a table with queued updates, no set-wise order is safe.
   */
  private checkDeleteActions(group: Pending[]): void {
    const traits = this.options.traits;
    if (!traits) return;
    const updated = new Set<string>();
    for (const p of group)
      if (p.kind === "ordered" || hasState(p, "update")) updated.add(this.keyOfPending(p));
    for (const p of group) {
      const acted = traits.get(this.keyOfPending(p))?.actedOnBy;
      if (!acted || acted.size === 0) continue;
      if (!(p.kind === "ordered" || hasState(p, "replace"))) continue;
      for (const c of acted) if (updated.has(c)) this.needsExactOrder = true;
    }
  }

  /** Emits the statements of tables given parents first, in an order their constraints can take. */
  private emit(all: Phases[]): void {
    const childrenFirst = [...all].reverse();
    if (!this.options.foreignKeyOrder) {
      // Foreign keys do not fire (replica role): only UNIQUE constraints care, and freeing keys
      // before taking them suits them best.
      for (const ph of childrenFirst) this.steps.push(...ph.replaces, ...ph.deletes);
      for (const ph of all) this.steps.push(...ph.updates);
      for (const ph of all) this.steps.push(...ph.inserts);
      return;
    }
    // The target's foreign keys check and act on each statement. Keys deleted to be inserted again
    // are freed first (children's before parents'); then parents' new rows come before the
    // children that reference them, and children move to their new parents before the old parents
    // are deleted, so no ON DELETE action of the target removes or nulls a row the source kept.
    // Self-references stay within one statement, whose checks run at its end. What this order still
    // cannot satisfy fails loudly and sends the batch to the exact-order fallback.
    for (const ph of childrenFirst) this.steps.push(...ph.replaces);
    for (const ph of all) this.steps.push(...ph.inserts, ...ph.updates);
    for (const ph of childrenFirst) this.steps.push(...ph.deletes);
  }

  private shape(rel: CachedRelation): TableShape {
    const t = tableOf(rel);
    return shapeOf(rel, this.options.traits?.get(tableKey(t.schema, t.name)));
  }

  /** An UPDATE, or, where it must write a GENERATED ALWAYS identity column, a delete and re-insert. */
  private updateStatement(
    rel: CachedRelation,
    match: MatchSpec,
    setCols: number[],
    rows: Cell[][],
  ): Statement {
    const shape = this.shape(rel);
    if (match.mode === "key" && setCols.some((c) => shape.identityAlways?.[c]))
      return replaceRows(shape, match, setCols, rows);
    return updateRows(shape, match, setCols, rows);
  }

  private phases(p: Pending): Phases {
    const out: Phases = { replaces: [], deletes: [], updates: [], inserts: [] };
    const shape = this.shape(p.rel);
    const table = nameOf(p.rel.relation);
    const allCols = p.rel.relation.columns.map((_, i) => i);
    if (p.kind === "ordered") {
      const full: MatchSpec = { cols: allCols, mode: "full" };
      for (const run of p.runs) {
        const statement =
          run.op === "insert"
            ? insertRows(shape, allCols, run.rows)
            : run.op === "update"
              ? updateRows(shape, full, run.setCols, run.rows)
              : deleteRows(shape, full, run.rows);
        out.updates.push({
          kind: "dml",
          op: run.op,
          statement,
          table,
          fromOffset: run.from,
          toOffset: run.to,
          rows: run.rows.length,
        });
      }
      return out;
    }
    const key: MatchSpec = { cols: p.keyCols, mode: "key" };
    const span = (es: Entry[]) => {
      let from = (es[0] as Entry).from;
      let to = (es[0] as Entry).to;
      for (const e of es) {
        if (e.from < from) from = e.from;
        if (e.to > to) to = e.to;
      }
      return { fromOffset: from, toOffset: to };
    };
    // One pass sorts the entries by what they become; updates group by the columns they set.
    const replaces: Entry[] = [];
    const deletes: Entry[] = [];
    const inserts: Entry[] = [];
    const keySet = new Set(p.keyCols);
    const byMask = new Map<string, { setCols: number[]; es: Entry[] }>();
    for (const e of p.entries.values()) {
      switch (e.state) {
        case "replace":
          replaces.push(e);
          inserts.push(e);
          break;
        case "delete":
          deletes.push(e);
          break;
        case "insert":
          inserts.push(e);
          break;
        case "update": {
          const img = e.image as Value[];
          // Nothing but the key: the statement still finds the row, so a missing one is counted.
          let m = "";
          for (let c = 0; c < img.length; c++) if (!keySet.has(c) && img[c] !== UNCHANGED) m += `${c},`;
          let g = byMask.get(m);
          if (!g) {
            g = { setCols: allCols.filter((c) => !keySet.has(c) && img[c] !== UNCHANGED), es: [] };
            byMask.set(m, g);
          }
          g.es.push(e);
          break;
        }
      }
    }
    for (const [dels, into] of [
      [replaces, out.replaces],
      [deletes, out.deletes],
    ] as const)
      if (dels.length > 0)
        into.push({
          kind: "dml",
          op: "delete",
          statement: deleteRows(
            shape,
            key,
            dels.map((e) => e.match as Cell[]),
          ),
          table,
          ...span(dels),
          rows: dels.length,
        });
    for (const { setCols, es } of byMask.values())
      out.updates.push({
        kind: "dml",
        op: "update",
        statement: this.updateStatement(
          p.rel,
          key,
          setCols,
          es.map((e) => {
            const img = e.image as Cell[];
            const row = new Array<Cell>(e.match.length + setCols.length);
            let i = 0;
            for (const v of e.match) row[i++] = v as Cell;
            for (const c of setCols) row[i++] = img[c] as Cell;
            return row;
          }),
        ),
        table,
        ...span(es),
        rows: es.length,
      });
    if (inserts.length > 0)
      out.inserts.push({
        kind: "dml",
        op: "insert",
        statement: insertRows(
          shape,
          allCols,
          inserts.map((e) => e.image as Cell[]),
          this.options.onConflict === "upsert" ? p.keyCols : undefined,
        ),
        table,
        ...span(inserts),
        rows: inserts.length,
      });
    return out;
  }
}
