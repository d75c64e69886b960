/**
 * Builds what `npm pack` publishes: dist/cli.mjs (src/cli.ts with pg, yaml and the Fluvio wrapper
 * bundled, so the package has no dependencies and a start loads one file instead of ~40) and the
 * Fluvio native module beside it (see scripts/bundle.ts). Runs as `prepack`. Not minified: it starts
 * no faster minified (measured) and its stack traces stay readable.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { bundle, root, shipNative } from "./bundle.js";

const out = join(root, "dist");
rmSync(out, { recursive: true, force: true });
await bundle({
  entry: join(root, "src", "cli.ts"),
  outfile: join(out, "cli.mjs"),
  // pg's optional requires, reached only through pg.native and on Cloudflare Workers.
  external: ["pg-native", "pg-cloudflare"],
  minify: false,
});
shipNative(out);
process.stderr.write(`built ${out}\n`);
