import { parse as parseYaml } from "yaml";
import { type SinkConfig, validateConnectorConfig } from "./config.js";
import { ConfigError } from "./errors.js";

/**
 * Reads the connector config format the Fluvio docs show for this connector (version, name, type,
 * topic, parameters, secrets, consumer). Every problem is reported at once, each naming its
 * setting; a database URL is never echoed back. Apart from config.ts so that the Lambda, configured
 * from its environment, does not carry a YAML parser.
 */
export function parseConnectorConfig(
  text: string,
  opts: { env?: NodeJS.ProcessEnv; baseDir?: string; origin?: string } = {},
): SinkConfig {
  const origin = opts.origin ?? "config";
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${origin}: not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  return validateConnectorConfig(doc, { ...opts, origin });
}
