import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { metricDimensions } from "../src/lambda/apply.js";

const root = join(import.meta.dirname, "..");
const DB_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/sink/db-AbCdEf";
const TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:sink-alarms";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON.
type Json = any;

/** `serverless package` offline; the CloudFormation it would deploy. */
function packageTemplate(params: string[]): Json {
  const r = spawnSync(
    process.execPath,
    [
      join(root, "node_modules", "serverless", "bin", "serverless.js"),
      "package",
      "--stage",
      "ci",
      `--param=databaseUrlSecretArn=${DB_SECRET}`,
      "--param=fluvioEndpoint=fluvio:9003",
      ...params.map((p) => `--param=${p}`),
    ],
    {
      cwd: root,
      env: {
        ...process.env,
        SLS_TELEMETRY_DISABLED: "1",
        SLS_NOTIFICATIONS_MODE: "off",
        SLS_DEPRECATION_DISABLE: "*",
      },
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  return JSON.parse(
    readFileSync(join(root, ".serverless", "cloudformation-template-update-stack.json"), "utf8"),
  );
}

/** Evaluates the intrinsic functions the alarms use (Fn::If, Fn::Not, Fn::Equals, AWS::NoValue). */
function evaluate(v: Json, conditions: Json): Json {
  if (Array.isArray(v)) return v.map((x) => evaluate(x, conditions)).filter((x) => x !== undefined);
  if (v === null || typeof v !== "object") return v;
  if ("Fn::If" in v) {
    const [cond, yes, no] = v["Fn::If"];
    return evaluate(evaluate(conditions[cond], conditions) ? yes : no, conditions);
  }
  if ("Fn::Not" in v) return !evaluate(v["Fn::Not"][0], conditions);
  if ("Fn::Equals" in v) {
    const [a, b] = evaluate(v["Fn::Equals"], conditions);
    return a === b;
  }
  if (v.Ref === "AWS::NoValue") return undefined;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    const e = evaluate(x, conditions);
    if (e !== undefined) out[k] = e;
  }
  return out;
}

function alarms(template: Json): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [id, r] of Object.entries(template.Resources as Record<string, Json>))
    if (r.Type === "AWS::CloudWatch::Alarm") out[id] = evaluate(r.Properties, template.Conditions ?? {});
  return out;
}

before(() => {
  execFileSync(process.execPath, ["--import", "tsx", join(root, "scripts", "build-lambda.ts")], {
    cwd: root,
  });
});

test("serverless package creates the lag, errors and no-successful-run alarms on the metrics the handler publishes", () => {
  const template = packageTemplate([
    "name=orders-sink",
    "topic=orders",
    "partition=2",
    "lagAlarmSeconds=600",
    "noSuccessAlarmMinutes=20",
    `alarmTopicArn=${TOPIC_ARN}`,
  ]);
  const fn = Object.values(template.Resources as Record<string, Json>).find(
    (r) => r.Type === "AWS::Lambda::Function",
  );
  const vars = fn.Properties.Environment.Variables;
  // The dimensions the handler publishes under, from the environment serverless.yml gives it.
  const dims = [
    { Name: "service", Value: vars.POWERTOOLS_SERVICE_NAME },
    ...Object.entries(metricDimensions(vars)).map(([Name, Value]) => ({ Name, Value })),
  ];
  assert.deepEqual(
    dims.map((d) => d.Value),
    ["fluvio-postgres-sink", "orders-sink", "orders", "2"],
  );
  const namespace = vars.POWERTOOLS_METRICS_NAMESPACE;
  const a = alarms(template);
  assert.deepEqual(Object.keys(a).sort(), [
    "ErrorsAlarm",
    "NoSuccessfulRunAlarm",
    "SecondsBehindSourceAlarm",
  ]);

  const lag = a.SecondsBehindSourceAlarm;
  assert.equal(lag.Namespace, namespace);
  assert.equal(lag.MetricName, "SecondsBehindSource");
  assert.deepEqual(lag.Dimensions, dims);
  assert.equal(lag.Statistic, "Maximum");
  assert.equal(lag.ComparisonOperator, "GreaterThanThreshold");
  assert.equal(Number(lag.Threshold), 600);

  const errors = a.ErrorsAlarm;
  const byId = Object.fromEntries(errors.Metrics.map((m: Json) => [m.Id, m]));
  assert.equal(byId.runFailed.MetricStat.Metric.Namespace, namespace);
  assert.equal(byId.runFailed.MetricStat.Metric.MetricName, "RunFailed");
  assert.deepEqual(byId.runFailed.MetricStat.Metric.Dimensions, dims);
  assert.equal(byId.functionErrors.MetricStat.Metric.Namespace, "AWS/Lambda");
  assert.deepEqual(byId.functionErrors.MetricStat.Metric.Dimensions, [
    { Name: "FunctionName", Value: { Ref: "ApplyLambdaFunction" } },
  ]);
  assert.ok(template.Resources.ApplyLambdaFunction, "the function the errors alarm watches");
  assert.equal(byId.failures.ReturnData, true);
  assert.match(byId.failures.Expression, /runFailed/);
  assert.match(byId.failures.Expression, /functionErrors/);
  assert.equal(errors.ComparisonOperator, "GreaterThanOrEqualToThreshold");
  assert.equal(errors.Threshold, 1);

  const silent = a.NoSuccessfulRunAlarm;
  assert.equal(silent.Namespace, namespace);
  assert.equal(silent.MetricName, "RunSucceeded");
  assert.deepEqual(silent.Dimensions, dims);
  assert.equal(silent.Statistic, "Sum");
  assert.equal(silent.ComparisonOperator, "LessThanThreshold");
  assert.equal(silent.Threshold, 1);
  // Every period of the window without a success, no data (no invocation) included.
  assert.equal(Number(silent.Period) * Number(silent.EvaluationPeriods), 20 * 60);
  assert.equal(Number(silent.DatapointsToAlarm), Number(silent.EvaluationPeriods));
  assert.equal(silent.TreatMissingData, "breaching");

  for (const alarm of Object.values(a)) {
    assert.deepEqual(alarm.AlarmActions, [TOPIC_ARN]);
    assert.deepEqual(alarm.OKActions, [TOPIC_ARN]);
  }

  // Without a topic: the same alarms, no actions.
  const quiet = alarms(packageTemplate([]));
  assert.equal(Object.keys(quiet).length, 3);
  for (const alarm of Object.values(quiet)) {
    assert.equal(alarm.AlarmActions, undefined);
    assert.equal(alarm.OKActions, undefined);
  }
  assert.equal(Number(quiet.SecondsBehindSourceAlarm.Threshold), 900, "default lagAlarmSeconds");
  assert.equal(Number(quiet.NoSuccessfulRunAlarm.EvaluationPeriods), 30, "default noSuccessAlarmMinutes");
});
