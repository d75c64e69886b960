import pg from "pg";
import { type SinkConfig, tlsOfUrl } from "../config.js";
import { SinkError, sqlState } from "../errors.js";
import { explainTlsError, sslOption, type TargetTls, withoutTlsParams } from "./tls.js";

/** The server refused TLS ('N' to SSLRequest): node-postgres says so in this message only. */
function refusedTls(e: unknown): boolean {
  return /does not support SSL/i.test((e as Error)?.message ?? "");
}

async function attempt(config: SinkConfig, tls: TargetTls, encrypt: boolean): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: withoutTlsParams(config.databaseUrl),
    ssl: sslOption(tls, encrypt),
    application_name: `fluvio-postgres-sink:${config.name}`,
  });
  // A dropped connection surfaces as a failed query; without a listener it would crash the process.
  client.on("error", () => {});
  try {
    await client.connect();
    return client;
  } catch (e) {
    await client.end().catch(() => {});
    throw e;
  }
}

/**
 * Connects to the target database with libpq's sslmode semantics: prefer (the default) tries TLS
 * without checking the certificate and falls back to a plain connection when the server has no TLS;
 * allow tries plain first and TLS when the server insists. A failure names the cause, never the URL.
 */
export async function connectTarget(config: SinkConfig): Promise<pg.Client> {
  const tls = config.tls ?? tlsOfUrl(config.databaseUrl);
  try {
    if (tls.mode === "disable") return await attempt(config, tls, false);
    if (tls.mode === "prefer") {
      try {
        return await attempt(config, tls, true);
      } catch (e) {
        if (!refusedTls(e)) throw e;
        return await attempt(config, tls, false);
      }
    }
    if (tls.mode === "allow") {
      try {
        return await attempt(config, tls, false);
      } catch (e) {
        // 28000: no pg_hba.conf line admits a plain connection (hostssl only).
        if (sqlState(e) !== "28000") throw e;
        return await attempt(config, tls, true);
      }
    }
    return await attempt(config, tls, true);
  } catch (e) {
    const err = e as Error & { code?: string };
    const detail = explainTlsError(err, tls) ?? `${err.message}${err.code ? ` (${err.code})` : ""}`;
    throw new SinkError(`cannot connect to the target database: ${detail}`, { cause: e });
  }
}
