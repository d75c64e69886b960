import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { Context } from "aws-lambda";
import pg from "pg";
import { createApplyHandler } from "../src/lambda/apply.js";
import type { RunSummary } from "../src/run.js";
import { fluvioConnectionsMade, forgetFluvioClients } from "../src/source/fluvio.js";
import { Api, FluvioTestCluster } from "./support/fluvio/cluster.js";
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

test("expired secrets are fetched by the next invocation, never in the background: a fetch that fails is that invocation's failure, no unhandled rejection", async () => {
  const rejections: unknown[] = [];
  const onRejection = (r: unknown) => rejections.push(r);
  process.on("unhandledRejection", onRejection);
  const saved = sm.secrets.get("prod/sink/db") as string;
  try {
    const handler = createApplyHandler(env(), { secretCacheMs: 300 });
    const fetches = () => sm.calls.filter((c) => c === "secretsmanager.GetSecretValue:prod/sink/db").length;
    await load(3, 150);
    let before = fetches();
    assert.equal((await handler({}, context(30_000))).status, "applied");
    assert.equal(fetches() - before, 1, "the first invocation fetches");
    // Within the expiry: the cached value.
    before = fetches();
    await handler({}, context(30_000));
    assert.equal(fetches(), before, "cached");

    // The secret disappears; the expiry passes with no invocation: nothing is fetched meanwhile.
    sm.secrets.delete("prod/sink/db");
    before = fetches();
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(fetches(), before, "no background fetch");
    await assert.rejects(
      handler({}, context(30_000)),
      /cannot fetch secrets \(prod\/sink\/db\): ResourceNotFoundException: no secret prod\/sink\/db/,
    );
    assert.equal(fetches() - before, 1, "the invocation after the expiry fetches");

    // Back, and rotated meanwhile: the next invocation fetches again and logs in with the new one.
    await p.target.query(`ALTER ROLE sink_user PASSWORD 'rotated-pass'`);
    sm.secrets.set("prod/sink/db", sinkUrl("rotated-pass"));
    await load(2, 160);
    before = fetches();
    const s = await handler({}, context(30_000));
    assert.equal(s.status, "applied");
    assert.equal(fetches() - before, 1, "fetched once, no login failure to retry");
    for (let i = 0; i < 10 && (await handler({}, context(30_000))).status !== "idle"; i++);
    await assertSameTables(p, ["items"]);

    // The expiry passes again and the rotated secret is used until then.
    await new Promise((r) => setTimeout(r, 800));
    before = fetches();
    assert.equal((await handler({}, context(30_000))).status, "idle");
    assert.equal(fetches() - before, 1, "expired: fetched again");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(rejections, []);
  } finally {
    process.off("unhandledRejection", onRejection);
    await p.target.query(`ALTER ROLE sink_user PASSWORD 'new-pass'`);
    sm.secrets.set("prod/sink/db", saved);
  }
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

/**
 * Invokes a handler made for `environment` with EMF metrics on (Powertools reads that when the
 * handler is made), capturing stdout (EMF and Powertools logs) and stderr lines.
 */
async function invoke(
  environment: NodeJS.ProcessEnv,
  remainingMs = 30_000,
): Promise<{ result: RunSummary | Error; lines: string[] }> {
  process.env.POWERTOOLS_METRICS_DISABLED = "false";
  const lines: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const tap =
    (write: typeof out) =>
    (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      lines.push(
        ...String(chunk)
          .split("\n")
          .filter((l) => l !== ""),
      );
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    };
  process.stdout.write = tap(out) as typeof process.stdout.write;
  process.stderr.write = tap(err) as typeof process.stderr.write;
  try {
    const handler = createApplyHandler(environment);
    const result = await handler({}, context(remainingMs)).catch((e: Error) => e);
    return { result, lines };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.env.POWERTOOLS_METRICS_DISABLED = "true";
  }
}

// biome-ignore lint/suspicious/noExplicitAny: EMF JSON.
function emfOf(lines: string[]): Record<string, any> {
  const emf = lines.filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l));
  assert.equal(emf.length, 1, lines.join("\n"));
  const m = emf[0];
  const def = m._aws.CloudWatchMetrics[0];
  assert.equal(def.Namespace, "FluvioPostgresSink");
  return { ...m, names: def.Metrics.map((x: { Name: string }) => x.Name), dimensions: def.Dimensions };
}

