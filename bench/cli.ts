import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

/** How the benchmarks start a checkout's CLI: the node arguments before `run --config X`. */
export interface Cli {
  /** The checkout's root (the child's working directory). */
  root: string;
  args: string[];
  /** Which entry point, for the printed report. */
  how: string;
}

export const ownRoot = resolve(import.meta.dirname, "..");

/**
 * The Node that runs the CLIs: BENCH_NODE (e.g. the Lambda runtime's Node 22 or 24, which the
 * deployment tests install into build/.cache), else the one running the benchmark.
 */
export const cliNode = process.env.BENCH_NODE ?? process.execPath;
export const cliNodeVersion = execFileSync(cliNode, ["--version"], { encoding: "utf8" }).trim();

/** The checkout's package.json `bin` entry (the one command, or the first of several). */
function binOf(root: string): string {
  const pkgPath = join(root, "package.json");
  if (!existsSync(pkgPath)) throw new Error(`${root} has no package.json: not a checkout of the sink`);
  const bin = JSON.parse(readFileSync(pkgPath, "utf8")).bin as string | Record<string, string> | undefined;
  const entry = typeof bin === "string" ? bin : bin ? Object.values(bin)[0] : undefined;
  if (entry === undefined) throw new Error(`${pkgPath} has no bin entry`);
  return join(root, entry);
}

/**
 * Whether a checkout's bin entry starts: it imports the checkout's build output (dist/), which exists
 * only once that checkout is built. `--help` loads the CLI and touches nothing. The reason it fails
 * otherwise, or null.
 */
function binFailure(bin: string): string | null {
  if (!existsSync(bin)) return `${bin} does not exist`;
  const r = spawnSync(cliNode, [bin, "--help"], { encoding: "utf8", timeout: 60_000 });
  if (r.status === 0) return null;
  // Node prints the failing source line first; the error's own line says what is missing.
  const lines = (r.stderr || r.stdout || String(r.error ?? "")).split("\n");
  const why = lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.find((l) => /\S/.test(l));
  return `\`node ${bin} --help\` exits with ${r.status}: ${why ?? "no output"}`;
}

/**
 * This checkout's CLI: as installed (`npm run build`, then package.json's bin entry) so the figures
 * include what a user's process loads and no TypeScript loader; or, with mode "tsx", src/cli.ts
 * through tsx (which adds its own start-up time and about 30 MB).
 */
export function ownCli(mode: string): Cli {
  if (mode === "tsx")
    return {
      root: ownRoot,
      args: ["--import", "tsx", join(ownRoot, "src", "cli.ts")],
      how: `--import tsx ${join(ownRoot, "src", "cli.ts")} (from source)`,
    };
  if (mode !== "built") throw new Error(`BENCH_CLI must be "built" or "tsx" (got ${JSON.stringify(mode)})`);
  execFileSync("npm", ["run", "build"], { cwd: ownRoot, stdio: "ignore" });
  const bin = binOf(ownRoot);
  const failure = binFailure(bin);
  if (failure !== null) throw new Error(`the CLI does not start after npm run build: ${failure}`);
  return { root: ownRoot, args: [bin], how: `${bin} (built by npm run build)` };
}

/**
 * Another checkout's CLI, as that checkout built it: the benchmarks never build or change another
 * checkout. `fallback` "tsx" runs its src/cli.ts through tsx when its bin does not start; "none"
 * makes that an error.
 */
export function otherCli(root: string, what: string, fallback: "tsx" | "none"): Cli {
  const abs = resolve(root);
  const bin = binOf(abs);
  const failure = binFailure(bin);
  if (failure === null) return { root: abs, args: [bin], how: `${bin} (as built in that checkout)` };
  if (fallback === "tsx" && existsSync(join(abs, "src", "cli.ts")))
    return {
      root: abs,
      args: ["--import", "tsx", join(abs, "src", "cli.ts")],
      how: `--import tsx ${join(abs, "src", "cli.ts")} (from source: its bin does not start: ${failure})`,
    };
  throw new Error(
    `${what}: ${abs}'s package.json bin entry does not start, so that checkout is not built ` +
      `(build it there, e.g. npm ci && npm run build): ${failure}`,
  );
}

/**
 * The node arguments that run `cli` in one warm process (bench/warm-runner.mjs): the module its bin
 * entry imports `main` from (or src/cli.ts through tsx).
 */
export function warmArgs(cli: Cli): string[] {
  const runner = join(ownRoot, "bench", "warm-runner.mjs");
  const [first, second, third] = cli.args as [string, string?, string?];
  if (first === "--import") return [first, second as string, runner, third as string];
  const text = readFileSync(first, "utf8");
  const m = /["'](\.\.?\/dist\/[^"']+\.m?js)["']/.exec(text);
  if (!m) throw new Error(`${first} imports no dist/ module that the warm runner could call main() of`);
  return [runner, resolve(dirname(first), m[1] as string)];
}

/**
 * Writes `<dir>/<name>.yaml`: a connector that applies `topicFile` to `targetUrl` with `parameters`
 * (besides url and source). Older checkouts reject keys they do not know: pass only those the CLI run
 * accepts.
 */
export function writeBenchConfig(
  dir: string,
  name: string,
  targetUrl: string,
  topicFile: string,
  parameters: Record<string, number>,
): string {
  const path = join(dir, `${name}.yaml`);
  const lines = Object.entries(parameters).map(([k, v]) => `  ${k}: ${v}\n`);
  writeFileSync(
    path,
    `name: ${name}\ntype: postgres-sink\ntopic: bench-topic\nparameters:\n` +
      `  url: secrets.FLUVIO_PG_DATABASE_URL\n  source: file:${topicFile}\n${lines.join("")}` +
      `secrets:\n  FLUVIO_PG_DATABASE_URL: ${targetUrl}\n`,
  );
  return path;
}
