// Runs under the Lambda runtime's Node major: imports the handler from an unpacked deployment zip,
// invokes it once with a Lambda-like context, prints the summary as JSON and exits (the native
// Fluvio client must not keep the process alive).
const [handlerPath] = process.argv.slice(2);
const { handler } = await import(handlerPath);
const context = {
  functionName: "apply",
  awsRequestId: "packaged-test",
  invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:apply",
  getRemainingTimeInMillis: () => 60_000,
};
try {
  const summary = await handler({}, context);
  process.stdout.write(`SUMMARY ${JSON.stringify({ node: process.version, ...summary })}\n`);
  process.exit(0);
} catch (e) {
  process.stderr.write(`FAILED ${e?.message ?? e}\n`);
  process.exit(1);
}
