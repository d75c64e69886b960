// Local Serverless Framework plugin: builds the Lambda artifact (scripts/build-lambda.ts) before
// every `serverless package`, `deploy`, `deploy function` and `invoke local`, so no command ships a
// stale or missing build; and teaches Serverless v3's config schema the current Node runtimes,
// which it predates (it would warn that nodejs22.x is not an allowed value).
const { spawnSync } = require("node:child_process");
const { createWriteStream, readdirSync, renameSync, statSync } = require("node:fs");
const { join, relative } = require("node:path");

const RUNTIMES = ["nodejs22.x", "nodejs24.x"];

/** Every file under dir, as paths relative to base. */
function files(dir, base) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name), base) : [relative(base, join(dir, e.name))],
  );
}

/**
 * Zips build/lambda again at the highest deflate level (Serverless uses the default level): the
 * native file dominates the artifact, and level 9 keeps the zip under 5 MB.
 */
async function rezip(serverless) {
  const dir = serverless.serviceDir;
  const zipPath = join(dir, ".serverless", `${serverless.service.service}.zip`);
  const archiver = require(require.resolve("archiver", { paths: [require.resolve("serverless")] }));
  const tmp = `${zipPath}.tmp`;
  await new Promise((resolve, reject) => {
    const out = createWriteStream(tmp);
    const zip = archiver.create("zip", { zlib: { level: 9 } });
    out.on("close", resolve);
    zip.on("error", reject);
    zip.pipe(out);
    // Fixed dates, as Serverless writes them, so the same build gives the same zip (and code hash).
    for (const f of files(join(dir, "build", "lambda"), dir).sort())
      zip.file(join(dir, f), { name: f, date: new Date(0), mode: statSync(join(dir, f)).mode });
    zip.finalize();
  });
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
      "after:package:createDeploymentArtifacts": () => rezip(serverless),
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
