import assert from "node:assert/strict";
import { dirname } from "node:path";
import { test } from "node:test";
import { runCli, writeConfig } from "./support/cli.js";
import { FluvioTestCluster } from "./support/fluvio/cluster.js";
import { produce } from "./support/fluvio/produce.js";
import {
  assertSameTables,
  makePair,
  type Pair,
  pgAndFluvioForFile,
  storedOffset,
} from "./support/harness.js";

const services = pgAndFluvioForFile();
const cluster = () => services().cluster;

function config(
  p: Pair,
  topic: string,
  endpoint: string,
  extra: Record<string, string | number> = {},
): string {
  const params = { max_records: 20, connect_timeout_ms: 3000, read_timeout_ms: 3000, ...extra };
  return writeConfig(
    dirname(p.topicFile),
    `version: 0.2.0
name: fluvio-sink
type: postgres-sink
topic: ${topic}
parameters:
  fluvio_endpoint: ${endpoint}
${Object.entries(params)
  .map(([k, v]) => `  ${k}: ${v}`)
  .join("\n")}
secrets:
  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}
`,
  );
}

async function workload(p: Pair, n: number) {
  await p.sql(`CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v text, n bigint)`);
  for (let i = 0; i < n; i++)
    await p.sql(`BEGIN; INSERT INTO items VALUES (${i}, 'v${i}', ${2n ** 60n + BigInt(i)});
                 UPDATE items SET v = v || '!' WHERE id = ${Math.floor(i / 2)}; COMMIT`);
}

test("end to end: SQL on the source, produced into Fluvio, repeated runs, target equals source", async () => {
  const p = await makePair(services().server, "fl_e2e");
  try {
    cluster().createTopic("cdc");
    await workload(p, 40);
    await produce(cluster().endpoint, "cdc", await p.capture());
    const cfg = config(p, "cdc", cluster().endpoint);
    let runs = 0;
    for (;;) {
      const r = await runCli(["run", "--config", cfg]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      if (s.records === 0) break;
      runs++;
      assert.ok(s.records >= 20 || s.lag === 0, "each run takes max_records or all that is left");
      assert.equal(s.lag, p.records.length - Number(s.next_offset));
    }
    assert.ok(runs >= 5);
    await assertSameTables(p, ["items"]);
    assert.equal(await storedOffset(p, "fluvio-sink"), String(cluster().highWatermark("cdc")));
    // More changes later, then a run picks them up; status shows the lag before it.
    await p.sql(`DELETE FROM items WHERE id < 10`);
    await produce(cluster().endpoint, "cdc", await p.capture());
    const st = JSON.parse((await runCli(["status", "--config", cfg])).stdout);
    assert.equal(st.lag, p.records.length - Number(st.next_offset));
    assert.ok(st.lag > 0);
    const r = await runCli(["run", "--config", config(p, "cdc", cluster().endpoint, { max_records: 1000 })]);
    assert.equal(JSON.parse(r.stdout).lag, 0);
    await assertSameTables(p, ["items"]);
    const idle = JSON.parse((await runCli(["run", "--config", cfg])).stdout);
    assert.equal(idle.records, 0);
  } finally {
    await p.close();
  }
});

test("an empty topic applies nothing and the process exits at once", async () => {
  const p = await makePair(services().server, "fl_empty");
  try {
    cluster().createTopic("empty");
    const started = Date.now();
    const r = await runCli(["run", "--config", config(p, "empty", cluster().endpoint)]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual([s.status, s.records, s.lag], ["idle", 0, 0]);
    assert.ok(Date.now() - started < 10_000);
  } finally {
    await p.close();
  }
});

test("records removed by retention: a clear error with the count, or skipped when configured", async () => {
  const p = await makePair(services().server, "fl_retention");
  try {
    cluster().createTopic("ret");
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY)`);
    await p.sql(`INSERT INTO items VALUES (1)`);
    const first = await p.capture();
    await p.sql(`INSERT INTO items VALUES (2)`);
    const second = await p.capture();
    await produce(cluster().endpoint, "ret", [...first, ...second]);
    cluster().setLogStart("ret", 0, BigInt(first.length));
    const r = await runCli(["run", "--config", config(p, "ret", cluster().endpoint)]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `offsets 0\\.\\.${first.length - 1} \\(${first.length} records\\) were removed by retention`,
      ),
    );
    assert.equal(await storedOffset(p, "fluvio-sink"), "0", "the failure is recorded, the offset stays");
    // Allowed to skip, it applies what is left: the second transaction (pgoutput sends the relation
    // again in each replication session, so the table is known).
    const s = await runCli([
      "run",
      "--config",
      config(p, "ret", cluster().endpoint, { on_lost_records: "skip" }),
    ]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stderr, /removed by retention before this sink applied them; continuing after them/);
    assert.equal(JSON.parse(s.stdout).next_offset, String(first.length + second.length));
    const rows = await p.target.query(`SELECT id FROM items ORDER BY id`);
    assert.deepEqual(
      rows.rows.map((x) => x.id),
      [2],
    );
  } finally {
    await p.close();
  }
});

test("unreachable, silent and disconnecting clusters fail within the timeout and apply nothing", async () => {
  const p = await makePair(services().server, "fl_fail");
  try {
    // Nothing listens on port 1.
    let started = Date.now();
    const unreachable = await runCli(["run", "--config", config(p, "x", "127.0.0.1:1")]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot connect to Fluvio cluster 127\.0\.0\.1:1/);
    assert.ok(Date.now() - started < 10_000, "fails fast");

    const silent = await FluvioTestCluster.start({ silent: true });
    started = Date.now();
    const hung = await runCli([
      "run",
      "--config",
      config(p, "x", silent.endpoint, { connect_timeout_ms: 1000 }),
    ]);
    assert.equal(hung.code, 1);
    assert.match(hung.stderr, /no answer within 1000 ms/);
    assert.ok(Date.now() - started < 10_000, "gives up at the timeout and exits");
    await silent.stop();

    cluster().createTopic("drop");
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY)`);
    await p.sql(`INSERT INTO items SELECT generate_series(1, 30)`);
    await produce(cluster().endpoint, "drop", await p.capture());
    cluster().dropStreamsAfter = 10;
    try {
      const dropped = await runCli([
        "run",
        "--config",
        config(p, "drop", cluster().endpoint, { max_records: 1000 }),
      ]);
      assert.equal(dropped.code, 1);
      assert.match(dropped.stderr, /reading offset 10 from Fluvio cluster .* failed/);
    } finally {
      cluster().dropStreamsAfter = null;
    }
    assert.equal(await storedOffset(p, "fluvio-sink"), "0", "the failure is recorded, the offset stays");
    const ok = await runCli([
      "run",
      "--config",
      config(p, "drop", cluster().endpoint, { max_records: 1000 }),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    await assertSameTables(p, ["items"]);

    const missing = await runCli(["run", "--config", config(p, "no-such-topic", cluster().endpoint)]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /topic no-such-topic partition 0: no such topic partition/);
  } finally {
    await p.close();
  }
});
