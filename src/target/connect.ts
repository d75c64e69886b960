import pg from "pg";
import { type SinkConfig, tlsOfUrl } from "../config.js";
import { ConfigError, sqlState } from "../errors.js";
import { TargetError } from "./failure.js";
import { explainTlsError, sslOption, type TargetTls, withoutTlsParams } from "./tls.js";

/**
 * The sink's session on the target: every wait on it is bounded, on both ends of the connection, so
 * neither a dead network nor a server that stops answering can keep a run (or its lock) forever.
 */

/** The server's TCP keepalive probes before it gives up on a silent peer. */
export const KEEPALIVE_PROBES = 3;

/** pg.Client options for the configured target, timeouts and TLS included. */
export function clientOptions(config: SinkConfig, ssl: pg.ClientConfig["ssl"] = false): pg.ClientConfig {
  return {
    // TLS comes from sslOption (libpq's sslmode semantics), not from pg's own reading of the URL.
    connectionString: withoutTlsParams(config.databaseUrl),
    ssl,
    application_name: `fluvio-postgres-sink:${config.name}`,
    // TCP connect, TLS and authentication together.
    connectionTimeoutMillis: config.connectTimeoutMs,
    // A query whose reply never comes (a server or network gone silent) fails instead of hanging.
    query_timeout: config.queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: config.tcpKeepaliveMs,
  };
}

/**
 * Server-side limits for the sink's session, as one query and its parameters. The tcp_* settings
 * make the server notice a peer that vanished (keepalive probes while idle, tcp_user_timeout while
 * its replies go unacknowledged), so a stranded session ends and its locks go with it; on a Unix
 * socket the server ignores them, and a server before PostgreSQL 12 has no tcp_user_timeout.
 */
export function sessionSettings(config: SinkConfig): { text: string; values: string[] } {
  const keepaliveS = Math.max(1, Math.ceil(config.tcpKeepaliveMs / 1000));
  const settings: [string, number][] = [
    ["statement_timeout", config.statementTimeoutMs],
    ["lock_timeout", config.lockTimeoutMs],
    // Outside the run's own transaction (which sets its own, see runOnce), a session left idle in
    // a transaction is a leak.
    ["idle_in_transaction_session_timeout", config.statementTimeoutMs],
    ["tcp_keepalives_idle", keepaliveS],
    ["tcp_keepalives_interval", keepaliveS],
    ["tcp_keepalives_count", KEEPALIVE_PROBES],
  ];
  const calls = settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, false)`);
  const n = settings.length * 2;
  calls.push(
    `CASE WHEN current_setting('server_version_num')::int >= 120000 THEN set_config($${n + 1}, $${n + 2}, false) END`,
  );
  settings.push(["tcp_user_timeout", (KEEPALIVE_PROBES + 1) * config.tcpKeepaliveMs]);
  return {
    text: `SELECT ${calls.join(", ")}`,
    values: settings.flatMap(([name, value]) => [name, String(Math.floor(value))]),
  };
}

/** host:port (or the socket directory) of a client, for messages; never credentials. */
export function targetHost(client: pg.Client): string {
  const c = client as unknown as { host?: string; port?: number };
  return hostLabel(c.host ?? "localhost", c.port ?? 5432);
}

/** host:port, or the socket file for a socket directory: how messages name the target. */
function hostLabel(host: string, port: string | number): string {
  return host.startsWith("/") ? `${host}/.s.PGSQL.${port}` : `${host}:${port}`;
}

/** The server refused TLS ('N' to SSLRequest): node-postgres says so in this message only. */
function refusedTls(e: unknown): boolean {
  return /does not support SSL/i.test((e as Error)?.message ?? "");
}

async function attempt(config: SinkConfig, tls: TargetTls, encrypt: boolean): Promise<pg.Client> {
  let client: pg.Client;
  try {
    client = new pg.Client(clientOptions(config, sslOption(tls, encrypt)));
  } catch {
    throw new ConfigError(
      "parameters.url (or FLUVIO_PG_DATABASE_URL) is not a valid postgres:// URL: check its host, port and percent-encoding",
    );
  }
  // A dropped connection surfaces as a failed query; without a listener it would crash the process.
  client.on("error", () => {});
  try {
    await client.connect();
    return client;
  } catch (e) {
    destroyTarget(client);
    throw e;
  }
}

/**
 * Connects to the target database with libpq's sslmode semantics (prefer, the default, tries TLS
 * without checking the certificate and falls back to a plain connection when the server has no TLS;
 * allow tries plain first and TLS when the server insists), then applies the session's limits. A
 * failure names the host and the cause, never the URL; an unparsable URL is a configuration error
 * naming the setting.
 */
export async function connectTarget(config: SinkConfig): Promise<pg.Client> {
  const tls = config.tls ?? tlsOfUrl(config.databaseUrl);
  const host = targetHostOf(config);
  let client: pg.Client;
  try {
    if (tls.mode === "disable") client = await attempt(config, tls, false);
    else if (tls.mode === "prefer") {
      try {
        client = await attempt(config, tls, true);
      } catch (e) {
        if (!refusedTls(e)) throw e;
        client = await attempt(config, tls, false);
      }
    } else if (tls.mode === "allow") {
      try {
        client = await attempt(config, tls, false);
      } catch (e) {
        // 28000: no pg_hba.conf line admits a plain connection (hostssl only).
        if (sqlState(e) !== "28000") throw e;
        client = await attempt(config, tls, true);
      }
    } else client = await attempt(config, tls, true);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const explained = explainTlsError(e as Error & { code?: string }, tls);
    if (explained)
      throw new TargetError(host, "connect", `cannot connect to the target database: ${explained}`, {
        cause: e,
      });
    throw TargetError.from(e, { host, phase: "connect", config });
  }
  try {
    await client.query(sessionSettings(config));
  } catch (e) {
    destroyTarget(client);
    throw TargetError.from(e, { host: targetHost(client), phase: "connect", config });
  }
  return client;
}

/** host:port from the configured URL, for messages before a client exists. */
function targetHostOf(config: SinkConfig): string {
  try {
    const u = new URL(config.databaseUrl);
    return hostLabel(u.hostname || u.searchParams.get("host") || "localhost", u.port || 5432);
  } catch {
    return "(unparsable URL)";
  }
}

/** Drops the connection at once: no goodbye to a server that may never answer it. */
export function destroyTarget(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  stream?.destroy();
}

/** Ends the session politely, or drops it when the server does not answer within `ms`. */
export async function closeTarget(client: pg.Client, ms = 1000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([client.end().catch(() => {}), gaveUp]);
  clearTimeout(timer);
  destroyTarget(client);
}
