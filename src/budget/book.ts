/**
 * @module
 * The budget book: every key's daily and per-minute budgets, per model where they apply, kept
 * in the key's state record (so a persisted or shared store keeps them too). A lease takes one
 * request from a key's budgets when its attempt starts and settles tokens and what the provider
 * said when it ends. A key spent for every model (its day, its minute, or the provider's word)
 * is out of the pool's snapshot until its window rolls (`spentUntil`, read by the one
 * availability predicate); a key spent for one model is passed over for that model only.
 * Per-model entries name the model the upstream is sent, bounded (see `models.ts`).
 */

import type { Candidate, CandidateState, Usage } from "../plugin.ts";
import type { BudgetState, Learned, StateStore } from "../state_store.ts";
import type { QuotaConfig } from "../config/types.ts";
import type { Logger } from "../logger.ts";
import { dayStart, nextReset } from "./reset.ts";
import type { LearnedBudgets } from "./headers.ts";
import { modelSlot, readModel, upstreamModel } from "./models.ts";
import { type BudgetBank, type ClusterCounts, hasLimits, type Reservation } from "./bank.ts";

/** A minute, in milliseconds: the short window of `requests_per_minute`, `tokens_per_minute`. */
export const MINUTE = 60_000;

/** Why a key is spent, as stats and messages say it. */
export const SPENT_WHY: Record<string, string> = {
  day: "spent its daily requests",
  day_tokens: "spent its daily tokens",
  minute: "spent its requests for this minute",
  minute_tokens: "spent its tokens for this minute",
  provider: "has no requests left, says the provider",
  exhausted: "spent its quota",
};

/**
 * Starts a new daily window when the current one is over (or the clock was set back before it).
 * @param q the key's budgets
 * @param b its counters
 * @param now epoch ms
 */
function rollDay(q: Readonly<QuotaConfig>, b: BudgetState, now: number): void {
  if (now < b.dayEnd && now >= b.dayStart) return;
  b.dayStart = dayStart(now, q.reset, q.timeZone);
  b.dayEnd = nextReset(now, q.reset, q.timeZone);
  b.dayRequests = 0;
  b.dayTokens = 0;
  b.modelRequests = {};
  // what the provider said about yesterday, and model spends of yesterday, are over
  if (b.learned !== null && b.learned.until <= now) b.learned = null;
  for (const [m, l] of Object.entries(b.learnedModels)) {
    if (l.until <= now) delete b.learnedModels[m];
  }
  for (const [m, t] of Object.entries(b.modelSpentUntil)) if (t <= now) delete b.modelSpentUntil[m];
}

/** Starts a new minute window when the current one is over (or the clock was set back). */
function rollMinute(b: BudgetState, now: number): void {
  if (now >= b.minuteStart && now - b.minuteStart < MINUTE) return;
  b.minuteStart = now;
  b.minuteRequests = 0;
  b.minuteTokens = 0;
}

/**
 * Whether a key's concurrency cap is reached.
 * @param c the key
 */
export function atCapacity(c: Candidate): boolean {
  const max = c.quota.maxConcurrency;
  return max > 0 && c.state.inFlight >= max;
}

/**
 * Whether a key may take a request for a model, as far as that model's own budgets go (its
 * budgets for every model are in its availability: `spentUntil`).
 * @param c the key
 * @param model the request's model (the client's name: the upstream's mapping is applied)
 * @param now epoch ms
 */
export function allowsModel(c: Candidate, model: string | undefined, now: number): boolean {
  const m = upstreamModel(c, model);
  if (m === undefined) return true;
  const b = c.state.budget;
  const until = readModel(b.modelSpentUntil, m);
  if (until !== undefined && until > now) return false;
  const cap = c.quota.modelRequestsPerDay;
  return cap === 0 || now >= b.dayEnd || (readModel(b.modelRequests, m) ?? 0) < cap;
}

