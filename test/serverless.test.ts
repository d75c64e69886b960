import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadedAtImport } from "../scripts/bundle.js";
import { nodeBinary } from "../scripts/node-binary.js";
import { runProcess } from "./support/cli.js";
import { produce } from "./support/fluvio/produce.js";
import { assertSameTables, makePair, pgAndFluvioForFile } from "./support/harness.js";
import { SecretsManagerStandIn } from "./support/secrets-manager.js";

const root = join(import.meta.dirname, "..");
const DB_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/sink/db-AbCdEf";
const PROFILE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/sink/fluvio-XyZ";
/** The Lambda runtime serverless.yml deploys on, and so the Node major the package must load under. */
const LAMBDA_NODE = 22;

const SLS_ENV = { SLS_TELEMETRY_DISABLED: "1", SLS_NOTIFICATIONS_MODE: "off" };

function slsRun(args: string[]) {
  return spawnSync(
    process.execPath,
    [join(root, "node_modules", "serverless", "bin", "serverless.js"), ...args],
    {
      cwd: root,
      env: { ...process.env, ...SLS_ENV },
      encoding: "utf8",
    },
  );
}

function sls(args: string[]) {
  const r = spawnSync(
    process.execPath,
    [join(root, "node_modules", "serverless", "bin", "serverless.js"), ...args],
    {
      cwd: root,
      env: {
        ...process.env,
        SLS_TELEMETRY_DISABLED: "1",
        SLS_NOTIFICATIONS_MODE: "off",
      },
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, `serverless ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
}

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON.
function template(): Record<string, any> {
  return JSON.parse(
    readFileSync(join(root, ".serverless", "cloudformation-template-update-stack.json"), "utf8"),
  ).Resources;
}

test("serverless package: schedule, one at a time, no retries, x86_64, Node runtime, IAM on the secrets only", () => {
  sls([
    "package",
    "--stage",
    "ci",
    `--param=databaseUrlSecretArn=${DB_SECRET}`,
    `--param=fluvioProfileSecretArn=${PROFILE_SECRET}`,
    "--param=schedule=rate(2 minutes)",
    "--param=timeout=90",
    "--param=subnetIds=subnet-1,subnet-2",
    "--param=securityGroupIds=sg-1",
  ]);
  const res = template();
  const byType = (t: string) => Object.values(res).filter((r) => r.Type === t);
  const [fn] = byType("AWS::Lambda::Function");
  assert.equal(fn.Properties.Runtime, `nodejs${LAMBDA_NODE}.x`);
  assert.deepEqual(fn.Properties.Architectures, ["x86_64"]);
  assert.equal(fn.Properties.ReservedConcurrentExecutions, 1);
  assert.equal(fn.Properties.Timeout, 90);
  assert.deepEqual(fn.Properties.VpcConfig, {
    SubnetIds: ["subnet-1", "subnet-2"],
    SecurityGroupIds: ["sg-1"],
  });
  assert.equal(fn.Properties.Environment.Variables.FLUVIO_PG_DATABASE_URL_SECRET, DB_SECRET);
  const [rule] = byType("AWS::Events::Rule");
  assert.equal(rule.Properties.ScheduleExpression, "rate(2 minutes)");
  const [invokeConfig] = byType("AWS::Lambda::EventInvokeConfig");
  assert.equal(invokeConfig.Properties.MaximumRetryAttempts, 0);
  const [role] = byType("AWS::IAM::Role");
  const statements = role.Properties.Policies.flatMap(
    // biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON.
    (p: any) => p.PolicyDocument.Statement,
  );
  const secrets = statements.filter((s: { Action: string[] }) =>
    s.Action.some((a) => a.startsWith("secretsmanager:")),
  );
  assert.deepEqual(secrets, [
    { Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: [DB_SECRET, PROFILE_SECRET] },
  ]);
  assert.ok(!JSON.stringify(statements).includes('"*"'), "no wildcard resources");

  sls([
    "package",
    "--stage",
    "ci",
    `--param=databaseUrlSecretArn=${DB_SECRET}`,
    "--param=fluvioEndpoint=fluvio:9003",
  ]);
  const [role2] = Object.values(template()).filter((r) => r.Type === "AWS::IAM::Role");
  const s2 = role2.Properties.Policies[0].PolicyDocument.Statement.find((s: { Action: string[] }) =>
    s.Action.includes("secretsmanager:GetSecretValue"),
  );
  // serverless writes a single resource as a string.
  assert.deepEqual([s2.Resource].flat(), [DB_SECRET]);
  const [fn2] = Object.values(template()).filter((r) => r.Type === "AWS::Lambda::Function");
  assert.equal(fn2.Properties.VpcConfig, undefined);
});

const services = pgAndFluvioForFile();

test(`the packaged zip, unpacked, loads under Node ${LAMBDA_NODE}; its handler fetches the secret through the lazily loaded SDK chunk and applies a batch`, async () => {
  sls([
    "package",
    "--stage",
    "ci",
    `--param=databaseUrlSecretArn=${DB_SECRET}`,
    "--param=fluvioEndpoint=fluvio:9003",
  ]);
  const dir = mkdtempSync(join(tmpdir(), "fps-zip-"));
  execFileSync("unzip", ["-q", join(root, ".serverless", "fluvio-postgres-sink.zip"), "-d", dir]);
  const { server, cluster } = services();
  const sm = await SecretsManagerStandIn.start();
  const p = await makePair(server, "packaged");
  try {
    cluster.createTopic("pkg");
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v jsonb)`);
    await p.sql(`INSERT INTO items SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 25) g`);
    await p.sql(`UPDATE items SET v = v || '{"x": 1}' WHERE id % 3 = 0`);
    await produce(cluster.endpoint, "pkg", await p.capture());
    const target = new URL(p.targetUrl);
    sm.secrets.set(
      DB_SECRET,
      JSON.stringify({
        username: decodeURIComponent(target.username),
        password: decodeURIComponent(target.password),
        host: target.hostname,
        port: Number(target.port),
        dbname: target.pathname.slice(1),
      }),
    );
    // Asynchronously: the test cluster and the Secrets Manager stand-in live in this process.
    const r = await runProcess(
      nodeBinary(LAMBDA_NODE),
      [
        join(root, "test", "support", "invoke-packaged.mjs"),
        join(dir, "build", "lambda", "handlers", "apply.js"),
      ],
      {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          ...sm.env({ nodeVersionWarning: true }),
          FLUVIO_TOPIC: "pkg",
          FLUVIO_ENDPOINT: cluster.endpoint,
          FLUVIO_PG_DATABASE_URL_SECRET: DB_SECRET,
          FLUVIO_PG_SINK_NAME: "packaged",
          POWERTOOLS_LOG_LEVEL: "ERROR",
          POWERTOOLS_METRICS_DISABLED: "true",
        },
      },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(r.stderr, "", "nothing on stderr (no SDK version warning)");
    assert.deepEqual(sm.calls, [`secretsmanager.GetSecretValue:${DB_SECRET}`]);
    const line = r.stdout.split("\n").find((l) => l.startsWith("SUMMARY "));
    const summary = JSON.parse((line ?? "").slice(8));
    assert.match(summary.node, new RegExp(`^v${LAMBDA_NODE}\\.`));
    assert.equal(summary.status, "applied");
    assert.equal(summary.lag, 0);
    await assertSameTables(p, ["items"]);
  } finally {
    await p.close();
    await sm.stop();
  }
});

