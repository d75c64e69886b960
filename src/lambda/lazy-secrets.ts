import type { MiddlewareObj } from "@middy/core";
import { clearCache, getCache } from "@middy/util";
import { asError, SinkError } from "../errors.js";

/**
 * Secrets Manager through @middy/secrets-manager and the AWS SDK, loaded by the first invocation that
 * needs a secret instead of by the handler's import: the SDK alone costs about 75 ms of cold import,
 * and a handler configured with a plain FLUVIO_PG_DATABASE_URL never needs it. In the Lambda bundle
 * these dynamic imports are separate chunks beside the handler (scripts/build-lambda.ts).
 */

type Options = { fetchData: Record<string, string>; cacheKey: string; cacheExpiry: number };

/** When each cache key's values become too old to use: process-wide, as middy's cache is. */
const expiresAt = new Map<string, number>();

/**
 * @middy/secrets-manager with these options, created on the first `before` and used from then on.
 *
 * The secrets are cached for `cacheExpiry` ms, but middy is told to keep them until cleared (-1):
 * with a positive expiry it refetches on a timer, outside any invocation, and when that fetch fails
 * its rejected promise sits in the cache with no handler: an unhandled rejection that can crash
 * whichever invocation happens to be running. Instead the cache is dropped here once expired, so the
 * next invocation fetches again in its own `before`, within its deadline, its failure its own.
 */
export function lazySecretsManager(options: Options & { setToContext: false; disablePrefetch: true }) {
  const { cacheKey, cacheExpiry } = options;
  const middyOptions = { ...options, cacheExpiry: -1 };
  let loading: Promise<MiddlewareObj> | undefined;
  const middleware: MiddlewareObj = {
    before: async (request) => {
      loading ??= import("@middy/secrets-manager").then((m) => m.default(middyOptions) as MiddlewareObj);
      let loaded: MiddlewareObj;
      try {
        loaded = await loading;
      } catch (e) {
        loading = undefined; // the next invocation tries again
        throw new SinkError(`cannot load @middy/secrets-manager: ${asError(e).message}`, { cause: e });
      }
      const now = Date.now();
      if (getCache(cacheKey).value && now >= (expiresAt.get(cacheKey) ?? 0)) clearCache([cacheKey]);
      // A failed fetch clears the cache (apply.ts), so the next invocation fetches all again.
      if (!getCache(cacheKey).value) expiresAt.set(cacheKey, now + cacheExpiry);
      await loaded.before?.(request);
    },
  };
  return middleware;
}

/** One GetSecretValue with the SDK's client, bypassing middy's cache; JSON is parsed as middy does. */
export async function fetchSecretValue(id: string): Promise<unknown> {
  const { GetSecretValueCommand, SecretsManagerClient } = await import("@aws-sdk/client-secrets-manager");
  const r = await new SecretsManagerClient({}).send(new GetSecretValueCommand({ SecretId: id }));
  try {
    return JSON.parse(r.SecretString ?? "");
  } catch {
    return r.SecretString;
  }
}
