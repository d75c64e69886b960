import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import type { Context } from "aws-lambda";
import { configFromEnv } from "../config.js";
import { asError, ConfigError, sqlState } from "../errors.js";
import type { Logger as SinkLogger } from "../log.js";
import { redact } from "../log.js";
import { type RunSummary, runOnce } from "../run.js";
import { SecretCache } from "./secrets.js";

/**
 * The scheduled Lambda face: configuration from the environment, secrets from AWS Secrets Manager
 * (cached for 15 minutes, see secrets.ts), structured logs and CloudWatch EMF metrics (Powertools), and the same runOnce as the CLI.
 */

/** Time kept back from the Lambda's remaining time, so the transaction ends before the runtime stops. */
export const SAFETY_MARGIN_MS = 3000;

interface SinkContext extends Context {
  databaseUrl?: unknown;
  fluvioProfile?: unknown;
  databaseCa?: unknown;
}

/** A database URL secret is either the URL itself or an RDS-style JSON secret (which may carry sslmode). */
export function urlFromSecret(value: unknown): string | undefined {
  if (typeof value === "string" && value !== "") return value;
  if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if (typeof v.url === "string") return v.url;
    if (typeof v.username === "string" && typeof v.password === "string" && typeof v.host === "string") {
      const db = typeof v.dbname === "string" ? v.dbname : "postgres";
      const url = `postgres://${encodeURIComponent(v.username)}:${encodeURIComponent(v.password)}@${v.host}:${v.port ?? 5432}/${encodeURIComponent(db)}`;
      // libpq's TLS parameters may ride along in the secret (see README, TLS).
      const tls = new URLSearchParams();
      for (const k of ["sslmode", "sslrootcert"])
        if (typeof v[k] === "string" && v[k] !== "") tls.set(k, v[k]);
      return tls.size > 0 ? `${url}?${tls}` : url;
    }
  }
  return undefined;
}

function isAuthFailure(e: unknown): boolean {
  const code = sqlState(e);
  return code === "28P01" || code === "28000";
}

function adapt(logger: Logger): SinkLogger {
  return {
    debug: (m, f) => logger.debug(m, { ...f }),
    info: (m, f) => logger.info(m, { ...f }),
    warn: (m, f) => logger.warn(m, { ...f }),
    error: (m, f) => logger.error(m, { ...f }),
  };
}

export function createApplyHandler(env: NodeJS.ProcessEnv = process.env) {
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME ?? "fluvio-postgres-sink" });
  const metrics = new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? "FluvioPostgresSink",
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? "fluvio-postgres-sink",
  });
  const secrets: { databaseUrl?: string; fluvioProfile?: string; databaseCa?: string } = {};
  if (env.FLUVIO_PG_DATABASE_URL_SECRET) secrets.databaseUrl = env.FLUVIO_PG_DATABASE_URL_SECRET;
  if (env.FLUVIO_PROFILE_SECRET) secrets.fluvioProfile = env.FLUVIO_PROFILE_SECRET;
  if (env.FLUVIO_PG_CA_SECRET) secrets.databaseCa = env.FLUVIO_PG_CA_SECRET;
  const log = adapt(logger);
  const cache = new SecretCache(15 * 60 * 1000);

  const apply = async (_event: unknown, context: SinkContext): Promise<RunSummary> => {
    for (const [key, id] of Object.entries(secrets))
      context[key as keyof typeof secrets] = await cache.get(id);
    if (secrets.fluvioProfile) {
      const profile = context.fluvioProfile;
      const text = typeof profile === "string" ? profile : JSON.stringify(profile);
      // The native client reads its profile from a file: a private one under /tmp.
      const path = `/tmp/fluvio-profile-${createHash("sha256").update(text).digest("hex").slice(0, 12)}.toml`;
      writeFileSync(path, text, { mode: 0o600 });
      process.env.FLV_PROFILE_PATH = path;
    }
    const configFor = (url: string | undefined) => {
      if (!url)
        throw new ConfigError("environment: set FLUVIO_PG_DATABASE_URL_SECRET or FLUVIO_PG_DATABASE_URL");
      // The CA secret's PEM reaches the config as a secret the ssl_root_cert setting names.
      const ca = secrets.databaseCa
        ? {
            FLUVIO_PG_CA_PEM: String(context.databaseCa),
            FLUVIO_PG_SSL_ROOT_CERT: "secrets.FLUVIO_PG_CA_PEM",
          }
        : {};
      return configFromEnv({ ...env, ...ca, FLUVIO_PG_DATABASE_URL: url });
    };
    const deadline = () => Date.now() + context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS;
    const url = secrets.databaseUrl ? urlFromSecret(context.databaseUrl) : env.FLUVIO_PG_DATABASE_URL;
    let summary: RunSummary;
    try {
      summary = await runOnce(configFor(url), { log, deadline: deadline() });
    } catch (e) {
      if (!(secrets.databaseUrl && isAuthFailure(e))) throw e;
      // The password was probably rotated since the secret was cached: fetch it once more.
      log.warn("database login failed; fetching the database URL secret again");
      cache.forget(secrets.databaseUrl);
      const fresh = urlFromSecret(await cache.get(secrets.databaseUrl));
      summary = await runOnce(configFor(fresh), { log, deadline: deadline() });
    }
    metrics.addMetric("RecordsApplied", MetricUnit.Count, summary.records);
    metrics.addMetric("Transactions", MetricUnit.Count, summary.transactions);
    metrics.addMetric("Statements", MetricUnit.Count, summary.statements);
    metrics.addMetric("MissingRows", MetricUnit.Count, summary.missing_rows);
    if (summary.lag !== null) metrics.addMetric("Lag", MetricUnit.Count, summary.lag);
    metrics.addMetric("Duration", MetricUnit.Milliseconds, summary.duration_ms);
    logger.info("run done", { summary });
    return summary;
  };

  return middy<unknown, RunSummary, Error, SinkContext>(apply)
    .use(injectLambdaContext(logger))
    .use(logMetrics(metrics))
    .use({
      onError: async (request) => {
        const err = asError(request.error);
        logger.error("run failed", { error: { name: err.name, message: redact(err.message) } });
        // No response set: middy rethrows and the invocation fails (retries are off; the next tick retries).
      },
    });
}
