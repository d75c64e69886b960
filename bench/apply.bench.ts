/**
 * `npm run bench`: the sink next to PostgreSQL's own logical replication subscriber on the same
 * changes from a real source PostgreSQL. BENCH_CHANGES (default 75000) changes in 50-change
 * transactions over 3 tables (inserts, updates, deletes) are captured into a topic file (the capture
 * the tests use); then, in one run:
 *   (a) a subscription (publication and pgoutput slot made before the workload) on a fresh target,
 *       timed from ENABLE to the target's replication origin reaching the last commit's end LSN;
 *   (b) the sink's CLI in one run over the whole file, process start to exit, and its in-run time;
 *   (a) and (b) alternate BENCH_REPEAT times (default 3; medians), each on a fresh target and slot;
 *   (c) the scheduled shape: max_records 1000, invoked until caught up;
 *   (d) the idle run: nothing to do;
 *   and where an in-process run's time goes, stage by stage.
 * Every target is checked row for row against the source. Timing lives here, never in tests.
 * BENCH_SCHEDULED=0 skips (c) and (d). The CLI runs as built and installed (BENCH_CLI=tsx: from source).
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import pg from "pg";
import type { Pair } from "../test/support/harness.js";
import { assertSameTables, makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";
import { profileRun } from "./profile.js";
import { applyWorkload, TABLES, TABLES_DDL } from "./workload.js";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 75_000);
const SCHEDULED = process.env.BENCH_SCHEDULED !== "0";
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const root = join(import.meta.dirname, "..");
/**
 * The CLI as installed (BENCH_CLI=built, the default): `npm run build`, then package.json's `bin`
 * entry, so the figures include what a user's process loads and no TypeScript loader.
 * BENCH_CLI=tsx runs src/cli.ts through tsx instead, as earlier versions of this benchmark did.
 */
const CLI = process.env.BENCH_CLI ?? "built";
function cliCommandFor(): string[] {
  if (CLI === "tsx") return ["--import", "tsx", join(root, "src", "cli.ts")];
  execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  const bin = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).bin;
  return [join(root, typeof bin === "string" ? bin : (Object.values(bin)[0] as string))];
}
const cliCommand = cliCommandFor();
const CLK_TCK = 100;

const out = (s: string) => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : ((s[(s.length - 1) >> 1] as number) + (s[s.length >> 1] as number)) / 2;
};
const lsnText = (lsn: bigint) =>
  `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

interface CliRun {
  ms: number;
  cpu: number | null;
  summary: { status: string; records: number; duration_ms: number; lag: number | null };
}

/** One CLI invocation as a scheduler would make it; wall time from spawn to exit, CPU via bash `times`. */
function runCli(config: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(
      "bash",
      [
        "-c",
        '"$@"; rc=$?; times >&2; exit $rc',
        "bash",
        process.execPath,
        ...cliCommand,
        "run",
        "--config",
        config,
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) return reject(new Error(`sink exited with ${code}: ${stderr}`));
      // The last line of `times` is the children's user and system time: "0m1.234s 0m0.100s".
      const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(stderr);
      const cpu = m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : null;
      resolve({ ms, cpu, summary: JSON.parse(stdout) });
    });
  });
}

function sinkConfig(
  dir: string,
  name: string,
  targetUrl: string,
  topicFile: string,
  maxRecords: number,
): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    `name: ${name}
type: postgres-sink
topic: bench-topic
parameters:
  url: secrets.FLUVIO_PG_DATABASE_URL
  source: file:${topicFile}
  max_records: ${maxRecords}
  max_transaction_records: ${Math.max(maxRecords, 1_000_000)}
secrets:
  FLUVIO_PG_DATABASE_URL: ${targetUrl}
