import assert from "node:assert/strict";
import { test } from "node:test";
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

test("redact removes passwords from URLs in messages", () => {
  assert.equal(redact("failed postgres://me:pa55@host/db now"), "failed postgres://me:***@host/db now");
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
    "config: parameters.max_record is not a known setting (did you mean parameters.max_records?); parameters.flavour is not a known setting (known: parameters.url, parameters.source, parameters.fluvio_endpoint, parameters.partition, parameters.max_records, parameters.max_transaction_records, parameters.state_schema, parameters.missing_rows, parameters.connect_timeout_ms, parameters.read_timeout_ms, parameters.on_lost_records, parameters.ssl_mode, parameters.ssl_root_cert)",
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
