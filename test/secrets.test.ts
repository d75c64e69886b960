import assert from "node:assert/strict";
import { test } from "node:test";
import { SignatureV4 } from "@smithy/signature-v4";
import { getSecretValue, signRequest } from "../src/lambda/secrets.js";
import { SecretsManagerStandIn } from "./support/secrets-manager.js";

/** The AWS SDK's own SigV4 signer (a dev dependency) as the reference for ours. */
async function sdkSignature(input: {
  url: URL;
  headers: Record<string, string>;
  body: string;
  sessionToken?: string;
  date: Date;
  region: string;
}) {
  const { createHash, createHmac } = await import("node:crypto");
  class Sha256 {
    private h;
    constructor(secret?: string | Uint8Array) {
      this.h = secret ? createHmac("sha256", secret) : createHash("sha256");
    }
    update(d: string | Uint8Array) {
      this.h.update(d);
    }
    async digest() {
      return new Uint8Array(this.h.digest());
    }
  }
  const signer = new SignatureV4({
    service: "secretsmanager",
    region: input.region,
    sha256: Sha256 as never,
    // Our requests carry no x-amz-content-sha256 header (optional outside S3).
    applyChecksum: false,
    credentials: {
      accessKeyId: "AKIDEXAMPLE",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
      sessionToken: input.sessionToken,
    },
  });
  const signed = await signer.sign(
    {
      method: "POST",
      protocol: input.url.protocol,
      hostname: input.url.hostname,
      port: input.url.port ? Number(input.url.port) : undefined,
      path: input.url.pathname,
      query: Object.fromEntries(input.url.searchParams),
      headers: { ...input.headers, host: input.url.host },
      body: input.body,
    },
    { signingDate: input.date },
  );
  return signed.headers.authorization;
}

test("our SigV4 signature equals the AWS SDK signer's", async () => {
  const cases = [
    { url: new URL("https://secretsmanager.eu-west-1.amazonaws.com/"), region: "eu-west-1" },
    {
      url: new URL("http://127.0.0.1:4566/"),
      region: "us-east-1",
      sessionToken: "FwoGZXIvYXdzEJr//////////token",
    },
    { url: new URL("https://example.com/a%20b/c?b=2&a=1&x=y z"), region: "ap-south-2" },
  ];
  for (const c of cases) {
    for (const body of [
      '{"SecretId":"prod/sink/db"}',
      "",
      '{"SecretId":"arn:aws:secretsmanager:x:1:secret:ü €"}',
    ]) {
      const date = new Date("2026-11-26T07:30:15.123Z");
      const headers = {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "secretsmanager.GetSecretValue",
      };
      const ours = signRequest({
        method: "POST",
        url: c.url,
        headers,
        body,
        region: c.region,
        service: "secretsmanager",
        accessKeyId: "AKIDEXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        sessionToken: c.sessionToken,
        date,
      });
      assert.equal(ours.authorization, await sdkSignature({ ...c, headers, body, date }), `${c.url} ${body}`);
    }
  }
});

test("GetSecretValue against the stand-in: the value, and a clear error for a missing secret", async () => {
  const sm = await SecretsManagerStandIn.start();
  try {
    sm.secrets.set("prod/sink/db", '{"url":"postgres://u:p@h/db"}');
    assert.equal(await getSecretValue("prod/sink/db", sm.env()), '{"url":"postgres://u:p@h/db"}');
    await assert.rejects(getSecretValue("nope", sm.env()), {
      name: "SecretsManagerError",
      message: "GetSecretValue nope: ResourceNotFoundException: no secret nope",
    });
    await assert.rejects(
      getSecretValue("x", { AWS_REGION: "us-east-1" }),
      /no AWS credentials in the environment/,
    );
  } finally {
    await sm.stop();
  }
});
