/**
 * What the CLI and Lambda builds share: esbuild settings, and the Fluvio client. @fluvio/client
 * publishes only TypeScript and compiles it in its install step (`npx tsc`), which fails wherever no
 * compiler is installed; so its JS wrapper is bundled here, at build time, and its native file
 * (Linux x86_64, stripped of symbols) is shipped beside the bundle, where the wrapper looks for it:
 * no package that runs an install script is left for `npm i -g` or the Lambda.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, statSync } from "node:fs";
import { basename, dirname, extname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildOptions, build } from "esbuild";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export async function bundle(opts: {
  entry: string;
  outfile: string;
  external: string[];
  minify: boolean;
  /**
   * Dynamic imports become chunks of their own beside the outfile (loaded when first imported, not
   * with the entry). Beside it, not in a folder: a chunk's require() resolves relative to the chunk,
   * and the Fluvio wrapper requires its native file as ./linux/index.node.
   */
  splitting?: boolean;
  /** Global names replaced at build time (esbuild's define). */
  define?: Record<string, string>;
}): Promise<void> {
  const ext = extname(opts.outfile);
  const options: BuildOptions = {
    entryPoints: [opts.entry],
    ...(opts.splitting
      ? {
          outdir: dirname(opts.outfile),
          entryNames: basename(opts.outfile, ext),
          chunkNames: "[name]-[hash]",
          outExtension: { ".js": ext },
          splitting: true,
        }
      : { outfile: opts.outfile }),
    bundle: true,
    platform: "node",
    mainFields: ["module", "main"],
    target: "node22",
    format: "esm",
    external: opts.external,
    minify: opts.minify,
    ...(opts.define && { define: opts.define }),
    // Bundled CommonJS dependencies (and the Fluvio wrapper's native require) call require(); every
    // chunk gets its own, resolving relative to itself.
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

/**
 * The files of a built ESM bundle that importing `entry` loads: the entry and its static imports,
 * transitively, but not what only a dynamic import() reaches (chunks loaded on first use). Read from
 * esbuild's own parse of the built files, as paths relative to the entry's folder.
 */
export async function loadedAtImport(entry: string): Promise<{ atImport: string[]; onFirstUse: string[] }> {
  const dir = dirname(entry);
  const { metafile } = await build({
    entryPoints: [basename(entry)],
    absWorkingDir: dir,
    bundle: true,
    platform: "node",
    format: "esm",
    splitting: true,
    outdir: join(dir, ".analysis"),
    write: false,
    metafile: true,
    logLevel: "error",
  });
  const inputs = metafile.inputs;
  const local = (p: string) => relative(dir, join(dir, p));
  const byLocal = new Map(Object.keys(inputs).map((p) => [local(p), p]));
  const atImport = new Set<string>();
  const walk = (file: string) => {
    if (atImport.has(file)) return;
    atImport.add(file);
    for (const i of inputs[byLocal.get(file) ?? ""]?.imports ?? [])
      if (i.kind === "import-statement" && !i.external) walk(local(i.path));
  };
  walk(basename(entry));
  const onFirstUse = [...byLocal.keys()].filter((f) => !atImport.has(f) && /\.m?js$/.test(f));
  return { atImport: [...atImport].sort(), onFirstUse: onFirstUse.sort() };
}