`,
  );
  return path;
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** Checks a target against the source, table for table, row for row. */
async function checkTarget(p: Pair, target: pg.Client, what: string): Promise<void> {
  await assertSameTables({ ...p, target }, TABLES).catch((e) => {
    throw new Error(`${what}: the target differs from the source: ${(e as Error).message}`);
  });
}

let lastEnable = Number.NEGATIVE_INFINITY;

interface SubscriberRun {
  ms: number;
  workerCpu: number | null;
  senderCpu: number | null;
}

/**
 * A subscription on a fresh target over the i-th slot made before the workload, timed from ENABLE to
 * the target's replication origin (advanced at each applied commit) reaching the last commit's end.
 */
async function runSubscriber(
  p: Pair,
  i: number,
  endLsn: bigint,
  clients: pg.Client[],
): Promise<SubscriberRun> {
  const name = `bench_sub${i}`;
  const sub = await connect(await server.createDatabase(name));
  clients.push(sub);
  await sub.query(TABLES_DDL);
  await sub.query(
    `CREATE SUBSCRIPTION ${name} CONNECTION '${p.sourceUrl}' PUBLICATION bench_pub
       WITH (create_slot = false, copy_data = false, slot_name = '${name}', enabled = false)`,
  );
  // PostgreSQL 15's launcher starts apply workers at most once per wal_retrieve_retry_interval (5 s):
  // wait that out rather than time it, or change the server's settings.
  const wait = lastEnable + 5500 - performance.now();
  if (wait > 0) await new Promise((res) => setTimeout(res, wait));
  const started = performance.now();
  lastEnable = started;
  await sub.query(`ALTER SUBSCRIPTION ${name} ENABLE`);
  let workerPid: number | null = null;
  let senderPid: number | null = null;
  for (;;) {
    const r = await sub.query<{ pid: number | null; done: boolean }>(
      `SELECT (SELECT pid FROM pg_stat_subscription WHERE subname = $2 AND relid IS NULL) AS pid,
              coalesce((SELECT remote_lsn >= $1::pg_lsn FROM pg_replication_origin_status o
                 JOIN pg_subscription s ON o.external_id = 'pg_' || s.oid WHERE s.subname = $2), false) AS done`,
      [lsnText(endLsn), name],
    );
    workerPid ??= r.rows[0]?.pid ?? null;
    if (senderPid === null) {
      const s = await p.source.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_replication WHERE application_name = $1`,
        [name],
      );
      senderPid = s.rows[0]?.pid ?? null;
    }
    if (r.rows[0]?.done) break;
    if (performance.now() - started > 600_000)
      throw new Error("the subscriber did not catch up in 10 minutes");
    await new Promise((res) => setTimeout(res, 5));
  }
  const ms = performance.now() - started;
  const workerCpu = workerPid === null ? null : cpuSeconds(workerPid);
  const senderCpu = senderPid === null ? null : cpuSeconds(senderPid);
  await sub.query(`ALTER SUBSCRIPTION ${name} DISABLE`);
  await sub.query(`ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`);
  await sub.query(`DROP SUBSCRIPTION ${name}`);
  // The walsender leaves a moment after DISABLE; the slot can be dropped once it has.
  for (let tries = 0; ; tries++) {
    const r = await p.source.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [name]);
    if (!r.rows[0]?.active) break;
    if (tries > 1000) throw new Error(`slot ${name} stays active after its subscription was disabled`);
    await new Promise((res) => setTimeout(res, 10));
  }
  await p.source.query(`SELECT pg_drop_replication_slot($1)`, [name]);
  await checkTarget(p, sub, "subscriber");
  return { ms, workerCpu, senderCpu };
}

