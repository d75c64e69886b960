import assert from "node:assert/strict";
import { dirname } from "node:path";
import { test } from "node:test";
import { runCli, writeConfig } from "./support/cli.js";
import { produce } from "./support/fluvio/produce.js";
import {
  assertSameTables,
  makePair,
  type Pair,
  pgAndFluvioForFile,
  storedOffset,
} from "./support/harness.js";

// The Fluvio source against the test cluster's realistic cases, with the real @fluvio/client.

const services = pgAndFluvioForFile();
const cluster = () => services().cluster;

function config(p: Pair, name: string, topic: string, extra: Record<string, string | number> = {}): string {
  const params = { max_records: 1000, connect_timeout_ms: 3000, read_timeout_ms: 3000, ...extra };
  return writeConfig(
    dirname(p.topicFile),
    `version: 0.2.0
name: ${name}
type: postgres-sink
topic: ${topic}
parameters:
  fluvio_endpoint: ${cluster().endpoint}
${Object.entries(params)
  .map(([k, v]) => `  ${k}: ${v}`)
  .join("\n")}
secrets:
  FLUVIO_PG_DATABASE_URL: ${p.targetUrl}
`,
  );
}

async function run(cfg: string) {
  const r = await runCli(["run", "--config", cfg]);
  return { ...r, summary: r.code === 0 ? JSON.parse(r.stdout) : null };
}

async function workload(p: Pair, n: number, from = 0) {
  await p.sql(`CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v text, n bigint)`);
  for (let i = from; i < from + n; i++)
    await p.sql(`BEGIN; INSERT INTO items VALUES (${i}, 'v${i}', ${2n ** 60n + BigInt(i)});
                 UPDATE items SET v = v || '!' WHERE id = ${Math.floor(i / 2)}; COMMIT`);
}

test("gzip-compressed batches that straddle each run's start: offsets and target exact", async () => {
  for (const max of [1, 7, 1000]) {
    const p = await makePair(services().server, `fl_gz_${max}`);
    try {
      const topic = `gz-${max}`;
      cluster().createTopic(topic, 1, { compression: "gzip" });
      await workload(p, 8);
      await produce(cluster().endpoint, topic, await p.capture());
      // Batches of 5 records: most runs start inside one, which the SPU sends whole.
      cluster().rebatch(topic, 0, 5);
      const cfg = config(p, `gz-${max}`, topic, { max_records: max });
      let prev = 0;
      let straddled = 0;
      for (;;) {
        const r = await run(cfg);
        assert.equal(r.code, 0, r.stderr);
        if (r.summary.records === 0) break;
        if (prev % 5 !== 0) straddled++;
        const next = Number(r.summary.next_offset);
        assert.match(p.records[next - 1] ?? "", /"type":"commit"/, `run ended at a commit (${next - 1})`);
        assert.equal(r.summary.lag, p.records.length - next);
        prev = next;
      }
      if (max < 1000) assert.ok(straddled > 0, "some run started inside a batch");
      assert.equal(await storedOffset(p, `gz-${max}`), String(p.records.length));
      await assertSameTables(p, ["items"]);
    } finally {
      await p.close();
    }
  }
});

test("a record batch larger than the fetch size: read with the configured fetch_max_bytes", async () => {
  const p = await makePair(services().server, "fl_big");
  try {
    cluster().createTopic("big");
    await workload(p, 3);
    await p.sql(`INSERT INTO items VALUES (100, repeat('x', 1500000), 1)`);
    await workload(p, 3, 200);
    // One stored batch holding everything: about 1.5 MB.
    cluster().append("big", 0, await p.capture());
    const small = await run(config(p, "big", "big", { fetch_max_bytes: 1048576, read_timeout_ms: 2000 }));
    assert.equal(small.code, 1, `signal ${small.signal}: ${small.stderr.slice(-800)}`);
    assert.match(
      small.stderr,
      /reading offset 0 from Fluvio cluster .*: no record within 2000 ms \(a record batch larger than parameters\.fetch_max_bytes, 1048576, is never delivered; nor is anything when the partition listing's log start lags the SPU's\)/,
    );
    assert.equal(await storedOffset(p, "big"), "0");
    const ok = await run(config(p, "big", "big"));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.summary.next_offset, String(p.records.length));
    assert.ok(cluster().fetchMaxBytes.includes(64 * 1024 * 1024), "the default fetch size was asked for");
    await assertSameTables(p, ["items"]);
  } finally {
    await p.close();
  }
});

