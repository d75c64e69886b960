/**
 * Builds the Lambda artifact in build/lambda: handlers/apply.ts and everything it imports bundled
 * and minified by esbuild into ESM: handlers/apply.js with what the handler's import needs, and a
 * chunk beside it for each dynamic import, loaded on first use (@middy/secrets-manager with the AWS
 * SDK, the Fluvio client); the Fluvio native module beside them (see scripts/bundle.ts).
 * serverless.yml runs this before it packages (plugin deploy/plugin.cjs).
 */
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundle, loadedAtImport, root, shipNative } from "./bundle.js";

const out = join(root, "build", "lambda");
rmSync(out, { recursive: true, force: true });
await bundle({
  entry: join(root, "handlers", "apply.ts"),
  // .js in a "type": "module" folder rather than .mjs: `serverless invoke local` looks for .js.
  outfile: join(out, "handlers", "apply.js"),
  external: [],
  minify: true,
  splitting: true,
});
// esbuild still writes a chunk for a dynamic import whose importer it dropped as unused (the SDK's
// browser user-agent parser): nothing can load such a chunk, so it is not shipped.
const handlers = join(out, "handlers");
const { atImport, onFirstUse } = await loadedAtImport(join(handlers, "apply.js"));
const reachable = new Set([...atImport, ...onFirstUse]);
const dropped = readdirSync(handlers).filter((f) => f.endsWith(".js") && !reachable.has(f));
for (const f of dropped) rmSync(join(handlers, f));
writeFileSync(join(out, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
const native = shipNative(join(out, "handlers"));
process.stdout.write(
  `built ${out} (${reachable.size} JavaScript files, ${dropped.length} unreachable chunks dropped; native module ${native.bytes} bytes${native.stripped ? ", stripped" : ""})\n`,
);
