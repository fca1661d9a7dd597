/**
 * @module
 * Affinity routing for one pool: requests that carry the same affinity value (a prompt cache
 * key, a user, a session header, a prompt prefix) go to the same key, so the provider's prompt
 * cache hits. A value's first request walks the pool's consistent-hash ring from the value's
 * point to the first key that can take it and holds fewer than its bounded share of the pins
 * ("consistent hashing with bounded loads", Mirrokni, Thorup and Zadimoghaddam 2018: no key
 * holds more than `max_load` × the mean), and pins the value there. Later requests follow the
 * pin while that key can serve. When the pinned key is resting, spent, ejected or disabled the
 * request walks on from the value's point and the pin moves with it, and stays moved (that
 * key's cache is now the warm one); a key merely busy or already tried by this request is
 * detoured around without moving the pin. Pins live `ttl` after their last use, at most
 * {@linkcode MAX_PINS} per pool (beyond, the least recently used of the eight earliest placed
 * goes); a reload keeps them, except the pins of a removed key and the
 * values whose home on the ring becomes an added key (about 1/n of them).
 *
 * A hit costs one hash of the value and one map lookup. An expired pin is never followed (the
 * lookup checks its age); expired pins are dropped by a sweep of the whole map at most every
 * quarter of the ttl (a minute at most), run by a request (no timer): 100,000 pins take ~2 ms.
 */

import type { Candidate } from "../plugin.ts";
import { hash53, ringPoint } from "./hash.ts";
import { HashRing } from "./ring.ts";

/** The most pins one pool holds; beyond it, the earliest placed go first. */
export const MAX_PINS = 100_000;
/** How many of the earliest placed pins an eviction weighs. */
const EVICT_LOOK = 8;
/** The longest time between two sweeps of expired pins. */
const MAX_SWEEP_EVERY_MS = 60_000;

/**
 * How a request with an affinity value was routed: `hit` followed its pin; `new` placed the
 * value's first pin; `moved` found the pinned key out of service and moved the pin; `detour`
 * went around a pinned key that was busy or already tried, keeping the pin.
 */
export type AffinityResult = "hit" | "new" | "moved" | "detour";

/**
 * Where a request goes: its key, and how it was chosen; or, for a `detour`, no key (the pool's
 * strategy picks among the others, then calls {@linkcode AffinityRouter.detoured}) and the
 * pinned key to go around.
 */
export type Routed =
  | { candidate: Candidate; result: "hit" | "new" | "moved"; pinned?: undefined }
  | { candidate: undefined; result: "detour"; pinned: Candidate };

/** Counts of routed requests, by result. */
export interface AffinityCounts {
  hit: number;
  new: number;
  moved: number;
  detour: number;
}

/** What the pool tells the router about one pick. */
export interface RouteTerms {
  /**
   * Whether a key may take this request now: in the tier being picked from, not excluded,
   * not at its concurrency cap, not spent for the model.
   */
  accept(c: Candidate): boolean;
  /** Whether a pin on a key that cannot take this request stays (it is busy or tried, not out). */
  keep(c: Candidate): boolean;
  /**
   * Whether a key has more requests in flight than `max_load` × the mean of the keys picked
   * from (this one counted): its pinned requests go around it, so no key takes much more than
   * its share of the traffic however hot its pins are.
   */
  overloaded(c: Candidate): boolean;
  /**
   * The share of new pins a key may take now, in [0, 1] (below 1 while it slow-starts, 0 for a
   * key that takes pins only when no other can): a key is passed over with probability
   * 1 − share when another can take the pin, bound or not.
   */
  share(c: Candidate): number;
  /** How many keys the pins are shared among (the keys of the tier picked from). */
  readonly keys: number;
}

/** Options of {@linkcode AffinityRouter}. */
export interface AffinityRouterOptions {
  /** The pool's candidates, in stable order (`candidates[i].index === i`). */
  readonly candidates: readonly Candidate[];
  /** Milliseconds a pin lives after its last use. */
  readonly ttlMs: number;
  /** The most pins a key holds, as a multiple of the mean (>= 1). */
  readonly maxLoad: number;
  /** Returns a number in [0, 1) (slow start's draws). */
  readonly random: () => number;
  /** The most pins held. @default MAX_PINS */
  readonly maxPins?: number;
  /**
   * Told where a value was pinned (`new`) or moved, or where a pin stands when another instance
   * placed the value elsewhere without knowing it (`moved` again): to tell other instances (see
   * {@linkcode AffinityRouter.apply}). @default none
   */
  readonly onPlaced?: ((hash: number, key: Candidate, kind: PinKind) => void) | undefined;
}

