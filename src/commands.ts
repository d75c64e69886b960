import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type pg from "pg";
import { readBudgetBytes } from "./budget.js";
import type { SinkConfig } from "./config.js";
import { parseConnectorConfig } from "./config-file.js";
import { actor, pendingDeadLetters } from "./dead-letter.js";
import { asError, ConfigError, SinkError } from "./errors.js";
import { jsonLogger, type Logger, redact } from "./log.js";
import { formatLsn } from "./lsn.js";
import { deadLetterList, replayDeadLetter } from "./replay.js";
import { safeText } from "./row-values.js";
import { connectTarget, defaultOpenSource, runOnce } from "./run.js";
import { commitTimeIso, loadStatus, secondsSince } from "./state.js";
import { estimateThroughput } from "./throughput.js";

/**
 * The CLI's commands once their arguments are checked (src/cli.ts): everything that reads the
 * config and talks to the target. A module of its own because it is most of the program (pg, yaml,
 * the sink), which src/cli.ts loads only for a command, not for --version, help or bad usage.
 */

export type CommandName = "run" | "status" | "skip" | "dead-letters" | "replay";

/** As parseArgs gives them, checked by src/cli.ts's usageProblem. */
export interface CommandOptions {
  offset?: unknown;
  id?: unknown;
  reason?: unknown;
  yes?: unknown;
}

/** Runs a command and prints its JSON result; the process exit status. */
export async function runCommand(
  command: CommandName,
  configPath: string,
  opts: CommandOptions,
  log: Logger,
): Promise<number> {
  const { offset, id, reason } = opts;
  let config: SinkConfig;
  try {
    config = await loadConfig(configPath);
  } catch (e) {
    log.error(redact(asError(e).message));
    return 2;
  }
  try {
    let out: unknown;
    if (command === "run") out = await runOnce(config, { log });
    else if (command === "status") out = await status(config);
    else if (command === "skip") {
      const summary = await runOnce(config, {
        log,
        skip: {
          offset: typeof offset === "string" ? BigInt(offset) : null,
          reason: typeof reason === "string" ? reason : null,
          actor: actor(),
          dryRun: opts.yes !== true,
        },
      });
      if (summary.status === "locked")
        throw new SinkError(
          "another run is applying this partition: skipped nothing; try again when it ends",
        );
      out = summary;
    } else
      out = await withTarget(config, (client) =>
        command === "dead-letters"
          ? deadLetterList(client, config)
          : replayDeadLetter(
              client,
              config,
              id as string,
              { actor: actor(), reason: typeof reason === "string" ? reason : null },
              log,
            ),
      );
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return 0;
  } catch (e) {
    const err = asError(e);
    const message = safeText(redact(err.message));
    log.error(message, { error: err.name });
    if (command !== "run" && command !== "status")
      process.stdout.write(`${JSON.stringify({ status: "failed", error: message })}\n`);
    // A URL that only turns out unusable when connecting is still a configuration problem.
    return err instanceof ConfigError ? 2 : 1;
  }
}

async function loadConfig(path: string): Promise<SinkConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new ConfigError(`cannot read config file ${path}`);
  }
  return parseConnectorConfig(text, { baseDir: dirname(resolve(path)), origin: path });
}

/** End of the source, or why it is unknown: status must show the stored state without it. */
async function sourceEnd(config: SinkConfig): Promise<{ end: bigint | null; error: string | null }> {
  const source = defaultOpenSource(config, jsonLogger());
  try {
    return { end: await source.endOffset(), error: null };
  } catch (e) {
    return { end: null, error: redact(asError(e).message) };
  } finally {
    await source.close().catch(() => {});
  }
}

async function status(config: SinkConfig): Promise<Record<string, unknown>> {
  const client = await connectTarget(config);
  try {
    const key = { connector: config.name, topic: config.topic, partition: config.partition };
    const stored = await loadStatus(client, config.stateSchema, key);
    const { end, error } = await sourceEnd(config);
    const next = stored?.nextOffset ?? 0n;
    const lag = end === null ? null : Number(end > next ? end - next : 0n);
    const commitTime = stored?.lastCommitTime ?? null;
    const health = stored?.health;
    const rates = estimateThroughput(
      stored?.runHistory ?? [],
      {
        intervalSeconds: config.scheduleIntervalSeconds,
        maxRecords: stored?.batchLimit ?? config.maxRecords,
        readBytes: readBudgetBytes(config.memoryBudgetMb),
      },
      lag,
    );
    return {
      ...key,
      next_offset: next.toString(),
      end_offset: end === null ? null : end.toString(),
      lag,
      source_error: error,
      seconds_behind_source:
        lag === null ? null : lag === 0 ? 0 : commitTime === null ? null : secondsSince(commitTime),
      last_commit_lsn: stored?.lastCommitLsn == null ? null : formatLsn(stored.lastCommitLsn),
      last_commit_lsn_decimal: stored?.lastCommitLsn?.toString() ?? null,
      last_commit_time: commitTime === null ? null : commitTimeIso(commitTime),
      last_success_at: health?.lastSuccessAt?.toISOString() ?? null,
      last_error: health?.lastError ?? null,
      last_error_at: health?.lastErrorAt?.toISOString() ?? null,
      consecutive_failures: health?.consecutiveFailures ?? 0,
      dead_letters_pending: await pendingDeadLetters(client, config.stateSchema, key),
      batch_limit: stored?.batchLimit ?? null,
      max_records: config.maxRecords,
      memory_budget_mb: config.memoryBudgetMb,
      arrival_rate: rates.arrival_rate,
      capacity: rates.capacity,
      time_to_catch_up: rates.time_to_catch_up,
      keeping_up: rates.keeping_up,
      records_per_run: rates.records_per_run,
      schedule_interval_seconds: rates.schedule_interval_seconds,
      updated_at: stored?.updatedAt?.toISOString() ?? null,
      tables: stored?.tables ?? [],
    };
  } finally {
    await client.end().catch(() => {});
  }
}

async function withTarget<T>(config: SinkConfig, f: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectTarget(config);
  try {
    return await f(client);
  } finally {
    await client.end().catch(() => {});
  }
}
