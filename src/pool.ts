/**
 * @module
 * A pool: the candidates (upstream keys) that serve one model, their stable order, priority
 * tiers, and the snapshot of available ones the strategy picks from. The snapshot is rebuilt
 * only when availability may have changed (the health board's epoch moved, or a rest or
 * ejection expired), so a pick costs the strategy's work and nothing else.
 */

import type { Candidate, PickContext, Strategy } from "./plugin.ts";
import { isAvailable, returnsAt, statusOf } from "./health/availability.ts";
import { allowsModel, atCapacity, modelReturnsAt } from "./budget/book.ts";
import type { HealthBoard } from "./health/board.ts";
import { Lease, type LeaseLedger } from "./proxy/lease.ts";
import { type AffinitySource, DEFAULT_AFFINITY, DEFAULT_AFFINITY_ROUTING } from "./config/types.ts";
import type { AffinityResult, AffinityRouter } from "./routing/affinity.ts";
import { PickTerms } from "./routing/pick_terms.ts";
import type { SlowStart } from "./routing/slow_start.ts";

/** Counts of candidates by status, and when the first unusable one returns. */
export interface PoolSummary {
  total: number;
  available: number;
  disabled: number;
  /** Failed active probes (auth failures are counted in `authFailed`). */
  unhealthy: number;
  ejected: number;
  /** Resting for any reason (rate limit, quota, auth without probes). */
  resting: number;
  /** Spent for every model (a daily or per-minute budget, or the provider said none left). */
  spent: number;
  /** Usable otherwise, but spent for the request's model. */
  spentForModel: number;
  /** Usable otherwise, but at their concurrency cap. */
  busy: number;
  rateLimited: number;
  quota: number;
  authFailed: number;
  /**
   * Epoch ms when the earliest unusable candidate may come back by itself (for a key failing
   * its health checks: the next probe); Infinity if none will.
   */
  nextReturn: number;
}

/** The candidates of one model and the strategy choosing among them. */
export class Pool {
  readonly model: string;
  readonly strategyName: string;
  readonly candidates: readonly Candidate[];
  /** Where requests' affinity keys come from, first present wins. */
  readonly affinityBy: readonly AffinitySource[];
  /** How many characters of the prompt the `prefix` affinity source hashes. */
  readonly prefixChars: number;
  /** Models whose pools serve what this one cannot, in order. */
  readonly fallbacks: readonly string[];
  #strategy: Strategy;
  #fallback: Strategy;
  #board: HealthBoard;
  #epoch = -1;
  #wakeAt = 0;
  /** Available candidates by priority tier, best tier first; empty tiers left out. */
  #tiers: Candidate[][] = [];
  #onStrategyError: (err: unknown) => void;
  #ledger: LeaseLedger | undefined;
  /** Pins requests that carry an affinity value, when the pool routes by affinity. */
  readonly affinity: AffinityRouter | undefined;
  /** Returning keys' growing shares, when the pool has a slow start. */
  readonly slowStart: SlowStart | undefined;
  /** How the last pick with an affinity value was routed (read by `lease`). */
  #routed: AffinityResult | undefined;
  #terms: PickTerms;

  /**
   * @param init the model, candidates in stable order, the strategy, a fallback strategy used
   *   when the strategy throws or misbehaves, the health board, and the ledger leases write to
   *   (needed by {@linkcode Pool.lease})
   */
  constructor(init: {
    model: string;
    strategyName: string;
    candidates: readonly Candidate[];
    strategy: Strategy;
    fallback: Strategy;
    board: HealthBoard;
    ledger?: LeaseLedger;
    affinityBy?: readonly AffinitySource[];
    /** @default 2048 */
    prefixChars?: number;
    fallbacks?: readonly string[];
    affinity?: AffinityRouter | undefined;
    slowStart?: SlowStart | undefined;
    onStrategyError: (err: unknown) => void;
  }) {
    this.model = init.model;
    this.strategyName = init.strategyName;
    this.candidates = init.candidates;
    this.#strategy = init.strategy;
    this.#fallback = init.fallback;
    this.#board = init.board;
    this.#ledger = init.ledger;
    this.affinityBy = init.affinityBy ?? DEFAULT_AFFINITY;
    this.prefixChars = init.prefixChars ?? DEFAULT_AFFINITY_ROUTING.prefixChars;
    this.fallbacks = init.fallbacks ?? [];
    this.affinity = init.affinity;
    this.slowStart = init.slowStart;
    this.#terms = new PickTerms(init.slowStart, init.affinity?.maxLoad);
    this.#onStrategyError = init.onStrategyError;
  }

