/**
 * `npm run bench`: the sink next to PostgreSQL's own logical replication subscriber on the same
 * changes from a real source PostgreSQL. BENCH_CHANGES (default 75000) changes in 50-change
 * transactions over 3 tables (inserts, updates, deletes) are captured into a topic file (the capture
 * the tests use); then, in one run:
 *   (a) a subscription (publication and pgoutput slot made before the workload) on a fresh target,
 *       timed from ENABLE to the target's replication origin reaching the last commit's end LSN;
 *   (b) the sink's CLI in one run over the whole file, process start to exit, and its in-run time;
 *   (a) and (b) alternate BENCH_REPEAT times (default 3; medians), each on a fresh target and slot;
 *   (c) the scheduled shape: max_records 1000, invoked until caught up, a process per invocation
 *       (a CLI on a scheduler);
 *   (c') the same shape in one warm process (bench/warm-runner.mjs calls the CLI's main() again and
 *       again), as a warm Lambda runs it: process start and code compilation paid once;
 *   (d) the idle run: nothing to do;
 *   and where an in-process run's time goes, stage by stage.
 * Every target is checked row for row against the source. Timing lives here, never in tests.
 * BENCH_SCHEDULED=0 skips (c), (c') and (d). The CLI runs as built and installed (BENCH_CLI=tsx: from
 * source), under the Node running the benchmark or BENCH_NODE (a node binary, e.g. the Lambda
 * runtime's Node 22 or 24 that the deployment tests install into build/.cache).
 *
 * BENCH_BASELINE=<path to another checkout of the sink> (e.g. a worktree of an older commit) runs that
 * checkout's CLI beside the sink on the same stream: its package.json `bin` entry, as that checkout
 * built it (the benchmark stops with an error saying so when it does not start; it never builds
 * another checkout). It takes part in (b), alternating with the subscriber and the sink, on fresh
 * targets, medians of BENCH_REPEAT; in (c), invocation by invocation in turn with the sink; and in
 * (c') and (d). Each of its targets is checked row for row like the rest, and the report adds the ratios
 * "sink vs baseline" (the baseline's total time and CPU over the sink's) for (b), (c) and (c').
 */
import { spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import pg from "pg";
import type { Pair } from "../test/support/harness.js";
import { assertSameTables, makePair } from "../test/support/harness.js";
import { startPostgres } from "../test/support/pg.js";
import { type Cli, cliNode, cliNodeVersion, otherCli, ownCli, warmArgs, writeBenchConfig } from "./cli.js";
import { profileRun } from "./profile.js";
import { applyWorkload, TABLES, TABLES_DDL } from "./workload.js";

const CHANGES = Number(process.env.BENCH_CHANGES ?? 75_000);
const SCHEDULED = process.env.BENCH_SCHEDULED !== "0";
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
/** The CLI as installed (BENCH_CLI=built, the default) or src/cli.ts through tsx (BENCH_CLI=tsx). */
const sinkCli = ownCli(process.env.BENCH_CLI ?? "built");
/** Another checkout (BENCH_BASELINE), run the same way as the sink, as that checkout built it. */
const baselineCli = process.env.BENCH_BASELINE
  ? otherCli(process.env.BENCH_BASELINE, "BENCH_BASELINE", "none")
  : null;
const CLK_TCK = 100;

const out = (s: string) => process.stdout.write(`${s}\n`);
/** The median of the figures that exist (a pid that could not be read leaves NaN); NaN if none does. */
const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
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
function runCli(cli: Cli, config: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(
      "bash",
      ["-c", '"$@"; rc=$?; times >&2; exit $rc', "bash", cliNode, ...cli.args, "run", "--config", config],
      { cwd: cli.root, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) return reject(new Error(`${cli.how} exited with ${code}: ${stderr}`));
      // The last line of `times` is the children's user and system time: "0m1.234s 0m0.100s".
      const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(stderr);
      const cpu = m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : null;
      resolve({ ms, cpu, summary: JSON.parse(stdout) });
    });
  });
}

/** The scheduled shape in one process (bench/warm-runner.mjs): each invocation's time and summary. */
function runWarm(
  cli: Cli,
  config: string,
): Promise<{ runs: { ms: number; summary: CliRun["summary"] }[]; cpu: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cliNode, [...warmArgs(cli), config], {
      cwd: cli.root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code) => {
      if (code !== 0)
        return reject(new Error(`${cli.how}, warm: exited with ${code}: ${stderr.slice(-4000)}`));
      const lines = stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const last = lines.pop() as { cpu: number };
      // The run that found nothing to do ends the loop; it is not one of the shape's invocations.
      const runs = lines.filter((l) => l.summary.status !== "idle");
      resolve({ runs, cpu: last.cpu });
    });
  });
}

