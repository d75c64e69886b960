/**
 * What the CLI and Lambda builds share: esbuild settings, and the Fluvio client. @fluvio/client
 * publishes only TypeScript and compiles it in its install step (`npx tsc`), which fails wherever no
 * compiler is installed; so its JS wrapper is bundled here, at build time, and its native file
 * (Linux x86_64, stripped of symbols) is shipped beside the bundle, where the wrapper looks for it:
 * no package that runs an install script is left for `npm i -g` or the Lambda.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildOptions, build } from "esbuild";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export async function bundle(opts: {
  entry: string;
  outfile: string;
  external: string[];
  minify: boolean;
}): Promise<void> {
  const options: BuildOptions = {
    entryPoints: [opts.entry],
    outfile: opts.outfile,
    bundle: true,
    platform: "node",
    target: "node22",
    format: "esm",
    external: opts.external,
    minify: opts.minify,
    // Bundled CommonJS dependencies (and the Fluvio wrapper's native require) call require().
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    legalComments: "none",
    logLevel: "error",
  };
  await build(options);
}

/** Copies the Fluvio native module next to a bundle (`<dir>/linux/index.node`), stripped. */
export function shipNative(dir: string): { bytes: number; stripped: boolean } {
  const src = join(root, "node_modules", "@fluvio", "client", "dist", "linux", "index.node");
  const dest = join(dir, "linux", "index.node");
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(src, dest);
  let stripped = false;
  // Debug symbols only: the dynamic symbol table Node loads the module by stays.
  if (existsSync("/usr/bin/strip") || process.env.STRIP) {
    execFileSync(process.env.STRIP ?? "strip", ["--strip-unneeded", dest]);
    stripped = true;
  }
  return { bytes: statSync(dest).size, stripped };
}