  /**
   * Picks a candidate and starts an attempt on it: the lease must be ended (`done`) exactly
   * once, however the attempt ends.
   * @param ctx the request
   * @param exclude candidates not to pick
   * @returns the lease, or undefined when no candidate is available
   * @throws {Error} when the pool was built without a ledger
   */
  lease(ctx: PickContext, exclude?: (c: Candidate) => boolean): Lease | undefined {
    const c = this.pick(ctx, exclude);
    if (c === undefined) return undefined;
    if (this.#ledger === undefined) throw new Error("Pool.lease() needs a ledger");
    return new Lease(this.#ledger, c, { strategy: this.#strategy, ctx, affinity: this.#routed });
  }

  /**
   * Returns the available candidates of the best tier that has any.
   * @param now epoch ms
   */
  available(now: number): readonly Candidate[] {
    this.#refresh(now);
    return this.#tiers[0] ?? [];
  }

  /**
   * Picks a candidate for an attempt.
   * @param ctx the request (model, attempt number)
   * @param exclude candidates not to pick (already tried for this request); when every
   *   available candidate is excluded, returns undefined
   * @returns the candidate, or undefined when none is available
   */
  pick(ctx: PickContext, exclude?: (c: Candidate) => boolean): Candidate | undefined {
    const now = this.#board.now();
    this.#refresh(now);
    this.#routed = undefined;
    const model = ctx.model;
    const value = this.affinity === undefined ? undefined : ctx.affinityKey;
    for (const tier of this.#tiers) {
      let list = exclude ? tier.filter((c) => !exclude(c)) : tier;
      if (list.length === 0) continue;
      if (value !== undefined) {
        const router = this.affinity!;
        const terms = this.#terms.set(list, now, model, exclude);
        const routed = router.route(value, now, terms);
        if (routed === undefined) continue;
        if (routed.candidate !== undefined) {
          this.#routed = routed.result;
          return routed.candidate;
        }
        // a detour: the strategy picks among the others; none: the pinned key after all
        const pinned = routed.pinned;
        const others = list.filter((c) => c !== pinned && terms.accept(c));
        const other = others.length === 0 ? undefined : this.#choose(others, ctx, now, exclude);
        if (other !== undefined && others.includes(other)) {
          router.detoured(true);
          this.#routed = "detour";
          return other;
        }
        if (!terms.accept(pinned)) continue;
        router.detoured(false);
        this.#routed = "hit";
        return pinned;
      }
      let chosen = this.#choose(list, ctx, now, exclude);
      if (chosen !== undefined && (atCapacity(chosen) || !allowsModel(chosen, model, now))) {
        // at its concurrency cap, or spent for this model (the snapshot holds the keys usable
        // for any model, however busy): choose again among the keys that can take it
        const fits = (c: Candidate) => !atCapacity(c) && allowsModel(c, model, now);
        list = list.filter(fits);
        chosen = list.length === 0 ? undefined : this.#choose(list, ctx, now, exclude);
        if (chosen !== undefined && !fits(chosen)) {
          // the strategy named a key it was not offered
          this.#onStrategyError(
            new Error(`Strategy "${this.strategyName}" returned a non-candidate`),
          );
          chosen = this.#fallback.pick(list, ctx);
        }
      }
      if (chosen !== undefined && this.slowStart?.ramping(now) === true) {
        chosen = this.#ramp(chosen, list, ctx, now, exclude);
      }
      if (chosen !== undefined) return chosen;
    }
    if (this.#tiers.length > 0) return undefined;
    return this.#panic(now, exclude, model);
  }

  /**
   * Tells whether a pick would find a candidate, without asking the strategy (so its state,
   * e.g. a round-robin cursor, does not move).
   * @param exclude candidates not to count
   * @param model the request's model: keys spent for it are not counted
   * @returns whether any available candidate (or a panic candidate) is left
   */
  any(exclude?: (c: Candidate) => boolean, model?: string): boolean {
    const now = this.#board.now();
    this.#refresh(now);
    for (const tier of this.#tiers) {
      const usable = (c: Candidate) =>
        (exclude === undefined || !exclude(c)) && !atCapacity(c) && allowsModel(c, model, now);
      if (tier.some(usable)) {
        return true;
      }
    }
    return this.#tiers.length === 0 && this.#panic(now, exclude, model) !== undefined;
  }

  /**
   * Counts candidates by status.
   * @param now epoch ms
   * @param model the request's model: keys spent for it count as `spentForModel`, and their
   *   return for it counts in `nextReturn`
   */
  summary(now: number, model?: string): PoolSummary {
    const sum: PoolSummary = {
      total: this.candidates.length,
      available: 0,
      disabled: 0,
      unhealthy: 0,
      ejected: 0,
      resting: 0,
      spent: 0,
      spentForModel: 0,
      busy: 0,
      rateLimited: 0,
      quota: 0,
      authFailed: 0,
      nextReturn: Infinity,
    };
    for (const c of this.candidates) {
      const s = c.state;
      if (isAvailable(s, now)) {
        if (!allowsModel(c, model, now)) {
          sum.spentForModel++;
          const back = modelReturnsAt(c, model, now);
          if (back < sum.nextReturn) sum.nextReturn = back;
        } else if (atCapacity(c)) {
          sum.busy++;
          // a slot frees when a request ends: soon, but no time can be told
          if (now + 1000 < sum.nextReturn) sum.nextReturn = now + 1000;
        } else sum.available++;
        continue;
      }
      const st = statusOf(s, now);
      if (st === "disabled") sum.disabled++;
      else if (st === "spent") sum.spent++;
      else if (st === "unhealthy") {
        if (s.unhealthyReason.startsWith("auth")) sum.authFailed++;
        else sum.unhealthy++;
      } else if (st === "resting") {
        sum.resting++;
        if (s.restReason === "rate_limited") sum.rateLimited++;
        else if (s.restReason === "quota") sum.quota++;
        else if (s.restReason === "auth") sum.authFailed++;
      } else sum.ejected++;
      let back = returnsAt(s, now);
      // an unhealthy key with a health check may be back at its next probe
      const hc = c.upstream.config.healthCheck;
      if (back === Infinity && st === "unhealthy" && hc !== undefined) back = now + hc.intervalMs;
      if (back < sum.nextReturn) sum.nextReturn = back;
    }
    return sum;
  }

  #choose(
    list: readonly Candidate[],
    ctx: PickContext,
    now: number,
    exclude: ((c: Candidate) => boolean) | undefined,
  ): Candidate | undefined {
    let chosen: Candidate | undefined;
    try {
      chosen = this.#strategy.pick(list, ctx);
    } catch (err) {
      this.#onStrategyError(err);
      return this.#fallback.pick(list, ctx);
    }
    // undefined is an answer: none of these may serve (e.g. weight 0 under `weighted`)
    if (chosen === undefined) return undefined;
    if (
      typeof chosen !== "object" || chosen === null || this.candidates[chosen.index] !== chosen ||
      chosen.priority !== list[0]!.priority || !isAvailable(chosen.state, now) ||
      (exclude !== undefined && exclude(chosen))
    ) {
      this.#onStrategyError(
        new Error(`Strategy "${this.strategyName}" returned a non-candidate`),
      );
      return this.#fallback.pick(list, ctx);
    }
    return chosen;
  }

