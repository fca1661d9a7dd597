/**
 * @module
 * What instances share through Redis (`state.redis`), in one place: the link, the shared key
 * state (rests, disables, ejections, spends; pushed to every instance), the budget bank
 * (atomic counters on Redis's clock, spent in local batches) and the client rate limits. The
 * application takes its store, bank and limiter from here; the commands open and close it.
 */

import type { RedisStateConfig } from "../config/types.ts";
import type { StateStore } from "../state_store.ts";
import { RedisStateStore } from "../state/redis_store.ts";
import { BudgetBank } from "../budget/bank.ts";
import { RateLimiter } from "../rate_limiter.ts";
import { type LinkLogger, RedisLink } from "./link.ts";
import { SharedRateLimiter } from "./rate_bank.ts";
import { SharedPins } from "./pin_share.ts";

/** Options of {@linkcode Cluster.open}. */
export interface ClusterOptions {
  /** This instance's view of key state (memory, or a file). */
  local: StateStore;
  logger: LinkLogger;
  /** @default Date.now */
  now?: () => number;
  /** Names this instance in Redis messages. @default a random id */
  instance?: string;
  /** Longest wait for a command before Redis counts as down. @default 500 */
  commandTimeoutMs?: number;
}

/** How the shared Redis is, for /health and /metrics. */
export interface ClusterStatus {
  /** The URL without its password. */
  redis: string;
  up: boolean;
  /** Whether traffic is refused while Redis is down. */
  required: boolean;
  /** Times Redis went down since start. */
  downs: number;
  instance: string;
}

/** The state instances share. */
export class Cluster {
  readonly link: RedisLink;
  readonly store: RedisStateStore;
  readonly bank: BudgetBank;
  readonly limiter: SharedRateLimiter;
  /** Affinity pins placed or moved, told between instances. */
  readonly pins: SharedPins;
  readonly required: boolean;
  readonly instance: string;

  private constructor(config: RedisStateConfig, options: ClusterOptions) {
    const now = options.now ?? Date.now;
    this.instance = options.instance ?? crypto.randomUUID().slice(0, 8);
    this.required = config.required;
    const linkOptions = {
      url: config.url,
      prefix: config.prefix,
      logger: options.logger,
      ...(options.commandTimeoutMs === undefined
        ? {}
        : { commandTimeoutMs: options.commandTimeoutMs }),
    };
    this.link = new RedisLink(linkOptions);
    this.store = new RedisStateStore({
      link: this.link,
      local: options.local,
      instance: this.instance,
      now,
    });
    this.bank = new BudgetBank({ link: this.link, now });
    this.limiter = new SharedRateLimiter({ link: this.link, local: new RateLimiter(now) });
    this.pins = new SharedPins(this.link);
  }

  /**
   * Makes the shared state of a configuration (not yet connected: see {@linkcode start}).
   * @param config `state.redis`
   * @param options the local store, logger and clock
   */
  static open(config: RedisStateConfig, options: ClusterOptions): Cluster {
    return new Cluster(config, options);
  }

  /**
   * Connects and reads the shared state of the keys known so far. A Redis that cannot be
   * reached is not an error: the instance serves on its local view and catches up when it
   * comes.
   * @param waitMs how long to wait for the first connection @default 2000
   * @returns whether Redis is up
   */
  async start(waitMs?: number): Promise<boolean> {
    const up = await this.link.start(waitMs);
    await this.store.start();
    await this.pins.start();
    return up;
  }

  /** Whether Redis is up now. */
  get up(): boolean {
    return this.link.up;
  }

  /** How Redis is. */
  status(): ClusterStatus {
    return {
      redis: this.link.display,
      up: this.link.up,
      required: this.required,
      downs: this.link.downs,
      instance: this.instance,
    };
  }

  /** Gives back grants, writes what is pending, and disconnects. */
  async close(): Promise<void> {
    await Promise.allSettled([this.bank.close(), this.limiter.close()]);
    await this.store.close();
    await this.link.close();
  }
}
