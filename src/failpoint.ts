/**
 * Named points where a run can be made to die abruptly (SIGKILL), for crash tests. Set
 * FLUVIO_PG_SINK_FAILPOINT to one of the names; unset, this does nothing.
 */
export type Failpoint = "after-lock" | "after-read" | "after-apply" | "before-commit" | "after-commit";

export function failpoint(name: Failpoint): void {
  if (process.env.FLUVIO_PG_SINK_FAILPOINT === name) process.kill(process.pid, "SIGKILL");
}

/**
 * Named points where a run waits (FLUVIO_PG_SINK_PAUSE=<name>, FLUVIO_PG_SINK_PAUSE_MS, default
 * 2000), so a test can act on the target from outside between two of the run's queries.
 */
export async function pausepoint(name: Failpoint): Promise<void> {
  if (process.env.FLUVIO_PG_SINK_PAUSE !== name) return;
  const ms = Number(process.env.FLUVIO_PG_SINK_PAUSE_MS ?? 2000);
  await new Promise((resolve) => setTimeout(resolve, ms));
}
