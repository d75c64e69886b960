import type { MiddlewareObj } from "@middy/core";
import { getCache } from "@middy/util";
import { asError, SinkError } from "../errors.js";

/**
 * Secrets Manager through @middy/secrets-manager and the AWS SDK, loaded by the first invocation that
 * needs a secret instead of by the handler's import: the SDK alone costs about 75 ms of cold import,
 * and a handler configured with a plain FLUVIO_PG_DATABASE_URL never needs it. In the Lambda bundle
 * these dynamic imports are separate chunks beside the handler (scripts/build-lambda.ts).
 */

type Options = { fetchData: Record<string, string>; cacheKey: string; cacheExpiry: number };

/** @middy/secrets-manager with these options, created on the first `before` and used from then on. */
export function lazySecretsManager(options: Options & { setToContext: false; disablePrefetch: true }) {
  let loading: Promise<MiddlewareObj> | undefined;
  const middleware: MiddlewareObj = {
    before: async (request) => {
      loading ??= import("@middy/secrets-manager").then((m) => m.default(options) as MiddlewareObj);
      let loaded: MiddlewareObj;
      try {
        loaded = await loading;
      } catch (e) {
        loading = undefined; // the next invocation tries again
        throw new SinkError(`cannot load @middy/secrets-manager: ${asError(e).message}`, { cause: e });
      }
      await loaded.before?.(request);
      // middy refetches the secrets when the cache expires, on a 15-minute timer: in Lambda a frozen
      // process never waits for it, but it must not keep a process that is otherwise done alive
      // (serverless invoke local, a handler run from a script or a test).
      (getCache(options.cacheKey).refresh as NodeJS.Timeout | undefined)?.unref();
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