/**
 * How a pin told between instances came to be: `new`, a first placement (a weak claim: an
 * instance that already holds the value's pin keeps it and says where it is), or `moved` (its
 * key was out, or an instance says where the pin stands: followed by every instance).
 */
export type PinKind = "new" | "moved";

interface Pin {
  /** The key's index in the pool. */
  owner: number;
  /** Epoch ms of the last request that followed or placed it. */
  last: number;
  /** Its place in the eviction queue (see `#queue`). */
  seq: number;
  /** Placed here, told as `new`, and not yet heard back from Redis. */
  pending: boolean;
}

/** The pins of one pool, and the ring they are placed on. */
export class AffinityRouter {
  readonly candidates: readonly Candidate[];
  readonly ttlMs: number;
  readonly maxLoad: number;
  readonly ring: HashRing;
  /** Routed requests by result, since the pool's first configuration (kept over reloads). */
  readonly counts: AffinityCounts = { hit: 0, new: 0, moved: 0, detour: 0 };
  /** Pins by the value's hash. */
  #pins = new Map<number, Pin>();
  /**
   * Hashes in the order their pins were placed (or given a second chance), for eviction: entry
   * `seq - #queueBase` is the pin whose `seq` it is; entries whose pin is gone (expired, or
   * queued again since) are skipped when reached.
   */
  #queue: number[] = [];
  #queueHead = 0;
  #queueBase = 0;
  /** Epoch ms of the next sweep of expired pins. */
  #sweepAt = 0;
  /** Pins held per key, by index. */
  #load: Uint32Array;
  /** Per key: the walk that last looked at it (each key is weighed once per walk). */
  #seen: Uint32Array;
  #walk = 0;
  #random: () => number;
  #maxPins: number;
  #onPlaced: ((hash: number, key: Candidate, kind: PinKind) => void) | undefined;
  /** Key index by id, for pins told by other instances. */
  #byId: Map<string, number>;

  /** @param options the pool's candidates, ttl, bound and randomness */
  constructor(options: AffinityRouterOptions) {
    this.candidates = options.candidates;
    this.ttlMs = options.ttlMs;
    this.maxLoad = Math.max(1, options.maxLoad);
    this.#random = options.random;
    this.#maxPins = options.maxPins ?? MAX_PINS;
    this.#onPlaced = options.onPlaced;
    this.#byId = new Map(options.candidates.map((c) => [c.id, c.index]));
    this.ring = new HashRing(options.candidates.map((c) => c.id));
    this.#load = new Uint32Array(options.candidates.length);
    this.#seen = new Uint32Array(options.candidates.length);
  }

  /** How many pins are held. */
  get size(): number {
    return this.#pins.size;
  }

  /**
   * How many pins a key holds.
   * @param index the key's index in the pool
   */
  pinsOf(index: number): number {
    return this.#load[index] ?? 0;
  }

