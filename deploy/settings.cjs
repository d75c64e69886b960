// Values serverless.yml computes from its params, validated at package/deploy time: the exact
// secret ARNs the function may read (and nothing else), the VPC config (both parameters or
// neither), and the function's environment with any extra variables (e.g. NODE_EXTRA_CA_CERTS).
const ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Set by serverless.yml itself; extraEnvironment may not override them.
const RESERVED = [
  "FLUVIO_PG_SINK_NAME",
  "FLUVIO_TOPIC",
  "FLUVIO_PARTITION",
  "FLUVIO_ENDPOINT",
  "FLUVIO_PG_DATABASE_URL_SECRET",
  "FLUVIO_PROFILE_SECRET",
  "FLUVIO_PG_CA_SECRET",
  "FLUVIO_PG_SSL_MODE",
  "MAX_RECORDS",
];

module.exports = async ({ resolveVariable }) => {
  const raw = async (name) => resolveVariable(`param:${name}, ''`);
  const param = async (name) => String((await raw(name)) ?? "").trim();
  const list = (s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean);
  const problems = [];

  const arns = {
    databaseUrlSecretArn: await param("databaseUrlSecretArn"),
    fluvioProfileSecretArn: await param("fluvioProfileSecretArn"),
    caSecretArn: await param("caSecretArn"),
  };
  if (!arns.databaseUrlSecretArn)
    problems.push("set databaseUrlSecretArn (the ARN of the database URL secret)");
  for (const [name, value] of Object.entries(arns))
    if (value && !ARN.test(value))
      problems.push(
        `${name} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>): ${JSON.stringify(value)}`,
      );
  if (!(await param("fluvioEndpoint")) && !arns.fluvioProfileSecretArn)
    problems.push(
      "set fluvioEndpoint (host:port) or fluvioProfileSecretArn: the function has no Fluvio cluster to read",
    );
  const endpoint = await param("fluvioEndpoint");
  if (endpoint && !/^[^\s:]+:\d{1,5}$/.test(endpoint))
    problems.push(`fluvioEndpoint must be host:port (got ${JSON.stringify(endpoint)})`);

  const subnetIds = list(await param("subnetIds"));
  const securityGroupIds = list(await param("securityGroupIds"));
  if (subnetIds.length > 0 !== securityGroupIds.length > 0)
    problems.push("set both subnetIds and securityGroupIds to run in a VPC, or neither");

  const extra = await raw("extraEnvironment");
  const extraEnvironment = {};
  if (extra && typeof extra === "object") Object.assign(extraEnvironment, extra);
  else if (typeof extra === "string" && extra.trim() !== "")
    for (const pair of list(extra)) {
      const i = pair.indexOf("=");
      if (i <= 0) problems.push(`extraEnvironment: ${JSON.stringify(pair)} is not NAME=value`);
      else extraEnvironment[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
    }
  for (const name of Object.keys(extraEnvironment)) {
    if (!ENV_NAME.test(name))
      problems.push(`extraEnvironment: ${JSON.stringify(name)} is not a variable name`);
    if (RESERVED.includes(name)) problems.push(`extraEnvironment: ${name} is set from its own parameter`);
    extraEnvironment[name] = String(extraEnvironment[name]);
  }

  if (problems.length > 0) throw new Error(`fluvio-postgres-sink parameters: ${problems.join("; ")}`);
  return {
    secretArns: Object.values(arns).filter(Boolean),
    vpc: subnetIds.length > 0 ? { subnetIds, securityGroupIds } : null,
    extraEnvironment,
  };
};
