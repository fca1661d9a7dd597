/**
 * @module
 * Requests and errors over the last 15 minutes, for the dashboard: a ring of 90 buckets of 10 s
 * per pool and one over every pool. O(1) per request and constant memory per pool; a bucket
 * older than the ring is told apart by its stamp, so nothing has to run on a timer.
 */

import { counted } from "./metrics.ts";
import type { RequestContext } from "../plugin.ts";
import type { Pool } from "../pool.ts";

/** The width of one bucket in ms. */
export const STEP_MS = 10_000;
/** How many buckets a series holds (15 minutes). */
export const BUCKETS = 90;

/** What the requests-per-second figures average over, in ms. */
const RATE_WINDOW_MS = 60_000;

/** A pool's (or every pool's) series, oldest first. */
export interface Series {
  step_s: number;
  requests: number[];
  errors: number[];
}

/** Requests and errors per second. */
export interface Rates {
  requests_per_s: number;
  errors_per_s: number;
}

/** Answers that count as errors beside statuses >= 500 and 429: how a failed response ended. */
const FINE_OUTCOMES: ReadonlySet<string> = new Set(["complete", "client_abort", "bad_request"]);

class Ring {
  /** The bucket number (epoch ms / STEP_MS) each slot holds; -1 for none yet. */
  readonly stamps = new Float64Array(BUCKETS).fill(-1);
  readonly requests = new Uint32Array(BUCKETS);
  readonly errors = new Uint32Array(BUCKETS);

  add(bucket: number, error: boolean): void {
    const slot = bucket % BUCKETS;
    if (this.stamps[slot] !== bucket) {
      this.stamps[slot] = bucket;
      this.requests[slot] = 0;
      this.errors[slot] = 0;
    }
    this.requests[slot]!++;
    if (error) this.errors[slot]!++;
  }

  /** Sums buckets [from, to] (bucket numbers). */
  sum(from: number, to: number): [number, number] {
    let requests = 0;
    let errors = 0;
    for (let b = Math.max(0, from); b <= to; b++) {
      const slot = b % BUCKETS;
      if (this.stamps[slot] !== b) continue;
      requests += this.requests[slot]!;
      errors += this.errors[slot]!;
    }
    return [requests, errors];
  }
}

/**
 * What a finished request adds to the timeline: nothing for llm-balance's own endpoints (stats,
 * the dashboard, health), else one request in the pool that served it (the fallback's when one
 * did), an error when its status was >= 500 or 429 or its response failed on the way.
 * @param ctx the request's context, after its response ended
 * @param poolFor finds the pool of a model (the runtime's)
 * @returns whether it counts, the name of its pool (`default` for the default pool; undefined
 *   when no pool took it), and whether it was an error
 */
export function entryOf(
  ctx: RequestContext,
  poolFor: (model: string | undefined) => Pool | undefined,
): { pool: string | undefined; error: boolean } | undefined {
  const l = ctx.log;
  if (!counted(ctx)) return undefined;
  const model = l.servedModel ?? l.model;
  const pool = l.attempts > 0 || model !== undefined ? poolFor(model) : undefined;
  const error = l.status >= 500 || l.status === 429 ||
    (l.outcome !== undefined && !FINE_OUTCOMES.has(l.outcome));
  return { pool: pool === undefined ? undefined : nameOf(pool), error };
}

/**
 * A pool's name as the dashboard shows it.
 * @param pool the pool
 * @returns its model, or `default` for the default pool
 */
export function nameOf(pool: Pool): string {
  return pool.model === "*" ? "default" : pool.model;
}

/** Options of {@linkcode Timeline}. */
export interface TimelineOptions {
  /** Wall-clock time, epoch ms. @default Date.now */
  now?: () => number;
}

/** Requests and errors per 10 s bucket, per pool and in all, over the last 15 minutes. */
export class Timeline {
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #all = new Ring();
  /** Pool name → its ring (names come from the configuration, never from requests). */
  readonly #pools = new Map<string, Ring>();

  /** @param options the clock */
  constructor(options: TimelineOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  /**
   * Counts one finished request.
   * @param pool the name of the pool that served it; undefined counts it in the total only
   * @param error whether it failed
   */
  record(pool: string | undefined, error: boolean): void {
    const bucket = Math.floor(this.#now() / STEP_MS);
    this.#all.add(bucket, error);
    if (pool === undefined) return;
    let ring = this.#pools.get(pool);
    if (ring === undefined) this.#pools.set(pool, ring = new Ring());
    ring.add(bucket, error);
  }

  /**
   * The last 15 minutes, oldest bucket first, the current (partial) one last.
   * @param pool a pool's name; undefined for every pool together
   * @param now epoch ms @default the clock's
   */
  series(pool?: string, now: number = this.#now()): Series {
    const ring = this.#ring(pool);
    const requests = new Array<number>(BUCKETS).fill(0);
    const errors = new Array<number>(BUCKETS).fill(0);
    const last = Math.floor(now / STEP_MS);
    if (ring !== undefined) {
      for (let i = 0; i < BUCKETS; i++) {
        const b = last - BUCKETS + 1 + i;
        const slot = b % BUCKETS;
        if (b < 0 || ring.stamps[slot] !== b) continue;
        requests[i] = ring.requests[slot]!;
        errors[i] = ring.errors[slot]!;
      }
    }
    return { step_s: STEP_MS / 1000, requests, errors };
  }

  /**
   * Requests and errors per second over about the last minute: the current bucket and the six
   * before it, divided by the time they span (or the time since start, when shorter).
   * @param pool a pool's name; undefined for every pool together
   * @param now epoch ms @default the clock's
   */
  rates(pool?: string, now: number = this.#now()): Rates {
    const ring = this.#ring(pool);
    if (ring === undefined) return { requests_per_s: 0, errors_per_s: 0 };
    const last = Math.floor(now / STEP_MS);
    const buckets = RATE_WINDOW_MS / STEP_MS;
    const [requests, errors] = ring.sum(last - buckets, last);
    const spanMs = Math.min(RATE_WINDOW_MS + now - last * STEP_MS, now - this.#startedAt);
    const seconds = Math.max(1, spanMs / 1000);
    return { requests_per_s: round(requests / seconds), errors_per_s: round(errors / seconds) };
  }

  #ring(pool: string | undefined): Ring | undefined {
    return pool === undefined ? this.#all : this.#pools.get(pool);
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
