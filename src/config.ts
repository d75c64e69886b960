import { isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { MissingRows } from "./apply/execute.js";
import { ConfigError } from "./errors.js";

/** Everything one run needs, validated. */
export interface SinkConfig {
  name: string;
  topic: string;
  partition: number;
  databaseUrl: string;
  source: { kind: "file"; path: string } | { kind: "fluvio"; endpoint: string | null };
  maxRecords: number;
  /** A source transaction longer than this is applied in parts (loudly) to bound memory. */
  maxTransactionRecords: number;
  stateSchema: string;
  missingRows: MissingRows;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** Fluvio: the most bytes one fetch response may carry (must exceed the largest record batch). */
  fetchMaxBytes: number;
  /** The CLI's deadline for a whole run (the Lambda's is also bounded by its remaining time). */
  runTimeoutMs: number;
  /** Server-side cap on one statement (the run's time left caps it further). */
  statementTimeoutMs: number;
  /** Server-side cap on waiting for a lock another session holds. */
  lockTimeoutMs: number;
  /** Client-side cap on waiting for any one reply from the target. */
  queryTimeoutMs: number;
  /** TCP keepalive on both ends of the target connection. */
  tcpKeepaliveMs: number;
  onLostRecords: "error" | "skip";
  /** Skip source transactions that committed at or before this LSN (the target was seeded up to it). */
  startLsn: bigint | null;
  /** upsert: an insert of a key the target already has updates that row. */
  onConflict: "error" | "upsert";
  /** A source transaction that fails on its own: halt the run, or set it aside in the dead-letter table. */
  onError: "halt" | "dead_letter";
}

export const DEFAULTS = {
  partition: 0,
  maxRecords: 1000,
  maxTransactionRecords: 1_000_000,
  stateSchema: "fluvio_sink",
  missingRows: "skip" as MissingRows,
  connectTimeoutMs: 10_000,
  readTimeoutMs: 10_000,
  fetchMaxBytes: 64 * 1024 * 1024,
  runTimeoutMs: 120_000,
  statementTimeoutMs: 60_000,
  lockTimeoutMs: 10_000,
  /** Added to the statement timeout, so the server's own timeout error (with its SQLSTATE) comes first. */
  queryTimeoutMarginMs: 5_000,
  tcpKeepaliveMs: 15_000,
  onLostRecords: "error" as const,
  startLsn: null,
  onConflict: "error" as const,
  onError: "halt" as const,
};

const PARAMETERS = [
  "url",
  "source",
  "fluvio_endpoint",
  "partition",
  "max_records",
  "max_transaction_records",
  "state_schema",
  "missing_rows",
  "connect_timeout_ms",
  "read_timeout_ms",
  "fetch_max_bytes",
  "run_timeout_ms",
  "statement_timeout_ms",
  "lock_timeout_ms",
  "query_timeout_ms",
  "tcp_keepalive_ms",
  "on_lost_records",
  "start_lsn",
  "on_conflict",
  "on_error",
];

/** A run with less time than this does not start (see runOnce). */
export const MIN_RUN_TIMEOUT_MS = 2000;

const URL_SECRET = "FLUVIO_PG_DATABASE_URL";

/**
 * Reads the connector config format the Fluvio docs show for this connector (version, name, type,
 * topic, parameters, secrets). Every problem is reported at once, each naming its setting; a
 * database URL is never echoed back.
 */
export function parseConnectorConfig(
  text: string,
  opts: { env?: NodeJS.ProcessEnv; baseDir?: string; origin?: string } = {},
): SinkConfig {
  const origin = opts.origin ?? "config";
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${origin}: not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  return validateConnectorConfig(doc, { ...opts, origin });
}

/** Environment variables that stand for connector settings (the Lambda face is configured this way). */
export const ENV_SETTINGS: Record<string, string> = {
  FLUVIO_PG_SINK_NAME: "name",
  FLUVIO_TOPIC: "topic",
  FLUVIO_PARTITION: "parameters.partition",
  FLUVIO_ENDPOINT: "parameters.fluvio_endpoint",
  FLUVIO_SOURCE: "parameters.source",
  MAX_RECORDS: "parameters.max_records",
  MAX_TRANSACTION_RECORDS: "parameters.max_transaction_records",
  STATE_SCHEMA: "parameters.state_schema",
  MISSING_ROWS: "parameters.missing_rows",
  CONNECT_TIMEOUT_MS: "parameters.connect_timeout_ms",
  READ_TIMEOUT_MS: "parameters.read_timeout_ms",
  FETCH_MAX_BYTES: "parameters.fetch_max_bytes",
  RUN_TIMEOUT_MS: "parameters.run_timeout_ms",
  STATEMENT_TIMEOUT_MS: "parameters.statement_timeout_ms",
  LOCK_TIMEOUT_MS: "parameters.lock_timeout_ms",
  QUERY_TIMEOUT_MS: "parameters.query_timeout_ms",
  TCP_KEEPALIVE_MS: "parameters.tcp_keepalive_ms",
  ON_LOST_RECORDS: "parameters.on_lost_records",
  START_LSN: "parameters.start_lsn",
  ON_CONFLICT: "parameters.on_conflict",
  ON_ERROR: "parameters.on_error",
};

/** An LSN in PostgreSQL's X/Y form (two hex halves) or as a decimal number; null when it is neither. */
export function parseLsn(v: unknown): bigint | null {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v !== "string") return null;
  const t = v.trim();
  const xy = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(t);
  if (xy) return (BigInt(`0x${xy[1]}`) << 32n) | BigInt(`0x${xy[2]}`);
  if (/^\d{1,20}$/.test(t) && BigInt(t) <= 0xffffffffffffffffn) return BigInt(t);
  return null;
}

