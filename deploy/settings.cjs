// Values serverless.yml computes from its params: the exact secret ARNs the function may read (and
// nothing else), and the VPC config only when subnets and security groups are given.
module.exports = async ({ resolveVariable }) => {
  const param = async (name) => String((await resolveVariable(`param:${name}, ''`)) ?? "").trim();
  const list = (s) =>
    s
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean);
  const secrets = [await param("databaseUrlSecretArn"), await param("fluvioProfileSecretArn")].filter(
    Boolean,
  );
  if (secrets.length === 0)
    throw new Error("set --param=databaseUrlSecretArn=<ARN of the database URL secret>");
  const subnetIds = list(await param("subnetIds"));
  const securityGroupIds = list(await param("securityGroupIds"));
  return {
    secretArns: secrets,
    vpc: subnetIds.length > 0 && securityGroupIds.length > 0 ? { subnetIds, securityGroupIds } : null,
  };
};
