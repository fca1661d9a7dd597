/**
 * @module
 * One lease per upstream attempt, in the spirit of grpc's `PickResult.Done`: the pool hands out
 * `{candidate, done(outcome)}` and the lease owns everything one attempt changes outside
 * itself: the health board's begin and end, the key's budgets (a request taken at the start;
 * tokens, the provider's word and an exhaustion at the end), the set of open attempts shutdown
 * cuts, the attempt's cancellation (its control disposed), latency, tokens, and the strategy's
 * outcome hook. `done` runs its work exactly once, whichever path ends the attempt (failure, success,
 * a stream's end, a client leaving, a shutdown cut); a second call does nothing.
 */

import type { Clock } from "../clock.ts";
import type { HealthBoard } from "../health/board.ts";
import type { AttemptClass } from "../health/classify.ts";
import type { LatencyTracker } from "../admin/latency.ts";
import type { Logger } from "../logger.ts";
import type {
  AttemptOutcome,
  Candidate,
  CandidateState,
  PickContext,
  Strategy,
} from "../plugin.ts";
import type { AttemptControl, OpenAttempts } from "./attempt_control.ts";
import type { Usage } from "./usage.ts";
import type { Budgets, SpendScope } from "../budget/book.ts";
import type { LearnedBudgets } from "../budget/headers.ts";
import type { AffinityResult } from "../routing/affinity.ts";
import { latencySample } from "../routing/peak_ewma.ts";

/** What the leases of an application share: where one attempt's end is written down. */
export interface LeaseLedger {
  readonly board: HealthBoard;
  /** Attempts in flight or being relayed, so shutdown can cut them. */
  readonly open: OpenAttempts;
  readonly latency: LatencyTracker;
  /** Every key's budgets. */
  readonly budgets: Budgets;
  readonly clock: Clock;
  /** Told when a strategy's `done` hook throws. */
  readonly logger: Logger;
  /** Told after every attempt ended (a key may have become usable: waiters try again). */
  readonly released?: (() => void) | undefined;
}

/** How an attempt ended, as its lease is told. */
export interface LeaseEnd {
  cls: AttemptClass;
  /** The upstream's HTTP status, when it answered. */
  status?: number | undefined;
  /** For rate limits and quota: when the provider says the key may be used again (epoch ms). */
  retryAt?: number | undefined;
  /** Tokens the upstream reported. */
  usage?: Usage | undefined;
  /** `clock.mono()` when the attempt ended (read now when not given). */
  at?: number | undefined;
  /** Whether the answer was an event stream. @default false */
  stream?: boolean | undefined;
  /** What the upstream's response headers said of the key's budgets, when they did. */
  learned?: LearnedBudgets | undefined;
  /**
   * For `quota`: whether the key is spent for this model only or for every model (it is out
   * until the provider's reset, else its next daily reset). @default "key"
   */
  scope?: SpendScope | undefined;
}

/** Who picked a leased candidate, and what it was told. */
export interface Picked {
  readonly strategy: Strategy;
  readonly ctx: PickContext;
  /** How affinity routing chose the key, when the request carried an affinity value. */
  readonly affinity?: AffinityResult | undefined;
}

/** The classes that say nothing about the key: they would have happened on any. */
function telling(cls: AttemptClass): boolean {
  return cls !== "client_abort" && cls !== "bad_request" && cls !== "stale";
}

/** One attempt's hold on a candidate. */
export class Lease {
  readonly candidate: Candidate;
  /** Whether this attempt is the candidate's half-open trial. */
  readonly trial: boolean;
  /** `clock.mono()` when the lease was taken (the attempt's start). */
  readonly startedAt: number;
  /**
   * Whether the key's budgets let the attempt go: true at once, or (budgets shared through
   * Redis, the key's grant empty) a promise of one round trip; false: the cluster's budget is
   * spent, nothing may be sent, and the lease must be {@linkcode Lease.withdraw}n.
   */
  readonly reserved: true | Promise<boolean>;
  /** How affinity routing chose the key (undefined when the pool's strategy did). */
  readonly affinity: AffinityResult | undefined;
  readonly #ledger: LeaseLedger;
  /** The strategy that picked, and what it was told: its `done` hook hears the outcome. */
  readonly #picked: Picked | undefined;
  #control: AttemptControl | undefined;
  #ttfbMs: number | undefined;
  /** Epoch ms when the attempt took its request from the key's budgets. */
  #takenAt: number;
  /** Whether that request was owed to the shared bank (Redis was down). */
  #owed: boolean;
  #ended = false;