// biome-ignore lint/suspicious/noExplicitAny: EMF JSON.
function assertDimensions(m: Record<string, any>, connector: string, topic: string) {
  assert.deepEqual(m.dimensions, [["service", "Connector", "Topic", "Partition"]]);
  assert.equal(m.Connector, connector);
  assert.equal(m.Topic, topic);
  assert.equal(m.Partition, "0");
}

test("a successful invocation publishes its EMF metrics with connector, topic and partition", async () => {
  await load(2, 400);
  const { result, lines } = await invoke(env(), 30_000);
  const s = result as RunSummary;
  assert.equal(s.status, "applied");
  const m = emfOf(lines);
  assertDimensions(m, "lambda-sink", "lam");
  for (const n of [
    "RecordsApplied",
    "Transactions",
    "Statements",
    "MissingRows",
    "Lag",
    "Duration",
    "SecondsBehindSource",
    "ConsecutiveFailures",
    "RunSucceeded",
    "RunFailed",
    "RunLocked",
    "DeadLetters",
  ])
    assert.ok(m.names.includes(n), n);
  assert.equal(m.RecordsApplied, s.records);
  assert.equal(m.Lag, 0);
  assert.equal(m.SecondsBehindSource, 0, "caught up");
  assert.equal(m.ConsecutiveFailures, 0);
  assert.deepEqual([m.RunSucceeded, m.RunFailed, m.RunLocked, m.DeadLetters], [1, 0, 0, 0]);
});

test("failing invocations publish RunFailed, counting consecutive failures, with seconds behind source; no row value in any log line", async () => {
  // A topic and connector of their own, so the failing record stops nothing else in this file.
  cluster.createTopic("lam-fail");
  const failEnv = () => ({
    ...env(),
    FLUVIO_TOPIC: "lam-fail",
    FLUVIO_PG_SINK_NAME: "fail-sink",
    MAX_RECORDS: "1",
  });
  await p.sql(`CREATE TABLE strict_items (id int PRIMARY KEY, v text)`);
  await p.target.query(
    `CREATE TABLE strict_items (id int PRIMARY KEY, v text CONSTRAINT no_poison CHECK (v <> 'poison-4711'))`,
  );
  await p.target.query(`ALTER TABLE strict_items OWNER TO sink_user`);
  const committed = Date.now();
  await p.sql(`INSERT INTO strict_items VALUES (1, 'fine')`);
  await new Promise((r) => setTimeout(r, 1200));
  await p.sql(`INSERT INTO strict_items VALUES (2, 'poison-4711')`);
  await produce(cluster.endpoint, "lam-fail", await p.capture());
  const first = await invoke(failEnv());
  assert.equal((first.result as RunSummary).status, "applied");
  const behindOk = emfOf(first.lines).SecondsBehindSource;
  assert.ok(behindOk >= 1.1 && behindOk <= (Date.now() - committed) / 1000, `${behindOk}`);

  for (const n of [1, 2]) {
    const before = Date.now();
    const { result, lines } = await invoke(failEnv());
    assert.ok(result instanceof Error);
    assert.match(result.message, /check constraint "no_poison".*\(SQLSTATE 23514\)/);
    const m = emfOf(lines);
    assertDimensions(m, "fail-sink", "lam-fail");
    assert.deepEqual([m.RunSucceeded, m.RunFailed, m.RunLocked], [0, 1, 0]);
    assert.equal(m.ConsecutiveFailures, n);
    assert.equal(m.RecordsApplied, 0);
    assert.ok(
      m.SecondsBehindSource >= (before - committed) / 1000 - 1 &&
        m.SecondsBehindSource <= (Date.now() - committed) / 1000,
      `behind since the last applied commit: ${m.SecondsBehindSource}`,
    );
    assert.ok(
      lines.some((l) => l.includes("no_poison")),
      "the error is logged",
    );
    for (const l of lines) assert.ok(!l.includes("poison-4711"), `a row value in a log line: ${l}`);
  }

  process.env.LOG_ROW_VALUES = "true";
  try {
    const { result, lines } = await invoke(failEnv());
    assert.ok(result instanceof Error);
    assert.ok(
      lines.some((l) => l.includes("poison-4711")),
      "LOG_ROW_VALUES=true logs the row",
    );
    assert.equal(emfOf(lines).ConsecutiveFailures, 3);
  } finally {
    delete process.env.LOG_ROW_VALUES;
  }

  await p.target.query(`ALTER TABLE strict_items DROP CONSTRAINT no_poison`);
  const { result, lines } = await invoke(failEnv());
  assert.equal((result as RunSummary).status, "applied");
  const m = emfOf(lines);
  assert.deepEqual([m.RunSucceeded, m.RunFailed, m.ConsecutiveFailures], [1, 0, 0]);
  assert.equal(m.SecondsBehindSource, 0);
  await assertSameTables(p, ["strict_items"]);
});

