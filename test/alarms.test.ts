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
      "--param=fluvioEndpoint=fluvio.example:9003",
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

test("serverless package creates the lag, errors, dead-letters and no-successful-run alarms on the metrics the handler publishes", () => {
  const template = packageTemplate([
    "name=orders-sink",
    "topic=orders",
    "partition=2",
    "lagAlarmSeconds=600",
    "noSuccessAlarmMinutes=20",
    "outrunAlarmPeriods=4",
    "schedule=rate(5 minutes)",
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
    "DeadLettersAlarm",
    "ErrorsAlarm",
    "NoSuccessfulRunAlarm",
    "ScheduleOutrunAlarm",
    "SecondsBehindSourceAlarm",
  ]);
  // The handler's capacity estimate knows the schedule's interval.
  assert.equal(vars.SCHEDULE_INTERVAL_SECONDS, "300");

  // Every run of the periods said the source outran the schedule (ScheduleOutrun, 0 or 1 a run).
  const outrun = a.ScheduleOutrunAlarm;
  assert.equal(outrun.Namespace, namespace);
  assert.equal(outrun.MetricName, "ScheduleOutrun");
  assert.deepEqual(outrun.Dimensions, dims);
  assert.equal(outrun.Statistic, "Minimum");
  assert.equal(outrun.ComparisonOperator, "GreaterThanOrEqualToThreshold");
  assert.equal(outrun.Threshold, 1);
  assert.equal(Number(outrun.EvaluationPeriods), 4);
  assert.equal(Number(outrun.DatapointsToAlarm), 4);
  // Periods without a run (a schedule longer than 5 minutes, cron gaps) neither breach nor clear it.
  assert.equal(outrun.TreatMissingData, "missing");

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

  // Any transaction set aside (on_error: dead_letter) in 5 minutes.
  const dead = a.DeadLettersAlarm;
  assert.equal(dead.Namespace, namespace);
  assert.equal(dead.MetricName, "DeadLetters");
  assert.deepEqual(dead.Dimensions, dims);
  assert.equal(dead.Statistic, "Sum");
  assert.equal(Number(dead.Period), 300);
  assert.equal(Number(dead.EvaluationPeriods), 1);
  assert.equal(dead.ComparisonOperator, "GreaterThanThreshold");
  assert.equal(dead.Threshold, 0);
  assert.equal(dead.TreatMissingData, "notBreaching");

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
  const quietTemplate = packageTemplate([]);
  const quiet = alarms(quietTemplate);
  assert.equal(Object.keys(quiet).length, 5);
  for (const alarm of Object.values(quiet)) {
    assert.equal(alarm.AlarmActions, undefined);
    assert.equal(alarm.OKActions, undefined);
  }
  assert.equal(Number(quiet.SecondsBehindSourceAlarm.Threshold), 900, "default lagAlarmSeconds");
  assert.equal(Number(quiet.NoSuccessfulRunAlarm.EvaluationPeriods), 30, "default noSuccessAlarmMinutes");
  assert.equal(Number(quiet.ScheduleOutrunAlarm.EvaluationPeriods), 3, "default outrunAlarmPeriods");
  // The defaults for low volume: a run a minute, each batch as large as its budget allows.
  const fn2 = quietTemplate.Resources.ApplyLambdaFunction.Properties;
  assert.equal(fn2.Environment.Variables.SCHEDULE_INTERVAL_SECONDS, "60");
  assert.equal(fn2.Environment.Variables.MAX_RECORDS, "");
  assert.equal(fn2.MemorySize, 512);
  const rule = Object.values(quietTemplate.Resources as Record<string, Json>).find(
    (r) => r.Type === "AWS::Events::Rule",
  );
  assert.equal(rule.Properties.ScheduleExpression, "rate(1 minute)");
});

test("deploy/schedule.cjs: the interval of rate() schedules; none for cron (estimated from the runs)", async () => {
  const { createRequire } = await import("node:module");
  const resolve = createRequire(import.meta.url)(join(root, "deploy", "schedule.cjs"));
  const interval = async (schedule: string) =>
    (await resolve({ resolveVariable: async () => schedule })).intervalSeconds;
  assert.equal(await interval("rate(1 minute)"), "60");
  assert.equal(await interval("rate(10 minutes)"), "600");
  assert.equal(await interval("rate(2 hours)"), "7200");
  assert.equal(await interval("rate(1 day)"), "86400");
  assert.equal(await interval("cron(0/15 * * * ? *)"), "");
});
