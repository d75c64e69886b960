import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair, storedOffset } from "./support/harness.js";
import { type PgServer, startPostgres, TEST_PASSWORD } from "./support/pg.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

function configFor(p: Pair, maxRecords = 20): string {
  return writeConfig(
    dirname(p.topicFile),
    `version: 0.2.0
name: cli-sink
type: postgres-sink
topic: postgres-topic
parameters:
  url: secrets.FLUVIO_PG_DATABASE_URL
  source: file:${p.topicFile}
  max_records: ${maxRecords}
secrets:
  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}
`,
  );
}

async function workload(p: Pair, from: number, n: number) {
  for (let i = from; i < from + n; i++)
    await p.sql(`BEGIN; INSERT INTO items VALUES (${i}, 'i${i}'); UPDATE items SET v = v || '+' WHERE id = ${Math.max(1, i - 1)};
                 INSERT INTO audit VALUES (${i}); COMMIT`);
  await p.capture();
}

test("run prints a JSON summary on stdout and logs on stderr; status reports lag", async () => {
  const p = await makePair(server, "cli");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.sql(`CREATE TABLE audit (n int)`);
    await workload(p, 1, 10);
    const cfg = configFor(p);
    const st = await runCli(["status", "--config", cfg]);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).lag, p.records.length);
    const r = await runCli(["run", "--config", cfg]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    for (const k of ["records", "transactions", "next_offset", "lag", "duration_ms"]) assert.ok(k in s, k);
    assert.equal(s.status, "applied");
    assert.ok(s.records >= 20 && s.records < p.records.length);
    assert.equal(s.lag, p.records.length - s.records);
  } finally {
    await p.close();
  }
});

for (const point of ["after-lock", "after-read", "after-apply", "before-commit", "after-commit"]) {
  test(`killed at ${point}: the next run completes and nothing is applied twice`, async () => {
    const p = await makePair(server, `crash_${point.replace("-", "_")}`);
    try {
      await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
      await p.sql(`CREATE TABLE audit (n int)`);
      await workload(p, 1, 12);
      const cfg = configFor(p);
      const first = await runCli(["run", "--config", cfg]);
      assert.equal(first.code, 0, first.stderr);
      const before = await storedOffset(p, "cli-sink");
      const killed = await runCli(["run", "--config", cfg], { FLUVIO_PG_SINK_FAILPOINT: point });
      assert.equal(killed.signal, "SIGKILL");
      const afterKill = await storedOffset(p, "cli-sink");
      if (point === "after-commit") assert.notEqual(afterKill, before);
      else assert.equal(afterKill, before, "a killed run leaves the state as it was");
      for (let i = 0; i < 50; i++) {
        const r = await runCli(["run", "--config", cfg]);
        assert.equal(r.code, 0, r.stderr);
        if (JSON.parse(r.stdout).records === 0) break;
      }
      await assertSameTables(p, ["items", "audit"]);
      assert.equal(await storedOffset(p, "cli-sink"), String(p.records.length));
    } finally {
      await p.close();
    }
  });
}

test("two CLI runs at once converge to the same target", async () => {
  const p = await makePair(server, "twocli");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.sql(`CREATE TABLE audit (n int)`);
    await workload(p, 1, 30);
    const cfg = configFor(p);
    for (let i = 0; i < 20; i++) {
      const rs = await Promise.all([runCli(["run", "--config", cfg]), runCli(["run", "--config", cfg])]);
      for (const r of rs) assert.equal(r.code, 0, r.stderr);
      const statuses = rs.map((r) => JSON.parse(r.stdout).status);
      if (statuses.every((x) => x === "idle")) break;
    }
    await assertSameTables(p, ["items", "audit"]);
  } finally {
    await p.close();
  }
});

