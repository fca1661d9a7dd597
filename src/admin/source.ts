/**
 * @module
 * What the stats, metrics and admin views read: the runtime in force, the health board, the
 * latency samples, the clock and the start time. The application provides it; the views never
 * see more.
 */

import type { HealthBoard } from "../health/board.ts";
import type { Runtime } from "../runtime.ts";
import type { LatencyTracker } from "./latency.ts";

/** The state the views read. */
export interface StatsSource {
  /** The runtime in force. */
  readonly rt: Runtime;
  readonly board: HealthBoard;
  readonly latency: LatencyTracker;
  /** Epoch ms when the application started. */
  readonly startedAt: number;
  /** Wall-clock time, epoch ms. */
  now(): number;
}