/** The same settings, validated the same way, from environment variables (see ENV_SETTINGS). */
export function configFromEnv(env: NodeJS.ProcessEnv): SinkConfig {
  const parameters: Record<string, string> = {};
  const doc: Record<string, unknown> = {
    type: "postgres-sink",
    name: env.FLUVIO_PG_SINK_NAME ?? "postgres-sink",
    parameters,
  };
  for (const [name, setting] of Object.entries(ENV_SETTINGS)) {
    const v = env[name];
    if (v === undefined || v === "" || name === "FLUVIO_PG_SINK_NAME") continue;
    if (setting.startsWith("parameters.")) parameters[setting.slice(11)] = v;
    else doc[setting] = v;
  }
  return validateConnectorConfig(doc, { env, origin: "environment" });
}

export function validateConnectorConfig(
  doc: unknown,
  opts: { env?: NodeJS.ProcessEnv; baseDir?: string; origin?: string } = {},
): SinkConfig {
  const env = opts.env ?? process.env;
  const origin = opts.origin ?? "config";
  if (!isObject(doc))
    throw new ConfigError(`${origin}: expected a mapping with name, type, topic and parameters`);
  const problems: string[] = [];
  const str = (v: unknown, where: string, required: boolean): string | undefined => {
    if (v === undefined || v === null) {
      if (required) problems.push(`${where} is required`);
      return undefined;
    }
    if (typeof v !== "string" || v.trim() === "") {
      problems.push(`${where} must be a non-empty string`);
      return undefined;
    }
    return v;
  };
  const int = (v: unknown, where: string, min: number, def: number, max?: number): number => {
    if (v === undefined || v === null) return def;
    const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min || (max !== undefined && n > max)) {
      problems.push(`${where} must be an integer >= ${min}${max === undefined ? "" : ` and <= ${max}`}`);
      return def;
    }
    return n;
  };

  const name = str(doc.name, "name", true);
  const type = str(doc.type, "type", true);
  if (type !== undefined && type !== "postgres-sink")
    problems.push(`type must be postgres-sink (got ${JSON.stringify(type)})`);
  const topic = str(doc.topic, "topic", true);
  const params = doc.parameters ?? {};
  if (!isObject(params)) problems.push("parameters must be a mapping");
  const p = isObject(params) ? params : {};
  for (const k of Object.keys(p))
    if (!PARAMETERS.includes(k))
      problems.push(`parameters.${k} is not a known setting (known: ${PARAMETERS.join(", ")})`);
  const secrets = doc.secrets ?? {};
  if (!isObject(secrets)) problems.push("secrets must be a mapping of NAME: value");
  const secret = (n: string): string | undefined => {
    const v = isObject(secrets) ? secrets[n] : undefined;
    if (typeof v === "string" && v !== "") return v;
    return env[n] || undefined;
  };

  let databaseUrl: string | undefined;
  const rawUrl = p.url;
  if (rawUrl === undefined || rawUrl === null) {
    databaseUrl = secret(URL_SECRET);
    if (!databaseUrl)
      problems.push(`parameters.url is missing and no ${URL_SECRET} is set in secrets or the environment`);
  } else if (typeof rawUrl !== "string") problems.push("parameters.url must be a string");
  else {
    const ref = /^\s*(?:\$\{\{\s*)?secrets\.([A-Za-z_][A-Za-z0-9_]*)(?:\s*\}\})?\s*$/.exec(rawUrl);
    if (ref) {
      databaseUrl = secret(ref[1] as string);
      if (!databaseUrl)
        problems.push(
          `parameters.url names secret ${ref[1]}, which is set neither in secrets nor in the environment`,
        );
    } else databaseUrl = rawUrl;
  }
  const urlSetting =
    rawUrl === undefined || rawUrl === null ? `${URL_SECRET} (parameters.url is not set)` : "parameters.url";
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl))
    problems.push(`${urlSetting} must be a postgres:// or postgresql:// URL`);
  else if (databaseUrl !== undefined && !parsesAsUrl(databaseUrl))
    // Never echo the value: it holds the password.
    problems.push(
      `${urlSetting} is not a valid URL (check the host and port, and percent-encode reserved characters such as @ : / in the user and password)`,
    );

  let source: SinkConfig["source"] = { kind: "fluvio", endpoint: null };
  const rawSource = p.source;
  if (rawSource !== undefined && rawSource !== null && rawSource !== "fluvio") {
    if (typeof rawSource === "string" && rawSource.startsWith("file:") && rawSource.length > 5) {
      const path = rawSource.slice(5);
      source = { kind: "file", path: isAbsolute(path) ? path : resolve(opts.baseDir ?? process.cwd(), path) };
    } else
      problems.push(`parameters.source must be "fluvio" or "file:<path>" (got ${JSON.stringify(rawSource)})`);
  }
  const endpoint = str(p.fluvio_endpoint, "parameters.fluvio_endpoint", false);
  if (endpoint !== undefined) {
    if (!/^[^\s:]+:\d{1,5}$/.test(endpoint)) problems.push("parameters.fluvio_endpoint must be host:port");
    if (source.kind === "fluvio") source = { kind: "fluvio", endpoint };
  }

  const partition = int(p.partition, "parameters.partition", 0, DEFAULTS.partition);
  const maxRecords = int(p.max_records, "parameters.max_records", 1, DEFAULTS.maxRecords);
  const maxTransactionRecords = int(
    p.max_transaction_records,
    "parameters.max_transaction_records",
    1,
    DEFAULTS.maxTransactionRecords,
  );
  if (maxTransactionRecords < maxRecords)
    problems.push("parameters.max_transaction_records must be at least parameters.max_records");
  const stateSchema = str(p.state_schema, "parameters.state_schema", false) ?? DEFAULTS.stateSchema;
  const missingRows = p.missing_rows ?? DEFAULTS.missingRows;
  if (missingRows !== "skip" && missingRows !== "error")
    problems.push(`parameters.missing_rows must be "skip" or "error"`);

  const connectTimeoutMs = int(
    p.connect_timeout_ms,
    "parameters.connect_timeout_ms",
    1,
    DEFAULTS.connectTimeoutMs,
  );
  const readTimeoutMs = int(p.read_timeout_ms, "parameters.read_timeout_ms", 1, DEFAULTS.readTimeoutMs);
  // The client sends it as an i32.
  const fetchMaxBytes = int(
    p.fetch_max_bytes,
    "parameters.fetch_max_bytes",
    1024,
    DEFAULTS.fetchMaxBytes,
    2 ** 31 - 1,
  );
  const runTimeoutMs = int(
    p.run_timeout_ms,
    "parameters.run_timeout_ms",
    MIN_RUN_TIMEOUT_MS,
    DEFAULTS.runTimeoutMs,
  );
  const statementTimeoutMs = int(
    p.statement_timeout_ms,
    "parameters.statement_timeout_ms",
    1,
    DEFAULTS.statementTimeoutMs,
  );
  const lockTimeoutMs = int(p.lock_timeout_ms, "parameters.lock_timeout_ms", 1, DEFAULTS.lockTimeoutMs);
  const queryTimeoutMs = int(
    p.query_timeout_ms,
    "parameters.query_timeout_ms",
    1,
    statementTimeoutMs + DEFAULTS.queryTimeoutMarginMs,
  );
  const tcpKeepaliveMs = int(
    p.tcp_keepalive_ms,
    "parameters.tcp_keepalive_ms",
    1000,
    DEFAULTS.tcpKeepaliveMs,
  );
  const onLostRecords = p.on_lost_records ?? DEFAULTS.onLostRecords;
  if (onLostRecords !== "error" && onLostRecords !== "skip")
    problems.push(`parameters.on_lost_records must be "error" or "skip"`);

  let startLsn: bigint | null = null;
  if (p.start_lsn !== undefined && p.start_lsn !== null) {
    startLsn = parseLsn(p.start_lsn);
    if (startLsn === null)
      problems.push(
        `parameters.start_lsn must be an LSN like 0/16B3748 or a decimal number (got ${JSON.stringify(p.start_lsn)})`,
      );
  }
  const onConflict = p.on_conflict ?? DEFAULTS.onConflict;
  if (onConflict !== "error" && onConflict !== "upsert")
    problems.push(`parameters.on_conflict must be "error" or "upsert"`);

  const onError = p.on_error ?? DEFAULTS.onError;
  if (onError !== "halt" && onError !== "dead_letter")
    problems.push(`parameters.on_error must be "halt" or "dead_letter"`);

  if (problems.length > 0) throw new ConfigError(`${origin}: ${problems.join("; ")}`);
  return {
    name: name as string,
    topic: topic as string,
    partition,
    databaseUrl: databaseUrl as string,
    source,
    maxRecords,
    maxTransactionRecords,
    stateSchema,
    missingRows: missingRows as MissingRows,
    connectTimeoutMs,
    readTimeoutMs,
    fetchMaxBytes,
    runTimeoutMs,
    statementTimeoutMs,
    lockTimeoutMs,
    queryTimeoutMs,
    tcpKeepaliveMs,
    onLostRecords: onLostRecords as "error" | "skip",
    startLsn,
    onConflict: onConflict as "error" | "upsert",
    onError: onError as "halt" | "dead_letter",
  };
}

/** Whether node-postgres will parse the URL (WHATWG rules, an empty host allowed as it allows it). */
function parsesAsUrl(url: string): boolean {
  const text = / |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(url)
    ? encodeURI(url).replace(/%25(\d\d)/g, "%$1")
    : url;
  for (const candidate of [text, text.replace("@/", "@___empty___/")]) {
    try {
      const u = new URL(candidate);
      return u.port === "" || Number(u.port) > 0;
    } catch {}
  }
  return false;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
