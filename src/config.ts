import { isAbsolute, resolve } from "node:path";
import type { MissingRows } from "./apply/execute.js";
import { ConfigError } from "./errors.js";
import {
  isSslMode,
  type RootCert,
  SSL_MODES,
  type SslMode,
  type TargetTls,
  tlsFromUrl,
} from "./target/tls.js";

/** Everything one run needs, validated. */
export interface SinkConfig {
  name: string;
  topic: string;
  partition: number;
  databaseUrl: string;
  source: { kind: "file"; path: string } | { kind: "fluvio"; endpoint: string | null };
  /** Records a run aims to consume; null: as many as its time and memory budget allow. */
  maxRecords: number | null;
  /** Memory a batch may use (MB), turned into bytes of records read (src/budget.ts). */
  memoryBudgetMb: number;
  /** Bytes of records per segment of a streamed batch (src/segmented-apply.ts). */
  segmentBytes: number;
  /** The schedule's interval, for the capacity estimate; null: estimated from the runs' spacing. */
  scheduleIntervalSeconds: number | null;
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
  /**
   * TLS to the target: libpq's sslmode and sslrootcert, from the URL or the ssl_* settings. Absent
   * (a config built in code): taken from the URL alone, see tlsOfUrl.
   */
  tls?: TargetTls;
  /** A source transaction that fails on its own: halt the run, or set it aside in the dead-letter table. */
  onError: "halt" | "dead_letter";
}

export const DEFAULTS = {
  partition: 0,
  maxRecords: null,
  memoryBudgetMb: 256,
  segmentBytes: 4 * 1024 * 1024,
  scheduleIntervalSeconds: null,
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
  "memory_budget_mb",
  "segment_bytes",
  "schedule_interval_seconds",
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
  "ssl_mode",
  "ssl_root_cert",
  "on_error",
];

/** A run with less time than this does not start (see runOnce). */
export const MIN_RUN_TIMEOUT_MS = 2000;

/** The top-level keys of the connector config (the Fluvio connector format, version 0.x). */
const TOP_LEVEL = ["version", "name", "type", "topic", "parameters", "secrets", "consumer"];
const CONSUMER = ["partition"];
/** Keys of the Fluvio connector format that have no meaning for this sink, and why. */
const CONSUMER_UNUSED: Record<string, string> = {
  offset: "the sink keeps its offset in the target's state table (see README, Offsets)",
  id: "the sink keeps its offset in the target's state table, not in a Fluvio consumer",
  max_bytes: "use parameters.max_records to bound a batch",
};

const URL_SECRET = "FLUVIO_PG_DATABASE_URL";

