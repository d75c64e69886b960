import assert from "node:assert/strict";
import { test } from "node:test";
import { configFromEnv } from "../src/config.js";
import { parseConnectorConfig } from "../src/config-file.js";
import { redact } from "../src/log.js";

const base = `version: 0.2.0
name: my-postgres-sink
type: postgres-sink
topic: postgres-topic
`;

test("the documented connector config parses, with the URL from secrets", () => {
  const c = parseConnectorConfig(
    `${base}parameters:\n  url: secrets.FLUVIO_PG_DATABASE_URL\n  source: file:export.jsonl\n  max_records: 50\n  partition: 2\nsecrets:\n  FLUVIO_PG_DATABASE_URL: postgres://u:p@h:5432/db\n`,
    { env: {}, baseDir: "/cfg" },
  );
  assert.deepEqual(
    [c.name, c.topic, c.partition, c.maxRecords, c.databaseUrl, c.source],
    [
      "my-postgres-sink",
      "postgres-topic",
      2,
      50,
      "postgres://u:p@h:5432/db",
      { kind: "file", path: "/cfg/export.jsonl" },
    ],
  );
});

test("the URL can come from the environment, and secret references in template form work", () => {
  const env = { FLUVIO_PG_DATABASE_URL: "postgres://env/db", OTHER: "postgresql://other/db" };
  assert.equal(parseConnectorConfig(base, { env }).databaseUrl, "postgres://env/db");
  assert.equal(
    parseConnectorConfig(`${base}parameters:\n  url: \${{ secrets.OTHER }}\n`, { env }).databaseUrl,
    "postgresql://other/db",
  );
  assert.deepEqual(parseConnectorConfig(base, { env }).source, { kind: "fluvio", endpoint: null });
});

test("problems are all reported, naming the setting, never echoing the URL", () => {
  assert.throws(
    () =>
      parseConnectorConfig(
        `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  url: mysql://u:hunter2@h/db\n  max_records: 0\n  source: s3://x\n`,
        {
          env: {},
        },
      ),
    (e: Error) =>
      /parameters\.url must be a postgres/.test(e.message) &&
      /max_records must be an integer >= 1/.test(e.message) &&
      /parameters\.source must be/.test(e.message) &&
      !e.message.includes("hunter2"),
  );
  assert.throws(() => parseConnectorConfig("a: [", { env: {} }), /not valid YAML/);
  assert.throws(
    () => parseConnectorConfig(`${base}parameters:\n  url: secrets.NOPE\n`, { env: {} }),
    /names secret NOPE/,
  );
});

test("fetch_max_bytes: 64 MiB by default, within what the client can send (an i32)", () => {
  const env = { FLUVIO_PG_DATABASE_URL: "postgres://env/db" };
  assert.equal(parseConnectorConfig(base, { env }).fetchMaxBytes, 64 * 1024 * 1024);
  assert.equal(
    parseConnectorConfig(`${base}parameters:\n  fetch_max_bytes: 5000000\n`, { env }).fetchMaxBytes,
    5_000_000,
  );
  for (const bad of ["2147483648", "100", "-1"])
    assert.throws(() => parseConnectorConfig(`${base}parameters:\n  fetch_max_bytes: ${bad}\n`, { env }), {
      message: "config: parameters.fetch_max_bytes must be an integer >= 1024 and <= 2147483647",
    });
});

test("redact removes passwords from URLs in messages", () => {
  assert.equal(redact("failed postgres://me:pa55@host/db now"), "failed postgres://me:***@host/db now");
});

test("start_lsn takes PostgreSQL's X/Y form or a decimal; on_conflict is error or upsert; both from the environment too", () => {
  const env = { FLUVIO_PG_DATABASE_URL: "postgres://env/db" };
  const c = parseConnectorConfig(`${base}parameters:\n  start_lsn: 16/B374D848\n  on_conflict: upsert\n`, {
    env,
  });
  assert.deepEqual([c.startLsn, c.onConflict], [(0x16n << 32n) | 0xb374d848n, "upsert"]);
  assert.equal(
    parseConnectorConfig(`${base}parameters:\n  start_lsn: "18446744073709551615"\n`, { env }).startLsn,
    18446744073709551615n,
  );
  const d = parseConnectorConfig(base, { env });
  assert.deepEqual([d.startLsn, d.onConflict], [null, "error"]);
  assert.throws(
    () => parseConnectorConfig(`${base}parameters:\n  start_lsn: 0/XYZ\n  on_conflict: merge\n`, { env }),
    (e: Error) =>
      e.message.includes(
        `parameters.start_lsn must be an LSN like 0/16B3748 or a decimal number (got "0/XYZ")`,
      ) && e.message.includes(`parameters.on_conflict must be "error" or "upsert"`),
  );
  const fromEnv = configFromEnv({ ...env, FLUVIO_TOPIC: "t", START_LSN: "0/1000", ON_CONFLICT: "upsert" });
  assert.deepEqual([fromEnv.startLsn, fromEnv.onConflict], [0x1000n, "upsert"]);
});

