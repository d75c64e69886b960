/**
 * Can the schedule keep up? From the last runs (kept in the state) this estimates how fast records
 * arrive at the source and how many the schedule can absorb, and how long catching up takes. Pure:
 * samples in, estimates out.
 */

/** Why a run's reading stopped. */
export type StopReason = "end" | "max_records" | "memory" | "time" | "transaction";

/** One successful run, as the state keeps it (JSON; offsets as strings, they are 64-bit). */
export interface RunSample {
  /** When the source's end was read, ms since the epoch. */
  at: number;
  /** The source's end offset then; null when unknown. */
  end: string | null;
  /**
   * File source: the byte position where that end offset starts (after the last complete line),
   * so the next run counts the lag from there instead of reading the rest of the file again.
   */
  end_position?: string;
  /** The next offset after the run. */
  next: string;
  records: number;
  /** Bytes of records read into the batch (UTF-16 code units; bytes for ASCII JSON). */
  bytes: number;
  /** The run's duration up to its commit. */
  ms: number;
  /** The time the run had (its deadline less its start). */
  budget_ms: number;
  stopped_by: StopReason;
}

/** Runs kept in the state. */
export const HISTORY_RUNS = 10;
/** Runs the arrival rate must have exceeded the capacity over before the sink says so. */
export const OUTRUN_RUNS = 5;

export interface Throughput {
  /** Records per second arriving at the source, over the runs kept; null with fewer than two. */
  arrival_rate: number | null;
  /** Records per second the schedule can absorb: records a run can take / the schedule's interval. */
  capacity: number | null;
  /** Seconds until the lag is 0 at these rates; 0 when caught up; null when unknown or never. */
  time_to_catch_up: number | null;
  /** capacity > arrival_rate (true also when caught up and nothing is known yet); null when unknown. */
  keeping_up: boolean | null;
  /** Records one run can take within its budget: measured from runs a limit stopped, else modelled. */
  records_per_run: number | null;
  /** The schedule's interval: configured, else the median spacing of the runs kept. */
  schedule_interval_seconds: number | null;
  /** The source outran the schedule over the last OUTRUN_RUNS runs or more, and the lag did not shrink. */
  outrun: boolean;
}

export interface Budget {
  /** schedule_interval_seconds, when configured. */
  intervalSeconds: number | null;
  /** An explicit max_records (or a reduced batch limit), else null. */
  maxRecords: number | null;
  /** Bytes of records a batch may hold (the memory budget). */
  readBytes: number;
}

const LIMITED: StopReason[] = ["max_records", "memory", "time"];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The records left after a sample, when its end is known. */
export function lagOf(s: RunSample): number | null {
  if (s.end === null) return null;
  const d = BigInt(s.end) - BigInt(s.next);
  return d > 0n ? Number(d) : 0;
}

/** Appends a run to the history, keeping the last HISTORY_RUNS. */
export function appendSample(history: RunSample[], sample: RunSample): RunSample[] {
  return [...history, sample].slice(-HISTORY_RUNS);
}

/**
 * Records one run can take within its budget. Runs that a limit stopped (max_records, the memory
 * budget, the part of the deadline kept for reading) show it directly. Otherwise every run finished
 * the source early, and it is modelled from the runs that applied records: their speed (records per
 * ms of the whole run, so fixed costs make it conservative) over half the run's time (reading stops
 * there), the memory budget over the mean record size, and max_records.
 */
export function recordsPerRun(history: RunSample[], budget: Budget): number | null {
  const limited = history.filter((s) => s.records > 0 && LIMITED.includes(s.stopped_by));
  if (limited.length > 0) return median(limited.map((s) => s.records));
  const busy = history.filter((s) => s.records > 0 && s.ms > 0);
  if (busy.length === 0) return null;
  const records = busy.reduce((n, s) => n + s.records, 0);
  const ms = busy.reduce((n, s) => n + s.ms, 0);
  const bytes = busy.reduce((n, s) => n + s.bytes, 0);
  const last = history[history.length - 1] as RunSample;
  const byTime = (records / ms) * (last.budget_ms / 2);
  const byMemory = bytes > 0 ? budget.readBytes / (bytes / records) : Number.POSITIVE_INFINITY;
  return Math.floor(Math.min(byTime, byMemory, budget.maxRecords ?? Number.POSITIVE_INFINITY));
}

/**
 * Arrival rate, capacity and time to catch up from the runs kept. `lag` is the records left now
 * (status reads the source's end afresh); by default the last run's.
 */
export function estimateThroughput(
  history: RunSample[],
  budget: Budget,
  lag: number | null = history.length > 0 ? lagOf(history[history.length - 1] as RunSample) : null,
): Throughput {
  const known = history.filter((s) => s.end !== null);
  const first = known[0];
  const last = known[known.length - 1];
  let arrival: number | null = null;
  if (first && last && last.at > first.at)
    arrival =
      Number(BigInt(last.end as string) - BigInt(first.end as string)) / ((last.at - first.at) / 1000);
  const spacing = history.slice(1).map((s, i) => (s.at - (history[i] as RunSample).at) / 1000);
  const interval = budget.intervalSeconds ?? (spacing.length > 0 ? median(spacing) : null);
  const perRun = recordsPerRun(history, budget);
  const capacity = perRun !== null && interval !== null && interval > 0 ? perRun / interval : null;
  let keeping: boolean | null = null;
  if (arrival !== null && capacity !== null) keeping = capacity > arrival;
  else if (lag === 0) keeping = true;
  let catchUp: number | null = null;
  if (lag === 0) catchUp = 0;
  else if (lag !== null && arrival !== null && capacity !== null && capacity > arrival)
    catchUp = lag / (capacity - arrival);
  const firstLag = first ? lagOf(first) : null;
  const outrun =
    known.length >= OUTRUN_RUNS &&
    keeping === false &&
    lag !== null &&
    lag > 0 &&
    firstLag !== null &&
    lag >= firstLag;
  return {
    arrival_rate: arrival === null ? null : round(arrival),
    capacity: capacity === null ? null : round(capacity),
    time_to_catch_up: catchUp === null ? null : round(catchUp, 1),
    keeping_up: keeping,
    records_per_run: perRun,
    schedule_interval_seconds: interval === null ? null : round(interval),
    outrun,
  };
}
