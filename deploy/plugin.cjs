// Local Serverless Framework plugin: builds the Lambda artifact (scripts/build-lambda.ts) before
// every `serverless package`, `deploy`, `deploy function` and `invoke local`, so no command ships a
// stale or missing build; and teaches Serverless v3's config schema the current Node runtimes,
// which it predates (it would warn that nodejs22.x is not an allowed value).
const { spawnSync } = require("node:child_process");
const { join } = require("node:path");

const RUNTIMES = ["nodejs22.x", "nodejs24.x"];

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
