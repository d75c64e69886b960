#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { CommandName } from "./commands.js";
import { jsonLogger, redact } from "./log.js";

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
  const { offset, id, reason, yes } = parsed.values;
  const usage = usageProblem(command, { offset, id, reason });
  if (usage) {
    process.stderr.write(`${usage}\n${USAGE}\n`);
    return 2;
  }
  // The rest of the program loads here, for a command: --version and help stay as cheap as Node.
  const { runCommand } = await import("./commands.js");
  return runCommand(command as CommandName, configPath, { offset, id, reason, yes }, log);
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