  /**
   * Slow start under any strategy: a ramping key the strategy chose keeps the request while it
   * has taken less than its share of the pool's recent requests (see `SlowStart.admit`);
   * otherwise the strategy chooses again among keys at full share.
   */
  #ramp(
    chosen: Candidate,
    list: readonly Candidate[],
    ctx: PickContext,
    now: number,
    exclude: ((c: Candidate) => boolean) | undefined,
  ): Candidate {
    const slow = this.slowStart!;
    let weights = 0;
    for (const c of list) weights += c.weight;
    const fair = Math.max(1 / list.length, weights > 0 ? chosen.weight / weights : 0);
    if (slow.admit(chosen, now, fair)) return chosen;
    const model = ctx.model;
    const full = list.filter((c) =>
      slow.share(c, now) >= 1 && !atCapacity(c) && allowsModel(c, model, now)
    );
    if (full.length === 0) return chosen;
    const other = this.#choose(full, ctx, now, exclude);
    return other !== undefined && full.includes(other) ? other : chosen;
  }

  /** Every candidate is out and some only for ejection: try the least recently failed. */
  #panic(
    now: number,
    exclude: ((c: Candidate) => boolean) | undefined,
    model: string | undefined,
  ): Candidate | undefined {
    let best: Candidate | undefined;
    for (const c of this.candidates) {
      const s = c.state;
      if (statusOf(s, now) !== "ejected" || s.trialInFlight) continue;
      // a panic pick still keeps to a key's concurrency cap and its budget for the model
      if (exclude?.(c) || atCapacity(c) || !allowsModel(c, model, now)) continue;
      if (best === undefined || s.lastFailureAt < best.state.lastFailureAt) best = c;
    }
    return best;
  }

  #refresh(now: number): void {
    if (this.#epoch === this.#board.epoch && now < this.#wakeAt) return;
    this.#epoch = this.#board.epoch;
    const byTier = new Map<number, Candidate[]>();
    let wake = Infinity;
    for (const c of this.candidates) {
      if (isAvailable(c.state, now)) {
        let tier = byTier.get(c.priority);
        if (tier === undefined) byTier.set(c.priority, tier = []);
        tier.push(c);
      } else {
        const back = returnsAt(c.state, now);
        if (back < wake) wake = back;
      }
    }
    this.#wakeAt = wake;
    this.slowStart?.note(this.candidates, now);
    this.#tiers = [...byTier.entries()].sort((a, b) => a[0] - b[0]).map(([, list]) => list);
  }
}
