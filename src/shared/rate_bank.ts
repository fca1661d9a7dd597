/**
 * @module
 * Client-key rate limits shared by every instance on one Redis: a token bucket per client in
 * Redis (capacity = requests per minute, refilled on Redis's clock), from which each instance
 * takes small batches (its local grant). A request spends a local token without waiting; a
 * grant running low is refilled in the background; only an empty one makes a request wait for
 * Redis. Grants left unused go back to the bucket. While Redis is down, the instance decides
 * alone with its {@linkcode RateLimiter}. Redis sees a hash of the client key, never the key.
 */

import { createHash } from "node:crypto";
import { type Clock, systemClock } from "../clock.ts";
import type { RateDecision, RateLimiter } from "../rate_limiter.ts";
import { type RedisLink, script } from "./link.ts";

/**
 * KEYS[1] the bucket; ARGV capacity (rpm), tokens wanted, tokens given back. Refills the bucket
 * (a missing one starts full), adds what is given back (capped at capacity), grants at most
 * min(want, max(1, floor(tokens / 8))) whole tokens. Replies {granted, tokens left × 1000,
 * ms until one token (0 when granted or nothing was wanted)}.
 */
const TAKE = script(`
local cap = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local give = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_ms = cap / 60000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = cap
  at = now
end
if now > at then
  tokens = tokens + (now - at) * per_ms
  at = now
end
tokens = math.min(cap, tokens + give)
local granted = 0
if want > 0 then
  granted = math.min(want, math.max(1, math.floor(tokens / 8)), math.floor(tokens))
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', at)
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / per_ms) + 1000)
local wait = 0
if want > 0 and granted == 0 then wait = math.ceil((1 - tokens) / per_ms) end
return {granted, math.floor(tokens * 1000), wait}
`);

/** How often unused grants are looked for. */
const SWEEP_MS = 250;

/** Options of {@linkcode SharedRateLimiter}. */
export interface SharedRateLimiterOptions {
  /** The link to the shared Redis. */
  link: RedisLink;
  /** Decides while Redis is down or fails; kept current with what passes while it is up. */
  local: RateLimiter;
  /** Monotonic time, for idle grants and remembered refusals. @default systemClock */
  clock?: Pick<Clock, "mono">;
  /** How long a local grant may sit unused before it goes back to the bucket. @default 1000 */
  idleMs?: number;
}

/** One script reply. */
interface Reply {
  granted: number;
  /** The bucket's tokens after the call. */
  tokens: number;
  /** Milliseconds until the bucket holds one token, when nothing was granted. */
  retryAfterMs: number;
}

/** What this instance knows of one client. */
interface Grant {
  /** The bucket's Redis key (a hash of the client key). */
  readonly key: string;
  rpm: number;
  /** Tokens taken from the bucket and not yet spent. */
  held: number;
  /** Size of the last batch granted. */
  batch: number;
  /** The bucket's tokens, as last seen. */
  seen: number;
  /** Last request, monotonic ms. */
  usedAt: number;
  /** Until then (monotonic ms) an empty grant is refused without asking Redis. */
  refusedUntil: number;
  /** The refill being asked for, shared by everyone waiting on it. */
  inflight: Promise<Reply | undefined> | undefined;
}

/**
 * The batch an instance asks for: 1 token per 20 rpm, between 1 and 10.
 * @param rpm the limit, requests per minute
 */
function batchOf(rpm: number): number {
  return Math.max(1, Math.min(10, Math.floor(rpm / 20)));
}

function parse(raw: unknown): Reply | undefined {
  if (!Array.isArray(raw) || raw.length !== 3) return undefined;
  const [granted, milli, wait] = raw as unknown[];
  if (typeof granted !== "number" || typeof milli !== "number" || typeof wait !== "number") {
    return undefined;
  }
  return { granted, tokens: milli / 1000, retryAfterMs: wait };
}

/** Token buckets by client, shared through Redis; same decisions as {@linkcode RateLimiter}. */
export class SharedRateLimiter {
  readonly #link: RedisLink;
  readonly #local: RateLimiter;
  readonly #clock: Pick<Clock, "mono">;
  readonly #idleMs: number;
  readonly #grants = new Map<string, Grant>();
  readonly #pending = new Set<Promise<unknown>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** @param options the link, the local limiter, the clock and the idle time */
  constructor(options: SharedRateLimiterOptions) {
    this.#link = options.link;
    this.#local = options.local;
    this.#clock = options.clock ?? systemClock;
    this.#idleMs = options.idleMs ?? 1000;
  }