test("serverless package builds the artifact itself, with no warning, from a fresh checkout state; the SDK is in chunks loaded on first use; the zip is under 5 MB", async () => {
  rmSync(join(root, "build", "lambda"), { recursive: true, force: true });
  const r = slsRun(["package", "--stage", "example"]);
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const out = `${r.stdout}${r.stderr}`;
  assert.doesNotMatch(out, /warning|deprecat/i, out);
  const zip = join(root, ".serverless", "fluvio-postgres-sink.zip");
  const dir = mkdtempSync(join(tmpdir(), "fps-zip-"));
  execFileSync("unzip", ["-q", zip, "-d", dir]);
  const handlers = join(dir, "build", "lambda", "handlers");
  const listing = execFileSync("unzip", ["-Z1", zip], { encoding: "utf8" }).trim().split("\n").sort();
  // Nothing but the bundle's files, the native module and the package.json that makes .js ESM.
  assert.deepEqual(
    listing.filter((f) => !/^build\/lambda\/handlers\/[\w-]+\.js$/.test(f)),
    ["build/lambda/handlers/linux/index.node", "build/lambda/package.json"],
  );
  const { atImport, onFirstUse } = await loadedAtImport(join(handlers, "apply.js"));
  assert.deepEqual(
    [...atImport, ...onFirstUse].map((f) => `build/lambda/handlers/${f}`).sort(),
    listing.filter((f) => f.endsWith(".js")),
    "every file shipped is reachable from the handler",
  );
  // The AWS SDK's clients carry their user agent, aws-sdk-js.
  const sdk = (files: string[]) =>
    files.filter((f) => readFileSync(join(handlers, f), "utf8").includes("aws-sdk-js"));
  assert.deepEqual(sdk(atImport), [], "the handler's import loads no AWS SDK code");
  assert.ok(sdk(onFirstUse).length > 0, "the SDK is in the chunks loaded on first use");
  const bytes = statSync(zip).size;
  assert.ok(bytes < 5_000_000, `zip ${bytes} bytes (advzip from advancecomp on PATH?)`);
});

