/** Produces records into a topic with the real @fluvio/client producer, as the inbound connector does. */
export async function produce(endpoint: string, topic: string, values: string[]): Promise<void> {
  process.env.RUST_LOG ??= "off";
  // biome-ignore lint/suspicious/noExplicitAny: CommonJS interop, see src/source/fluvio.ts.
  const mod: any = await import("@fluvio/client");
  const Fluvio = typeof mod.default === "function" ? mod.default : mod.default.default;
  const [host, port] = endpoint.split(":") as [string, string];
  // biome-ignore lint/suspicious/noExplicitAny: the client's typings do not match its runtime.
  const fluvio: any = new (Fluvio as any)({ host, port: Number(port) });
  await fluvio.connect();
  const producer = await fluvio.topicProducer(topic);
  for (const v of values) await producer.sendRecord(v, 0);
  await producer.flush();
}
