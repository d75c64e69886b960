// One warm process, as a warm Lambda keeps it: the CLI module's main() is called for
// `run --config <file>` again and again in this process until a run finds nothing to do.
// Prints one JSON line per invocation ({ ms, summary }), then { cpu } (user + system seconds).
// Usage: node [--import tsx] bench/warm-runner.mjs <module exporting main> <config>
const [modulePath, config] = process.argv.slice(2);
const { main } = await import(modulePath);
const write = process.stdout.write.bind(process.stdout);
for (let i = 0; i < 100_000; i++) {
  let out = "";
  process.stdout.write = (chunk) => {
    out += chunk;
    return true;
  };
  const started = performance.now();
  const code = await main(["run", "--config", config]);
  const ms = performance.now() - started;
  process.stdout.write = write;
  if (code !== 0) {
    process.stderr.write(`run ${i} exited with ${code}: ${out}\n`);
    process.exit(1);
  }
  const summary = JSON.parse(out);
  write(`${JSON.stringify({ ms, summary })}\n`);
  if (summary.status === "idle") break;
}
const cpu = process.cpuUsage();
write(`${JSON.stringify({ cpu: (cpu.user + cpu.system) / 1e6 })}\n`);
process.exit(0);