test("on_error dead_letter: the failing source transaction is set aside, counted in DeadLetters and logged as a warning without row values", async () => {
  cluster.createTopic("lam-dl");
  await p.sql(`CREATE TABLE dl_items (id int PRIMARY KEY, v text)`);
  await p.target.query(
    `CREATE TABLE dl_items (id int PRIMARY KEY, v text CONSTRAINT no_poison CHECK (v <> 'poison-4712'))`,
  );
  await p.target.query(`ALTER TABLE dl_items OWNER TO sink_user`);
  await p.sql(`INSERT INTO dl_items VALUES (1, 'fine')`);
  await p.sql(`INSERT INTO dl_items VALUES (2, 'poison-4712')`);
  await p.sql(`INSERT INTO dl_items VALUES (3, 'fine too')`);
  await produce(cluster.endpoint, "lam-dl", await p.capture());
  // Warnings are logged at WARN: this file logs only errors otherwise.
  process.env.POWERTOOLS_LOG_LEVEL = "WARN";
  const { result, lines } = await invoke({
    ...env(),
    FLUVIO_TOPIC: "lam-dl",
    FLUVIO_PG_SINK_NAME: "dl-sink",
    ON_ERROR: "dead_letter",
  }).finally(() => {
    process.env.POWERTOOLS_LOG_LEVEL = "ERROR";
  });
  const s = result as RunSummary;
  assert.equal(s.status, "applied", String(result));
  assert.equal(s.dead_letters, 1);
  const m = emfOf(lines);
  assertDimensions(m, "dl-sink", "lam-dl");
  assert.deepEqual([m.RunSucceeded, m.RunFailed, m.DeadLetters], [1, 0, 1]);
  assert.ok(
    lines.some((l) => l.includes("set aside in the dead-letter table") && l.includes("no_poison")),
    "the dead letter is logged",
  );
  for (const l of lines) assert.ok(!l.includes("poison-4712"), `a row value in a log line: ${l}`);
  const rows = await p.target.query(`SELECT id FROM dl_items ORDER BY id`);
  assert.deepEqual(
    rows.rows.map((r) => r.id),
    [1, 3],
  );
});

test("a locked invocation publishes RunLocked with the same dimensions", async () => {
  const holder = new pg.Client({ connectionString: p.targetUrl });
  await holder.connect();
  const key = JSON.stringify(["fluvio-postgres-sink", "lambda-sink", "lam", 0]);
  await holder.query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [key]);
  try {
    const { result, lines } = await invoke(env(), 30_000);
    assert.equal((result as RunSummary).status, "locked");
    const m = emfOf(lines);
    assertDimensions(m, "lambda-sink", "lam");
    assert.deepEqual([m.RunSucceeded, m.RunFailed, m.RunLocked, m.RecordsApplied], [0, 0, 1, 0]);
    assert.ok(!m.names.includes("ConsecutiveFailures"), "a locked run does not know");
  } finally {
    await holder.end();
  }
});

