import type pg from "pg";
import { loadCatalog } from "./apply/catalog.js";
import { loadTargetTraits, type TargetTraits } from "./apply/constraints.js";
import { type ExecuteResult, executePlan, type MissingRows } from "./apply/execute.js";
import { tableKey, tableOf, typeKey } from "./apply/model.js";
import { emptyPlanStats, type Plan, Planner, type PlanOptions, type PlanState } from "./apply/plan.js";
import { StreamAbort } from "./errors.js";
import type { Event, Relation } from "./events/types.js";

/**
 * Applies a batch while it is read: each segment (whole source transactions, about `segmentBytes`
 * of records) is planned set-wise and its statements go to the target while the next segment is
 * read and decoded, so the server works while the client does, and the batch's events never have to
 * be held all at once. All segments are in the run's one transaction; cutting a batch into segments
 * is what a smaller max_records would do, without a commit in between.
 *
 * Only the ordinary case streams. Whatever needs the whole batch again (a record that cannot be
 * decoded or applied, a statement tripping a constraint the source order kept, a batch whose
 * re-parenting a target ON DELETE action could reach) stops the attempt with `StreamAbort` or the
 * statement's own error; the run then rolls back to the batch's savepoint and applies the batch
 * the way it applies a batch read whole (src/run.ts).
 */

export interface SegmentedApplyOptions {
  client: pg.ClientBase;
  /** The relation cache and position the batch starts from (inTransaction decided at the first events). */
  state: PlanState;
  /** Plan options; traits are read here, for the tables the batch reaches. */
  options: Omit<PlanOptions, "traits" | "exact">;
  segmentBytes: number;
  missingRows: MissingRows;
  warn: (msg: string, fields: Record<string, unknown>) => void;
}

export interface SegmentedResult extends Pick<Plan, "state" | "stats" | "warnings"> {
  executed: ExecuteResult;
  segments: number;
  /** The latest commit timestamp applied, or null when none. */
  lastCommitTime: bigint | null;
}

export class SegmentedApply {
  private planner: Planner | null = null;
  private segment: Event[] = [];
  private segmentBytes = 0;
  /** Target tables whose catalog and traits were read, by tableKey. */
  private readonly known = new Set<string>();
  /** Source column types (typeKey) resolved on the target. */
  private readonly knownTypes = new Set<string>();
  private readonly followed = new Map<string, [string, string]>();
  private readonly traits: TargetTraits = new Map();
  private readonly types: Map<number, { namespace: string; name: string }>;
  /** Statements sent so far; a failed one rejects this, and nothing after it is sent. */
  private inflight: Promise<void> = Promise.resolve();
  private failed = false;
  private readonly executed: ExecuteResult = { statements: 0, rows: 0, missingRows: 0, upserts: 0 };
  private segments = 0;
  /** The last record taken so far (for messages about a run that stops before reading its batch). */
  lastOffset: bigint | null = null;
  private lastCommitTime: bigint | null = null;

  constructor(private readonly o: SegmentedApplyOptions) {
    this.types = new Map(o.state.types);
    for (const c of o.state.relations.values()) this.follow(tableOf(c).schema, tableOf(c).name);
  }

  /**
   * Takes a run of whole source transactions (or, past max_transaction_records, a transaction's
   * part) as read; `bytes` of records since the previous call; `startsInside`: the batch began
   * inside a source transaction an earlier run applied in part.
   */
  take = (events: Event[], bytes: number, startsInside: boolean): Promise<void> =>
    this.guard(() => this.takeRun(events, bytes, startsInside));

  /**
   * Sends nothing more and waits for what is on its way: called before the run rolls back, for
   * whatever reason it stops the attempt. Synchronous until the wait, so a statement queued behind
   * the one running can never follow the rollback.
   */
  halt(): Promise<void> {
    this.halted = true;
    return this.inflight.catch(() => {});
  }

  private halted = false;

  /** Whether `e` came from applying (planning or a statement), not from reading. */
  threw(e: unknown): boolean {
    return e !== undefined && e === this.thrown;
  }

  private thrown: unknown;