const server = await startPostgres();
const p = await makePair(server, "bench");
const clients: pg.Client[] = [];
try {
  // Both capture paths exist before the first change: the test capture's slot (made by makePair)
  // and the subscriber's publication and slot.
  await p.sql(TABLES_DDL);
  await p.sql(`CREATE PUBLICATION bench_pub FOR TABLE ${TABLES.join(", ")}`);
  for (let i = 0; i < REPEAT; i++)
    await p.sql(`SELECT pg_create_logical_replication_slot('bench_sub${i}', 'pgoutput')`);

  let t = performance.now();
  await applyWorkload(p.source, CHANGES);
  const workloadMs = performance.now() - t;
  t = performance.now();
  await p.capture();
  const captureMs = performance.now() - t;
  const records = p.records;
  const changes = records.filter((l) => /"message":\{"type":"(insert|update|delete)"/.test(l)).length;
  const lastCommit = [...records].reverse().find((l) => l.includes('"type":"commit"')) ?? "";
  const endLsn = BigInt(/"end_lsn":(\d+)/.exec(lastCommit)?.[1] ?? "0");
  const bytes = statSync(p.topicFile).size;
  out(
    `stream: ${changes} changes, ${records.length} records, ${(bytes / 1e6).toFixed(1)} MB ` +
      `(workload ${(workloadMs / 1000).toFixed(1)} s, capture ${(captureMs / 1000).toFixed(1)} s), end LSN ${lsnText(endLsn)}`,
  );
  out(`sink CLI: node ${cliCommand.join(" ")} (Node ${process.versions.node})`);
  const rows: [string, string, string, string, string][] = [];

  // (a) PostgreSQL's own subscriber and (b) the sink in one run, alternately, REPEAT times each.
  const dir = dirname(p.topicFile);
  const subs: SubscriberRun[] = [];
  const ones: CliRun[] = [];
  for (let i = 0; i < REPEAT; i++) {
    subs.push(await runSubscriber(p, i, endLsn, clients));
    const oneUrl = await server.createDatabase(`bench_one${i}`);
    const one = await runCli(sinkConfig(dir, `bench-one-${i}`, oneUrl, p.topicFile, records.length));
    if (one.summary.records !== records.length)
      throw new Error(`the sink's one run consumed ${one.summary.records} of ${records.length} records`);
    const oneTarget = await connect(oneUrl);
    clients.push(oneTarget);
    await checkTarget(p, oneTarget, "sink, one run");
    ones.push(one);
  }
  const subMs = median(subs.map((r) => r.ms));
  const subCpu = median(subs.map((r) => r.workerCpu ?? Number.NaN));
  const subRate = (changes * 1000) / subMs;
  rows.push([
    `PostgreSQL subscriber (ENABLE to caught up; median of ${REPEAT})`,
    subMs.toFixed(0),
    Math.round(subRate).toString(),
    "1.00",
    `apply worker ${subCpu.toFixed(2)} s CPU (${Math.round(changes / subCpu)} changes per CPU-s), walsender ${median(subs.map((r) => r.senderCpu ?? Number.NaN)).toFixed(2)} s`,
  ]);
  const oneMs = median(ones.map((r) => r.ms));
  const oneIn = median(ones.map((r) => r.summary.duration_ms));
  const oneCpu = median(ones.map((r) => r.cpu ?? Number.NaN));
  const oneRate = (changes * 1000) / oneMs;
  rows.push([
    `sink, one run (process start to exit; median of ${REPEAT})`,
    oneMs.toFixed(0),
    Math.round(oneRate).toString(),
    (oneRate / subRate).toFixed(2),
    `in-run ${oneIn.toFixed(0)} ms (${Math.round((changes * 1000) / oneIn)} changes/s), ${oneCpu.toFixed(2)} s CPU (${Math.round(changes / oneCpu)} changes per CPU-s)`,
  ]);

  // (c) the scheduled shape and (d) the idle run.
  if (SCHEDULED) {
    const schedUrl = await server.createDatabase("bench_sched");
    const cfg = sinkConfig(dir, "bench-sched", schedUrl, p.topicFile, 1000);
    const runs: CliRun[] = [];
    const schedStarted = performance.now();
    for (;;) {
      const r = await runCli(cfg);
      if (r.summary.status === "idle") break;
      runs.push(r);
      if (runs.length > 100_000) throw new Error("the scheduled runs never caught up");
    }
    const schedMs = runs.reduce((a, r) => a + r.ms, 0);
    const wallMs = performance.now() - schedStarted;
    const schedTarget = await connect(schedUrl);
    clients.push(schedTarget);
    await checkTarget(p, schedTarget, "sink, scheduled");
    const schedRate = (changes * 1000) / schedMs;
    rows.push([
      `sink, max_records 1000: ${runs.length} invocations`,
      schedMs.toFixed(0),
      Math.round(schedRate).toString(),
      (schedRate / subRate).toFixed(2),
      `median ${median(runs.map((r) => r.ms)).toFixed(0)} ms per invocation (in-run ${median(runs.map((r) => r.summary.duration_ms)).toFixed(0)} ms), ${runs.reduce((a, r) => a + (r.cpu ?? 0), 0).toFixed(1)} s CPU in all; wall ${(wallMs / 1000).toFixed(1)} s with the idle check`,
    ]);
    const idle: CliRun[] = [];
    for (let i = 0; i < 3; i++) idle.push(await runCli(cfg));
    rows.push([
      "sink, idle run (nothing to do; median of 3)",
      median(idle.map((r) => r.ms)).toFixed(0),
      "-",
      "-",
      `in-run ${median(idle.map((r) => r.summary.duration_ms)).toFixed(0)} ms, ${median(idle.map((r) => r.cpu ?? 0)).toFixed(2)} s CPU`,
    ]);
  }

  out("");
  out("| system | ms | changes/s | ratio to subscriber | notes |");
  out("|---|---|---|---|---|");
  for (const r of rows) out(`| ${r.join(" | ")} |`);

  // Where an in-process run's time goes.
  const profUrl = await server.createDatabase("bench_prof");
  const prof = await profileRun(p.topicFile, profUrl);
  const profTarget = await connect(profUrl);
  clients.push(profTarget);
  await checkTarget(p, profTarget, "profiled run");
  const total = prof.stages.reduce((a, s) => a + s.ms, 0);
  out("");
  out(`in-process run, stage by stage (${total.toFixed(0)} ms):`);
  out("| stage | ms | share |");
  out("|---|---|---|");
  for (const s of prof.stages)
    out(`| ${s.name} | ${s.ms.toFixed(0)} | ${((s.ms * 100) / total).toFixed(0)}% |`);
  out(
    `parse+decode of the same records with the general decoder alone: ${prof.generalDecodeMs.toFixed(0)} ms ` +
      `(fast path: ${prof.fastDecodeMs.toFixed(0)} ms, ${(prof.generalDecodeMs / prof.fastDecodeMs).toFixed(1)}x; ` +
      `${prof.fastShare.toFixed(1)}% of records decoded by the fast path)`,
  );

  // The exact-order fallback (one statement per change) on the same stream, in process.
  const exactUrl = await server.createDatabase("bench_exact");
  const exact = await profileRun(p.topicFile, exactUrl, true);
  const exactTarget = await connect(exactUrl);
  clients.push(exactTarget);
  await checkTarget(p, exactTarget, "exact-order run");
  const exactTotal = exact.stages.reduce((a, s) => a + s.ms, 0);
  const exactExec = exact.stages.find((s) => s.name === "execute")?.ms ?? 0;
  out(
    `exact-order fallback, in process: ${exactTotal.toFixed(0)} ms (execute ${exactExec.toFixed(0)} ms, ` +
      `${Math.round((CHANGES * 1000) / exactExec)} changes/s in execute), ${(exactTotal / total).toFixed(1)}x the optimised plan`,
  );
} finally {
  for (const c of clients) await c.end().catch(() => {});
  await p.close();
  await server.stop();
}
