import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

test("npm run demo: the main job end to end, ending with target equal to source", async () => {
  const root = join(import.meta.dirname, "..");
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(root, "scripts", "demo.ts")], {
      cwd: root,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /records produced into postgres-topic/);
  assert.match(out.stdout, /tick +\d+: applied +\d+ records .* lag 0/);
  assert.match(out.stdout, /done: \d+ records in \d+ invocations .* target equals source/);
});
