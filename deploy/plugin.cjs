// Local Serverless Framework plugin: builds the Lambda artifact (scripts/build-lambda.ts) before
// every `serverless package`, `deploy`, `deploy function` and `invoke local`, so no command ships a
// stale or missing build; and teaches Serverless v3's config schema the current Node runtimes,
// which it predates (it would warn that nodejs22.x is not an allowed value).
const { spawnSync } = require("node:child_process");
const { createHash } = require("node:crypto");
const {
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} = require("node:fs");
const { dirname, join, relative } = require("node:path");

const RUNTIMES = ["nodejs22.x", "nodejs24.x"];

/** Every file under dir, as paths relative to base. */
function files(dir, base) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name), base) : [relative(base, join(dir, e.name))],
  );
}

/** Whether a command is on PATH (it answers at all). */
function have(cmd, args) {
  return !spawnSync(cmd, args, { stdio: "ignore" }).error;
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (r.error || r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ")} failed: ${r.error?.message ?? r.stderr.trim()}`);
}

/**
 * The artifact's zip, made again from build/lambda: the native file dominates it (13.4 MB, about
 * 4.92 MB at zlib's best), so it is deflated by advzip's stronger encoder (advancecomp, `-z -3`:
 * 7-Zip's deflate, about 3% smaller, which keeps the zip under 5 MB) and the rest by Info-ZIP at
 * level 9. The native entry takes advzip a few seconds and never changes between builds of the same
 * dependencies, so it is kept in build/.cache by the native file's hash and copied; zip adds the
 * rest to the copy without touching it. Without zip or advzip on PATH: one pass at zlib level 9.
 * Fixed dates and no extra fields, so the same build gives the same zip (and code hash).
 */
async function rezip(serverless, log) {
  const dir = serverless.serviceDir;
  const zipPath = join(dir, ".serverless", `${serverless.service.service}.zip`);
  const tmp = `${zipPath}.tmp`;
  const all = files(join(dir, "build", "lambda"), dir).sort();
  const date = new Date(2000, 0, 1);
  for (const f of all) utimesSync(join(dir, f), date, date);
  rmSync(tmp, { force: true });
  if (have("zip", ["-v"]) && have("advzip", ["--version"])) {
    const native = join("build", "lambda", "handlers", "linux", "index.node");
    const hash = createHash("sha256")
      .update(readFileSync(join(dir, native)))
      .digest("hex");
    const cached = join(dir, "build", ".cache", `native-${hash.slice(0, 16)}.zip`);
    if (!existsSync(cached)) {
      mkdirSync(dirname(cached), { recursive: true });
      const fresh = `${cached}.${process.pid}.zip`;
      run("zip", ["-q", "-X", "-0", fresh, native], dir);
      run("advzip", ["-q", "-z", "-3", fresh], dir);
      renameSync(fresh, cached);
    }
    copyFileSync(cached, tmp);
    run("zip", ["-q", "-X", "-9", tmp, ...all.filter((f) => f !== native)], dir);
  } else {
    log.notice?.("zip or advzip (advancecomp) not on PATH: the artifact is deflated at zlib level 9 only");
    const archiver = require(require.resolve("archiver", { paths: [require.resolve("serverless")] }));
    await new Promise((resolve, reject) => {
      const out = createWriteStream(tmp);
      const zip = archiver.create("zip", { zlib: { level: 9 } });
      out.on("close", resolve);
      zip.on("error", reject);
      zip.pipe(out);
      for (const f of all) zip.file(join(dir, f), { name: f, date, mode: statSync(join(dir, f)).mode });
      zip.finalize();
    });
  }
  renameSync(tmp, zipPath);
}

class BuildLambdaPlugin {
  constructor(serverless, _options, { log }) {
    const runtimes = serverless.configSchemaHandler?.schema?.definitions?.awsLambdaRuntime?.enum;
    if (Array.isArray(runtimes)) for (const r of RUNTIMES) if (!runtimes.includes(r)) runtimes.push(r);
    const build = () => {
      const dir = serverless.serviceDir;
      const r = spawnSync(process.execPath, ["--import", "tsx", join(dir, "scripts", "build-lambda.ts")], {
        cwd: dir,
        stdio: ["ignore", "inherit", "inherit"],
      });
      if (r.status !== 0)
        throw new serverless.classes.Error("building the Lambda artifact failed (see above)");
      log.notice?.("Built build/lambda");
    };
    this.hooks = {
      "before:package:createDeploymentArtifacts": build,
      "after:package:createDeploymentArtifacts": () => rezip(serverless, log),
      "before:deploy:function:packageFunction": build,
      "before:invoke:local:invoke": build,
      // The handler ran in this process and its result is printed; the Fluvio client's native
      // threads would keep the process alive (a real Lambda freezes instead), so end it here.
      "after:invoke:local:invoke": () =>
        new Promise(() => process.stdout.write("", () => process.exit(process.exitCode ?? 0))),
    };
  }
}

module.exports = BuildLambdaPlugin;
