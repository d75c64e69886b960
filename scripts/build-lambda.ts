/**
 * Builds the Lambda artifact in build/lambda: handlers/apply.ts and everything it imports bundled
 * and minified by esbuild into one ESM file, with the Fluvio native module beside it (see
 * scripts/bundle.ts). serverless.yml runs this before it packages (plugin deploy/build-plugin.cjs).
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundle, root, shipNative } from "./bundle.js";

const out = join(root, "build", "lambda");
rmSync(out, { recursive: true, force: true });
await bundle({
  entry: join(root, "handlers", "apply.ts"),
  // .js in a "type": "module" folder rather than .mjs: `serverless invoke local` looks for .js.
  outfile: join(out, "handlers", "apply.js"),
  external: [],
  minify: true,
});
writeFileSync(join(out, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
const native = shipNative(join(out, "handlers"));
process.stdout.write(
  `built ${out} (native module ${native.bytes} bytes${native.stripped ? ", stripped" : ""})\n`,
);
