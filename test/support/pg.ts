import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/**
 * A throwaway PostgreSQL for tests: PG_TEST_URL when set (a server with wal_level=logical), else a
 * new cluster from the Debian binaries, run as the postgres user when we are root.
 */

export const TEST_PASSWORD = "s3cret-test-pw";

export interface PgServer {
  /** Creates a fresh database and returns its URL (with credentials). */
  createDatabase(prefix: string): Promise<string>;
  stop(): Promise<void>;
}

function findBinDir(): string | null {
  if (process.env.PG_BIN_DIR) return process.env.PG_BIN_DIR;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], "bin") : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
}

let counter = 0;
function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter++}`.toLowerCase();
}

async function waitReady(url: string, child: ChildProcess | null, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`postgres exited early:\n${log()}`);
    const c = new pg.Client({ connectionString: url });
    c.on("error", () => {});
    try {
      await c.connect();
      await c.end();
      return;
    } catch (e) {
      await c.end().catch(() => {});
      if (Date.now() > deadline) throw new Error(`postgres did not start: ${(e as Error).message}\n${log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function external(url: string): PgServer {
  const created: string[] = [];
  return {
    async createDatabase(prefix) {
      const name = uniqueName(prefix);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`CREATE DATABASE ${name}`);
      await c.end();
      created.push(name);
      const u = new URL(url);
      u.pathname = `/${name}`;
      return u.toString();
    },
    async stop() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      for (const name of created) {
        await c.query(
          `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`,
          [name],
        );
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
      await c.end();
    },
  };
}

/**
 * `settings`: extra server settings (name=value), e.g. ssl=on; with them the cluster is always a new
 * one, never PG_TEST_URL's. `prepare` runs on the new cluster's directory before it starts.
 */
export async function startPostgres(
  opts: { settings?: string[]; prepare?: (dir: string, asRoot: boolean) => void } = {},
): Promise<PgServer> {
  if (process.env.PG_TEST_URL && !opts.settings) return external(process.env.PG_TEST_URL);
  const bin = findBinDir();
  if (!bin)
    throw new Error("no PostgreSQL binaries found (install postgresql, set PG_BIN_DIR, or set PG_TEST_URL)");
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "fps-pg-"));
  chmodSync(dir, 0o777);
  const data = join(dir, "data");
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, `${TEST_PASSWORD}\n`);
  chmodSync(pwfile, 0o644);
  const wrap = (cmd: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  const [c1, a1] = wrap(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth=scram-sha-256",
    `--pwfile=${pwfile}`,
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  execFileSync(c1, a1, { stdio: "pipe" });
  opts.prepare?.(dir, asRoot);
  const port = await freePort();
  const [c2, a2] = wrap(join(bin, "postgres"), [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "wal_level=logical",
    "-c",
    "max_replication_slots=50",
    "-c",
    "max_wal_senders=50",
    "-c",
    "max_connections=100",
    "-c",
    "fsync=off",
    "-c",
    "full_page_writes=off",
    ...(opts.settings ?? []).flatMap((x) => ["-c", x]),
  ]);
  let output = "";
  const child = spawn(c2, a2, { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  const kill = () => {
    try {
      const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (pid) process.kill(pid, "SIGKILL");
    } catch {}
    child.kill("SIGKILL");
  };
  process.once("exit", kill);
  const base = `postgres://postgres:${TEST_PASSWORD}@127.0.0.1:${port}`;
  await waitReady(`${base}/postgres`, child, () => output);
  return {
    async createDatabase(prefix) {
      const name = uniqueName(prefix);
      const c = new pg.Client({ connectionString: `${base}/postgres` });
      await c.connect();
      await c.query(`CREATE DATABASE ${name}`);
      await c.end();
      return `${base}/${name}`;
    },
    async stop() {
      process.removeListener("exit", kill);
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        // Signal the postmaster itself: runuser does not pass every signal on.
        let pid = child.pid;
        try {
          pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
        } catch {}
        if (pid) process.kill(pid, "SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
