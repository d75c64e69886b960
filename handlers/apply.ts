import { createApplyHandler } from "../src/lambda/apply.js";

/** The scheduled Lambda: one bounded batch per invocation (see README, Deployment). */
export const handler = createApplyHandler();
