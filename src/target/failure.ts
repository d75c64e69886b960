import type { SinkConfig } from "../config.js";
import { SinkError, sqlState } from "../errors.js";

/** Where in a run the target was being waited on. */
export type Phase = "connect" | "lock" | "read" | "apply" | "commit";

export interface FailureContext {
  /** host:port of the target (never the URL). */
  host: string;
  phase: Phase;
  config: Pick<
    SinkConfig,
    "connectTimeoutMs" | "queryTimeoutMs" | "lockTimeoutMs" | "statementTimeoutMs" | "runTimeoutMs"
  >;
  /** The offsets the phase concerns, e.g. "offset 12" or "offsets 12..40". */
  offsets?: string;
  /** What the client reported when the connection broke between queries. */
  lost?: Error | null;
  /** The phase the run was in when the connection broke, if earlier than `phase`. */
  lostPhase?: Phase;
  /** The run's own watchdog dropped the connection at the deadline. */
  deadlinePassed?: boolean;
  /** The run's time left, not lock_timeout_ms, bounded its lock waits. */
  lockCappedByDeadline?: boolean;
}

/** pg's own messages for a connection that is gone or never answered. */
const CONNECTION_MESSAGES = [
  "Query read timeout",
  "Connection terminated",
  "Connection terminated unexpectedly",
  "Connection terminated due to connection timeout",
  "Client has encountered a connection error and is not queryable",
  "Client was closed and is not queryable",
  "timeout expired",
];

/** Errors that say the session itself failed (not a statement the target rejected). */
export function isSessionFailure(e: unknown): boolean {
  const code = sqlState(e);
  if (code !== undefined) {
    // 08: connection exception; 57: operator intervention (timeouts, terminated backends); 55P03:
    // lock not available; 25P03: idle-in-transaction timeout.
    if (/^(08|57)/.test(code) || code === "55P03" || code === "25P03") return true;
    // Node socket errors carry codes like ECONNRESET.
    if (/^E[A-Z]+$/.test(code)) return true;
  }
  return isConnectionMessage(e);
}

/** pg's message for a dead connection, on the error or the one it wraps (e.g. a failed statement). */
function isConnectionMessage(e: unknown): boolean {
  const err = e as { message?: unknown; cause?: { message?: unknown } } | null;
  return [err?.message, err?.cause?.message].some(
    (m) => typeof m === "string" && CONNECTION_MESSAGES.includes(m),
  );
}

/** A wait on the target that failed or ran out: names host, phase and offsets, never the URL. */
export class TargetError extends SinkError {
  override name = "TargetError";
  constructor(
    readonly host: string,
    readonly phase: Phase,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`target ${host}, ${phase}: ${detail}`, options);
  }

  /** Explains a session failure in the operator's terms. */
  static from(e: unknown, ctx: FailureContext): TargetError {
    const err = e as Error & { code?: string };
    const where = ctx.offsets ? `${ctx.offsets}: ` : "";
    const code = sqlState(e);
    const pgText = (x: Error & { code?: string }) =>
      x.code === undefined || x.message.includes(x.code)
        ? x.message
        : `${x.message} (${/^[0-9A-Z]{5}$/.test(x.code) ? `SQLSTATE ${x.code}` : x.code})`;
    let detail: string;
    if (ctx.deadlinePassed)
      detail = `the run's deadline passed (run_timeout_ms ${ctx.config.runTimeoutMs}, or the Lambda's time left); the connection was dropped`;
    else if (
      err.message === "Query read timeout" ||
      (err.cause as Error | undefined)?.message === "Query read timeout"
    )
      detail = `no reply within query_timeout_ms (${ctx.config.queryTimeoutMs} ms); the connection was dropped`;
    else if (ctx.phase === "connect" && /timeout expired|connection timeout/.test(err.message))
      detail = `no answer within connect_timeout_ms (${ctx.config.connectTimeoutMs} ms)`;
    // pg's own words for a dead connection say nothing; what broke it (if seen) says what happened.
    else if (ctx.lost && isConnectionMessage(err))
      detail = `the connection was lost${ctx.lostPhase && ctx.lostPhase !== ctx.phase ? ` during ${ctx.lostPhase}` : ""}: ${pgText(ctx.lost as Error & { code?: string })}`;
    else if (err.code !== undefined && /^(08|57P0)/.test(err.code))
      // The server ended the session (terminated, shut down) or the link broke during this query.
      detail = `the connection was lost: ${pgText(err)}`;
    else if (code === "55P03")
      detail = `gave up waiting for a lock another session holds (${ctx.lockCappedByDeadline ? "the run's deadline came first" : `lock_timeout_ms ${ctx.config.lockTimeoutMs}`}): ${err.message}`;
    else if (code === "57014")
      detail = `a statement ran out of time (statement_timeout_ms ${ctx.config.statementTimeoutMs}, or the run's deadline): ${err.message}`;
    else if (ctx.phase === "connect") detail = `cannot connect to the target database: ${pgText(err)}`;
    else detail = pgText(err);
    return new TargetError(ctx.host, ctx.phase, `${where}${detail}`, { cause: e });
  }
}
