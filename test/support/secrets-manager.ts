import { createServer, type Server } from "node:http";

/**
 * A stand-in for AWS Secrets Manager's JSON API (GetSecretValue only), for the AWS SDK pointed at it
 * with AWS_ENDPOINT_URL_SECRETS_MANAGER. The one part of the system with no real thing to run here.
 */
export class SecretsManagerStandIn {
  readonly secrets = new Map<string, string>();
  readonly calls: string[] = [];
  private server!: Server;
  url = "";

  static async start(): Promise<SecretsManagerStandIn> {
    const s = new SecretsManagerStandIn();
    s.server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const target = String(req.headers["x-amz-target"] ?? "");
        const { SecretId } = JSON.parse(body || "{}") as { SecretId?: string };
        s.calls.push(`${target}:${SecretId}`);
        const value = SecretId ? s.secrets.get(SecretId) : undefined;
        res.setHeader("content-type", "application/x-amz-json-1.1");
        if (target !== "secretsmanager.GetSecretValue" || value === undefined) {
          res.statusCode = 400;
          res.end(JSON.stringify({ __type: "ResourceNotFoundException", message: `no secret ${SecretId}` }));
          return;
        }
        res.end(
          JSON.stringify({
            ARN: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${SecretId}`,
            Name: SecretId,
            SecretString: value,
            VersionId: "v1",
            CreatedDate: 1700000000,
          }),
        );
      });
    });
    await new Promise<void>((r) => s.server.listen(0, "127.0.0.1", () => r()));
    const a = s.server.address();
    s.url = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
    return s;
  }

  /**
   * Environment for an AWS SDK client that talks to this stand-in. The tests also run on Node 20,
   * where the SDK warns that its next versions need Node 22; the Lambda runtimes are 22 and 24,
   * where it does not (the packaged-zip test runs Node 22 without this switch and sees no warning).
   */
  env({ nodeVersionWarning = false } = {}): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: this.url,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      ...(nodeVersionWarning ? {} : { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" }),
    };
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
