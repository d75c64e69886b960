#!/usr/bin/env node
// The published entry point runs the compiled CLI (npm run build, done by `prepare` on install).
import { main } from "../dist/src/cli.js";

process.exitCode = await main(process.argv.slice(2));