  /**
   * Takes a lease: the attempt starts now (in-flight, request count, half-open trial).
   * @param ledger the board, open attempts, latency and clock
   * @param candidate the picked candidate
   * @param picked the pool's strategy and what it was told when it picked: its `done` hook
   *   hears the outcome
   */
  constructor(ledger: LeaseLedger, candidate: Candidate, picked?: Picked) {
    this.#ledger = ledger;
    this.candidate = candidate;
    this.#picked = picked;
    this.affinity = picked?.affinity;
    this.trial = ledger.board.begin(candidate);
    this.#takenAt = ledger.clock.now();
    this.#owed = ledger.budgets.owes(candidate);
    const taken = ledger.budgets.take(candidate, picked?.ctx.model, this.#takenAt);
    this.reserved = taken === true ? true : taken.then((r) => {
      // Redis went down while it waited: the request is owed, and a refund cancels the debt
      if (r === "owed") this.#owed = true;
      return r !== "refused";
    });
    this.startedAt = ledger.clock.mono();
  }

  /** Whether `done` has run. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Holds the attempt's control until the lease ends: shutdown can cut it meanwhile, and
   * `done` disposes of it (its deadlines and its watch on the client).
   * @param control the attempt's control
   */
  hold(control: AttemptControl): void {
    this.#control = control;
    if (this.#ended) control.dispose();
    else this.#ledger.open.add(control);
  }

  /**
   * Takes in at once what the answer's headers said of the key's budgets (a stream that lasts
   * must not hold them until its end, when newer answers may have said less is left).
   * @param learned the headers, read
   */
  learn(learned: LearnedBudgets): void {
    if (this.#ended) return;
    const ledger = this.#ledger;
    ledger.budgets.learn(this.candidate, this.#picked?.ctx.model, learned, ledger.clock.now());
  }

  /**
   * Records that the first body bytes came.
   * @param at `clock.mono()` then (read now when not given)
   */
  firstByte(at: number = this.#ledger.clock.mono()): void {
    this.#ttfbMs ??= at - this.startedAt;
  }

  /**
   * Ends a lease whose attempt never started: the key's shared budget was spent, or the request
   * ended while it waited for it. The key's in-flight count and request count are undone,
   * nothing else is recorded. Runs once, like `done`.
   * @param refund whether the budgets took a request that must be given back (it was granted)
   */
  withdraw(refund = false): void {
    if (this.#ended) return;
    this.#ended = true;
    const ledger = this.#ledger;
    const c = this.candidate;
    if (refund) {
      ledger.budgets.refund(
        c,
        this.#picked?.ctx.model,
        this.#takenAt,
        ledger.clock.now(),
        this.#owed,
      );
    }
    const control = this.#control;
    if (control !== undefined) {
      control.dispose();
      ledger.open.delete(control);
    }
    ledger.board.withdraw(c, this.trial);
    ledger.released?.();
  }

  /**
   * Ends the attempt: releases its control, tells the board how it ended, counts its tokens,
   * records its latency (successes) and tells the strategy. Runs once; later calls do nothing.
   * @param end the attempt's class, status, provider's reset time and tokens
   */
  done(end: LeaseEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    const ledger = this.#ledger;
    const c = this.candidate;
    const control = this.#control;
    if (control !== undefined) {
      control.dispose();
      ledger.open.delete(control);
    }
    const latencyMs = (end.at ?? ledger.clock.mono()) - this.startedAt;
    const usage = end.usage;
    if (usage !== undefined) {
      const s = c.state as CandidateState; // the live store record: the lease counts its tokens
      s.promptTokens += usage.promptTokens;
      s.completionTokens += usage.completionTokens;
      s.totalTokens += usage.totalTokens;
    }
    const budgets = ledger.budgets;
    const model = this.#picked?.ctx.model;
    const now = ledger.clock.now();
    // a request that never used the provider's quota is given back first; what the provider
    // said then wins
    const cls = end.cls;
    if (cls === "connect" || cls === "stale" || cls === "auth") {
      budgets.refund(c, model, this.#takenAt, now, this.#owed);
    }
    if (end.learned !== undefined) budgets.learn(c, model, end.learned, now);
    const quota = end.cls === "quota";
    ledger.board.end(c, end.cls, {
      status: end.status,
      trial: this.trial,
      retryAt: end.retryAt,
      // an exhausted quota is the budgets' to keep: out until the reset, for the model or the key
      rest: !quota,
    });
    if (quota) {
      const scope = end.scope ?? "key";
      const until = budgets.exhaust(c, model, scope, end.retryAt, now);
      ledger.logger.warn(
        scope === "model"
          ? "key out of quota for a model until its reset"
          : "key out of quota until its reset",
        {
          upstream: c.upstream.name,
          key: c.mask,
          model: scope === "model" ? model : undefined,
          until: new Date(until).toISOString(),
        },
      );
    }
    budgets.settle(c, usage, now);
    ledger.released?.();
    if (cls === "ok") ledger.latency.record(c.id, latencyMs);
    // the peak-EWMA /stats shows, by the rule p2c follows too
    const sample = latencySample(cls, end.stream === true, this.#ttfbMs, latencyMs);
    if (sample !== undefined) ledger.latency.observe(c.id, sample, now);
    const picked = this.#picked;
    if (picked?.strategy.done === undefined) return;
    const outcome: AttemptOutcome = {
      cls: end.cls,
      status: end.status,
      latencyMs,
      ttfbMs: this.#ttfbMs,
      usage,
      stream: end.stream === true,
      telling: telling(end.cls),
    };
    try {
      picked.strategy.done(c, outcome, picked.ctx);
    } catch (err) {
      ledger.logger.error("strategy done() hook failed", {
        upstream: c.upstream.name,
        key: c.mask,
        error: ledger.logger.redact(err instanceof Error ? err.message : String(err)),
      });
    }
  }
}