test("a secret that cannot be fetched: the cause is logged, RunFailed is published", async () => {
  const { result, lines } = await invoke(
    { ...env(), FLUVIO_PG_DATABASE_URL_SECRET: "prod/sink/missing" },
    30_000,
  );
  assert.ok(result instanceof Error);
  assert.match(
    result.message,
    /cannot fetch secrets \(prod\/sink\/missing\): ResourceNotFoundException: no secret prod\/sink\/missing/,
  );
  assert.ok(
    lines.some((l) => l.includes("ResourceNotFoundException")),
    lines.join("\n"),
  );
  const m = emfOf(lines);
  assert.deepEqual([m.RunSucceeded, m.RunFailed], [0, 1]);
});

test("a secret fetch that never answers ends at the run's deadline", async () => {
  const silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
  const port = (silent.address() as AddressInfo).port;
  const saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = `http://127.0.0.1:${port}`;
  try {
    const started = Date.now();
    const { result, lines } = await invoke(
      { ...env(), FLUVIO_PG_DATABASE_URL_SECRET: "prod/sink/slow" },
      5000,
    );
    const took = Date.now() - started;
    assert.ok(result instanceof Error);
    assert.match(
      result.message,
      /cannot fetch secrets \(prod\/sink\/slow\): .*no answer before the run's deadline/,
    );
    assert.ok(
      took >= 1500 && took < 4000,
      `ended at the deadline (remaining time less the margin): ${took} ms`,
    );
    assert.equal(emfOf(lines).RunFailed, 1);
  } finally {
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
    silent.closeAllConnections();
    silent.close();
  }
});

test("a source that outruns a tiny budget: the invocations publish ArrivalRate above Capacity and ScheduleOutrun, and warn", async () => {
  cluster.createTopic("lam-outrun");
  const outEnv = {
    ...env(),
    FLUVIO_TOPIC: "lam-outrun",
    FLUVIO_PG_SINK_NAME: "outrun-sink",
    MAX_RECORDS: "20",
    SCHEDULE_INTERVAL_SECONDS: "1",
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
  };
  await p.sql(`CREATE TABLE outrun_items (id serial PRIMARY KEY, v text)`);
  const saved = process.env.POWERTOOLS_LOG_LEVEL;
  process.env.POWERTOOLS_LOG_LEVEL = "WARN";
  try {
    const published: ReturnType<typeof emfOf>[] = [];
    const warned: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      // 50 records a tick (10 transactions of 3 rows, one relation record); a run takes about 20.
      for (let k = 0; k < 10; k++)
        await p.sql(`INSERT INTO outrun_items (v) SELECT 'v' || g FROM generate_series(1, 3) g`);
      await produce(cluster.endpoint, "lam-outrun", await p.capture());
      const { result, lines } = await invoke(outEnv);
      assert.equal((result as RunSummary).status, "applied");
      published.push(emfOf(lines));
      warned.push(lines.some((l) => l.includes("the source outruns the schedule")));
    }
    // Known from the second run on; the outrun needs five runs of history.
    assert.equal(published[0]?.ArrivalRate, undefined);
    for (const m of published.slice(1)) {
      assert.ok(m.ArrivalRate > m.Capacity, `${m.ArrivalRate} > ${m.Capacity}`);
      assert.ok(m.Capacity >= 20 && m.Capacity <= 22, "about 20 records a run, a run a second");
      assert.ok(!m.names.includes("TimeToCatchUp"), "never catches up at these rates");
    }
    assert.deepEqual(
      published.map((m) => m.ScheduleOutrun),
      [0, 0, 0, 0, 1, 1],
    );
    assert.deepEqual(warned, [false, false, false, false, true, true]);
  } finally {
    process.env.POWERTOOLS_LOG_LEVEL = saved;
  }
});

// The native Fluvio client, stopped before a partition's end (max_records), stays referenced in this
// process; Lambda freezes after the handler resolves and the CLI exits explicitly, so this file does too.
after(() => setTimeout(() => process.exit(), 200));

/** Connections the sink's Fluvio source made so far, and the SC connections the cluster saw. */
const scConnects = () => fluvioConnectionsMade();
const seenConnects = () =>
  cluster.seen.filter((s) => s.server === "sc" && s.apiKey === Api.ApiVersions).length;

