/**
 * @module
 * What the stats, metrics and admin views read: the runtime in force, the health board, the
 * latency samples, the clock and the start time. The application provides it; the views never
 * see more.
 */

import type { HealthBoard } from "../health/board.ts";
import type { Runtime } from "../runtime.ts";
import type { LatencyTracker } from "./latency.ts";
import type { Budgets } from "../budget/book.ts";
import type { Pool } from "../pool.ts";
import type { WaitQueues } from "../proxy/wait_queue.ts";
import type { Cluster } from "../shared/cluster.ts";

/** The state the views read. */
export interface StatsSource {
  /** The runtime in force. */
  readonly rt: Runtime;
  readonly board: HealthBoard;
  readonly latency: LatencyTracker;
  /** Every key's budgets (an operator's reset clears them too). */
  readonly budgets: Budgets;
  /** Requests waiting for a key, per pool. */
  readonly queues: WaitQueues<Pool>;
  /** State shared with other instances through Redis, when `state.redis` is set. */
  readonly cluster?: Cluster | undefined;
  /** Epoch ms when the application started. */
  readonly startedAt: number;
  /** Wall-clock time, epoch ms. */
  now(): number;
  /** Wakes requests waiting for a key (keys were enabled or reset). */
  wake(): void;
}