  /**
   * Takes one request from a client's bucket. Answers at once while this instance holds tokens
   * of the client (or knows its bucket is empty); otherwise after one Redis call, shared by every
   * request of the client waiting at that moment. Never rejects: while Redis is down or fails,
   * the local limiter decides.
   * @param client identifies the bucket (the client key; only its hash reaches Redis)
   * @param rpm its limit, requests per minute (> 0)
   * @returns whether it may pass, with the header values
   */
  take(client: string, rpm: number): RateDecision | Promise<RateDecision> {
    const g = this.#grant(client, rpm);
    if (this.#closed || !this.#link.up) return this.#local.take(client, rpm);
    const now = this.#clock.mono();
    g.usedAt = now;
    if (g.held >= 1) return this.#spend(client, g);
    if (now < g.refusedUntil) return this.#decision(g, false, Math.ceil(g.refusedUntil - now));
    return this.#wait(client, g);
  }

  /** Number of clients known to this instance. */
  get size(): number {
    return this.#grants.size;
  }

  /** Stops the sweep, waits for the calls under way and gives every unused grant back. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarm();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    const back: Promise<unknown>[] = [];
    for (const g of this.#grants.values()) {
      if (g.held >= 1 && this.#link.up) back.push(this.#call(g, 0, g.held));
      g.held = 0;
    }
    await Promise.all(back);
  }

  #grant(client: string, rpm: number): Grant {
    let g = this.#grants.get(client);
    if (g === undefined) {
      const hash = createHash("sha256").update(client).digest("hex").slice(0, 32);
      g = {
        key: `${this.#link.prefix}rl:${hash}`,
        rpm,
        held: 0,
        batch: batchOf(rpm),
        seen: rpm,
        usedAt: 0,
        refusedUntil: 0,
        inflight: undefined,
      };
      this.#grants.set(client, g);
    }
    g.rpm = rpm;
    return g;
  }

  #spend(client: string, g: Grant): RateDecision {
    g.held -= 1;
    // the local view follows, so that a Redis going down does not hand out a fresh bucket
    this.#local.take(client, g.rpm);
    if (g.held <= g.batch / 2 && g.inflight === undefined) void this.#refill(g);
    return this.#decision(g, true, 0);
  }

  async #wait(client: string, g: Grant): Promise<RateDecision> {
    // each round either refuses, fails, or took at least one token from the bucket: it ends
    for (;;) {
      const reply = await (g.inflight ?? this.#refill(g));
      if (reply === undefined) return this.#local.take(client, g.rpm);
      if (g.held >= 1) return this.#spend(client, g);
      if (reply.granted === 0) return this.#decision(g, false, Math.max(1, reply.retryAfterMs));
      // the batch went to requests that were waiting too: ask again
    }
  }

  #refill(g: Grant): Promise<Reply | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    const p: Promise<Reply | undefined> = this.#call(g, batchOf(g.rpm), 0).finally(() => {
      if (g.inflight === p) g.inflight = undefined;
    });
    g.inflight = p;
    return p;
  }

  /** One script call; undefined when Redis cannot answer (never rejects). */
  #call(g: Grant, want: number, give: number): Promise<Reply | undefined> {
    const p = this.#link.run(TAKE, [g.key], [String(g.rpm), String(want), String(give)])
      .then((raw) => {
        const reply = parse(raw);
        if (reply === undefined) return undefined;
        g.seen = reply.tokens;
        if (reply.granted > 0) {
          g.held += reply.granted;
          g.batch = reply.granted;
          g.refusedUntil = 0;
          this.#arm();
        } else if (want > 0) {
          g.refusedUntil = this.#clock.mono() + reply.retryAfterMs;
        }
        return reply;
      }, () => undefined)
      .finally(() => this.#pending.delete(p));
    this.#pending.add(p);
    return p;
  }

  /** Gives back the grants unused for the idle time; stops when no grant is held. */
  #sweep(): void {
    const now = this.#clock.mono();
    let holding = false;
    for (const g of this.#grants.values()) {
      if (g.held < 1) continue;
      if (g.inflight !== undefined || now - g.usedAt < this.#idleMs || !this.#link.up) {
        holding = true;
        continue;
      }
      const n = g.held;
      g.held = 0;
      void this.#call(g, 0, n);
    }
    if (!holding) this.#disarm();
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#closed) return;
    const timer = setInterval(() => this.#sweep(), SWEEP_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #disarm(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #decision(g: Grant, allowed: boolean, retryAfterMs: number): RateDecision {
    const left = Math.max(0, Math.min(g.rpm, g.seen + g.held));
    return {
      allowed,
      limit: g.rpm,
      remaining: Math.floor(left),
      retryAfterMs,
      resetMs: Math.ceil((g.rpm - left) / (g.rpm / 60_000)),
    };
  }
}