test("a partition listing whose log start lags the SPU's: an error, never records under wrong offsets", async () => {
  const p = await makePair(services().server, "fl_stale");
  try {
    cluster().createTopic("stale");
    await workload(p, 1);
    const first = await p.capture();
    await workload(p, 9, 1);
    await p.capture();
    await produce(cluster().endpoint, "stale", p.records);
    // A resumed sink: its fingerprint shows the shift.
    const cfg = config(p, "stale", "stale", { max_records: 1 });
    for (let i = 0; i < 3; i++) assert.equal((await run(cfg)).code, 0);
    const applied = (await storedOffset(p, "stale")) as string;
    const before = (await p.target.query(`SELECT count(*)::int AS n FROM items`)).rows[0].n;
    cluster().setLogStart("stale", 0, BigInt(first.length), { staleListing: true });
    const r = await run(cfg);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `topic stale partition 0: the record at offset ${BigInt(applied) - 1n} is not the one this sink applied there`,
      ),
    );
    assert.equal(await storedOffset(p, "stale"), applied);
    assert.equal((await p.target.query(`SELECT count(*)::int AS n FROM items`)).rows[0].n, before);

    // A new sink (no fingerprint) on the same partition: the position check shows it.
    const p2 = await makePair(services().server, "fl_stale_new");
    try {
      const fresh = await run(config(p2, "stale-new", "stale"));
      assert.equal(fresh.code, 1);
      assert.match(
        fresh.stderr,
        /topic stale partition 0: cannot place offset 0: counted from the log start the partition listing reports \(0\) and from its end \(\d+\) it is not the same record/,
      );
      assert.equal(await storedOffset(p2, "stale-new"), "0");
    } finally {
      await p2.close();
    }

    // Once the listing catches up, the resumed sink goes on exactly.
    cluster().setLogStart("stale", 0, BigInt(first.length));
    for (;;) {
      const ok = await run(config(p, "stale", "stale"));
      assert.equal(ok.code, 0, ok.stderr);
      if (ok.summary.records === 0) break;
    }
    assert.equal(await storedOffset(p, "stale"), String(p.records.length));
    await assertSameTables(p, ["items"]);
  } finally {
    await p.close();
  }
});

test("an offset the SPU has evicted: an error naming offsets and count, or skipped with an error log", async () => {
  for (const mode of ["error", "skip"] as const) {
    const p = await makePair(services().server, `fl_evict_${mode}`);
    try {
      const topic = `evict-${mode}`;
      cluster().createTopic(topic);
      await p.sql(`CREATE TABLE items (id int PRIMARY KEY)`);
      await p.sql(`INSERT INTO items VALUES (1)`);
      const first = await p.capture();
      await p.sql(`INSERT INTO items VALUES (2)`);
      await p.capture();
      await produce(cluster().endpoint, topic, p.records);
      // Retention runs between the client's offset lookup and its fetch: the SPU answers OffsetEvicted.
      cluster().evictAfterFetchOffsets = BigInt(first.length);
      const r = await run(config(p, topic, topic, { on_lost_records: mode }));
      cluster().evictAfterFetchOffsets = null;
      const lost = `offsets 0\\.\\.${first.length - 1} \\(${first.length} records\\) were removed by retention`;
      if (mode === "error") {
        assert.equal(r.code, 1);
        assert.match(
          r.stderr,
          new RegExp(`topic ${topic} partition 0: ${lost} before this sink applied them`),
        );
        assert.equal(await storedOffset(p, topic), "0");
      } else {
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /removed by retention before this sink applied them; continuing after them/);
        assert.match(r.stderr, new RegExp(`"from":"0","to":"${first.length - 1}","lost":"${first.length}"`));
        assert.equal(r.summary.next_offset, String(p.records.length));
        const rows = await p.target.query(`SELECT id FROM items ORDER BY id`);
        assert.deepEqual(
          rows.rows.map((x) => x.id),
          [2],
        );
      }
    } finally {
      await p.close();
    }
  }
});

test("invalid UTF-8 in a Fluvio record is an error naming its offset", async () => {
  const p = await makePair(services().server, "fl_utf8");
  try {
    cluster().createTopic("utf8");
    await workload(p, 2);
    const lines = await p.capture();
    const bad = lines.findIndex((l) => l.includes("'v1'") || l.includes('"v1"'));
    const values: (string | Buffer)[] = [...lines];
    const at = bad === -1 ? lines.length - 2 : bad;
    values[at] = Buffer.concat([Buffer.from((lines[at] as string).slice(0, 20)), Buffer.from([0xc3, 0x28])]);
    cluster().append("utf8", 0, values);
    const r = await run(config(p, "utf8", "utf8"));
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`record at offset ${at}: not valid UTF-8 \\(in Fluvio cluster `));
    assert.equal(await storedOffset(p, "utf8"), "0");
  } finally {
    await p.close();
  }
});