test("npm run measure:lambda reports the zip, what the handler's import loads, and its median cold import under Node 22 and 24", () => {
  // The zip of the previous test (stage example); three imports per Node major keep this short.
  const out = execFileSync("npm", ["run", "--silent", "measure:lambda"], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, MEASURE_RUNS: "3" },
  });
  const lines = out.trim().split("\n");
  assert.equal(lines.length, 3, out);
  assert.match(
    lines[0] ?? "",
    /^zip 4\.\d\d MB; JavaScript the handler's import loads 0\.\d\d MB \(\d+ files\), loaded on first use 0\.\d\d MB \(\d+ chunks\)$/,
  );
  for (const [i, major] of [22, 24].entries())
    assert.match(
      lines[i + 1] ?? "",
      new RegExp(`^Node v${major}\\.\\d+\\.\\d+: median cold import \\d+\\.\\d ms \\(min .*, 3 runs\\)$`),
    );
});

test("a stage's params in serverless.yml are used, with extra environment; --param overrides one", () => {
  sls(["package", "--stage", "example", "--param=maxRecords=50"]);
  const [fn] = Object.values(template()).filter((r) => r.Type === "AWS::Lambda::Function");
  const vars = fn.Properties.Environment.Variables;
  assert.equal(
    vars.FLUVIO_PG_DATABASE_URL_SECRET,
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/sink/db-AbCdEf",
  );
  assert.equal(vars.FLUVIO_ENDPOINT, "fluvio.internal.example:9003");
  assert.equal(vars.FLUVIO_PG_SSL_MODE, "verify-full");
  assert.equal(vars.NODE_EXTRA_CA_CERTS, "/var/runtime/ca-cert.pem");
  assert.equal(vars.MAX_RECORDS, "50");
  assert.deepEqual(fn.Properties.VpcConfig, {
    SubnetIds: ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
    SecurityGroupIds: ["sg-0123456789abcdef0"],
  });
  sls([
    "package",
    "--stage",
    "ci",
    `--param=databaseUrlSecretArn=${DB_SECRET}`,
    "--param=fluvioEndpoint=fluvio:9003",
    "--param=extraEnvironment=NODE_EXTRA_CA_CERTS=/var/runtime/ca-cert.pem,LOG_LEVEL=debug",
  ]);
  const [fn2] = Object.values(template()).filter((r) => r.Type === "AWS::Lambda::Function");
  assert.equal(fn2.Properties.Environment.Variables.NODE_EXTRA_CA_CERTS, "/var/runtime/ca-cert.pem");
  assert.equal(fn2.Properties.Environment.Variables.LOG_LEVEL, "debug");
});

