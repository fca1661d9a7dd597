/**
 * @module
 * The first lease of a request, when its pool has no usable key at once: it waits in the
 * pool's queue for the first key that comes back (within `queue.max_wait`, first come first
 * served, and only when a key can come back in that time), and otherwise goes to the pool's
 * model fallbacks, in order. A request arriving while others wait takes its turn behind them.
 */

import type { Clock } from "../clock.ts";
import type { QueueConfig } from "../config/types.ts";
import { ProxyError } from "../errors.ts";
import type { PickContext } from "../plugin.ts";
import type { Pool } from "../pool.ts";
import type { Lease } from "./lease.ts";
import type { WaitQueue } from "./wait_queue.ts";

/** What {@linkcode firstLease} needs. */
export interface AcquireDeps {
  poolFor(model: string | undefined): Pool | undefined;
  /** The queue of a pool. */
  queueFor(pool: Pool): WaitQueue;
  readonly clock: Clock;
  readonly queue: QueueConfig;
}

/** A lease, and the pool and model it was taken for (a fallback's, when one served). */
export interface Acquired {
  lease: Lease | undefined;
  pool: Pool;
  /** The model of the pool that leased (the fallback's model, when a fallback serves). */
  model: string | undefined;
}

/**
 * Takes the first lease of a request: at once, after waiting in the queue, or from a fallback.
 * @param deps pools, queues, clock and queue settings
 * @param pool the request's pool
 * @param pick the request, as the strategy sees it
 * @param signal the client's signal (a client that leaves stops waiting)
 * @returns the lease (undefined when none could be had) and the pool and model it serves
 * @throws {ProxyError} 503 `queue_full` when the wait queue is full
 */
export async function firstLease(
  deps: AcquireDeps,
  pool: Pool,
  pick: PickContext,
  signal: () => AbortSignal,
): Promise<Acquired> {
  const model = pick.model;
  const queue = deps.queueFor(pool);
  // first come first served: while others wait, a new request queues behind them
  let lease = queue.length === 0 ? pool.lease(pick) : undefined;
  if (lease !== undefined) return { lease, pool, model };
  const { maxWaitMs, maxLength } = deps.queue;
  if (maxWaitMs > 0) {
    lease = await waitInQueue(deps, pool, queue, pick, signal(), maxWaitMs, maxLength);
    if (lease !== undefined || signal().aborted) return { lease, pool, model };
  }
  for (const fallback of pool.fallbacks) {
    const other = deps.poolFor(fallback);
    if (other === undefined || other === pool) continue;
    const taken = other.lease({ ...pick, model: fallback });
    if (taken !== undefined) return { lease: taken, pool: other, model: fallback };
  }
  return { lease: undefined, pool, model };
}

async function waitInQueue(
  deps: AcquireDeps,
  pool: Pool,
  queue: WaitQueue,
  pick: PickContext,
  signal: AbortSignal,
  maxWaitMs: number,
  maxLength: number,
): Promise<Lease | undefined> {
  const { clock } = deps;
  const start = clock.mono();
  const until = start + maxWaitMs;
  let front = false;
  for (;;) {
    const left = until - clock.mono();
    if (left <= 0) return undefined;
    const now = clock.now();
    const s = pool.summary(now, pick.model);
    // a key at its concurrency cap counts as back in a second (a release wakes us sooner)
    const returnIn = s.available > 0 ? 0 : s.nextReturn - now;
    // nothing comes back in time (every key spent until tomorrow): answer at once
    if (returnIn > left) return undefined;
    if (!front && queue.length >= maxLength) {
      queue.refused++;
      throw new ProxyError(
        `Too many requests are waiting for a key of this pool (${maxLength}); retry later`,
        {
          status: 503,
          type: "service_unavailable",
          code: "queue_full",
          retry: { afterSeconds: Math.max(1, Math.ceil(maxWaitMs / 1000)), retry: true },
        },
      );
    }
    // woken by a release or an operator, else at the first return (or the end of the wait)
    const end = await queue.wait(Math.min(left, Math.max(returnIn, 1)), signal, front);
    if (end === "aborted") return undefined;
    const lease = pool.lease(pick);
    if (lease !== undefined) {
      queue.waited++;
      queue.waitedMs += clock.mono() - start;
      // more may be free: let the next waiter try too
      if (queue.length > 0) queue.wakeOne();
      return lease;
    }
    front = true;
  }
}
