import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import middy from "@middy/core";
import { clearCache, getInternal } from "@middy/util";
import type { Context } from "aws-lambda";
import { lambdaMemoryBudgetMb } from "../budget.js";
import { configFromEnv, type SinkConfig } from "../config.js";
import { asError, ConfigError, SinkError, sqlState } from "../errors.js";
import type { Logger as SinkLogger } from "../log.js";
import { redact } from "../log.js";
import { safeText } from "../row-values.js";
import { defaultOpenSource, type RunFailure, type RunSummary, runOnce } from "../run.js";
import { fetchSecretValue, lazySecretsManager } from "./lazy-secrets.js";

/**
 * The scheduled Lambda face: configuration from the environment, secrets from AWS Secrets Manager
 * (@middy/secrets-manager, cached for 15 minutes and fetched again by the first invocation after,
 * loaded with the AWS SDK on first use: see lazy-secrets.ts), structured logs and CloudWatch EMF metrics (Powertools), and the same runOnce as
 * the CLI.
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

/**
 * The dimensions of every metric besides Powertools' `service`: one series per sink, so sinks in one
 * account and region alarm separately. From the same variables the configuration reads.
 */
export function metricDimensions(env: NodeJS.ProcessEnv): Record<string, string> {
  const partition = env.FLUVIO_PARTITION || "0";
  return {
    Connector: env.FLUVIO_PG_SINK_NAME || "postgres-sink",
    Topic: env.FLUVIO_TOPIC || "(unset)",
    Partition: /^\d+$/.test(partition) ? String(Number(partition)) : partition,
  };
}

type Outcome =
  | { status: "applied" | "idle" | "locked"; summary: RunSummary }
  | { status: "failed"; failure: RunFailure | null };

/** Rejects with `what` named once `deadline` (ms since the epoch) passes. */
function beforeDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SinkError(`${what}: no answer before the run's deadline`)),
      Math.max(0, deadline - Date.now()),
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** The reasons behind middy's "Failed to resolve internal values", which alone says nothing. */
function secretFailure(e: unknown): string {
  const err = asError(e);
  const data = (err.cause as { data?: unknown[] } | undefined)?.data;
  const causes = Array.isArray(data)
    ? data.map((c) => {
        const x = asError(c);
        return `${x.name}: ${x.message}`;
      })
    : [`${err.name}: ${err.message}`];
  return causes.join("; ");
}

function adapt(logger: Logger): SinkLogger {
  return {
    debug: (m, f) => logger.debug(m, { ...f }),
    info: (m, f) => logger.info(m, { ...f }),
    warn: (m, f) => logger.warn(m, { ...f }),
    error: (m, f) => logger.error(m, { ...f }),
  };
}

/** How long fetched secrets are used before the next invocation fetches them again. */
export const SECRET_CACHE_MS = 15 * 60 * 1000;