/**
 * When a key spent for a model may serve it again, by the passing of time alone.
 * @param c the key
 * @param model the model
 * @param now epoch ms
 * @returns epoch ms (`now` when it may already)
 */
export function modelReturnsAt(c: Candidate, model: string | undefined, now: number): number {
  const m = upstreamModel(c, model);
  if (m === undefined) return now;
  const b = c.state.budget;
  let t = now;
  const until = readModel(b.modelSpentUntil, m);
  if (until !== undefined && until > t) t = until;
  const cap = c.quota.modelRequestsPerDay;
  if (cap > 0 && now < b.dayEnd && (readModel(b.modelRequests, m) ?? 0) >= cap && b.dayEnd > t) {
    t = b.dayEnd;
  }
  return t;
}

/** Sets a key spent for every model until `until`, unless it already is for longer. */
function spend(b: BudgetState, until: number, reason: string): boolean {
  if (until <= b.spentUntil) return false;
  b.spentUntil = until;
  b.spentReason = reason;
  return true;
}

/** Sets a key spent for one model until `until`, unless it already is for longer. */
function spendModel(b: BudgetState, model: string, until: number): void {
  const slot = modelSlot(b.modelSpentUntil, model);
  if (until > (b.modelSpentUntil[slot] ?? 0)) b.modelSpentUntil[slot] = until;
}

/** Whether any of a key's budgets for every model is used up now. */
function full(q: Readonly<QuotaConfig>, b: BudgetState, now: number): boolean {
  const inMinute = now >= b.minuteStart && now - b.minuteStart < MINUTE;
  return (q.requestsPerDay > 0 && b.dayRequests >= q.requestsPerDay) ||
    (q.tokensPerDay > 0 && b.dayTokens >= q.tokensPerDay) ||
    (inMinute && q.requestsPerMinute > 0 && b.minuteRequests >= q.requestsPerMinute) ||
    (inMinute && q.tokensPerMinute > 0 && b.minuteTokens >= q.tokensPerMinute) ||
    (b.learned !== null && b.learned.until > now && b.learned.remaining <= 0);
}

/**
 * Sets a key's counters to the cluster's, as a grant of the shared bank found them (so that
 * the book counts on from there when Redis goes down).
 */
function mirror(c: Candidate, model: string | undefined, counts: ClusterCounts): void {
  const b = (c.state as CandidateState).budget;
  b.dayRequests = counts.dayRequests;
  b.dayTokens = counts.dayTokens;
  b.minuteRequests = counts.minuteRequests;
  b.minuteTokens = counts.minuteTokens;
  if (model !== undefined) {
    b.modelRequests[modelSlot(b.modelRequests, model)] = counts.modelRequests;
  }
}

/** A request beyond this instance's share while Redis is down: refused (not the key's spend). */
const BEYOND_SHARE: Promise<Reservation> = Promise.resolve("refused");

/** Options of {@linkcode Budgets}. */
export interface BudgetsOptions {
  /**
   * Told when a key's availability changed (it was spent, or is open again): pools rebuild
   * their snapshot. (A key at its concurrency cap stays in the snapshot: a pick passes over it.)
   */
  onChange: () => void;
  /**
   * Where budgets shared by instances are kept (Redis). Keys with configured limits take their
   * requests from it while it is up; the book counts alone while it is down. @default none
   */
  bank?: BudgetBank | undefined;
  /**
   * Told of each key whose spends changed, so a shared store writes them at once (they may
   * change after the attempt's last word to the store). @default none
   */
  store?: Pick<StateStore, "changed"> | undefined;
  /**
   * Told once each time a key becomes spent by its own budgets (the day's or the minute's
   * requests or tokens, or the provider's count): the log line the dashboard's events show.
   * An exhaustion answered by the provider is logged by the attempt's lease. @default none
   */
  logger?: Pick<Logger, "info"> | undefined;
}

/** How a quota answer (429 exhaustion, 402) is scoped. */
export type SpendScope = "key" | "model";

