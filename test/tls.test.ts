import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { parseConnectorConfig } from "../src/config-file.js";
import { createApplyHandler, urlFromSecret } from "../src/lambda/apply.js";
import { connectTarget } from "../src/target/connect.js";
import { runCli, writeConfig } from "./support/cli.js";
import { assertSameTables, makePair } from "./support/harness.js";
import { type PgServer, startPostgres, TEST_PASSWORD } from "./support/pg.js";
import { SecretsManagerStandIn } from "./support/secrets-manager.js";

/**
 * A real PostgreSQL with ssl=on and a server certificate for "localhost" signed by a throwaway CA;
 * a second CA that signed nothing stands for the wrong bundle.
 */

const certs = mkdtempSync(join(tmpdir(), "fps-tls-"));
const ca = join(certs, "ca.pem");
const wrongCa = join(certs, "wrong-ca.pem");
let server: PgServer;
/** A database URL on the TLS server, host 127.0.0.1 (not a name in the certificate). */
let url: string;

function openssl(args: string[]) {
  execFileSync("openssl", args, { cwd: certs, stdio: "pipe" });
}

function makeCa(name: string) {
  openssl(
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`].concat([
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.pem`,
    ]),
  );
}

before(async () => {
  makeCa("ca");
  makeCa("wrong-ca");
  openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
  ]);
  writeFileSync(join(certs, "san.ext"), "subjectAltName=DNS:localhost\n");
  openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"].concat([
      "-days",
      "2",
      "-extfile",
      "san.ext",
      "-out",
      "server.crt",
    ]),
  );
  server = await startPostgres({
    settings: ["ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key"],
    // The server refuses a key others can read, and reads its files as the postgres user.
    prepare: (dir, asRoot) => {
      for (const f of ["server.crt", "server.key"]) {
        const dest = join(dir, "data", f);
        copyFileSync(join(certs, f), dest);
        chmodSync(dest, 0o600);
        if (asRoot) execFileSync("chown", ["postgres", dest]);
      }
    },
  });
  url = await server.createDatabase("tls");
});
after(async () => {
  await server?.stop();
});

