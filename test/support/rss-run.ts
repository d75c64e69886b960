/**
 * Runs one sink run in this process and prints its summary with the process's peak RSS, so a test or
 * benchmark can see what a batch costs in memory. Usage: node --import tsx rss-run.ts '<SinkConfig JSON>'
 * (bigints, e.g. start_lsn, are not supported here).
 */
import type { SinkConfig } from "../../src/config.js";
import { silentLogger } from "../../src/log.js";
import { runOnce } from "../../src/run.js";

const config = JSON.parse(process.argv[2] as string) as SinkConfig;
const before = process.resourceUsage().maxRSS;
const summary = await runOnce(config, { log: silentLogger });
const peak = process.resourceUsage().maxRSS;
process.stdout.write(`${JSON.stringify({ summary, rss_before_kb: before, max_rss_kb: peak })}\n`);