test("bad parameters fail the package with a message naming them", () => {
  const fails = (params: string[], message: RegExp) => {
    const r = slsRun(["package", "--stage", "ci", ...params.map((p) => `--param=${p}`)]);
    assert.notEqual(r.status, 0, `accepted ${params.join(" ")}`);
    assert.match(`${r.stdout}${r.stderr}`, message);
  };
  fails([`fluvioEndpoint=fluvio:9003`], /fluvio-postgres-sink parameters: set databaseUrlSecretArn/);
  fails(
    [`databaseUrlSecretArn=${DB_SECRET}`],
    /set fluvioEndpoint \(host:port\) or fluvioProfileSecretArn: the function has no Fluvio cluster to read/,
  );
  fails(
    [`databaseUrlSecretArn=${DB_SECRET}`, "fluvioEndpoint=fluvio:9003", "subnetIds=subnet-1"],
    /set both subnetIds and securityGroupIds to run in a VPC, or neither/,
  );
  fails(
    [`databaseUrlSecretArn=${DB_SECRET}`, "fluvioEndpoint=fluvio:9003", "securityGroupIds=sg-1"],
    /set both subnetIds and securityGroupIds to run in a VPC, or neither/,
  );
  fails(
    ["databaseUrlSecretArn=prod/sink/db", "fluvioEndpoint=fluvio:9003"],
    /databaseUrlSecretArn is not a Secrets Manager secret ARN \(arn:aws:secretsmanager:<region>:<account>:secret:<name>\): "prod\/sink\/db"/,
  );
  fails(
    [`databaseUrlSecretArn=${DB_SECRET}`, "fluvioProfileSecretArn=arn:aws:s3:::bucket"],
    /fluvioProfileSecretArn is not a Secrets Manager secret ARN/,
  );
  fails(
    [`databaseUrlSecretArn=${DB_SECRET}`, "fluvioEndpoint=fluvio:9003", "extraEnvironment=FLUVIO_TOPIC=x"],
    /extraEnvironment: FLUVIO_TOPIC is set from its own parameter/,
  );
});

test("serverless invoke local runs the built handler against a real target and Fluvio", async () => {
  const { server, cluster } = services();
  const sm = await SecretsManagerStandIn.start();
  const p = await makePair(server, "invokelocal");
  try {
    cluster.createTopic("inv");
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.sql(`INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 12) g`);
    await produce(cluster.endpoint, "inv", await p.capture());
    sm.secrets.set(DB_SECRET, JSON.stringify({ url: p.targetUrl }));
    const r = await runProcess(
      process.execPath,
      [
        join(root, "node_modules", "serverless", "bin", "serverless.js"),
        "invoke",
        "local",
        "--function",
        "apply",
        "--stage",
        "ci",
        `--param=databaseUrlSecretArn=${DB_SECRET}`,
        `--param=fluvioEndpoint=${cluster.endpoint}`,
        "--param=topic=inv",
      ],
      {
        env: {
          ...process.env,
          ...SLS_ENV,
          ...sm.env(),
          POWERTOOLS_LOG_LEVEL: "ERROR",
          POWERTOOLS_METRICS_DISABLED: "true",
        },
      },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const summary = JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
    assert.equal(summary.status, "applied");
    assert.equal(summary.lag, 0);
    await assertSameTables(p, ["items"]);
  } finally {
    await p.close();
    await sm.stop();
  }
});