  private async guard<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      this.thrown = e;
      throw e;
    }
  }

  private async takeRun(events: Event[], bytes: number, startsInside: boolean): Promise<void> {
    if (this.failed) await this.inflight;
    if (this.planner === null && this.segment.length === 0 && events.length > 0)
      this.o.state = { ...this.o.state, inTransaction: startsInside && events[0]?.kind !== "begin" };
    const last = events[events.length - 1];
    if (last) this.lastOffset = last.offset;
    for (const ev of events) {
      this.segment.push(ev);
      if (ev.kind === "commit" && (this.lastCommitTime === null || ev.timestamp > this.lastCommitTime))
        this.lastCommitTime = ev.timestamp;
    }
    this.segmentBytes += bytes;
    if (this.segmentBytes >= this.o.segmentBytes) await this.flush();
  }

  /** Applies what is left and waits for every statement; the batch is then on the target. */
  finish(): Promise<SegmentedResult> {
    return this.guard(() => this.finishAll());
  }

  private async finishAll(): Promise<SegmentedResult> {
    await this.flush();
    await this.inflight;
    const plan = this.planner?.finish() ?? null;
    if (this.segments > 0)
      // Deferred constraints would trip at COMMIT, where the batch can no longer be narrowed.
      await this.o.client.query("SET CONSTRAINTS ALL IMMEDIATE");
    return {
      state: plan?.state ?? this.o.state,
      stats: plan?.stats ?? emptyPlanStats(),
      warnings: plan?.warnings ?? [],
      executed: this.executed,
      segments: this.segments,
      lastCommitTime: this.lastCommitTime,
    };
  }

  private follow(schema: string, name: string): void {
    this.followed.set(tableKey(schema, name), [schema, name]);
  }

  private async flush(): Promise<void> {
    const events = this.segment;
    if (events.length === 0) return;
    this.segment = [];
    this.segmentBytes = 0;
    const relations: Relation[] = [];
    for (const ev of events) {
      if (ev.kind === "relation") relations.push(ev.relation);
      else if (ev.kind === "type") this.types.set(ev.id, { namespace: ev.namespace, name: ev.name });
    }
    if (this.segments === 0) await this.o.client.query("SET CONSTRAINTS ALL DEFERRED");
    await this.learn(relations);
    this.planner ??= new Planner(
      this.o.state,
      { tables: new Map(), types: new Map() },
      { ...this.o.options, traits: this.traits },
    );
    const planner = this.planner;
    for (const ev of events) planner.add(ev);
    const { steps, needsExactOrder } = planner.cut();
    if (needsExactOrder)
      throw new StreamAbort(
        "the target's ON DELETE actions could reach rows this batch re-parents: it goes in source order",
      );
    this.segments++;
    const before = this.inflight;
    this.inflight = before.then(async () => {
      // Stopped while the statements before these ran: what the run does next must not find
      // these still coming (after its ROLLBACK TO SAVEPOINT, or its ROLLBACK, outside the transaction).
      if (this.halted) return;
      const r = await executePlan(this.o.client, steps, this.o.missingRows, this.o.warn);
      this.executed.statements += r.statements;
      this.executed.rows += r.rows;
      this.executed.missingRows += r.missingRows;
      this.executed.upserts += r.upserts;
    });
    // Seen at the next take or at finish; until then nothing else may wait on it unhandled.
    this.inflight.catch(() => {
      this.failed = true;
    });
    // Reading goes on while this segment runs, but no further: a client that decodes faster than
    // the server applies would otherwise queue the whole batch's statements in memory.
    await before;
  }

  /**
   * Reads the catalog and traits of the tables the batch reaches for the first time (at the first
   * segment: also those of the relations the state follows), once the statements so far are on the
   * target: the planner has followed what it knows through its own DDL, so only new tables are news.
   */
  private async learn(relations: Relation[]): Promise<void> {
    const owned: { schema: string; name: string }[] = [];
    for (const r of relations) {
      this.follow(r.namespace, r.name);
      const cached = this.planner?.relationCache.get(r.relId) ?? this.o.state.relations.get(r.relId);
      if (cached) {
        owned.push(tableOf(cached));
        this.follow(tableOf(cached).schema, tableOf(cached).name);
      }
    }
    let fresh = false;
    for (const key of this.followed.keys()) if (!this.known.has(key)) fresh = true;
    // A known table may take a column of a type not resolved yet (ALTER TABLE ... ADD COLUMN).
    const types = relations.flatMap((r) => r.columns.map((c) => typeKey(c.typeId, c.typeModifier)));
    for (const key of types) if (!this.knownTypes.has(key)) fresh = true;
    if (!fresh) return;
    await this.inflight;
    for (const key of this.followed.keys()) this.known.add(key);
    for (const key of types) this.knownTypes.add(key);
    if (relations.length > 0) {
      const catalog = await loadCatalog(this.o.client, relations, this.types, owned);
      if (this.planner) this.planner.learn(catalog);
      else this.planner = new Planner(this.o.state, catalog, { ...this.o.options, traits: this.traits });
    }
    // Foreign keys are read between the followed tables only: read them all again.
    const traits = await loadTargetTraits(this.o.client, this.followed.values());
    this.traits.clear();
    for (const [k, t] of traits) this.traits.set(k, t);
  }
}
