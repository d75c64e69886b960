/**
 * Builds what `npm pack` publishes: dist/cli.mjs (src/cli.ts with pg, yaml and the Fluvio wrapper
 * bundled, so the package has no dependencies and a start loads a few files instead of ~40) and the
 * Fluvio native module beside it (see scripts/bundle.ts). Runs as `prepack`. Split at src/cli.ts's
 * dynamic imports: dist/cli.mjs alone answers --version and help, a command loads the chunk of
 * src/commands.ts, and the Fluvio wrapper's chunk loads only for a Fluvio source. Not minified: it
 * starts no faster minified (measured) and its stack traces stay readable.
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
  splitting: true,
  // pg looks for Cloudflare Workers when it loads: by navigator.userAgent, or, where there is no
  // navigator (Node 20), by constructing a web Response, which loads Node's fetch (undici): about
  // 10 ms of every CLI start. This is Node, never a Worker.
  define: { navigator: '{"userAgent":"Node.js"}' },
});
shipNative(out);
process.stderr.write(`built ${out}\n`);