export function createApplyHandler(
  env: NodeJS.ProcessEnv = process.env,
  { secretCacheMs = SECRET_CACHE_MS }: { secretCacheMs?: number } = {},
) {
  const logger = new Logger({ serviceName: env.POWERTOOLS_SERVICE_NAME ?? "fluvio-postgres-sink" });
  const metrics = new Metrics({
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? "FluvioPostgresSink",
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? "fluvio-postgres-sink",
  });
  const secrets: Record<string, string> = {};
  if (env.FLUVIO_PG_DATABASE_URL_SECRET) secrets.databaseUrl = env.FLUVIO_PG_DATABASE_URL_SECRET;
  if (env.FLUVIO_PROFILE_SECRET) secrets.fluvioProfile = env.FLUVIO_PROFILE_SECRET;
  if (env.FLUVIO_PG_CA_SECRET) secrets.databaseCa = env.FLUVIO_PG_CA_SECRET;
  metrics.setDefaultDimensions(metricDimensions(env));
  const log = adapt(logger);
  // Per invocation (one at a time per process): when it started and what a failed run reported.
  let startedAt = Date.now();
  let failure: RunFailure | null = null;

  /** Every invocation publishes the same metrics, so alarms never lack data because runs fail. */
  const addMetrics = (o: Outcome) => {
    const count = (name: string, v: number) => metrics.addMetric(name, MetricUnit.Count, v);
    const s = o.status === "failed" ? null : o.summary;
    const ok = o.status === "applied" || o.status === "idle";
    count("RunSucceeded", ok ? 1 : 0);
    count("RunFailed", o.status === "failed" ? 1 : 0);
    count("RunLocked", o.status === "locked" ? 1 : 0);
    count("RecordsApplied", s?.records ?? 0);
    count("Transactions", s?.transactions ?? 0);
    count("Statements", s?.statements ?? 0);
    count("MissingRows", s?.missing_rows ?? 0);
    // Source transactions set aside this run (on_error: dead_letter); each is also logged as a warning.
    count("DeadLetters", s?.dead_letters ?? 0);
    if (s && s.lag !== null) count("Lag", s.lag);
    // Can the schedule keep up: published once a run knows (README, Sizing).
    if (s && s.arrival_rate !== null)
      metrics.addMetric("ArrivalRate", MetricUnit.CountPerSecond, s.arrival_rate);
    if (s && s.capacity !== null) metrics.addMetric("Capacity", MetricUnit.CountPerSecond, s.capacity);
    if (s && s.time_to_catch_up !== null)
      metrics.addMetric("TimeToCatchUp", MetricUnit.Seconds, s.time_to_catch_up);
    if (s && o.status !== "locked") count("ScheduleOutrun", s.schedule_outrun ? 1 : 0);
    const behind =
      o.status === "failed" ? (o.failure?.seconds_behind_source ?? null) : o.summary.seconds_behind_source;
    if (behind !== null) metrics.addMetric("SecondsBehindSource", MetricUnit.Seconds, behind);
    // A locked run did not look at the state, so it does not know.
    const failures = ok ? 0 : o.status === "failed" ? (o.failure?.consecutive_failures ?? null) : null;
    if (failures !== null) count("ConsecutiveFailures", failures);
    metrics.addMetric("Duration", MetricUnit.Milliseconds, s?.duration_ms ?? Date.now() - startedAt);
  };
  // Per set of secrets: middy's cache is process-wide.
  const cacheKey = `fluvio-postgres-sink:${JSON.stringify(secrets)}`;
  const secretsManager = lazySecretsManager({
    fetchData: secrets,
    setToContext: false,
    cacheKey,
    cacheExpiry: secretCacheMs,
    disablePrefetch: true,
  });

  const apply = async (_event: unknown, context: SinkContext): Promise<RunSummary> => {
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
      // The batch's memory budget follows the function's memory size unless set.
      const memory = Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE);
      const budget = env.MEMORY_BUDGET_MB || (memory > 0 ? String(lambdaMemoryBudgetMb(memory)) : undefined);
      return configFromEnv({ ...env, ...ca, FLUVIO_PG_DATABASE_URL: url, MEMORY_BUDGET_MB: budget });
    };
    const deadline = () => Date.now() + context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS;
    const url = secrets.databaseUrl ? urlFromSecret(context.databaseUrl) : env.FLUVIO_PG_DATABASE_URL;
    const onFailure = (f: RunFailure) => {
      failure = f;
    };
    // A warm function's next invocation reuses the Fluvio connection (checked before each use).
    const openSource = (config: SinkConfig, l: SinkLogger) => defaultOpenSource(config, l, true);
    let summary: RunSummary;
    try {
      summary = await runOnce(configFor(url), { log, deadline: deadline(), onFailure, openSource });
    } catch (e) {
      if (!(secrets.databaseUrl && isAuthFailure(e))) throw e;
      // The password was probably rotated since the secret was cached: fetch it once more.
      log.warn("database login failed; fetching the database URL secret again");
      clearCache([cacheKey]);
      let fresh: string | undefined;
      try {
        fresh = urlFromSecret(
          await beforeDeadline(
            fetchSecretValue(secrets.databaseUrl),
            deadline(),
            "fetching the database URL secret",
          ),
        );
      } catch (f) {
        throw new SinkError(`cannot fetch the database URL secret again: ${secretFailure(f)}`, { cause: f });
      }
      summary = await runOnce(configFor(fresh), { log, deadline: deadline(), onFailure, openSource });
    }
    addMetrics({ status: summary.status, summary });
    logger.info("run done", { summary });
    return summary;
  };

  return middy<unknown, RunSummary, Error, SinkContext>(apply)
    .use(injectLambdaContext(logger))
    .use(logMetrics(metrics))
    .use({
      before: async () => {
        startedAt = Date.now();
        failure = null;
      },
    })
    .use({
      before: async (request) => {
        const keys = Object.keys(secrets);
        if (keys.length === 0) return;
        const deadline = Date.now() + request.context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS;
        try {
          // Loading @middy/secrets-manager and the SDK (first use only), then the fetches or the
          // cached values, all within the run's deadline.
          const values = (async () => {
            await secretsManager.before?.(request);
            return getInternal(keys, request);
          })();
          Object.assign(request.context, await beforeDeadline(values, deadline, "fetching secrets"));
        } catch (e) {
          // A fetch still pending must not be the cached answer for the next invocation.
          clearCache([cacheKey]);
          throw new SinkError(
            `cannot fetch secrets (${keys.map((k) => secrets[k]).join(", ")}): ${secretFailure(e)}`,
            {
              cause: e,
            },
          );
        }
      },
    })
    .use({
      onError: async (request) => {
        const err = asError(request.error);
        // Published by logMetrics, which runs after this: a failing sink must not go silent.
        addMetrics({ status: "failed", failure });
        logger.error("run failed", { error: { name: err.name, message: safeText(redact(err.message)) } });
        // No response set: middy rethrows and the invocation fails (retries are off; the next tick retries).
      },
    });
}