  /**
   * Routes a request that carries an affinity value.
   * @param value the request's affinity value
   * @param now epoch ms
   * @param terms which keys may take it, which pins stay, and slow start's shares
   * @returns the key and how it was chosen, or undefined when no key may take the request
   */
  route(
    value: string,
    now: number,
    terms: RouteTerms,
  ): Routed | undefined {
    if (now >= this.#sweepAt) this.#sweep(now);
    const hash = hash53(value);
    const pins = this.#pins;
    let pin = pins.get(hash);
    if (pin !== undefined && now - pin.last >= this.ttlMs) {
      pins.delete(hash);
      this.#load[pin.owner]!--;
      pin = undefined;
    }
    if (pin !== undefined) {
      const pinned = this.candidates[pin.owner]!;
      if (terms.accept(pinned) && !terms.overloaded(pinned)) {
        pin.last = now;
        this.counts.hit++;
        return { candidate: pinned, result: "hit" };
      }
      if (terms.keep(pinned) || terms.accept(pinned)) {
        // busy, tried or hot: the pin stays; the pool's strategy picks among the others
        pin.last = now;
        return { candidate: undefined, result: "detour", pinned };
      }
      // out of service: the pin moves to where the walk goes, and stays there
      this.#load[pin.owner]!--;
      const next = this.#place(hash, terms, pins.size);
      if (next === undefined) {
        this.#load[pin.owner]!++;
        return undefined;
      }
      pin.owner = next.index;
      pin.last = now;
      pin.pending = false;
      this.#load[next.index]!++;
      this.counts.moved++;
      this.#onPlaced?.(hash, next, "moved");
      return { candidate: next, result: "moved" };
    }
    const next = this.#place(hash, terms, pins.size + 1);
    if (next === undefined) return undefined;
    if (pins.size >= this.#maxPins) this.#evict();
    const told = this.#onPlaced !== undefined;
    pins.set(hash, { owner: next.index, last: now, seq: this.#enqueue(hash), pending: told });
    this.#load[next.index]!++;
    this.counts.new++;
    this.#onPlaced?.(hash, next, "new");
    return { candidate: next, result: "new" };
  }

  /**
   * Takes in a pin told by an instance (this one's own come back too), in Redis's order. A
   * `moved` pin is followed. A `new` one is taken when this instance holds no live pin for the
   * value, or holds one it placed itself that Redis has not echoed yet (the other placement came
   * first); when it holds a settled pin on another key, the sender did not know it: this
   * instance tells everyone where the pin stands (`moved`), so a starting instance does not pull
   * moved pins back to the ring. A key this pool does not have is ignored; nothing is counted.
   * @param hash the value's hash
   * @param id the key's id
   * @param kind how the pin came to be @default "moved"
   * @param now epoch ms
   */
  apply(hash: number, id: string, now: number, kind: PinKind = "moved"): void {
    const owner = this.#byId.get(id);
    if (owner === undefined) return;
    const pins = this.#pins;
    let pin = pins.get(hash);
    if (pin !== undefined && now - pin.last >= this.ttlMs) {
      pins.delete(hash);
      this.#load[pin.owner]!--;
      pin = undefined;
    }
    if (pin === undefined) {
      if (pins.size >= this.#maxPins) this.#evict();
      pins.set(hash, { owner, last: now, seq: this.#enqueue(hash), pending: false });
      this.#load[owner]!++;
      return;
    }
    if (kind === "new" && pin.owner !== owner && !pin.pending) {
      this.#onPlaced?.(hash, this.candidates[pin.owner]!, "moved");
      return;
    }
    pin.pending = false;
    if (pin.owner !== owner) {
      this.#load[pin.owner]!--;
      this.#load[owner]!++;
      pin.owner = owner;
    }
    if (now > pin.last) pin.last = now;
  }

  /**
   * Counts a request that went around its pinned key (see {@linkcode Routed}), or, when no
   * other key could take it, went to the pinned key after all.
   * @param around whether it went to another key
   */
  detoured(around: boolean): void {
    if (around) this.counts.detour++;
    else this.counts.hit++;
  }

  /**
   * Takes over the pins and counts of the same pool's router under the previous configuration
   * (a reload): a pin stays while its key is still in the pool, unless the value's home on the
   * new ring is a key the pool did not have (an added key takes its share of the values, placed
   * again on their next request); the pins of a removed key go.
   * @param previous the router being replaced
   */
  adopt(previous: AffinityRouter): void {
    Object.assign(this.counts, previous.counts);
    const before = new Set(previous.candidates.map((c) => c.id));
    const added = this.candidates.some((c) => !before.has(c.id));
    for (const [hash, pin] of previous.#pins) {
      const owner = this.#byId.get(previous.candidates[pin.owner]!.id);
      if (owner === undefined) continue;
      if (added) {
        const home = this.candidates[this.ring.home(ringPoint(hash))]!;
        if (home.index !== owner && !before.has(home.id)) continue;
      }
      this.#pins.set(hash, { owner, last: pin.last, seq: this.#enqueue(hash), pending: false });
      this.#load[owner]!++;
    }
  }

  /**
   * Walks the ring from a value's point to the key that takes its pin: the first that may take
   * the request, is not passed over (slow start, weight 0: see {@linkcode RouteTerms.share}),
   * is not overloaded and holds fewer pins than the bound; else the first not passed over nor
   * overloaded; else the first not passed over; else the first that may take the request.
   * @param hash the value's hash
   * @param terms the pool's terms
   * @param total the pins held once this one is placed
   */
  #place(hash: number, terms: RouteTerms, total: number): Candidate | undefined {
    const ring = this.ring;
    const size = ring.size;
    if (size === 0) return undefined;
    const keys = Math.max(1, terms.keys);
    // the bound: max_load × the mean, never below the mean rounded up (room for every pin)
    const bound = Math.max(Math.floor(this.maxLoad * total / keys), Math.ceil(total / keys));
    const walk = ++this.#walk;
    if (walk === 0xffffffff) {
      this.#seen.fill(0);
      this.#walk = 1;
    }
    const seen = this.#seen;
    const stamp = this.#walk;
    const all = this.candidates.length;
    let distinct = 0;
    let overBound: Candidate | undefined;
    let admitted: Candidate | undefined;
    let any: Candidate | undefined;
    let at = ring.first(ringPoint(hash));
    for (let step = 0; step < size && distinct < all; step++) {
      const owner = ring.owner(at);
      if (++at === size) at = 0;
      if (seen[owner] === stamp) continue;
      seen[owner] = stamp;
      distinct++;
      const c = this.candidates[owner]!;
      if (!terms.accept(c)) continue;
      any ??= c;
      const share = terms.share(c);
      if (share < 1 && !(share > 0 && this.#random() < share)) continue;
      if (terms.overloaded(c)) {
        admitted ??= c;
        continue;
      }
      if (this.#load[owner]! < bound) return c;
      overBound ??= c;
    }
    return overBound ?? admitted ?? any;
  }

  /** Drops every expired pin, and sets the next sweep's time. */
  #sweep(now: number): void {
    this.#sweepAt = now + Math.min(MAX_SWEEP_EVERY_MS, Math.max(1, this.ttlMs / 4));
    const ttl = this.ttlMs;
    for (const [hash, pin] of this.#pins) {
      if (now - pin.last < ttl) continue;
      this.#pins.delete(hash);
      this.#load[pin.owner]!--;
    }
  }

  /**
   * Makes room for one pin, at a cost that does not grow with the map: of the
   * {@linkcode EVICT_LOOK} earliest placed, the least recently used goes and the others go to the
   * end of the queue (a second chance for a conversation still going on).
   */
  #evict(): void {
    const pins = this.#pins;
    const looked: [number, Pin][] = [];
    while (looked.length < EVICT_LOOK) {
      const hash = this.#dequeue();
      if (hash === undefined) break;
      const pin = pins.get(hash);
      // a pin expired since, or queued again since: its entry is stale
      if (pin === undefined || pin.seq !== this.#queueHead - 1 + this.#queueBase) continue;
      looked.push([hash, pin]);
    }
    let victim = 0;
    for (let i = 1; i < looked.length; i++) {
      if (looked[i]![1].last < looked[victim]![1].last) victim = i;
    }
    looked.forEach(([hash, pin], i) => {
      if (i === victim) {
        pins.delete(hash);
        this.#load[pin.owner]!--;
      } else pin.seq = this.#enqueue(hash);
    });
  }

  /**
   * Puts a hash at the end of the eviction queue; returns its place. A queue grown past twice
   * the pins (entries of pins gone since) is first rebuilt from its live entries.
   */
  #enqueue(hash: number): number {
    if (this.#queue.length - this.#queueHead > 2 * this.#pins.size + 1024) this.#rebuild();
    this.#queue.push(hash);
    return this.#queueBase + this.#queue.length - 1;
  }

  /** Keeps only the queue's live entries, in order, and renumbers their pins. */
  #rebuild(): void {
    const live: number[] = [];
    const base = this.#queueBase + this.#queue.length;
    for (let i = this.#queueHead; i < this.#queue.length; i++) {
      const hash = this.#queue[i]!;
      const pin = this.#pins.get(hash);
      if (pin === undefined || pin.seq !== this.#queueBase + i) continue;
      pin.seq = base + live.length;
      live.push(hash);
    }
    this.#queue = live;
    this.#queueBase = base;
    this.#queueHead = 0;
  }

  /** Takes the hash at the front of the eviction queue, compacting it now and then. */
  #dequeue(): number | undefined {
    const queue = this.#queue;
    if (this.#queueHead >= queue.length) return undefined;
    const hash = queue[this.#queueHead++]!;
    if (this.#queueHead > 1024 && this.#queueHead * 2 > queue.length) {
      // the consumed front goes: places stay what they were (the base moves with it)
      this.#queue = queue.slice(this.#queueHead);
      this.#queueBase += this.#queueHead;
      this.#queueHead = 0;
      return hash;
    }
    return hash;
  }
}