/**
 * The connector config of a run. Both the sink and older checkouts (BENCH_BASELINE) reject keys
 * they do not know, so it holds only keys every version accepts (those of main at 685ef40).
 */
function sinkConfig(
  dir: string,
  name: string,
  targetUrl: string,
  topicFile: string,
  maxRecords: number,
): string {
  return writeBenchConfig(dir, name, targetUrl, topicFile, {
    max_records: maxRecords,
    max_transaction_records: Math.max(maxRecords, 1_000_000),
  });
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
  out(`sink: node ${sinkCli.how} (Node ${cliNodeVersion})`);
  if (baselineCli) out(`baseline: node ${baselineCli.how}`);
  const rows: [string, string, string, string, string][] = [];
  const ratios: [string, string, string, string][] = [];

  // (a) PostgreSQL's own subscriber, (b) the sink in one run and the baseline's one run, alternately,
  // REPEAT times each, each on a fresh target.
  const dir = dirname(p.topicFile);
  const oneRun = async (cli: Cli, what: string, db: string): Promise<CliRun> => {
    const url = await server.createDatabase(db);
    const run = await runCli(cli, sinkConfig(dir, db, url, p.topicFile, records.length));
    if (run.summary.records !== records.length)
      throw new Error(`${what}: the one run consumed ${run.summary.records} of ${records.length} records`);
    const target = await connect(url);
    clients.push(target);
    await checkTarget(p, target, what);
    return run;
  };
  const subs: SubscriberRun[] = [];
  const ones: CliRun[] = [];
  const baseOnes: CliRun[] = [];
  for (let i = 0; i < REPEAT; i++) {
    subs.push(await runSubscriber(p, i, endLsn, clients));
    ones.push(await oneRun(sinkCli, "sink, one run", `bench_one${i}`));
    if (baselineCli) baseOnes.push(await oneRun(baselineCli, "baseline, one run", `bench_base_one${i}`));
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
  const oneRow = (label: string, runs: CliRun[]) => {
    const ms = median(runs.map((r) => r.ms));
    const inRun = median(runs.map((r) => r.summary.duration_ms));
    const cpu = median(runs.map((r) => r.cpu ?? Number.NaN));
    const rate = (changes * 1000) / ms;
    rows.push([
      `${label}, one run (process start to exit; median of ${REPEAT})`,
      ms.toFixed(0),
      Math.round(rate).toString(),
      (rate / subRate).toFixed(2),
      `in-run ${inRun.toFixed(0)} ms (${Math.round((changes * 1000) / inRun)} changes/s), ${cpu.toFixed(2)} s CPU (${Math.round(changes / cpu)} changes per CPU-s)`,
    ]);
    return { ms, cpu, inRun };
  };
  const one = oneRow("sink", ones);
  if (baselineCli) {
    const base = oneRow("baseline", baseOnes);
    ratios.push([
      "one run",
      (base.ms / one.ms).toFixed(2),
      (base.cpu / one.cpu).toFixed(2),
      (base.inRun / one.inRun).toFixed(2),
    ]);
  }

  // (c) the scheduled shape and (d) the idle run, for the sink and the baseline. Their invocations
  // alternate one by one, so the shared machine's load falls on both alike.
  if (SCHEDULED) {
    interface Scheduled {
      label: string;
      cli: Cli;
      url: string;
      cfg: string;
      runs: CliRun[];
      done: boolean;
    }
    const shapes: Scheduled[] = [];
    for (const [label, cli, db] of [
      ["sink", sinkCli, "bench_sched"],
      ...(baselineCli ? [["baseline", baselineCli, "bench_base_sched"] as const] : []),
    ] as const) {
      const url = await server.createDatabase(db);
      shapes.push({
        label,
        cli,
        url,
        cfg: sinkConfig(dir, db, url, p.topicFile, 1000),
        runs: [],
        done: false,
      });
    }
    const schedStarted = performance.now();
    while (shapes.some((s) => !s.done))
      for (const s of shapes) {
        if (s.done) continue;
        const r = await runCli(s.cli, s.cfg);
        if (r.summary.status === "idle") s.done = true;
        else s.runs.push(r);
        if (s.runs.length > 100_000) throw new Error(`${s.label}: the scheduled runs never caught up`);
      }
    const wallMs = performance.now() - schedStarted;
    const totals: { ms: number; cpu: number; inRun: number }[] = [];
    for (const s of shapes) {
      const target = await connect(s.url);
      clients.push(target);
      await checkTarget(p, target, `${s.label}, scheduled`);
      const ms = s.runs.reduce((a, r) => a + r.ms, 0);
      const cpu = s.runs.reduce((a, r) => a + (r.cpu ?? Number.NaN), 0);
      const inRun = s.runs.reduce((a, r) => a + r.summary.duration_ms, 0);
      totals.push({ ms, cpu, inRun });
      const rate = (changes * 1000) / ms;
      rows.push([
        `${s.label}, max_records 1000: ${s.runs.length} invocations`,
        ms.toFixed(0),
        Math.round(rate).toString(),
        (rate / subRate).toFixed(2),
        `median ${median(s.runs.map((r) => r.ms)).toFixed(0)} ms per invocation (in-run ${median(s.runs.map((r) => r.summary.duration_ms)).toFixed(0)} ms), in-run ${(inRun / 1000).toFixed(1)} s and ${cpu.toFixed(1)} s CPU in all`,
      ]);
    }
    out(`scheduled shapes: wall ${(wallMs / 1000).toFixed(1)} s for all, with the idle checks`);
    const [sinkTotal, baseTotal] = totals as [(typeof totals)[0], (typeof totals)[0]?];
    if (baseTotal)
      ratios.push([
        "scheduled shape, max_records 1000 until caught up (sum of invocations)",
        (baseTotal.ms / sinkTotal.ms).toFixed(2),
        (baseTotal.cpu / sinkTotal.cpu).toFixed(2),
        (baseTotal.inRun / sinkTotal.inRun).toFixed(2),
      ]);
    // (c') the same shape in one warm process, as a warm Lambda runs it: the process, its compiled
    // code and its connections' setup code kept between invocations (each still connects afresh).
    const warmTotals: { ms: number; cpu: number; inRun: number }[] = [];
    for (const s of shapes) {
      const url = await server.createDatabase(`${s.label}_warm`);
      const w = await runWarm(s.cli, sinkConfig(dir, `${s.label}-warm`, url, p.topicFile, 1000));
      const target = await connect(url);
      clients.push(target);
      await checkTarget(p, target, `${s.label}, scheduled in one warm process`);
      const ms = w.runs.reduce((a, r) => a + r.ms, 0);
      const inRun = w.runs.reduce((a, r) => a + r.summary.duration_ms, 0);
      warmTotals.push({ ms, cpu: w.cpu, inRun });
      const rate = (changes * 1000) / ms;
      rows.push([
        `${s.label}, max_records 1000 in one warm process (a warm Lambda): ${w.runs.length} invocations`,
        ms.toFixed(0),
        Math.round(rate).toString(),
        (rate / subRate).toFixed(2),
        `median ${median(w.runs.map((r) => r.ms)).toFixed(0)} ms per invocation, ${w.cpu.toFixed(1)} s CPU in all (process start included once)`,
      ]);
    }
    const [sinkWarm, baseWarm] = warmTotals as [(typeof warmTotals)[0], (typeof warmTotals)[0]?];
    if (baseWarm)
      ratios.push([
        "scheduled shape in one warm process (a warm Lambda)",
        (baseWarm.ms / sinkWarm.ms).toFixed(2),
        (baseWarm.cpu / sinkWarm.cpu).toFixed(2),
        (baseWarm.inRun / sinkWarm.inRun).toFixed(2),
      ]);
    for (const s of shapes) {
      const idle: CliRun[] = [];
      for (let i = 0; i < 3; i++) idle.push(await runCli(s.cli, s.cfg));
      if (idle.some((r) => r.summary.status !== "idle" || r.summary.records !== 0))
        throw new Error(`${s.label}: an idle run found something to do`);
      rows.push([
        `${s.label}, idle run (nothing to do; median of 3)`,
        median(idle.map((r) => r.ms)).toFixed(0),
        "-",
        "-",
        `in-run ${median(idle.map((r) => r.summary.duration_ms)).toFixed(0)} ms, ${median(idle.map((r) => r.cpu ?? Number.NaN)).toFixed(2)} s CPU`,
      ]);
    }
  }

  out("");
  out("| system | ms | changes/s | ratio to subscriber | notes |");
  out("|---|---|---|---|---|");
  for (const r of rows) out(`| ${r.join(" | ")} |`);
  if (ratios.length > 0) {
    out("");
    out(
      "sink vs baseline (the baseline's figure over the sink's: above 1, the sink is that many times faster):",
    );
    // In-run time leaves out process start and module loading: what a warm Lambda invocation pays.
    out("| shape | total time | CPU | in-run time |");
    out("|---|---|---|---|");
    for (const r of ratios) out(`| ${r[0]} | ${r[1]}x | ${r[2]}x | ${r[3]}x |`);
  }

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
