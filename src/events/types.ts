/** Typed replication events, decoded from the inbound connector's JSON records. */

/** A value whose TOASTed content did not change: the target keeps what it has. */
export const UNCHANGED: unique symbol = Symbol("UnchangedToast");

/** A column value as PostgreSQL's text representation, SQL NULL, or "unchanged TOAST". */
export type Value = string | null | typeof UNCHANGED;

export type ReplicaIdentity = "default" | "nothing" | "full" | "index";

export interface Column {
  name: string;
  typeId: number;
  typeModifier: number;
  /** Part of the replica identity key (flags = 1). */
  key: boolean;
}

export interface Relation {
  relId: number;
  namespace: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: Column[];
}

interface At {
  /** Offset of the record in its partition. */
  offset: bigint;
}

export interface BeginEvent extends At {
  kind: "begin";
  finalLsn: bigint;
  xid: number;
  timestamp: bigint;
}
export interface CommitEvent extends At {
  kind: "commit";
  commitLsn: bigint;
  endLsn: bigint;
  timestamp: bigint;
}
export interface OriginEvent extends At {
  kind: "origin";
  commitLsn: bigint;
  name: string;
}
export interface RelationEvent extends At {
  kind: "relation";
  relation: Relation;
}
export interface TypeEvent extends At {
  kind: "type";
  id: number;
  namespace: string;
  name: string;
}
export interface InsertEvent extends At {
  kind: "insert";
  relId: number;
  tuple: Value[];
}
export interface UpdateEvent extends At {
  kind: "update";
  relId: number;
  oldTuple: Value[] | null;
  keyTuple: Value[] | null;
  newTuple: Value[];
}
export interface DeleteEvent extends At {
  kind: "delete";
  relId: number;
  oldTuple: Value[] | null;
  keyTuple: Value[] | null;
}
export interface TruncateEvent extends At {
  kind: "truncate";
  relIds: number[];
  cascade: boolean;
  restartIdentity: boolean;
}

export type ChangeEvent = InsertEvent | UpdateEvent | DeleteEvent;
export type Event =
  | BeginEvent
  | CommitEvent
  | OriginEvent
  | RelationEvent
  | TypeEvent
  | InsertEvent
  | UpdateEvent
  | DeleteEvent
  | TruncateEvent;
