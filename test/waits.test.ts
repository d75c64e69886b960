import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import type { SinkConfig } from "../src/config.js";
import { silentLogger } from "../src/log.js";
import { connectTarget, DEADLINE_GRACE_MS, type RunSummary, runOnce, STRANDED_GRACE_MS } from "../src/run.js";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair, type Pair, storedOffset } from "./support/harness.js";
import { type PgServer, startPostgres, TEST_PASSWORD } from "./support/pg.js";
import { TcpProxy } from "./support/tcp-proxy.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

async function targetRows(p: Pair, table: string): Promise<number> {
  const r = await p.target.query(`SELECT count(*)::int AS n FROM ${table}`);
  return r.rows[0].n;
}

async function failure(run: Promise<unknown>): Promise<{ message: string; ms: number }> {
  const t0 = Date.now();
  try {
    await run;
  } catch (e) {
    return { message: (e as Error).message, ms: Date.now() - t0 };
  }
  assert.fail("the run was expected to fail");
}

/** A server that accepts TCP connections and never says a word. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const addr = srv.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

for (const maxRecords of [1, 1000]) {
  test(`a partition mid-transaction (max_records ${maxRecords}): the run ends within its deadline, the stranded session frees the partition within the documented bound`, async () => {
    const p = await makePair(server, `part${maxRecords}`);
    const proxy = await TcpProxy.start("127.0.0.1", Number(new URL(p.targetUrl).port));
    try {
      await p.sql(`CREATE TABLE pt (id int PRIMARY KEY, v text)`);
      for (let i = 0; i < 5; i++)
        await p.sql(`INSERT INTO pt SELECT g, 'v' || g FROM generate_series($1::int, $1::int + 2) g`, [
          i * 3,
        ]);
      await p.capture();
      const runTimeoutMs = 3000;
      // Only the deadline bounds this run: the client's query timeout is far away.
      const cfg: Partial<SinkConfig> = { maxRecords, runTimeoutMs, queryTimeoutMs: 60_000 };
      proxy.partitionWhenSent("INSERT INTO");
      const started = Date.now();
      const f = await failure(
        runOnce(p.config({ ...cfg, databaseUrl: proxy.url(p.targetUrl) }), { log: silentLogger }),
      );
      assert.match(
        f.message,
        new RegExp(
          `^target 127\\.0\\.0\\.1:${proxy.port}, apply: offsets 0\\.\\.\\d+: the run's deadline passed \\(run_timeout_ms 3000, or the Lambda's time left\\); the connection was dropped$`,
        ),
      );
      assert.ok(!f.message.includes(TEST_PASSWORD), "no password in the message");
      assert.ok(f.ms <= runTimeoutMs + DEADLINE_GRACE_MS + 1500, `ended within its bound (${f.ms} ms)`);
      assert.equal(await storedOffset(p, `sink-part${maxRecords}`), null);
      assert.equal(await targetRows(p, "pt").catch(() => 0), 0);

      // The documented bound: 2 x run_timeout_ms + the grace periods after the run began.
      const bound = 2 * runTimeoutMs + DEADLINE_GRACE_MS + STRANDED_GRACE_MS;
      const seen: RunSummary[] = [];
      for (;;) {
        const s = await runOnce(p.config(cfg), { log: silentLogger });
        seen.push(s);
        if (s.status !== "locked") break;
        assert.equal(s.next_offset, "0", "a locked run reports the stored offset");
        assert.ok(Date.now() - started < bound + 3000, `partition freed within ${bound} ms`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(seen[0]?.status, "locked", "the stranded session held the partition at first");
      assert.equal(seen.at(-1)?.status, "applied");
      await p.runUntilIdle(cfg);
      assert.equal(await storedOffset(p, `sink-part${maxRecords}`), String(p.records.length));
      await assertSameTables(p, ["pt"]);
    } finally {
      await proxy.close();
      await p.close();
    }
  });
}

test("a partition right after connecting or mid-batch: the client's query timeout ends the run, naming the phase", async () => {
  const p = await makePair(server, "qto");
  const proxy = await TcpProxy.start("127.0.0.1", Number(new URL(p.targetUrl).port));
  try {
    proxy.partitionWhenSent("statement_timeout");
    const f = await failure(
      runOnce(p.config({ databaseUrl: proxy.url(p.targetUrl), queryTimeoutMs: 800 }), { log: silentLogger }),
    );
    assert.equal(
      f.message,
      `target 127.0.0.1:${proxy.port}, connect: no reply within query_timeout_ms (800 ms); the connection was dropped`,
    );
    assert.ok(f.ms < 800 + 1500, `within the query timeout (${f.ms} ms)`);

    // The same in the middle of the batch: the client stops waiting for the INSERT's reply.
    await p.sql(`CREATE TABLE qt (id int PRIMARY KEY)`);
    await p.sql(`INSERT INTO qt VALUES (1), (2)`);
    await p.capture();
    proxy.partitionWhenSent("INSERT INTO");
    const g = await failure(
      runOnce(p.config({ databaseUrl: proxy.url(p.targetUrl), queryTimeoutMs: 800 }), { log: silentLogger }),
    );
    assert.match(
      g.message,
      new RegExp(
        `^target 127\\.0\\.0\\.1:${proxy.port}, apply: offsets 0\\.\\.${p.records.length - 1}: no reply within query_timeout_ms \\(800 ms\\); the connection was dropped$`,
      ),
    );
    assert.ok(g.ms < 800 + 2500, `within the query timeout (${g.ms} ms)`);
    assert.equal(await storedOffset(p, "sink-qto"), null);
  } finally {
    await proxy.close();
    await p.close();
  }
});

test("a target that accepts TCP and never answers: the run fails within connect_timeout_ms, in every face", async () => {
  const silent = await silentServer();
  const p = await makePair(server, "silent");
  try {
    const url = `postgres://sink:${TEST_PASSWORD}@127.0.0.1:${silent.port}/db`;
    const f = await failure(
      runOnce(p.config({ databaseUrl: url, connectTimeoutMs: 500 }), { log: silentLogger }),
    );
    assert.equal(
      f.message,
      `target 127.0.0.1:${silent.port}, connect: no answer within connect_timeout_ms (500 ms)`,
    );
    assert.ok(f.ms < 500 + 1500, `within the connect timeout (${f.ms} ms)`);

    const dir = mkdtempSync(join(tmpdir(), "fps-silent-"));
    const config = writeConfig(
      dir,
      `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  url: ${url}\n  source: file:${p.topicFile}\n  connect_timeout_ms: 500\n`,
    );
    const t0 = Date.now();
    const r = await runCli(["run", "--config", config]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `target 127\\.0\\.0\\.1:${silent.port}, connect: no answer within connect_timeout_ms \\(500 ms\\)`,
      ),
    );
    assert.ok(
      !r.stderr.includes(TEST_PASSWORD) && !r.stdout.includes(TEST_PASSWORD),
      "no password in output",
    );
    // Process start-up included; without the bound it would never end.
    assert.ok(Date.now() - t0 < 20_000);
  } finally {
    await silent.close();
    await p.close();
  }
});

test("a lock held by another session: the run fails within lock_timeout_ms, applies nothing, then succeeds", async () => {
  const p = await makePair(server, "lk");
  const blocker = new pg.Client({ connectionString: p.targetUrl });
  await blocker.connect();
  try {
    await p.sql(`CREATE TABLE lk (id int PRIMARY KEY, v text)`);
    await p.target.query(`CREATE TABLE lk (id int PRIMARY KEY, v text)`);
    let id = 0;
    for (const maxRecords of [1, 7, 1000]) {
      for (let i = 0; i < 4; i++) {
        await p.sql(`INSERT INTO lk VALUES ($1, 'a'), ($2, 'b')`, [id, id + 1]);
        id += 2;
      }
      await p.capture();
      const before = await storedOffset(p, "sink-lk");
      const rowsBefore = await targetRows(p, "lk");
      await blocker.query(`BEGIN; LOCK TABLE lk IN ACCESS EXCLUSIVE MODE`);
      const f = await failure(runOnce(p.config({ maxRecords, lockTimeoutMs: 300 }), { log: silentLogger }));
      await blocker.query("ROLLBACK");
      assert.match(
        f.message,
        /^target 127\.0\.0\.1:\d+, apply: offsets \d+\.\.\d+: gave up waiting for a lock another session holds \(lock_timeout_ms 300\): offsets? [\d.]+, table public\.lk: insert failed: canceling statement due to lock timeout/,
      );
      assert.ok(f.ms < 300 + 2000, `within lock_timeout_ms (${f.ms} ms)`);
      // A first run that fails leaves the failure's state row, at offset 0.
      assert.equal(
        await storedOffset(p, "sink-lk"),
        before ?? "0",
        `max_records ${maxRecords}: offset unchanged`,
      );
      assert.equal(await targetRows(p, "lk"), rowsBefore, "nothing applied");
      const batchLimit = await p.target.query(
        `SELECT batch_limit FROM fluvio_sink.state WHERE connector = 'sink-lk'`,
      );
      assert.equal(
        batchLimit.rows[0]?.batch_limit ?? null,
        null,
        "a lock held by others does not shrink the batch",
      );

      await p.runUntilIdle({ maxRecords, lockTimeoutMs: 300 });
      assert.equal(await storedOffset(p, "sink-lk"), String(p.records.length));
      await assertSameTables(p, ["lk"]);
    }
  } finally {
    await blocker.end();
    await p.close();
  }
});

async function terminateWhenIdleInTransaction(p: Pair, app: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await p.target.query(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
        WHERE application_name = $1 AND state = 'idle in transaction'
          AND now() - state_change > interval '300 milliseconds'`,
      [app],
    );
    if (r.rows[0]?.ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail("the run's session never went idle in its transaction");
}

test("a backend terminated between queries: the error names phase and offsets, nothing applied, the next run exact", async () => {
  const p = await makePair(server, "kill");
  try {
    await p.sql(`CREATE TABLE kt (id int PRIMARY KEY, v text)`);
    let id = 0;
    for (const maxRecords of [1, 7, 1000]) {
      for (const [point, lostPhase] of [
        ["after-read", " during read"],
        ["after-apply", ""],
      ] as const) {
        for (let i = 0; i < 3; i++) {
          await p.sql(`INSERT INTO kt VALUES ($1, 'x'), ($2, 'y')`, [id, id + 1]);
          id += 2;
        }
        await p.capture();
        const before = await storedOffset(p, "sink-kill");
        const rowsBefore = await targetRows(p, "kt").catch(() => 0);
        process.env.FLUVIO_PG_SINK_PAUSE = point;
        process.env.FLUVIO_PG_SINK_PAUSE_MS = "1500";
        try {
          const run = failure(runOnce(p.config({ maxRecords }), { log: silentLogger }));
          await terminateWhenIdleInTransaction(p, "fluvio-postgres-sink:sink-kill");
          const f = await run;
          const from = before ?? "0";
          assert.match(
            f.message,
            new RegExp(
              `^target 127\\.0\\.0\\.1:\\d+, apply: offsets ${from}\\.\\.\\d+: the connection was lost${lostPhase}: terminating connection due to administrator command \\(SQLSTATE 57P01\\)$`,
            ),
            `${point}, max_records ${maxRecords}`,
          );
        } finally {
          delete process.env.FLUVIO_PG_SINK_PAUSE;
          delete process.env.FLUVIO_PG_SINK_PAUSE_MS;
        }
        assert.equal(await storedOffset(p, "sink-kill"), before, "offset unchanged");
        assert.equal(await targetRows(p, "kt").catch(() => 0), rowsBefore, "nothing applied");
        await p.runUntilIdle({ maxRecords });
        assert.equal(await storedOffset(p, "sink-kill"), String(p.records.length));
        await assertSameTables(p, ["kt"]);
      }
    }
  } finally {
    await p.close();
  }
});

test("a bad database URL is a configuration error naming the setting, exit 2, no credential", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fps-badurl-"));
  const secret = "pa#ss/word";
  const literal = writeConfig(
    dir,
    `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  url: "postgres://sink:${secret}@db.example:5432/db"\n  source: file:${join(dir, "none.jsonl")}\n`,
  );
  const r = await runCli(["run", "--config", literal]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /parameters\.url is not a valid URL \(check the host and port/);
  assert.ok(!r.stderr.includes("ss/word") && !r.stdout.includes("ss/word"), "no credential");

  const fromEnv = writeConfig(
    dir,
    `name: x\ntype: postgres-sink\ntopic: t\nparameters:\n  source: file:${join(dir, "none.jsonl")}\n`,
  );
  const e = await runCli(["run", "--config", fromEnv], {
    FLUVIO_PG_DATABASE_URL: `postgres://sink:${TEST_PASSWORD}@db.example:99999/db`,
  });
  assert.equal(e.code, 2);
  assert.match(e.stderr, /FLUVIO_PG_DATABASE_URL \(parameters\.url is not set\) is not a valid URL/);
  assert.ok(!e.stderr.includes(TEST_PASSWORD), "no credential");
});

test("the CLI's run deadline: a wait longer than run_timeout_ms ends the run and the next run takes a smaller batch", async () => {
  const p = await makePair(server, "clidl");
  const blocker = new pg.Client({ connectionString: p.targetUrl });
  await blocker.connect();
  try {
    await p.sql(`CREATE TABLE dl (id int PRIMARY KEY)`);
    await p.target.query(`CREATE TABLE dl (id int PRIMARY KEY)`);
    for (let i = 0; i < 30; i++) await p.sql(`INSERT INTO dl VALUES ($1)`, [i]);
    await p.capture();
    const dir = mkdtempSync(join(tmpdir(), "fps-clidl-"));
    const config = writeConfig(
      dir,
      `name: sink-clidl\ntype: postgres-sink\ntopic: postgres-topic\nparameters:\n  url: ${p.targetUrl}\n  source: file:${p.topicFile}\n  max_records: 40\n  run_timeout_ms: 3000\n  lock_timeout_ms: 60000\n`,
    );
    await blocker.query(`BEGIN; LOCK TABLE dl IN ACCESS EXCLUSIVE MODE`);
    const t0 = Date.now();
    const r = await runCli(["run", "--config", config]);
    const ms = Date.now() - t0;
    await blocker.query("ROLLBACK");
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /target 127\.0\.0\.1:\d+, apply: offsets 0\.\.\d+: (gave up waiting for a lock another session holds \(the run's deadline came first\)|a statement ran out of time).*; the next run reads at most 20 records/,
    );
    // Process start-up (tsx) included.
    assert.ok(ms < 3000 + 10_000, `ended near its deadline (${ms} ms)`);
    assert.equal(await storedOffset(p, "sink-clidl"), "0");
    assert.equal(await targetRows(p, "dl"), 0);
    const limit = await p.target.query(
      `SELECT batch_limit FROM fluvio_sink.state WHERE connector = 'sink-clidl'`,
    );
    assert.equal(limit.rows[0].batch_limit, 20);

    for (let i = 0; i < 20; i++) {
      const ok = await runCli(["run", "--config", config]);
      assert.equal(ok.code, 0, ok.stderr);
      if (JSON.parse(ok.stdout).records === 0) break;
    }
    assert.equal(await storedOffset(p, "sink-clidl"), String(p.records.length));
    await assertSameTables(p, ["dl"]);
  } finally {
    await blocker.end();
    await p.close();
  }
});

test("the sink's session carries its limits on the server", async () => {
  const p = await makePair(server, "limits");
  try {
    const client = await connectTarget(
      p.config({ statementTimeoutMs: 4321, lockTimeoutMs: 1234, tcpKeepaliveMs: 7000, queryTimeoutMs: 9000 }),
    );
    try {
      const shown: Record<string, string> = {};
      for (const name of [
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "tcp_keepalives_idle",
        "tcp_keepalives_interval",
        "tcp_keepalives_count",
        "tcp_user_timeout",
        "application_name",
      ])
        shown[name] = (await client.query(`SELECT current_setting($1) AS v`, [name])).rows[0].v;
      assert.deepEqual(shown, {
        statement_timeout: "4321ms",
        lock_timeout: "1234ms",
        idle_in_transaction_session_timeout: "4321ms",
        tcp_keepalives_idle: "7",
        tcp_keepalives_interval: "7",
        tcp_keepalives_count: "3",
        tcp_user_timeout: "28000",
        application_name: "fluvio-postgres-sink:sink-limits",
      });
    } finally {
      await client.end();
    }
  } finally {
    await p.close();
  }
});

test("a backend terminated in the middle of a batch statement: the error names phase, offsets and table, nothing applied", async () => {
  const p = await makePair(server, "midkill");
  const blocker = new pg.Client({ connectionString: p.targetUrl });
  await blocker.connect();
  try {
    await p.sql(`CREATE TABLE mk (id int PRIMARY KEY, v text)`);
    await p.target.query(`CREATE TABLE mk (id int PRIMARY KEY, v text)`);
    let id = 0;
    for (const maxRecords of [1, 7, 1000]) {
      for (let i = 0; i < 3; i++) {
        await p.sql(`INSERT INTO mk VALUES ($1, 'x'), ($2, 'y')`, [id, id + 1]);
        id += 2;
      }
      await p.capture();
      const before = await storedOffset(p, "sink-midkill");
      const rowsBefore = await targetRows(p, "mk");
      // The batch's INSERT waits on this lock: the backend is inside a statement when it is killed.
      await blocker.query(`BEGIN; LOCK TABLE mk IN ACCESS EXCLUSIVE MODE`);
      const run = failure(runOnce(p.config({ maxRecords }), { log: silentLogger }));
      let killed = false;
      for (let i = 0; i < 200 && !killed; i++) {
        const r = await p.target.query(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
            WHERE application_name = 'fluvio-postgres-sink:sink-midkill' AND wait_event_type = 'Lock'`,
        );
        killed = r.rows[0]?.ok === true;
        if (!killed) await new Promise((r) => setTimeout(r, 25));
      }
      const f = await run;
      await blocker.query("ROLLBACK");
      assert.ok(killed, "the sink's backend was seen waiting inside its statement");
      assert.match(
        f.message,
        new RegExp(
          `^target 127\\.0\\.0\\.1:\\d+, apply: offsets ${before ?? "0"}\\.\\.\\d+: offsets? [\\d.]+, table public\\.mk: insert failed: terminating connection due to administrator command \\(SQLSTATE 57P01\\)$`,
        ),
      );
      assert.equal(await storedOffset(p, "sink-midkill"), before);
      assert.equal(await targetRows(p, "mk"), rowsBefore, "nothing applied");
      await p.runUntilIdle({ maxRecords });
      assert.equal(await storedOffset(p, "sink-midkill"), String(p.records.length));
      await assertSameTables(p, ["mk"]);
    }
  } finally {
    await blocker.end();
    await p.close();
  }
});
