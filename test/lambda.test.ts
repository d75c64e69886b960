import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { after, before, test } from "node:test";
import type { Context } from "aws-lambda";
import pg from "pg";
import { createApplyHandler } from "../src/lambda/apply.js";
import { FluvioTestCluster } from "./support/fluvio/cluster.js";
import { produce } from "./support/fluvio/produce.js";
import { assertSameTables, makePair, type Pair } from "./support/harness.js";
import { type PgServer, startPostgres } from "./support/pg.js";
import { SecretsManagerStandIn } from "./support/secrets-manager.js";

let server: PgServer;
let cluster: FluvioTestCluster;
let sm: SecretsManagerStandIn;
let p: Pair;

const context = (remainingMs: number): Context =>
  ({
    functionName: "apply",
    functionVersion: "1",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:apply",
    memoryLimitInMB: "512",
    awsRequestId: `req-${Math.random()}`,
    logGroupName: "g",
    logStreamName: "s",
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => remainingMs,
    done() {},
    fail() {},
    succeed() {},
  }) as unknown as Context;

function sinkUrl(password: string): string {
  const u = new URL(p.targetUrl);
  u.username = "sink_user";
  u.password = password;
  return u.toString();
}

before(async () => {
  server = await startPostgres();
  cluster = await FluvioTestCluster.start();
  sm = await SecretsManagerStandIn.start();
  Object.assign(process.env, sm.env(), {
    POWERTOOLS_LOG_LEVEL: "ERROR",
    POWERTOOLS_METRICS_DISABLED: "true",
  });
  p = await makePair(server, "lambda");
  await p.target.query(`CREATE ROLE sink_user LOGIN PASSWORD 'old-pass'`);
  await p.target.query(`ALTER DATABASE ${new URL(p.targetUrl).pathname.slice(1)} OWNER TO sink_user`);
  sm.secrets.set("prod/sink/db", sinkUrl("old-pass"));
  cluster.createTopic("lam");
});
after(async () => {
  await p?.close();
  await sm?.stop();
  await cluster?.stop();
  await server?.stop();
});

const env = () => ({
  ...process.env,
  FLUVIO_PG_SINK_NAME: "lambda-sink",
  FLUVIO_TOPIC: "lam",
  FLUVIO_ENDPOINT: cluster.endpoint,
  FLUVIO_PG_DATABASE_URL_SECRET: "prod/sink/db",
  MAX_RECORDS: "40",
});

async function load(n: number, from: number) {
  await p.sql(`CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v text)`);
  for (let i = from; i < from + n; i++) await p.sql(`INSERT INTO items VALUES (${i}, 'v${i}')`);
  await produce(cluster.endpoint, "lam", await p.capture());
}

async function batchLimit(): Promise<number | null> {
  const r = await p.target.query(`SELECT batch_limit FROM fluvio_sink.state WHERE connector = 'lambda-sink'`);
  return r.rows[0]?.batch_limit ?? null;
}

test("the handler applies a batch with the URL from Secrets Manager and returns the summary", async () => {
  await load(30, 0);
  const handler = createApplyHandler(env());
  const s = await handler({}, context(30_000));
  assert.equal(s.status, "applied");
  assert.ok(s.records >= 40);
  assert.equal(s.lag, p.records.length - Number(s.next_offset));
  assert.ok(sm.calls.includes("secretsmanager.GetSecretValue:prod/sink/db"));
});

test("after a password rotation the secret is fetched again and the same invocation succeeds", async () => {
  const handler = createApplyHandler(env());
  await handler({}, context(30_000)); // caches the old secret
  await load(5, 100);
  await p.target.query(`ALTER ROLE sink_user PASSWORD 'new-pass'`);
  sm.secrets.set("prod/sink/db", sinkUrl("new-pass"));
  const before = sm.calls.length;
  const s = await handler({}, context(30_000));
  assert.equal(s.status, "applied");
  assert.equal(sm.calls.length - before, 1, "one more fetch, in this invocation");
});

test("too little time left: nothing applied, a clean failure", async () => {
  await load(3, 200);
  const before = (await p.target.query(`SELECT next_offset::text AS o FROM fluvio_sink.state`)).rows[0].o;
  const handler = createApplyHandler(env());
  await assert.rejects(handler({}, context(4000)), /ms left before the deadline .* applied nothing/);
  assert.equal(
    (await p.target.query(`SELECT next_offset::text AS o FROM fluvio_sink.state`)).rows[0].o,
    before,
  );
});

test("a batch that cannot finish in time shrinks the next batch, and later invocations converge", async () => {
  const handler = createApplyHandler(env());
  const blocker = new pg.Client({ connectionString: p.targetUrl });
  await blocker.connect();
  await blocker.query(`BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE`);
  try {
    await assert.rejects(handler({}, context(7000)), /the next run reads at most 20 records/);
    assert.equal(await batchLimit(), 20);
  } finally {
    await blocker.query("ROLLBACK");
    await blocker.end();
  }
  for (let i = 0; i < 20; i++) {
    const s = await handler({}, context(30_000));
    if (s.records === 0) break;
  }
  await assertSameTables(p, ["items"]);
  assert.equal(await batchLimit(), null, "the batch grew back to max_records");
});
test("a Fluvio profile from Secrets Manager is written privately and used to connect", async () => {
  await load(2, 300);
  sm.secrets.set(
    "prod/sink/fluvio-profile",
    `version = "2.0"\ncurrent_profile = "test"\n\n[profile.test]\ncluster = "test"\n\n[cluster.test]\nendpoint = "${cluster.endpoint}"\n\n[cluster.test.tls]\ntls_policy = "disabled"\n`,
  );
  const { FLUVIO_ENDPOINT: _, ...rest } = env();
  const handler = createApplyHandler({ ...rest, FLUVIO_PROFILE_SECRET: "prod/sink/fluvio-profile" });
  const s = await handler({}, context(30_000));
  assert.equal(s.lag, 0);
  const path = process.env.FLV_PROFILE_PATH as string;
  assert.match(path, /^\/tmp\/fluvio-profile-[0-9a-f]{12}\.toml$/);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  await assertSameTables(p, ["items"]);
});

test("each invocation publishes CloudWatch EMF metrics, lag among them", async () => {
  await load(2, 400);
  process.env.POWERTOOLS_METRICS_DISABLED = "false";
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    lines.push(String(chunk));
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    const handler = createApplyHandler(env());
    const s = await handler({}, context(30_000));
    const emf = lines
      .flatMap((l) => l.split("\n"))
      .filter((l) => l.includes('"_aws"'))
      .map((l) => JSON.parse(l));
    assert.equal(emf.length, 1, lines.join(""));
    const m = emf[0];
    assert.equal(m._aws.CloudWatchMetrics[0].Namespace, "FluvioPostgresSink");
    const names = m._aws.CloudWatchMetrics[0].Metrics.map((x: { Name: string }) => x.Name);
    for (const n of ["RecordsApplied", "Transactions", "Statements", "MissingRows", "Lag", "Duration"])
      assert.ok(names.includes(n), n);
    assert.equal(m.RecordsApplied, s.records);
    assert.equal(m.Lag, 0);
  } finally {
    process.stdout.write = write;
    process.env.POWERTOOLS_METRICS_DISABLED = "true";
  }
});

// The native Fluvio client, stopped before a partition's end (max_records), stays referenced in this
// process; Lambda freezes after the handler resolves and the CLI exits explicitly, so this file does too.
after(() => setTimeout(() => process.exit(), 200));
