#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import type pg from "pg";
import { readBudgetBytes } from "./budget.js";
import type { SinkConfig } from "./config.js";
import { parseConnectorConfig } from "./config-file.js";
import { actor, pendingDeadLetters } from "./dead-letter.js";
import { asError, ConfigError, SinkError } from "./errors.js";
import { jsonLogger, redact } from "./log.js";
import { formatLsn } from "./lsn.js";
import { deadLetterList, replayDeadLetter } from "./replay.js";
import { safeText } from "./row-values.js";
import { connectTarget, defaultOpenSource, runOnce } from "./run.js";
import { commitTimeIso, loadStatus, secondsSince } from "./state.js";
import { estimateThroughput } from "./throughput.js";

const USAGE = `usage: fluvio-postgres-sink <command> --config <connector.yaml> [options]

commands:
  run           apply one bounded batch of records to the target, print a JSON summary on stdout
  status        print the stored state (offset, last commit, last success and error), the source's end
                and the lag; the stored state even when the source cannot be reached
  skip          move past the source transaction at the stored offset (or at --offset N, applying the
                transactions before it) on purpose, leaving an audit row; without --yes only shows
                what it would skip. Options: --offset N, --reason TEXT, --yes
  dead-letters  list the source transactions set aside (on_error: dead_letter)
  replay        apply dead letter --id N once its cause is fixed, marking it replayed (audited).
                Options: --id N (required), --reason TEXT
  help          print this text (also -h, --help)
  version       print the version (also -V, --version)

Every command prints one JSON object on stdout. Logs go to stderr as JSON lines. Exit status: 0 done
(or another run holds the partition), 1 the command failed and changed nothing, 2 bad usage or
configuration.`;

const COMMANDS = new Set(["run", "status", "skip", "dead-letters", "replay"]);

/** package.json sits one level above both src/cli.ts and the bundled dist/cli.mjs. */
function version(): string {
  return JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
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

export async function main(argv: string[]): Promise<number> {
  const log = jsonLogger();
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        offset: { type: "string" },
        reason: { type: "string" },
        yes: { type: "boolean" },
        id: { type: "string" },
      },
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const [command] = parsed.positionals;
  if (parsed.values.version || command === "version") {
    process.stdout.write(`fluvio-postgres-sink ${version()}\n`);
    return 0;
  }
  if (parsed.values.help || command === "help" || !command) {
    process.stdout.write(`${USAGE}\n`);
    return parsed.values.help || command ? 0 : 2;
  }
  if (!COMMANDS.has(command)) {
    process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
    return 2;
  }
  const configPath = parsed.values.config;
  if (typeof configPath !== "string") {
    process.stderr.write(`--config <connector.yaml> is required\n${USAGE}\n`);
    return 2;
  }
  const { offset, id, reason } = parsed.values;
  const usage = usageProblem(command, { offset, id, reason });
  if (usage) {
    process.stderr.write(`${usage}\n${USAGE}\n`);
    return 2;
  }
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
          dryRun: parsed.values.yes !== true,
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

/** What is wrong with the options for this command, or null. */
function usageProblem(
  command: string,
  o: { offset?: unknown; id?: unknown; reason?: unknown },
): string | null {
  const isNumber = (v: unknown) => typeof v === "string" && /^\d{1,19}$/.test(v);
  if (o.offset !== undefined && (command !== "skip" || !isNumber(o.offset)))
    return command === "skip" ? "--offset must be a record offset (a whole number)" : "--offset is for skip";
  if (o.reason !== undefined && command !== "skip" && command !== "replay")
    return "--reason is for skip and replay";
  if (command === "replay" && !isNumber(o.id)) return "replay needs --id N (a dead letter's id)";
  if (command !== "replay" && o.id !== undefined) return "--id is for replay";
  return null;
}

async function withTarget<T>(config: SinkConfig, f: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectTarget(config);
  try {
    return await f(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export function exitAfterFlush(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

const invokedDirectly = process.argv[1] && /cli\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly) {
  // Exit explicitly: a Fluvio read abandoned at a timeout would keep the process alive forever.
  main(process.argv.slice(2)).then(
    (code) => exitAfterFlush(code),
    (e) => {
      process.stderr.write(`${redact(String(e))}\n`);
      exitAfterFlush(1);
    },
  );
}
