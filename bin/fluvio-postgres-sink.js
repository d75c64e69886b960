#!/usr/bin/env node
// The published entry point runs the bundled CLI (scripts/build-cli.ts, run by `npm pack`).
import { exitAfterFlush, main } from "../dist/cli.mjs";

exitAfterFlush(await main(process.argv.slice(2)));
