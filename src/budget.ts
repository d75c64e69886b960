/**
 * How much a run may read: its memory budget turned into bytes of records, and the Lambda's memory
 * size turned into a memory budget.
 */

/**
 * What a batch holds in memory per byte of records read, at its peak (decoded events, the plan and
 * its statements' parameter arrays, garbage not yet collected), measured with peak RSS over whole
 * runs (README, Sizing) and rounded up.
 */
export const HELD_PER_BYTE_READ = 8;

/** Bytes of records a batch may hold within `memoryBudgetMb`. */
export function readBudgetBytes(memoryBudgetMb: number): number {
  return Math.floor((memoryBudgetMb * 1024 * 1024) / HELD_PER_BYTE_READ);
}

/** What a Lambda process needs besides the batch: Node, the AWS SDK, pg, the Fluvio client. */
export const LAMBDA_BASE_MB = 128;

/**
 * The memory budget of a Lambda with `memorySizeMb` (AWS_LAMBDA_FUNCTION_MEMORY_SIZE): what the
 * process does not need for itself, less a quarter kept for the Fluvio client's fetch buffers and
 * the garbage collector's slack.
 */
export function lambdaMemoryBudgetMb(memorySizeMb: number): number {
  return Math.max(16, Math.floor(((memorySizeMb - LAMBDA_BASE_MB) * 3) / 4));
}
