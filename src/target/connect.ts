import pg from "pg";
import type { SinkConfig } from "../config.js";
import { ConfigError } from "../errors.js";
import { TargetError } from "./failure.js";

/**
 * The sink's session on the target: every wait on it is bounded, on both ends of the connection, so
 * neither a dead network nor a server that stops answering can keep a run (or its lock) forever.
 */

/** The server's TCP keepalive probes before it gives up on a silent peer. */
export const KEEPALIVE_PROBES = 3;

/** pg.Client options for the configured target, timeouts included. */
export function clientOptions(config: SinkConfig): pg.ClientConfig {
  return {
    connectionString: config.databaseUrl,
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
  const host = c.host ?? "localhost";
  return host.startsWith("/") ? `${host}/.s.PGSQL.${c.port ?? 5432}` : `${host}:${c.port ?? 5432}`;
}

/**
 * Connects to the target database and applies the session's limits. A failure names the host and
 * the cause, never the URL; an unparsable URL is a configuration error naming the setting.
 */
export async function connectTarget(config: SinkConfig): Promise<pg.Client> {
  let client: pg.Client;
  try {
    client = new pg.Client(clientOptions(config));
  } catch {
    throw new ConfigError(
      "parameters.url (or FLUVIO_PG_DATABASE_URL) is not a valid postgres:// URL: check its host, port and percent-encoding",
    );
  }
  // A dropped connection surfaces as a failed query; without a listener it would crash the process.
  client.on("error", () => {});
  const host = targetHost(client);
  try {
    await client.connect();
    await client.query(sessionSettings(config));
  } catch (e) {
    destroyTarget(client);
    throw TargetError.from(e, { host, phase: "connect", config });
  }
  return client;
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
