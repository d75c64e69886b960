import type pg from "pg";
import { sqlState } from "../errors.js";

/**
 * replica: the run's transaction has session_replication_role = replica, as PostgreSQL's own
 * subscriber does, so the target's ordinary triggers and foreign-key actions and checks do not fire
 * on the sink's writes. ordered: the login may not set it, so statements follow the target's
 * foreign keys and fall back to exact source order when a constraint still trips.
 */
export type ApplyMode = "replica" | "ordered";

/** Sets the replica role for the rest of the open transaction where the login may. */
export async function enterReplicaRole(client: pg.ClientBase): Promise<ApplyMode> {
  // A refused SET aborts the transaction; the savepoint keeps the run's lock and state.
  await client.query("SAVEPOINT fps_role");
  try {
    await client.query("SET LOCAL session_replication_role = replica");
    await client.query("RELEASE SAVEPOINT fps_role");
    return "replica";
  } catch (e) {
    if (sqlState(e) !== "42501") throw e;
    await client.query("ROLLBACK TO SAVEPOINT fps_role");
    await client.query("RELEASE SAVEPOINT fps_role");
    return "ordered";
  }
}

/** SQLSTATEs of constraints that a reordered (set-wise) plan can trip where the source order did not. */
const ORDER_SENSITIVE = new Set(["23503", "23505", "23P01"]);

export function isOrderSensitiveViolation(e: unknown): boolean {
  const code = sqlState(e);
  return code !== undefined && ORDER_SENSITIVE.has(code);
}