test("bad input: a clear error naming the offset, nothing applied, state unchanged", async () => {
  const p = await makePair(server, "bad");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.sql(`CREATE TABLE audit (n int)`);
    await workload(p, 1, 2);
    const good = p.records.length;
    const insert = p.records.find((l) => l.includes('"type":"insert"')) as string;
    // A transaction of its own, later than anything applied, around each bad record.
    const begin = (p.records.find((l) => l.includes('"type":"begin"')) as string).replace(
      /"final_lsn":\d+/,
      '"final_lsn":99999999999',
    );
    const commit = (p.records.find((l) => l.includes('"type":"commit"')) as string).replace(
      /"commit_lsn":\d+/,
      '"commit_lsn":99999999999',
    );
    const cases: [string, RegExp][] = [
      ["{not json", /record at offset (\d+): malformed JSON/],
      [insert.replace(/"rel_id":\d+/, '"rel_id":999'), /record at offset (\d+): unknown rel_id 999/],
      [
        insert.replace(/"tuple":\[/, '"tuple":[{"Int4":1},'),
        /record at offset (\d+) \(table public\.items\): tuple has 3 values but the relation has 2 columns/,
      ],
      [
        insert.replace(/\{"Int4":(\d+)\}/, '{"Int4":"$1"}'),
        /record at offset (\d+): message\.tuple\[0\]\.Int4 must be an integer/,
      ],
      [
        insert.replace(/"type":"insert"/, '"type":"upsert"'),
        /record at offset (\d+): unknown message\.type \\"upsert/,
      ],
      ['{"message":{"type":"commit"}}', /record at offset (\d+): message\.commit_lsn must be an integer/],
    ];
    for (const [bad, expected] of cases) {
      const dir = mkdtempSync(join(tmpdir(), "fps-bad-"));
      const file = join(dir, "topic.jsonl");
      // A good transaction first: it must not be applied either when a later record is bad.
      appendFileSync(file, `${p.records.join("\n")}\n${begin}\n${bad}\n${commit}\n`);
      const c = configFor({ ...p, topicFile: file }, 1000);
      const r = await runCli(["run", "--config", c]);
      assert.equal(r.code, 1, `exit code for ${bad.slice(0, 40)}`);
      const m = expected.exec(r.stderr);
      assert.ok(m, `stderr names the problem: ${r.stderr}`);
      assert.equal(Number(m[1]), good + 1, "the offset of the bad record");
      assert.equal(
        await storedOffset(p, "cli-sink"),
        "0",
        "state unchanged (a first failure is recorded at the start)",
      );
      const t = await p.target.query(`SELECT to_regclass('public.items') AS r`);
      assert.equal(t.rows[0].r, null, "nothing applied");
    }
  } finally {
    await p.close();
  }
});

test("an SQL error names offsets, table and cause, and rolls back the whole run", async () => {
  const p = await makePair(server, "sqlerr");
  try {
    await p.sql(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    await p.sql(`CREATE TABLE audit (n int)`);
    await p.target.query(`CREATE TABLE items (id int PRIMARY KEY, v text CHECK (v <> 'i5'))`);
    await workload(p, 1, 5);
    const r = await runCli(["run", "--config", configFor(p, 1000)]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /offsets? \d+(\.\.\d+)?, table public\.items: insert failed: .*check constraint .*\(SQLSTATE 23514\)/,
    );
    assert.equal(
      await storedOffset(p, "cli-sink"),
      "0",
      "the failure is recorded, the offset stays at the start",
    );
    assert.equal((await p.target.query(`SELECT count(*)::int AS n FROM items`)).rows[0].n, 0);
  } finally {
    await p.close();
  }
});

test("bad config and unreachable database: clear errors, no credentials printed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fps-cfg-"));
  const bad = writeConfig(
    dir,
    `name: x\ntype: postgres-source\nparameters:\n  max_records: -1\n  partiton: 1\n`,
  );
  const r = await runCli(["run", "--config", bad]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /type must be postgres-sink/);
  assert.match(r.stderr, /topic is required/);
  assert.match(r.stderr, /parameters\.max_records must be an integer >= 1/);
  assert.match(r.stderr, /parameters\.partiton is not a known setting/);
  assert.match(r.stderr, /parameters\.url is missing/);

  const missing = await runCli(["run", "--config", join(dir, "nope.yaml")]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /cannot read config file/);

  const unreachable = writeConfig(
    dir,
    `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  url: postgres://someone:${TEST_PASSWORD}@127.0.0.1:1/db\n  source: file:${join(dir, "none.jsonl")}\n`,
  );
  const u = await runCli(["run", "--config", unreachable]);
  assert.equal(u.code, 1);
  assert.match(u.stderr, /cannot connect to the target database/);
  assert.ok(!u.stderr.includes(TEST_PASSWORD) && !u.stdout.includes(TEST_PASSWORD), "no password in output");

  const wrongPw = writeConfig(
    dir,
    `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  url: ${(await server.createDatabase("pw")).replace(TEST_PASSWORD, "wrong-pw-123")}\n  source: file:${join(dir, "none.jsonl")}\n`,
  );
  const w = await runCli(["run", "--config", wrongPw]);
  assert.equal(w.code, 1);
  assert.match(w.stderr, /password authentication failed/);
  assert.ok(!w.stderr.includes("wrong-pw-123"));
});
