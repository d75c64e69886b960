/**
 * Measures the Lambda package: the size of the zip `serverless package` made (.serverless/) and the
 * median cold import of the handler (a fresh process per import) under each Node major the Lambda
 * runtimes offer. Run `npx serverless package --stage example` first. Usage: npm run measure:lambda
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadedAtImport, root } from "./bundle.js";
import { nodeBinary } from "./node-binary.js";

/** Imports per Node major (MEASURE_RUNS, odd for a true median). */
const RUNS = Number(process.env.MEASURE_RUNS ?? 21);
const handler = join(root, "build", "lambda", "handlers", "apply.js");
const zip = join(root, ".serverless", "fluvio-postgres-sink.zip");
if (!existsSync(handler) || !existsSync(zip))
  throw new Error("run `npx serverless package --stage example` first");

const probe = join(root, "build", ".cache", "import-probe.mjs");
mkdirSync(join(probe, ".."), { recursive: true });
writeFileSync(
  probe,
  "const t = performance.now(); await import(process.argv[2]); process.stdout.write(String(performance.now() - t)); process.exit(0);\n",
);
const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
const { atImport, onFirstUse } = await loadedAtImport(handler);
const bytes = (files: string[]) => files.reduce((n, f) => n + statSync(join(handler, "..", f)).size, 0);
process.stdout.write(
  `zip ${mb(statSync(zip).size)}; JavaScript the handler's import loads ${mb(bytes(atImport))} (${atImport.length} files), loaded on first use ${mb(bytes(onFirstUse))} (${onFirstUse.length} chunks)\n`,
);
for (const major of [22, 24]) {
  const bin = nodeBinary(major);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++)
    times.push(
      Number(execFileSync(bin, [probe, handler], { encoding: "utf8", env: { PATH: process.env.PATH } })),
    );
  times.sort((a, b) => a - b);
  const version = execFileSync(bin, ["--version"], { encoding: "utf8" }).trim();
  process.stdout.write(
    `Node ${version}: median cold import ${times[RUNS >> 1]?.toFixed(1)} ms (min ${times[0]?.toFixed(1)}, max ${times[RUNS - 1]?.toFixed(1)}, ${RUNS} runs)\n`,
  );
}
