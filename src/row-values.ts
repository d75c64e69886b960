/**
 * Keeps row values out of logs and error messages. PostgreSQL puts them in error details ("Failing
 * row contains (...)", "Key (id)=(5) already exists") and in some messages (`invalid input syntax for
 * type integer: "abc"`); logs often go where the data may not. LOG_ROW_VALUES=true keeps them.
 */

const HIDDEN = "…";

/** Whether row values may appear in logs and errors (LOG_ROW_VALUES=true). */
export function logRowValues(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.LOG_ROW_VALUES === "true";
}

/**
 * Replaces the row values PostgreSQL's messages and details carry, keeping what names the problem:
 * the constraint, the table, the key's column names, the type.
 */
export function hideRowValues(text: string): string {
  return (
    text
      .replace(/Failing row contains \(.*\)\.?/gs, `Failing row contains (${HIDDEN}).`)
      // Key (a, b)=(1, 2) already exists / is not present in table / is still referenced / conflicts with ...
      .replace(
        /(Key \([^)]*\))=\(.*?\)(?= already exists| is not present| is still referenced| conflicts with)/gs,
        `$1=(${HIDDEN})`,
      )
      .replace(/(conflicts with (?:existing )?key \([^)]*\))=\(.*?\)\./gs, `$1=(${HIDDEN}).`)
      // invalid input syntax for type integer: "abc"; malformed array literal: "{"; ...
      .replace(/(: )"[^\n]*"(?=\s*(?:\(SQLSTATE|;|$))/gm, `$1"${HIDDEN}"`)
      // value "99999999999" is out of range for type integer
      .replace(/\bvalue "[^\n]*?" is out of range/g, `value "${HIDDEN}" is out of range`)
  );
}

/** The text of an error for a log line or message: row values hidden unless LOG_ROW_VALUES=true. */
export function safeText(text: string, env: NodeJS.ProcessEnv = process.env): string {
  return logRowValues(env) ? text : hideRowValues(text);
}

/**
 * A PostgreSQL error as one line: message, SQLSTATE and detail, the row values in them hidden unless
 * LOG_ROW_VALUES=true.
 */
export function describeDbError(e: unknown, env: NodeJS.ProcessEnv = process.env): string {
  const err = e as Error & { code?: string; detail?: string };
  const withValues = logRowValues(env);
  let text = withValues ? err.message : hideRowValues(err.message);
  if (err.code) text += ` (SQLSTATE ${err.code})`;
  if (err.detail) text += `; ${withValues ? err.detail : hideRowValues(err.detail)}`;
  return text;
}

/**
 * Scrubs row values from an error about to be thrown or logged, in place (message and stack), so the
 * runtime's own report of it (Lambda logs uncaught errors) carries none either.
 */
export function scrubError<T>(e: T, env: NodeJS.ProcessEnv = process.env): T {
  if (logRowValues(env) || !(e instanceof Error)) return e;
  const clean = hideRowValues(e.message);
  if (clean !== e.message) {
    if (e.stack) e.stack = e.stack.replace(e.message, clean);
    e.message = clean;
  }
  const cause = e.cause as { detail?: unknown; message?: unknown } | undefined;
  if (cause && typeof cause === "object") {
    if (typeof cause.detail === "string") cause.detail = hideRowValues(cause.detail);
    if (typeof cause.message === "string") cause.message = hideRowValues(cause.message);
  }
  return e;
}
