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
import type { WaitQueue, WaitQueues } from "./wait_queue.ts";

/** What {@linkcode firstLease} needs. */
export interface AcquireDeps {
  poolFor(model: string | undefined): Pool | undefined;
  /** The wait queues. */
  readonly queues: WaitQueues<Pool>;
  readonly clock: Clock;
  readonly queue: QueueConfig;
  /** Whether llm-balance is shutting down: nobody waits any more. */
  stopping(): boolean;
}

/** A lease, and the pool and model it was taken for (a fallback's, when one served). */
export interface Acquired {
  lease: Lease | undefined;
  pool: Pool;
  /** The model of the pool that leased (the fallback's model, when a fallback serves). */
  model: string | undefined;
}

/**
 * Takes the first lease of a request: at once; else from a fallback that can serve now when
 * the pool's keys are spent, resting or down (not merely busy); else after waiting in the
 * queue; else from a fallback after all.
 * @param deps pools, queues, clock and queue settings
 * @param pool the request's pool
 * @param pick the request, as the strategy sees it
 * @param signal the client's signal (a client that leaves stops waiting)
 * @param triedNow the caller already asked the pool at once (and got nothing): not again
 * @returns the lease (undefined when none could be had) and the pool and model it serves
 * @throws {ProxyError} 503 `queue_full` when the wait queue is full and no fallback serves
 */
export async function firstLease(
  deps: AcquireDeps,
  pool: Pool,
  pick: PickContext,
  signal: () => AbortSignal,
  triedNow = false,
): Promise<Acquired> {
  const model = pick.model;
  const queues = deps.queues;
  // first come first served: while others wait (or were woken), a new request queues behind
  let lease = triedNow || queues.waiting(pool, model) > 0 ? undefined : pool.lease(pick);
  if (lease !== undefined) return { lease, pool, model };
  const { maxWaitMs, maxLength } = deps.queue;
  const s = pool.summary(deps.clock.now(), model);
  // keys at their cap, or a key free only because a woken waiter has not taken it yet
  const busy = s.busy > 0 || (queues.waiting(pool, model) > 0 && s.available > 0);
  if (!busy || maxWaitMs <= 0) {
    const other = fallbackLease(deps, pool, pick);
    if (other !== undefined) return other;
  }
  if (maxWaitMs > 0 && !deps.stopping()) {
    if (queues.waiting(pool, model) >= maxLength) {
      const other = busy ? fallbackLease(deps, pool, pick) : undefined;
      if (other !== undefined) return other;
      queues.stats(pool).refused++;
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
    const queue = queues.of(pool, model);
    try {
      lease = await waitInQueue(deps, pool, queue, pick, signal(), maxWaitMs);
    } finally {
      queues.release(pool, model);
    }
    if (lease !== undefined || signal().aborted || deps.stopping()) return { lease, pool, model };
  }
  return fallbackLease(deps, pool, pick) ?? { lease: undefined, pool, model };
}

async function waitInQueue(
  deps: AcquireDeps,
  pool: Pool,
  queue: WaitQueue,
  pick: PickContext,
  signal: AbortSignal,
  maxWaitMs: number,
): Promise<Lease | undefined> {
  const { clock } = deps;
  const start = clock.mono();
  const until = start + maxWaitMs;
  const ticket = queue.ticket();
  for (;;) {
    const left = until - clock.mono();
    if (left <= 0 || deps.stopping()) return undefined;
    const now = clock.now();
    const s = pool.summary(now, pick.model);
    // usable keys the strategy would not pick (weight 0, say): only a release can change that;
    // a key at its concurrency cap counts as back in a second (a release wakes us sooner)
    const returnIn = s.available > 0 ? left : s.nextReturn - now;
    // nothing comes back in time (every key spent until tomorrow): answer at once; a key that
    // is only busy frees when a request ends, which wakes the queue: worth the whole wait
    if (s.busy === 0 && returnIn > left) return undefined;
    const end = await queue.wait(Math.min(left, Math.max(returnIn, 1)), signal, ticket);
    if (end === "aborted") return undefined;
    const head = queue.head;
    if (end === "timeout" && head !== undefined && head < ticket) {
      // a key may be back, but an earlier request waits for it: it goes first
      queue.wakeOne();
      continue;
    }
    const lease = deps.stopping() ? undefined : pool.lease(pick);
    if (end === "woken") queue.settled();
    if (lease !== undefined) {
      const stats = deps.queues.stats(pool);
      stats.waited++;
      stats.waitedMs += clock.mono() - start;
      // more may be free: let the next waiter try too
      if (queue.length > 0) queue.wakeOne();
      return lease;
    }
  }
}

/**
 * A lease from the first of a pool's model fallbacks that can serve now.
 * @param deps the pools
 * @param pool the pool that cannot serve
 * @param pick the request, as the strategy sees it (its model becomes the fallback's)
 * @returns the lease with its pool and model, or undefined when no fallback can serve
 */
export function fallbackLease(
  deps: Pick<AcquireDeps, "poolFor">,
  pool: Pool,
  pick: PickContext,
): Acquired | undefined {
  for (const fallback of pool.fallbacks) {
    const other = deps.poolFor(fallback);
    if (other === undefined || other === pool) continue;
    const lease = other.lease({ ...pick, model: fallback });
    if (lease !== undefined) return { lease, pool: other, model: fallback };
  }
  return undefined;
}

/**
 * The pools a request could still be served by: its own and its fallbacks', in order.
 * @param deps the pools
 * @param pool the request's pool
 */
export function withFallbacks(deps: Pick<AcquireDeps, "poolFor">, pool: Pool): Pool[] {
  const out = [pool];
  for (const fallback of pool.fallbacks) {
    const other = deps.poolFor(fallback);
    if (other !== undefined && !out.includes(other)) out.push(other);
  }
  return out;
}
