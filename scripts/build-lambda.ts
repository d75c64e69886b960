/**
 * Builds the Lambda artifact in build/lambda: handlers/apply.ts bundled by esbuild (ESM, Node 22),
 * with @fluvio/client kept out of the bundle and shipped beside it with its Linux x86_64 native file.
 * `serverless package` / `serverless deploy` zip this folder (see serverless.yml).
 */
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "build", "lambda");
rmSync(out, { recursive: true, force: true });

await build({
  entryPoints: [join(root, "handlers", "apply.ts")],
  outfile: join(out, "handlers", "apply.mjs"),
  bundle: true,
  platform: "node",
  target: "node22",
  format: "esm",
  external: ["@fluvio/client"],
  // Bundled CommonJS dependencies call require(); give ESM one.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  legalComments: "none",
  logLevel: "warning",
});

const client = join(root, "node_modules", "@fluvio", "client");
const dest = join(out, "node_modules", "@fluvio", "client");
mkdirSync(join(dest, "dist", "linux"), { recursive: true });
cpSync(join(client, "package.json"), join(dest, "package.json"));
cpSync(join(client, "dist", "index.js"), join(dest, "dist", "index.js"));
cpSync(join(client, "dist", "linux", "index.node"), join(dest, "dist", "linux", "index.node"));
process.stdout.write(`built ${out}\n`);