test("timeouts: documented defaults, settable in the config and the environment, validated", () => {
  const url = "postgres://u:p@h:5432/db";
  const d = parseConnectorConfig(`${base}parameters:\n  url: ${url}\n`, { env: {} });
  assert.deepEqual(
    [
      d.connectTimeoutMs,
      d.runTimeoutMs,
      d.statementTimeoutMs,
      d.lockTimeoutMs,
      d.queryTimeoutMs,
      d.tcpKeepaliveMs,
    ],
    [10_000, 120_000, 60_000, 10_000, 65_000, 15_000],
  );
  const c = parseConnectorConfig(
    `${base}parameters:\n  url: ${url}\n  run_timeout_ms: 5000\n  statement_timeout_ms: 3000\n  lock_timeout_ms: 200\n  tcp_keepalive_ms: 2000\n`,
    { env: {} },
  );
  assert.deepEqual(
    [c.runTimeoutMs, c.statementTimeoutMs, c.lockTimeoutMs, c.queryTimeoutMs, c.tcpKeepaliveMs],
    [5000, 3000, 200, 8000, 2000],
  );
  const e = configFromEnv({
    FLUVIO_TOPIC: "t",
    FLUVIO_PG_DATABASE_URL: url,
    RUN_TIMEOUT_MS: "9000",
    STATEMENT_TIMEOUT_MS: "4000",
    LOCK_TIMEOUT_MS: "300",
    QUERY_TIMEOUT_MS: "4500",
    TCP_KEEPALIVE_MS: "5000",
  });
  assert.deepEqual(
    [e.runTimeoutMs, e.statementTimeoutMs, e.lockTimeoutMs, e.queryTimeoutMs, e.tcpKeepaliveMs],
    [9000, 4000, 300, 4500, 5000],
  );
  assert.throws(
    () =>
      parseConnectorConfig(
        `${base}parameters:\n  url: ${url}\n  run_timeout_ms: 1500\n  lock_timeout_ms: 0\n`,
        {
          env: {},
        },
      ),
    /parameters\.run_timeout_ms must be an integer >= 2000; parameters\.lock_timeout_ms must be an integer >= 1/,
  );
});

test("an unparsable URL names its setting and is never echoed", () => {
  for (const [yaml, env, setting] of [
    [`  url: "postgres://u:se#cret@h/db"\n`, {}, "parameters.url"],
    ["", { FLUVIO_PG_DATABASE_URL: "postgres://u:se#cret@h:70000/db" }, "FLUVIO_PG_DATABASE_URL"],
    [`  url: "postgres://u:secret@h:notaport/db"\n`, {}, "parameters.url"],
  ] as const) {
    try {
      parseConnectorConfig(`${base}parameters:\n${yaml}`, { env });
      assert.fail("expected a ConfigError");
    } catch (e) {
      assert.equal((e as Error).name, "ConfigError");
      assert.match((e as Error).message, new RegExp(`${setting.replace(".", "\\.")}.* is not a valid URL`));
      assert.ok(!(e as Error).message.includes("cret"), "no credential");
    }
  }
  // What node-postgres accepts stays accepted: a socket directory in the query, an empty host.
  for (const ok of ["postgres:///db?host=/var/run/postgresql", "postgres://u:p@/db", "postgres://u:p w@h/db"])
    assert.equal(parseConnectorConfig(`${base}parameters:\n  url: "${ok}"\n`, { env: {} }).databaseUrl, ok);
});

test("unknown keys at every level are errors, with the nearest known key suggested", () => {
  const msg = (yaml: string) => {
    try {
      parseConnectorConfig(yaml, { env: { FLUVIO_PG_DATABASE_URL: "postgres://u:p@h/db" } });
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail("accepted");
  };
  assert.equal(
    msg(`${base}paramters:\n  max_records: 5\n`),
    "config: paramters is not a known setting (did you mean parameters?)",
  );
  assert.equal(
    msg(`${base}parameters:\n  max_record: 5\n  flavour: x\n`),
    "config: parameters.max_record is not a known setting (did you mean parameters.max_records?); parameters.flavour is not a known setting (known: parameters.url, parameters.source, parameters.fluvio_endpoint, parameters.partition, parameters.max_records, parameters.max_transaction_records, parameters.state_schema, parameters.missing_rows, parameters.connect_timeout_ms, parameters.read_timeout_ms, parameters.fetch_max_bytes, parameters.run_timeout_ms, parameters.statement_timeout_ms, parameters.lock_timeout_ms, parameters.query_timeout_ms, parameters.tcp_keepalive_ms, parameters.on_lost_records, parameters.start_lsn, parameters.on_conflict, parameters.ssl_mode, parameters.ssl_root_cert)",
  );
  assert.equal(
    msg(`${base}consumer:\n  partion: 1\n  offset:\n    strategy: auto\n`),
    "config: consumer.offset is not used by this sink: the sink keeps its offset in the target's state table (see README, Offsets); consumer.partion is not a known setting (did you mean consumer.partition?)",
  );
});

test("consumer.partition is honoured; a different parameters.partition is an error", () => {
  const env = { FLUVIO_PG_DATABASE_URL: "postgres://u:p@h/db" };
  assert.equal(parseConnectorConfig(`${base}consumer:\n  partition: 3\n`, { env }).partition, 3);
  assert.equal(
    parseConnectorConfig(`${base}consumer:\n  partition: 3\nparameters:\n  partition: 3\n`, { env })
      .partition,
    3,
  );
  assert.throws(
    () => parseConnectorConfig(`${base}consumer:\n  partition: 3\nparameters:\n  partition: 1\n`, { env }),
    /^ConfigError: config: consumer\.partition \(3\) and parameters\.partition \(1\) disagree: set one$/,
  );
});

test("the apiVersion/meta layout is rejected with the layout to use", () => {
  assert.throws(
    () =>
      parseConnectorConfig(
        "apiVersion: 0.1.0\nmeta:\n  version: 0.2.0\n  name: s\n  type: postgres-sink\n  topic: t\n",
        { env: {} },
      ),
    /^ConfigError: config: the apiVersion\/meta layout is not read by this sink: put version, name, type and topic at the top level \(not under meta\), the settings under parameters/,
  );
});