/** A source and target of their own, a topic of their own, and a handler for them. */
async function warmSetup(name: string, maxRecords: number) {
  const q = await makePair(server, name);
  await q.sql(`CREATE TABLE warm_items (id int PRIMARY KEY, v text)`);
  cluster.createTopic(name);
  sm.secrets.set(`prod/sink/${name}`, q.targetUrl);
  const handler = createApplyHandler({
    ...env(),
    FLUVIO_TOPIC: name,
    FLUVIO_PG_SINK_NAME: `${name}-sink`,
    FLUVIO_PG_DATABASE_URL_SECRET: `prod/sink/${name}`,
    MAX_RECORDS: String(maxRecords),
  });
  const write = async (from: number, n: number) => {
    for (let i = from; i < from + n; i++) await q.sql(`INSERT INTO warm_items VALUES ($1, $2)`, [i, `v${i}`]);
    await q.sql(`UPDATE warm_items SET v = v || '!' WHERE id % 3 = 0`);
    await q.sql(`DELETE FROM warm_items WHERE id % 5 = 0`);
    await produce(cluster.endpoint, name, await q.capture());
  };
  /** Invokes until caught up; returns the summaries. */
  const drain = async () => {
    const out: RunSummary[] = [];
    for (let i = 0; i < 500; i++) {
      const s = await handler({}, context(30_000));
      assert.equal(s.status, s.records === 0 ? s.status : "applied");
      out.push(s);
      if (s.lag === 0) return out;
    }
    throw new Error("never caught up");
  };
  return { q, write, drain, handler };
}

for (const max of [1, 7, 1000])
  test(`a warm function keeps its Fluvio connection while its runs read to the end, and still reads exactly (max_records ${max})`, async () => {
    forgetFluvioClients();
    const { q, write, drain, handler } = await warmSetup(`warm${max}`, max);
    try {
      await write(0, 12);
      let before = scConnects();
      const first = await drain();
      // A run that stopped before the end leaves a stream it cannot close: the next run connects anew.
      const cut = first.filter((s) => s.lag !== 0).length;
      assert.equal(scConnects() - before, 1 + cut);
      assert.equal(first.at(-1)?.next_offset, String(q.records.length));
      await assertSameTables(q, ["warm_items"]);

      // Caught up: idle invocations (each checks its last record) reuse the connection, once one
      // has made it (a sink's first run checks its position with streams it leaves open).
      assert.equal((await handler({}, context(30_000))).status, "idle");
      before = scConnects();
      const seen = seenConnects();
      for (let i = 0; i < 3; i++) {
        const s = await handler({}, context(30_000));
        assert.deepEqual([s.status, s.records], ["idle", 0]);
      }
      assert.equal(scConnects(), before, "idle invocations connect no more");
      assert.equal(seenConnects(), seen, "nor does the cluster see a new connection");

      await write(100, 9);
      before = scConnects();
      const second = await drain();
      assert.ok(second.some((s) => s.records > 0));
      assert.equal(scConnects() - before, second.filter((s) => s.lag !== 0).length);
      assert.equal(second.at(-1)?.next_offset, String(q.records.length));
      await assertSameTables(q, ["warm_items"]);
    } finally {
      await q.close();
    }
  });

test("a kept Fluvio connection the cluster dropped is replaced, and the invocation reads exactly", async () => {
  forgetFluvioClients();
  const { q, write, drain, handler } = await warmSetup("warmdrop", 7);
  try {
    await write(0, 10);
    await drain();
    assert.equal((await handler({}, context(30_000))).status, "idle"); // keeps its connection
    cluster.dropConnections("all");
    await write(100, 10);
    const before = scConnects();
    const runs = await drain();
    assert.ok(scConnects() > before, "connected again");
    assert.ok(runs.every((s) => s.status === "applied"));
    assert.equal(runs.at(-1)?.next_offset, String(q.records.length));
    await assertSameTables(q, ["warm_items"]);
  } finally {
    await q.close();
  }
});
