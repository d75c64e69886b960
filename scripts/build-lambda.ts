/**
 * Builds the Lambda artifact in build/lambda: handlers/apply.ts and everything it imports bundled
 * and minified by esbuild into one ESM file, with the Fluvio native module beside it (see
 * scripts/bundle.ts). serverless.yml runs this before it packages (plugin deploy/build-plugin.cjs).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { bundle, root, shipNative } from "./bundle.js";

const out = join(root, "build", "lambda");
rmSync(out, { recursive: true, force: true });
await bundle({
  entry: join(root, "handlers", "apply.ts"),
  outfile: join(out, "handlers", "apply.mjs"),
  external: [],
  minify: true,
});
const native = shipNative(join(out, "handlers"));
process.stdout.write(
  `built ${out} (native module ${native.bytes} bytes${native.stripped ? ", stripped" : ""})\n`,
);