/** Keeps every key's budgets. */
export class Budgets {
  readonly #onChange: () => void;
  readonly #bank: BudgetBank | undefined;
  readonly #store: Pick<StateStore, "changed"> | undefined;
  readonly #logger: Pick<Logger, "info"> | undefined;
  #quotaRestMs = 0;

  /** @param options what to tell when availability changed, and the shared bank */
  constructor(options: BudgetsOptions) {
    this.#onChange = options.onChange;
    this.#store = options.store;
    this.#logger = options.logger;
    const bank = options.bank;
    this.#bank = bank;
    bank?.attach({
      refused: (c, model, why, until) => this.#refused(c, model, why, until),
      counts: (c, model, counts) => mirror(c, model, counts),
    });
  }

  /** The shared bank, when there is one. */
  get bank(): BudgetBank | undefined {
    return this.#bank;
  }

  /** The shared bank refused a key (for a model): out until `until`. */
  #refused(c: Candidate, model: string | undefined, why: string, until: number): void {
    const b = (c.state as CandidateState).budget;
    if (why === "model" && model !== undefined) {
      spendModel(b, model, until);
      this.#onChange();
    } else if (this.#spend(c, until, why)) this.#onChange();
    this.#store?.changed(c.id);
  }

  /**
   * Sets a key spent for every model until `until` (see `spend`), and logs it when a spell
   * starts: the line the dashboard's events show (an exhaustion is logged by the lease).
   */
  #spend(c: Candidate, until: number, reason: string): boolean {
    const b = (c.state as CandidateState).budget;
    if (!spend(b, until, reason)) return false;
    this.#logger?.info("key spent its budget until its reset", {
      upstream: c.upstream.name,
      key: c.mask,
      reason: SPENT_WHY[reason] ?? reason,
      until: new Date(until).toISOString(),
    });
    return true;
  }

  /**
   * Sets the longest time an exhaustion without a provider's reset time keeps a key out
   * (`health.quota_rest`; 0: until the key's next daily reset).
   * @param quotaRestMs milliseconds, 0 for none
   */
  configure(quotaRestMs: number): void {
    this.#quotaRestMs = quotaRestMs;
  }

  /**
   * Takes one request from a key's budgets as an attempt starts (after the board counted it in
   * flight): today's and this minute's counts, the model's, the provider's last word. A budget
   * that this request fills takes the key out until its window rolls.
   * @param c the key
   * @param model the request's model (the client's name)
   * With a shared bank that covers the key, the request is taken from its grant (the cluster's
   * limits decide), else the book's own counts decide.
   * @param now epoch ms
   * @returns true when the request may go; else a promise (one round trip to the shared
   *   bank) of what became of it: `granted`, `owed` (Redis went down: counted here, told to
   *   Redis later) or `refused` (the cluster's budget is spent: the key is out)
   */
  take(c: Candidate, model: string | undefined, now: number): true | Promise<Reservation> {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    rollDay(q, b, now);
    rollMinute(b, now);
    const m = upstreamModel(c, model);
    const slot = m === undefined ? undefined : modelSlot(b.modelRequests, m);
    const bank = this.#bank;
    const shared = bank !== undefined && hasLimits(q);
    // Redis is down: this instance spends only its share of what was left (else another key)
    if (shared && !bank.covers(c) && !bank.mayOwe(c, slot)) return BEYOND_SHARE;
    b.dayRequests++;
    b.minuteRequests++;
    let changed = false;
    if (m !== undefined && slot !== undefined) {
      b.modelRequests[slot] = (b.modelRequests[slot] ?? 0) + 1;
      const lm = readModel(b.learnedModels, m);
      if (lm !== undefined && lm.until > now && --lm.remaining <= 0) {
        spendModel(b, m, lm.until);
        this.#store?.changed(c.id);
      }
    }
    const l = b.learned;
    if (l !== null && l.until > now && --l.remaining <= 0) {
      changed = this.#spend(c, l.until, "provider") || changed;
    }
    if (shared) {
      if (bank.covers(c)) {
        // the cluster's counts decide (the book's mirror them, as last seen)
        if (changed) this.#changed(c);
        return bank.take(c, slot);
      }
      bank.owe(c, slot);
    }
    if (q.requestsPerDay > 0 && b.dayRequests >= q.requestsPerDay) {
      changed = this.#spend(c, b.dayEnd, "day") || changed;
    }
    if (q.requestsPerMinute > 0 && b.minuteRequests >= q.requestsPerMinute) {
      changed = this.#spend(c, b.minuteStart + MINUTE, "minute") || changed;
    }
    if (changed) this.#changed(c);
    return true;
  }

  /** A key's availability changed: pools rebuild, and a shared store writes it at once. */
  #changed(c: Candidate): void {
    this.#onChange();
    this.#store?.changed(c.id);
  }

  /**
   * Gives back the request an attempt took when it never used the provider's quota: it could
   * not connect, found a kept-alive connection closed before sending, or the key was refused.
   * Only the proxy's own counts of the windows the request was taken in are given back (the
   * provider's word is left as it said it); a key the proxy's counting had spent is open again
   * when none of its budgets is full any more.
   * @param c the key
   * @param model the request's model (the client's name)
   * @param takenAt epoch ms when the request was taken
   * @param now epoch ms
   * @param owed whether {@linkcode Budgets.owes} said so when the request was taken (the shared
   *   bank was down: Redis is told of it when back, unless it is given back first)
   */
  refund(
    c: Candidate,
    model: string | undefined,
    takenAt: number,
    now: number,
    owed = false,
  ): void {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    // taken in a day now over (or one the clock has left): nothing of today's was taken
    if (takenAt < b.dayStart || takenAt >= b.dayEnd || now >= b.dayEnd) return;
    if (b.dayRequests > 0) b.dayRequests--;
    if (takenAt >= b.minuteStart && b.minuteRequests > 0) b.minuteRequests--;
    const m = upstreamModel(c, model);
    let slot: string | undefined;
    if (m !== undefined) {
      slot = modelSlot(b.modelRequests, m);
      const counted = b.modelRequests[slot];
      if (counted !== undefined && counted > 0) b.modelRequests[slot] = counted - 1;
    }
    const bank = this.#bank;
    if (bank !== undefined && hasLimits(q)) {
      if (owed) bank.unowe(c, slot);
      else bank.giveBack(c, slot);
    }
    const own = b.spentReason === "day" || b.spentReason === "minute";
    if (b.spentUntil > now && own && !full(q, b, now)) {
      b.spentUntil = 0;
      b.spentReason = "";
      this.#changed(c);
    }
  }

  /**
   * Whether a request taken now from a key is counted here alone and owed to the shared bank
   * (Redis is down): what a refund must know to give it back to the right place.
   * @param c the key
   */
  owes(c: Candidate): boolean {
    const bank = this.#bank;
    return bank !== undefined && hasLimits(c.quota) && !bank.covers(c);
  }

  /**
   * Settles an ended attempt (after the board counted it out of flight): its tokens, and a
   * concurrency slot freed.
   * @param c the key
   * @param usage tokens the upstream reported
   * @param now epoch ms
   */
  settle(c: Candidate, usage: Usage | undefined, now: number): void {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    let changed = false;
    if (usage !== undefined && usage.totalTokens > 0) {
      rollDay(q, b, now);
      rollMinute(b, now);
      b.dayTokens += usage.totalTokens;
      b.minuteTokens += usage.totalTokens;
      this.#bank?.tokens(c, usage.totalTokens);
      if (q.tokensPerDay > 0 && b.dayTokens >= q.tokensPerDay) {
        changed = this.#spend(c, b.dayEnd, "day_tokens") || changed;
      }
      if (q.tokensPerMinute > 0 && b.minuteTokens >= q.tokensPerMinute) {
        changed = this.#spend(c, b.minuteStart + MINUTE, "minute_tokens") || changed;
      }
    }
    if (changed) this.#changed(c);
  }

  /**
   * Takes in what a provider's headers said about a key, as soon as they arrive. Daily counts
   * (ModelScope's calls left today, for the account and for this model) are kept: they lower
   * the proxy's own, and none left takes the key out (for this model, when the count is the
   * model's) until the key's daily reset. A short window's count (OpenAI's, Anthropic's
   * minute) takes the key out until its reset when nothing is left.
   * @param c the key
   * @param model the request's model (the client's name)
   * @param learned the headers, read
   * @param now epoch ms
   */
  learn(c: Candidate, model: string | undefined, learned: LearnedBudgets, now: number): void {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    rollDay(q, b, now);
    let changed = false;
    const until = (resetAt: number | undefined) =>
      resetAt !== undefined && resetAt > now ? resetAt : learned.daily ? b.dayEnd : now + MINUTE;
    const r = learned.requests;
    const t = learned.tokens;
    if (learned.daily) {
      if (r !== undefined) {
        const l: Learned = { remaining: r.remaining, limit: r.limit, until: until(r.resetAt) };
        b.learned = l;
        if (l.remaining <= 0) changed = this.#spend(c, l.until, "provider");
      }
      const mr = learned.modelRequests;
      const m = upstreamModel(c, model);
      if (mr !== undefined && m !== undefined) {
        const l: Learned = { remaining: mr.remaining, limit: mr.limit, until: until(mr.resetAt) };
        b.learnedModels[modelSlot(b.learnedModels, m)] = l;
        if (l.remaining <= 0) spendModel(b, m, l.until);
      }
    } else if (r !== undefined && r.remaining <= 0) {
      changed = this.#spend(c, until(r.resetAt), "provider");
    }
    if (t !== undefined && t.remaining <= 0) {
      changed = this.#spend(c, until(t.resetAt), "provider") || changed;
    }
    if (changed) this.#onChange();
    // a model spent (or the key) is written at once by a shared store
    this.#store?.changed(c.id);
  }

  /**
   * Takes a key out after the provider said its quota is exhausted: for one model or for every
   * model, until the provider's reset time, else the key's next daily reset (at most
   * `health.quota_rest` from now when that is set).
   * @param c the key
   * @param model the request's model (the client's name)
   * @param scope whether the exhaustion is the model's or the key's
   * @param until when the provider says it ends, if it did
   * @param now epoch ms
   * @returns when the key (for this model, with scope `model`) may serve again
   */
  exhaust(
    c: Candidate,
    model: string | undefined,
    scope: SpendScope,
    until: number | undefined,
    now: number,
  ): number {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    rollDay(q, b, now);
    const cap = this.#quotaRestMs;
    const end = until !== undefined && until > now
      ? until
      : cap > 0
      ? Math.min(b.dayEnd, now + cap)
      : b.dayEnd;
    const m = upstreamModel(c, model);
    if (scope === "model" && m !== undefined) {
      spendModel(b, m, end);
      this.#store?.changed(c.id);
      return Math.max(end, readModel(b.modelSpentUntil, m) ?? 0, b.spentUntil);
    }
    if (spend(b, end, "exhausted")) this.#onChange();
    this.#store?.changed(c.id);
    return Math.max(end, b.spentUntil);
  }

  /**
   * Clears a key's spends and counters (an operator's reset).
   * @param c the key
   */
  reset(c: Candidate): void {
    void this.#bank?.reset(c);
    const b = (c.state as CandidateState).budget;
    b.spentUntil = 0;
    b.spentReason = "";
    b.modelSpentUntil = {};
    b.learned = null;
    b.learnedModels = {};
    b.dayRequests = 0;
    b.dayTokens = 0;
    b.modelRequests = {};
    b.minuteRequests = 0;
    b.minuteTokens = 0;
    this.#changed(c);
  }
}
