// The schedule's interval in seconds, from serverless.yml's `schedule` param, for the handler's
// capacity estimate (SCHEDULE_INTERVAL_SECONDS). A rate(...) expression gives it exactly; for a cron
// expression it is empty and the handler estimates it from the spacing of its runs.
const UNITS = { minute: 60, minutes: 60, hour: 3600, hours: 3600, day: 86400, days: 86400 };

module.exports = async ({ resolveVariable }) => {
  const schedule = String((await resolveVariable("param:schedule, ''")) ?? "").trim();
  const rate = /^rate\(\s*(\d+)\s+([a-z]+)\s*\)$/.exec(schedule);
  const unit = rate ? UNITS[rate[2]] : undefined;
  return { intervalSeconds: rate && unit ? String(Number(rate[1]) * unit) : "" };
};
