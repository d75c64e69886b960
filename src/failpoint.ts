/**
 * Named points where a run can be made to die abruptly (SIGKILL), for crash tests. Set
 * FLUVIO_PG_SINK_FAILPOINT to one of the names; unset, this does nothing.
 */
export type Failpoint = "after-lock" | "after-read" | "after-apply" | "before-commit" | "after-commit";

export function failpoint(name: Failpoint): void {
  if (process.env.FLUVIO_PG_SINK_FAILPOINT === name) process.kill(process.pid, "SIGKILL");
}
