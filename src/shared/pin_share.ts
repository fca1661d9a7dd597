/**
 * @module
 * Affinity pins told between instances through Redis (`state.redis`): each instance publishes
 * where it places or moves a pin, and applies what the others publish, in Redis's order (its
 * own messages come back too, so two instances placing the same value at once end on the same
 * key). Nothing is stored: an instance that starts learns pins as they are placed or moved
 * (until then the shared ring puts values where the others do); hits are not told (ttl is each
 * instance's own). One `PUBLISH` per placed or moved pin, never awaited by a request.
 */

import type { RedisLink } from "./link.ts";

/** The channel pins are told on (under the prefix). */
export const PINS = "pins";

/** A pin told by an instance: a pool, a value's hash, the key's id. */
export type PinMessage = [pool: string, hash: number, id: string];

/** Publishes and hears pins. */
export class SharedPins {
  readonly #link: RedisLink;
  #listener: ((pool: string, hash: number, id: string) => void) | undefined;

  /** @param link the Redis link */
  constructor(link: RedisLink) {
    this.#link = link;
  }

  /** Subscribes to the channel (kept across reconnections). */
  async start(): Promise<void> {
    await this.#link.subscribe(PINS, (message) => this.#heard(message));
  }

  /**
   * Tells every instance where a pin is now; fails silently while Redis is down (each instance
   * then keeps its own pins).
   * @param pool the pool's model (`*` for the default pool)
   * @param hash the value's hash
   * @param id the key's id
   */
  publish(pool: string, hash: number, id: string): void {
    if (!this.#link.up) return;
    const message: PinMessage = [pool, hash, id];
    this.#link.command(["PUBLISH", this.#link.prefix + PINS, JSON.stringify(message)])
      .catch(() => {});
  }

  /**
   * Sets who applies the pins heard (the application: its runtime in force).
   * @param listener told each pin, this instance's own included
   */
  listen(listener: (pool: string, hash: number, id: string) => void): void {
    this.#listener = listener;
  }

  #heard(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (
      !Array.isArray(parsed) || parsed.length !== 3 || typeof parsed[0] !== "string" ||
      !Number.isSafeInteger(parsed[1]) || typeof parsed[2] !== "string"
    ) return;
    this.#listener?.(parsed[0], parsed[1] as number, parsed[2]);
  }
}
