/** Errors that name where they happened, so an operator can find the record or setting at fault. */

export class SinkError extends Error {
  override name = "SinkError";
}

/** The run ran out of the time it was given. */
export class DeadlineError extends SinkError {
  override name = "DeadlineError";
}

/** A record that cannot be decoded or applied as it stands. */
export class RecordError extends SinkError {
  override name = "RecordError";
  constructor(
    readonly offset: bigint,
    detail: string,
    readonly table?: string,
  ) {
    super(`record at offset ${offset}${table ? ` (table ${table})` : ""}: ${detail}`);
  }
}

/** A configuration value that is missing or wrong. */
export class ConfigError extends SinkError {
  override name = "ConfigError";
}

/** Turns anything thrown (including the Fluvio client's string arrays) into an Error. */
export function asError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (Array.isArray(e)) return new Error(e.map(String).join("; "));
  return new Error(String(e));
}

/** The PostgreSQL SQLSTATE of an error, or of the error it wraps. */
export function sqlState(e: unknown): string | undefined {
  const err = e as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = err?.code ?? err?.cause?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * A streamed apply (src/segmented-apply.ts) gives way to applying the batch whole; the message says
 * why, for the log. Never reaches the user: the run rolls back to the batch's savepoint and goes on.
 */
export class StreamAbort extends Error {}
