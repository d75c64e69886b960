#!/usr/bin/env node
// The published entry point runs the bundled CLI (scripts/build-cli.ts, run by `npm pack`).
// Every run is a new process: Node's compile cache (22.1+, in the temporary directory) spares the
// later ones compiling the same code again. Enabled before the CLI's modules load, or it misses them.
import module from "node:module";

module.enableCompileCache?.();
const { exitAfterFlush, main } = await import("../dist/cli.mjs");
exitAfterFlush(await main(process.argv.slice(2)));
