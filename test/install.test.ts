import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { loadedAtImport } from "../scripts/bundle.js";
import { runProcess, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair } from "./support/harness.js";
import { type PgServer, startPostgres, TEST_PASSWORD } from "./support/pg.js";

/**
 * The CLI as a user gets it: `npm pack`, then `npm i -g` of the tarball into a scratch prefix, with
 * no compiler on the PATH and no node_modules to resolve from: the bundle must carry what it runs.
 */

const root = join(import.meta.dirname, "..");
const scratch = mkdtempSync(join(tmpdir(), "fps-install-"));
const prefix = join(scratch, "prefix");
const bin = join(prefix, "bin", "fluvio-postgres-sink");
const installed = join(prefix, "lib", "node_modules", "fluvio-postgres-sink");
/** Only node's own directory and the system's: no project node_modules/.bin, so no tsc. */
const cleanPath = `${dirname(process.execPath)}:/usr/bin:/bin`;
const cleanEnv = { PATH: cleanPath, HOME: scratch, npm_config_cache: join(scratch, "npm-cache") };
let server: PgServer;

before(async () => {
  const packed = execFileSync("npm", ["pack", "--json", "--pack-destination", scratch], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const [{ filename }] = JSON.parse(packed) as [{ filename: string }];
  execFileSync(
    "npm",
    ["install", "--global", "--prefix", prefix, "--no-audit", "--no-fund", join(scratch, filename)],
    { cwd: scratch, env: { ...process.env, ...cleanEnv }, stdio: "pipe" },
  );
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

test("the installed package is self-contained: no dependencies, nothing with an install script", () => {
  assert.ok(existsSync(bin), "the bin is linked");
  // pg and yaml are bundled into dist/ (scripts/build-cli.ts): npm installs nothing beside it.
  const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  assert.equal(pkg.scripts?.preinstall ?? pkg.scripts?.install ?? pkg.scripts?.postinstall, undefined);
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
  assert.deepEqual(Object.keys(pkg.optionalDependencies ?? {}), []);
  assert.deepEqual(Object.keys(pkg.peerDependencies ?? {}), []);
  assert.equal(existsSync(join(installed, "node_modules")), false, "a node_modules was installed");
  const dist = readdirSync(join(installed, "dist"));
  assert.ok(dist.includes("cli.mjs") && dist.includes("linux"), dist.join(", "));
  for (const f of dist) assert.ok(f === "linux" || f.endsWith(".mjs"), `dist/${f} is packed`);
});

test("--version and help load no dependency; a command loads pg and yaml, a Fluvio source the Fluvio client", async () => {
  const dist = join(installed, "dist");
  const holds = (files: string[], dep: string) =>
    files.some((f) => readFileSync(join(dist, f), "utf8").includes(`node_modules/${dep}/`));
  const cli = await loadedAtImport(join(dist, "cli.mjs"));
  const commands = cli.onFirstUse.find((f) => f.startsWith("commands-"));
  assert.ok(commands, cli.onFirstUse.join(", "));
  const command = await loadedAtImport(join(dist, commands));
  for (const dep of ["pg", "yaml", "@fluvio/client"]) {
    assert.ok(!holds(cli.atImport, dep), `${dep} loads with dist/cli.mjs`);
    assert.ok(holds(cli.onFirstUse, dep), `${dep} is not in the bundle`);
  }
  for (const dep of ["pg", "yaml"]) assert.ok(holds(command.atImport, dep), `${dep} is not in ${commands}`);
  assert.ok(!holds(command.atImport, "@fluvio/client"), `the Fluvio client loads with ${commands}`);
});

test("--version, version, --help and help", async () => {
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  for (const arg of ["--version", "-V", "version"]) {
    const r = await runProcess(bin, [arg], { env: cleanEnv });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `fluvio-postgres-sink ${version}\n`);
  }
  for (const arg of ["--help", "help"]) {
    const r = await runProcess(bin, [arg], { env: cleanEnv });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: fluvio-postgres-sink <command> --config <connector.yaml> \[options\]\n/);
  }
  const bare = await runProcess(bin, [], { env: cleanEnv });
  assert.equal(bare.code, 2);
});

for (const maxRecords of [1, 7, 1000]) {
  test(`the installed CLI runs against a PostgreSQL with a file source (max_records ${maxRecords})`, async () => {
    const p = await makePair(server, `installed${maxRecords}`);
    try {
      await p.sql("CREATE TABLE items (id bigint PRIMARY KEY, v text, n numeric)");
      await p.sql("INSERT INTO items SELECT g, 'v' || g, g / 7.0 FROM generate_series(1, 30) g");
      await p.sql(
        "BEGIN; UPDATE items SET v = v || '!' WHERE id % 3 = 0; DELETE FROM items WHERE id % 5 = 0; COMMIT",
      );
      await p.capture();
      const cfg = writeConfig(
        dirname(p.topicFile),
        `version: 0.2.0\nname: installed\ntype: postgres-sink\ntopic: postgres-topic\nparameters:\n  url: secrets.FLUVIO_PG_DATABASE_URL\n  source: file:${p.topicFile}\n  max_records: ${maxRecords}\nsecrets:\n  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}\n`,
      );
      let status = "";
      for (let i = 0; i < 100 && status !== "idle"; i++) {
        const r = await runProcess(bin, ["run", "--config", cfg], { env: cleanEnv });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!`${r.stdout}${r.stderr}`.includes(TEST_PASSWORD), "no password in the output");
        status = JSON.parse(r.stdout).status;
      }
      assert.equal(status, "idle");
      await assertSameTables(p, ["items"]);
    } finally {
      await p.close();
    }
  });
}
