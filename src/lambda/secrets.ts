import { createHash, createHmac } from "node:crypto";

/**
 * GetSecretValue from AWS Secrets Manager, signed with Signature Version 4 by hand: the AWS SDK
 * costs about 70 ms of cold start to import for this one call (and warns on older Node versions).
 * Credentials, region and endpoint come from the environment the Lambda runtime provides
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION), and
 * AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL as the SDK reads them.
 */

export interface SignInput {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: string;
  region: string;
  service: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Signing time; now by default. */
  date?: Date;
}

const sha256 = (data: string) => createHash("sha256").update(data, "utf8").digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data, "utf8").digest();

/** RFC 3986 encoding, as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The request's headers with x-amz-date, the session token and the Authorization header added. */
export function signRequest(input: SignInput): Record<string, string> {
  const amzDate = (input.date ?? new Date())
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = { ...input.headers, host: input.url.host, "x-amz-date": amzDate };
  if (input.sessionToken) headers["x-amz-security-token"] = input.sessionToken;
  const names = Object.keys(headers)
    .map((h) => h.toLowerCase())
    .sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const canonicalHeaders = names
    .map((h) => `${h}:${String(lower[h]).trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const signedHeaders = names.join(";");
  const query = [...input.url.searchParams.entries()]
    .map(([k, v]): [string, string] => [uriEncode(k), uriEncode(v)])
    .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  // Services other than S3 sign the path encoded twice: the URL's (once-encoded) path, encoded again.
  const path =
    input.url.pathname
      .split("/")
      .map((seg) => uriEncode(seg))
      .join("/") || "/";
  const canonicalRequest = [
    input.method,
    path,
    query,
    canonicalHeaders,
    signedHeaders,
    sha256(input.body),
  ].join("\n");
  const scope = `${day}/${input.region}/${input.service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  const key = hmac(
    hmac(hmac(hmac(`AWS4${input.secretAccessKey}`, day), input.region), input.service),
    "aws4_request",
  );
  const signature = createHmac("sha256", key).update(toSign, "utf8").digest("hex");
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}

export class SecretsManagerError extends Error {
  override name = "SecretsManagerError";
}

/** The secret's string (or its binary as UTF-8). */
export async function getSecretValue(
  secretId: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
  if (!region) throw new SecretsManagerError("AWS_REGION is not set: cannot reach Secrets Manager");
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = env;
  if (!accessKeyId || !secretAccessKey)
    throw new SecretsManagerError(
      "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    );
  const endpoint =
    env.AWS_ENDPOINT_URL_SECRETS_MANAGER ||
    env.AWS_ENDPOINT_URL ||
    `https://secretsmanager.${region}.amazonaws.com${region.startsWith("cn-") ? ".cn" : ""}`;
  const url = new URL(endpoint);
  const body = JSON.stringify({ SecretId: secretId });
  const headers = signRequest({
    method: "POST",
    url,
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": "secretsmanager.GetSecretValue",
    },
    body,
    region,
    service: "secretsmanager",
    accessKeyId,
    secretAccessKey,
    sessionToken: env.AWS_SESSION_TOKEN || undefined,
  });
  delete headers.host; // fetch sets it from the URL
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new SecretsManagerError(`cannot reach Secrets Manager at ${url.host}: ${(e as Error).message}`);
  }
  const text = await res.text();
  let json: {
    SecretString?: string;
    SecretBinary?: string;
    __type?: string;
    message?: string;
    Message?: string;
  };
  try {
    json = JSON.parse(text);
  } catch {
    throw new SecretsManagerError(
      `Secrets Manager answered ${res.status} with no JSON for secret ${secretId}`,
    );
  }
  if (!res.ok) {
    const type = String(json.__type ?? "error")
      .split("#")
      .pop();
    throw new SecretsManagerError(
      `GetSecretValue ${secretId}: ${type}: ${json.message ?? json.Message ?? res.status}`,
    );
  }
  if (typeof json.SecretString === "string") return json.SecretString;
  if (typeof json.SecretBinary === "string") return Buffer.from(json.SecretBinary, "base64").toString("utf8");
  throw new SecretsManagerError(`secret ${secretId} has no value`);
}

/** Secret values kept for `ttlMs`, fetched again on demand (e.g. after a password rotation). */
export class SecretCache {
  private readonly entries = new Map<string, { value: unknown; at: number }>();
  constructor(
    private readonly ttlMs: number,
    private readonly fetchValue: (id: string) => Promise<string> = (id) => getSecretValue(id),
  ) {}

  /** The secret, parsed as JSON when it is JSON. */
  async get(id: string): Promise<unknown> {
    const hit = this.entries.get(id);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    const text = await this.fetchValue(id);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {}
    this.entries.set(id, { value, at: Date.now() });
    return value;
  }

  forget(id: string): void {
    this.entries.delete(id);
  }
}
