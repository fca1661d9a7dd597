/**
 * @module
 * Affinity pins told between instances through Redis (`state.redis`): each instance publishes
 * where it places (`new`) or moves a pin, and applies what the others publish, in Redis's order
 * (its own messages come back too: of two instances placing the same value at once, the first
 * in Redis's order wins; an instance holding a settled pin answers a `new` elsewhere by telling
 * where the pin stands, so a starting instance does not pull moved pins back). Nothing is stored: an instance that starts learns pins as they are placed or moved
 * (until then the shared ring puts values where the others do); hits are not told (ttl is each
 * instance's own). One `PUBLISH` per placed or moved pin, never awaited by a request.
 */

import type { RedisLink } from "./link.ts";
import type { PinKind } from "../routing/affinity.ts";

/** The channel pins are told on (under the prefix). */
export const PINS = "pins";

/** A pin told by an instance: a pool, a value's hash, the key's id, `n` (new) or `m` (moved). */
export type PinMessage = [pool: string, hash: number, id: string, kind: "n" | "m"];

/** The longest message taken: a real one is under 300 characters. */
const MAX_MESSAGE = 1024;

/** Publishes and hears pins. */
export class SharedPins {
  readonly #link: RedisLink;
  #listener: ((pool: string, hash: number, id: string, kind: PinKind) => void) | undefined;

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
   * @param kind a first placement, or a move (see {@linkcode PinKind})
   */
  publish(pool: string, hash: number, id: string, kind: PinKind): void {
    if (!this.#link.up) return;
    const message: PinMessage = [pool, hash, id, kind === "new" ? "n" : "m"];
    this.#link.command(["PUBLISH", this.#link.prefix + PINS, JSON.stringify(message)])
      .catch(() => {});
  }

  /**
   * Sets who applies the pins heard (the application: its runtime in force).
   * @param listener told each pin, this instance's own included
   */
  listen(listener: (pool: string, hash: number, id: string, kind: PinKind) => void): void {
    this.#listener = listener;
  }

  #heard(message: string): void {
    if (message.length > MAX_MESSAGE) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (
      !Array.isArray(parsed) || parsed.length !== 4 || typeof parsed[0] !== "string" ||
      !Number.isSafeInteger(parsed[1]) || typeof parsed[2] !== "string" ||
      (parsed[3] !== "n" && parsed[3] !== "m")
    ) return;
    this.#listener?.(
      parsed[0],
      parsed[1] as number,
      parsed[2],
      parsed[3] === "n" ? "new" : "moved",
    );
  }
}
