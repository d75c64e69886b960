#!/usr/bin/env node
// The published entry point runs the compiled CLI (npm run build, done by `prepare` on install).
import { exitAfterFlush, main } from "../dist/src/cli.js";

exitAfterFlush(await main(process.argv.slice(2)));
