import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";

/**
 * TLS to the target with libpq's meaning of sslmode and sslrootcert (node-postgres, left to itself,
 * treats require and verify-ca as verify-full and warns on stderr; we pass it an explicit `ssl`).
 */

export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Where the certificate authorities come from. */
export type RootCert =
  /** A PEM file, as psql's sslrootcert. */
  | { kind: "file"; path: string }
  /** PEM text, e.g. from a secret; `origin` names it in errors. */
  | { kind: "pem"; pem: string; origin: string }
  /** Node's trust store, which includes NODE_EXTRA_CA_CERTS (libpq's sslrootcert=system). */
  | { kind: "system" };

export interface TargetTls {
  mode: SslMode;
  /** null: none named; verify-* then use Node's trust store (plus NODE_EXTRA_CA_CERTS). */
  rootCert: RootCert | null;
  /** Client certificate and key files (libpq sslcert, sslkey), for servers that ask for one. */
  cert: string | null;
  key: string | null;
}

/** libpq's connection URL parameters this module takes over from node-postgres. */
const URL_PARAMS = ["sslmode", "sslrootcert", "sslcert", "sslkey"] as const;

export function isSslMode(v: unknown): v is SslMode {
  return typeof v === "string" && (SSL_MODES as readonly string[]).includes(v);
}

/** The URL's own TLS parameters, or problems naming them. */
export function tlsFromUrl(url: string): { params: Partial<Record<(typeof URL_PARAMS)[number], string>> } {
  const params: Partial<Record<(typeof URL_PARAMS)[number], string>> = {};
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { params };
  }
  for (const p of URL_PARAMS) {
    const v = parsed.searchParams.get(p);
    if (v !== null && v !== "") params[p] = v;
  }
  return { params };
}

/** The URL without the parameters this module handles, for node-postgres. */
export function withoutTlsParams(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  let changed = false;
  for (const p of [...URL_PARAMS, "ssl", "uselibpqcompat"]) {
    if (parsed.searchParams.has(p)) {
      parsed.searchParams.delete(p);
      changed = true;
    }
  }
  return changed ? parsed.toString() : url;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(
      `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/**
 * The `ssl` option for node-postgres for one attempt: false for a plain connection. libpq's rules:
 * require encrypts without checking the certificate, unless a root certificate is named (then it
 * checks the chain as verify-ca does); verify-ca checks the chain but not the host name;
 * verify-full checks both.
 */
export function sslOption(tls: TargetTls, encrypt: boolean): false | ConnectionOptions {
  if (!encrypt) return false;
  const opts: ConnectionOptions = {};
  if (tls.cert) opts.cert = readPem(tls.cert, "sslcert");
  if (tls.key) opts.key = readPem(tls.key, "sslkey");
  const root = tls.rootCert;
  if (root?.kind === "file") opts.ca = readPem(root.path, "sslrootcert");
  else if (root?.kind === "pem") opts.ca = root.pem;
  const verifyChain =
    tls.mode === "verify-ca" || tls.mode === "verify-full" || (tls.mode === "require" && root !== null);
  opts.rejectUnauthorized = verifyChain;
  // Node checks the host name as part of verification; verify-ca and require must not.
  if (tls.mode !== "verify-full") opts.checkServerIdentity = () => undefined;
  return opts;
}

/** What the settings ask for, in words for error messages (never a URL). */
export function describeTls(tls: TargetTls): string {
  const root = tls.rootCert;
  const ca =
    root === null
      ? "Node's trust store and NODE_EXTRA_CA_CERTS"
      : root.kind === "file"
        ? `sslrootcert ${root.path}`
        : root.kind === "pem"
          ? `the certificate in ${root.origin}`
          : "sslrootcert=system (Node's trust store and NODE_EXTRA_CA_CERTS)";
  return `sslmode=${tls.mode}, CA from ${ca}`;
}

const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/** A sentence saying what went wrong with TLS, or null when the error is not about TLS. */
export function explainTlsError(e: Error & { code?: string }, tls: TargetTls): string | null {
  if (e.code === "ERR_TLS_CERT_ALTNAME_INVALID")
    return `the server's certificate does not name the host connected to (${describeTls(tls)}; verify-full checks the host name, verify-ca does not): ${e.message}`;
  if (e.code && UNTRUSTED.has(e.code))
    return `the server's certificate is not signed by a trusted certificate authority (${describeTls(tls)}): ${e.message}`;
  if (e.code === "CERT_HAS_EXPIRED" || e.code === "CERT_NOT_YET_VALID")
    return `the server's certificate is not valid now (${describeTls(tls)}): ${e.message}`;
  if (/does not support SSL/i.test(e.message))
    return `the server does not accept TLS connections, and sslmode=${tls.mode} requires TLS`;
  return null;
}