function withParams(host: string, params: Record<string, string>): string {
  const u = new URL(url);
  u.hostname = host;
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

function config(databaseUrl: string, parameters = "", secrets = "") {
  return parseConnectorConfig(
    `name: tls-sink\ntype: postgres-sink\ntopic: t\nparameters:\n  url: secrets.DB\n${parameters}secrets:\n  DB: "${databaseUrl}"\n${secrets}`,
    { env: {} },
  );
}

/** Connects as the sink does and says whether the session is encrypted. */
async function sessionSsl(databaseUrl: string, parameters = "", secrets = ""): Promise<boolean> {
  const client = await connectTarget(config(databaseUrl, parameters, secrets));
  try {
    const r = await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    return r.rows[0].ssl;
  } finally {
    await client.end();
  }
}

async function connectError(databaseUrl: string, parameters = ""): Promise<string> {
  try {
    await sessionSsl(databaseUrl, parameters);
  } catch (e) {
    const msg = (e as Error).message;
    assert.ok(!msg.includes(TEST_PASSWORD), `password in: ${msg}`);
    return msg;
  }
  assert.fail("connected");
}

test("verify-full with the right CA and the certificate's host name connects encrypted", async () => {
  assert.equal(await sessionSsl(withParams("localhost", { sslmode: "verify-full", sslrootcert: ca })), true);
});

test("verify-full with the wrong CA fails, saying the certificate is not trusted", async () => {
  const msg = await connectError(withParams("localhost", { sslmode: "verify-full", sslrootcert: wrongCa }));
  assert.match(
    msg,
    /^target \S+, connect: cannot connect to the target database: the server's certificate is not signed by a trusted certificate authority \(sslmode=verify-full, CA from sslrootcert .*wrong-ca\.pem\)/,
  );
});

test("verify-full with a host name the certificate does not carry fails, saying so", async () => {
  const msg = await connectError(withParams("127.0.0.1", { sslmode: "verify-full", sslrootcert: ca }));
  assert.match(
    msg,
    /^target \S+, connect: cannot connect to the target database: the server's certificate does not name the host connected to \(sslmode=verify-full, .*\): .*127\.0\.0\.1/,
  );
});

test("verify-ca checks the CA but not the host name", async () => {
  assert.equal(await sessionSsl(withParams("127.0.0.1", { sslmode: "verify-ca", sslrootcert: ca })), true);
  assert.match(
    await connectError(withParams("127.0.0.1", { sslmode: "verify-ca", sslrootcert: wrongCa })),
    /not signed by a trusted certificate authority \(sslmode=verify-ca/,
  );
});

test("require encrypts without a CA; with one named it checks the chain, as libpq does", async () => {
  assert.equal(await sessionSsl(withParams("127.0.0.1", { sslmode: "require" })), true);
  assert.match(
    await connectError(withParams("127.0.0.1", { sslmode: "require", sslrootcert: wrongCa })),
    /not signed by a trusted certificate authority \(sslmode=require/,
  );
});

test("prefer (the default) encrypts when the server offers TLS; disable does not", async () => {
  assert.equal(await sessionSsl(url), true);
  assert.equal(await sessionSsl(withParams("127.0.0.1", { sslmode: "disable" })), false);
});

test("verify-full without a CA uses Node's trust store, which does not hold a private CA", async () => {
  assert.match(
    await connectError(withParams("localhost", { sslmode: "verify-full" })),
    /not signed by a trusted certificate authority \(sslmode=verify-full, CA from Node's trust store and NODE_EXTRA_CA_CERTS\)/,
  );
});

test("the ssl_mode and ssl_root_cert settings, the CA from a file or from a secret holding the PEM", async () => {
  const local = withParams("localhost", {});
  assert.equal(await sessionSsl(local, `  ssl_mode: verify-full\n  ssl_root_cert: ${ca}\n`), true);
  const pem = readFileSync(ca, "utf8");
  const secret = `  PG_CA: |\n${pem
    .trim()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n")}\n`;
  assert.equal(
    await sessionSsl(local, "  ssl_mode: verify-full\n  ssl_root_cert: secrets.PG_CA\n", secret),
    true,
  );
  assert.throws(
    () => config(local, "  ssl_root_cert: secrets.PG_CA\n", "  PG_CA: not a certificate\n"),
    /parameters\.ssl_root_cert: secret PG_CA does not hold a PEM certificate/,
  );
  assert.throws(
    () => config(withParams("localhost", { sslmode: "require" }), "  ssl_mode: verify-full\n"),
    /parameters\.ssl_mode \(verify-full\) disagrees with sslmode=require in the database URL/,
  );
  assert.throws(
    () => config(withParams("localhost", { sslmode: "no-verify" })),
    /sslmode="no-verify" in the database URL is not one of disable, allow, prefer, require, verify-ca, verify-full/,
  );
  assert.throws(
    () => config(withParams("localhost", { sslmode: "require", sslrootcert: "system" })),
    /sslrootcert=system needs sslmode=verify-full \(got require\)/,
  );
});

test("an RDS-style JSON secret may carry sslmode (and sslrootcert)", () => {
  const secret = { username: "app", password: "p@ss", host: "db.example", port: 5432, dbname: "prod" };
  assert.equal(urlFromSecret(secret), "postgres://app:p%40ss@db.example:5432/prod");
  assert.equal(
    urlFromSecret({ ...secret, sslmode: "verify-full", sslrootcert: "/var/runtime/ca-cert.pem" }),
    "postgres://app:p%40ss@db.example:5432/prod?sslmode=verify-full&sslrootcert=%2Fvar%2Fruntime%2Fca-cert.pem",
  );
  const c = config(urlFromSecret({ ...secret, sslmode: "verify-full" }) as string);
  assert.deepEqual(c.tls, { mode: "verify-full", rootCert: null, cert: null, key: null });
});

for (const maxRecords of [1, 7, 1000]) {
  test(`the CLI applies over verify-full (max_records ${maxRecords}); NODE_EXTRA_CA_CERTS is the trust store the Lambda runtimes use`, async () => {
    const p = await makePair(server, `tlscli${maxRecords}`);
    try {
      await p.sql("CREATE TABLE items (id int PRIMARY KEY, v text)");
      await p.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 20) g");
      await p.sql("UPDATE items SET v = v || '!' WHERE id % 4 = 0");
      await p.capture();
      const target = new URL(p.targetUrl);
      target.hostname = "localhost";
      target.searchParams.set("sslmode", "verify-full");
      const cfg = writeConfig(
        dirname(p.topicFile),
        `name: tls-cli\ntype: postgres-sink\ntopic: t\nparameters:\n  url: "${target}"\n  source: file:${p.topicFile}\n  max_records: ${maxRecords}\n`,
      );
      const denied = await runCli(["run", "--config", cfg]);
      assert.equal(denied.code, 1, denied.stderr);
      assert.match(
        denied.stderr,
        /the server's certificate is not signed by a trusted certificate authority/,
      );
      assert.ok(!`${denied.stdout}${denied.stderr}`.includes(TEST_PASSWORD), "no password in the output");
      for (let i = 0; i < 100; i++) {
        const r = await runCli(["run", "--config", cfg], { NODE_EXTRA_CA_CERTS: ca });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!`${r.stdout}${r.stderr}`.includes(TEST_PASSWORD), "no password in the output");
        if (JSON.parse(r.stdout).status === "idle") break;
      }
      await assertSameTables(p, ["items"]);
    } finally {
      await p.close();
    }
  });
}

test("the Lambda handler verifies the target with the CA from FLUVIO_PG_CA_SECRET and sslmode from the RDS-style secret", async () => {
  const sm = await SecretsManagerStandIn.start();
  const p = await makePair(server, "tlslambda");
  const saved = { ...process.env };
  try {
    await p.sql("CREATE TABLE items (id int PRIMARY KEY, v text)");
    await p.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 9) g");
    await p.capture();
    const target = new URL(p.targetUrl);
    sm.secrets.set(
      "prod/sink/db",
      JSON.stringify({
        username: decodeURIComponent(target.username),
        password: decodeURIComponent(target.password),
        host: "localhost",
        port: Number(target.port),
        dbname: target.pathname.slice(1),
        sslmode: "verify-full",
      }),
    );
    sm.secrets.set("prod/sink/ca", readFileSync(ca, "utf8"));
    sm.secrets.set("prod/sink/wrong-ca", readFileSync(wrongCa, "utf8"));
    Object.assign(process.env, sm.env(), {
      POWERTOOLS_LOG_LEVEL: "CRITICAL",
      POWERTOOLS_METRICS_DISABLED: "true",
    });
    const env = (caSecret: string) => ({
      ...process.env,
      FLUVIO_PG_SINK_NAME: "tls-lambda",
      FLUVIO_TOPIC: "t",
      FLUVIO_SOURCE: `file:${p.topicFile}`,
      FLUVIO_PG_DATABASE_URL_SECRET: "prod/sink/db",
      FLUVIO_PG_CA_SECRET: caSecret,
    });
    const context = {
      functionName: "apply",
      awsRequestId: "tls",
      invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:apply",
      getRemainingTimeInMillis: () => 60_000,
    } as never;
    await assert.rejects(createApplyHandler(env("prod/sink/wrong-ca"))({}, context), (e: Error) => {
      assert.match(
        e.message,
        /not signed by a trusted certificate authority \(sslmode=verify-full, CA from the certificate in secret FLUVIO_PG_CA_PEM\)/,
      );
      assert.ok(!e.message.includes(TEST_PASSWORD));
      return true;
    });
    const summary = await createApplyHandler(env("prod/sink/ca"))({}, context);
    assert.equal(summary.status, "applied");
    await assertSameTables(p, ["items"]);
  } finally {
    process.env = saved;
    await p.close();
    await sm.stop();
  }
});
