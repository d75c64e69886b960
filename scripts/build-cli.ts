/**
 * Builds what `npm pack` publishes: dist/cli.mjs (src/cli.ts with the Fluvio wrapper bundled; pg and
 * yaml stay ordinary dependencies from the registry) and the Fluvio native module beside it (see
 * scripts/bundle.ts). Runs as `prepack`.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { bundle, root, shipNative } from "./bundle.js";

const out = join(root, "dist");
rmSync(out, { recursive: true, force: true });
await bundle({
  entry: join(root, "src", "cli.ts"),
  outfile: join(out, "cli.mjs"),
  external: ["pg", "yaml"],
  minify: false,
});
shipNative(out);
process.stderr.write(`built ${out}\n`);