/** Environment variables that stand for connector settings (the Lambda face is configured this way). */
export const ENV_SETTINGS: Record<string, string> = {
  FLUVIO_PG_SINK_NAME: "name",
  FLUVIO_TOPIC: "topic",
  FLUVIO_PARTITION: "parameters.partition",
  FLUVIO_ENDPOINT: "parameters.fluvio_endpoint",
  FLUVIO_SOURCE: "parameters.source",
  MAX_RECORDS: "parameters.max_records",
  MAX_TRANSACTION_RECORDS: "parameters.max_transaction_records",
  MEMORY_BUDGET_MB: "parameters.memory_budget_mb",
  SEGMENT_BYTES: "parameters.segment_bytes",
  SCHEDULE_INTERVAL_SECONDS: "parameters.schedule_interval_seconds",
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
  FLUVIO_PG_SSL_MODE: "parameters.ssl_mode",
  FLUVIO_PG_SSL_ROOT_CERT: "parameters.ssl_root_cert",
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

  if ("apiVersion" in doc || "meta" in doc)
    throw new ConfigError(
      `${origin}: the apiVersion/meta layout is not read by this sink: put version, name, type and topic at the top level (not under meta), the settings under parameters, the partition under consumer or parameters, and secrets as NAME: value (see README, Configuration)`,
    );
  unknownKeys(doc, TOP_LEVEL, "", problems);
  const name = str(doc.name, "name", true);
  const type = str(doc.type, "type", true);
  if (type !== undefined && type !== "postgres-sink")
    problems.push(`type must be postgres-sink (got ${JSON.stringify(type)})`);
  const topic = str(doc.topic, "topic", true);
  const params = doc.parameters ?? {};
  if (!isObject(params)) problems.push("parameters must be a mapping");
  const p = isObject(params) ? params : {};
  unknownKeys(p, PARAMETERS, "parameters.", problems);
  const consumer = doc.consumer ?? {};
  if (!isObject(consumer)) problems.push("consumer must be a mapping");
  const c = isObject(consumer) ? consumer : {};
  for (const k of Object.keys(c))
    if (k in CONSUMER_UNUSED) problems.push(`consumer.${k} is not used by this sink: ${CONSUMER_UNUSED[k]}`);
  unknownKeys(
    Object.fromEntries(Object.entries(c).filter(([k]) => !(k in CONSUMER_UNUSED))),
    CONSUMER,
    "consumer.",
    problems,
  );
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
    const ref = secretRef(rawUrl);
    if (ref) {
      databaseUrl = secret(ref);
      if (!databaseUrl)
        problems.push(
          `parameters.url names secret ${ref}, which is set neither in secrets nor in the environment`,
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

  const paramPartition = int(p.partition, "parameters.partition", 0, DEFAULTS.partition);
  const consumerPartition = int(c.partition, "consumer.partition", 0, DEFAULTS.partition);
  const bothPartitions = p.partition != null && c.partition != null;
  if (bothPartitions && paramPartition !== consumerPartition)
    problems.push(
      `consumer.partition (${consumerPartition}) and parameters.partition (${paramPartition}) disagree: set one`,
    );
  const partition = c.partition != null ? consumerPartition : paramPartition;
  const maxRecords =
    p.max_records === undefined || p.max_records === null
      ? DEFAULTS.maxRecords
      : int(p.max_records, "parameters.max_records", 1, 1);
  const memoryBudgetMb = int(p.memory_budget_mb, "parameters.memory_budget_mb", 1, DEFAULTS.memoryBudgetMb);
  const segmentBytes = int(p.segment_bytes, "parameters.segment_bytes", 1, DEFAULTS.segmentBytes);
  const scheduleIntervalSeconds =
    p.schedule_interval_seconds === undefined || p.schedule_interval_seconds === null
      ? DEFAULTS.scheduleIntervalSeconds
      : int(p.schedule_interval_seconds, "parameters.schedule_interval_seconds", 1, 1);
  const maxTransactionRecords = int(
    p.max_transaction_records,
    "parameters.max_transaction_records",
    1,
    DEFAULTS.maxTransactionRecords,
  );
  if (maxRecords !== null && maxTransactionRecords < maxRecords)
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
  const tls =
    databaseUrl === undefined ? null : tlsSettings(databaseUrl, p, secret, env, opts.baseDir, problems);

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
    memoryBudgetMb,
    segmentBytes,
    scheduleIntervalSeconds,
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
    tls: tls as TargetTls,
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

/** The TLS settings a database URL alone asks for (with PGSSLMODE and PGSSLROOTCERT). */
export function tlsOfUrl(url: string, env: NodeJS.ProcessEnv = process.env): TargetTls {
  const problems: string[] = [];
  const tls = tlsSettings(url, {}, () => undefined, env, undefined, problems);
  if (tls === null) throw new ConfigError(`database URL: ${problems.join("; ")}`);
  return tls;
}

/**
 * sslmode and sslrootcert as libpq reads them: the URL's parameters first, then the ssl_mode and
 * ssl_root_cert settings (an error when both say different things), then PGSSLMODE and
 * PGSSLROOTCERT; sslmode defaults to prefer, or to verify-full with sslrootcert=system.
 */
function tlsSettings(
  url: string,
  p: Record<string, unknown>,
  secret: (name: string) => string | undefined,
  env: NodeJS.ProcessEnv,
  baseDir: string | undefined,
  problems: string[],
): TargetTls | null {
  const fromUrl = tlsFromUrl(url).params;
  const start = problems.length;
  let mode: SslMode | undefined;
  if (fromUrl.sslmode !== undefined) {
    if (isSslMode(fromUrl.sslmode)) mode = fromUrl.sslmode;
    else
      problems.push(
        `sslmode=${JSON.stringify(fromUrl.sslmode)} in the database URL is not one of ${SSL_MODES.join(", ")}`,
      );
  }
  if (p.ssl_mode != null) {
    if (!isSslMode(p.ssl_mode)) problems.push(`parameters.ssl_mode must be one of ${SSL_MODES.join(", ")}`);
    else if (mode !== undefined && mode !== p.ssl_mode)
      problems.push(`parameters.ssl_mode (${p.ssl_mode}) disagrees with sslmode=${mode} in the database URL`);
    else mode = p.ssl_mode;
  }
  if (mode === undefined && env.PGSSLMODE) {
    if (isSslMode(env.PGSSLMODE)) mode = env.PGSSLMODE;
    else problems.push(`PGSSLMODE must be one of ${SSL_MODES.join(", ")}`);
  }

  let rootCert: RootCert | null = null;
  const asRoot = (v: string, relativeTo: string | undefined): RootCert =>
    v === "system" ? { kind: "system" } : { kind: "file", path: resolve(relativeTo ?? process.cwd(), v) };
  if (fromUrl.sslrootcert !== undefined) rootCert = asRoot(fromUrl.sslrootcert, undefined);
  const setting = p.ssl_root_cert;
  if (setting != null) {
    let fromSetting: RootCert | null = null;
    if (typeof setting !== "string" || setting.trim() === "")
      problems.push("parameters.ssl_root_cert must be a file path, system, or a secret holding PEM text");
    else {
      const ref = secretRef(setting);
      if (ref) {
        const pem = secret(ref);
        if (!pem)
          problems.push(
            `parameters.ssl_root_cert names secret ${ref}, which is set neither in secrets nor in the environment`,
          );
        else if (!pem.includes("-----BEGIN CERTIFICATE-----"))
          problems.push(`parameters.ssl_root_cert: secret ${ref} does not hold a PEM certificate`);
        else fromSetting = { kind: "pem", pem, origin: `secret ${ref}` };
      } else fromSetting = asRoot(setting, baseDir);
    }
    if (fromSetting && rootCert)
      problems.push("parameters.ssl_root_cert and sslrootcert in the database URL are both set: set one");
    else if (fromSetting) rootCert = fromSetting;
  }
  if (rootCert === null && env.PGSSLROOTCERT) rootCert = asRoot(env.PGSSLROOTCERT, undefined);

  if (rootCert?.kind === "system") {
    mode ??= "verify-full";
    // libpq refuses this too: any public CA's certificate for any name would be accepted.
    if (mode !== "verify-full" && mode !== "disable")
      problems.push(`sslrootcert=system needs sslmode=verify-full (got ${mode})`);
  }
  if (problems.length > start) return null;
  return {
    mode: mode ?? "prefer",
    rootCert,
    cert: fromUrl.sslcert ?? null,
    key: fromUrl.sslkey ?? null,
  };
}

function secretRef(v: string): string | null {
  const ref = /^\s*(?:\$\{\{\s*)?secrets\.([A-Za-z_][A-Za-z0-9_]*)(?:\s*\}\})?\s*$/.exec(v);
  return ref ? (ref[1] as string) : null;
}

/** Keys not in `known` are errors, with the nearest known key as a suggestion. */
function unknownKeys(
  obj: Record<string, unknown>,
  known: string[],
  prefix: string,
  problems: string[],
): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k)) continue;
    const near = nearest(k, known);
    problems.push(
      `${prefix}${k} is not a known setting${near ? ` (did you mean ${prefix}${near}?)` : ` (known: ${known.map((x) => prefix + x).join(", ")})`}`,
    );
  }
}

/** The known key closest to `k` by edit distance, if it is close enough to be a likely typo. */
function nearest(k: string, known: string[]): string | null {
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of known) {
    const d = editDistance(k.toLowerCase().replace(/-/g, "_"), c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(best.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = cur;
  }
  return prev[b.length] as number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
