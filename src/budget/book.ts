/**
 * @module
 * The budget book: every key's daily and per-minute budgets, per model where they apply, kept
 * in the key's state record (so a persisted or shared store keeps them too). A lease takes one
 * request from a key's budgets when its attempt starts and settles tokens and what the provider
 * said when it ends. A key spent for every model (its day, its minute, or the provider's word)
 * is out of the pool's snapshot until its window rolls (`spentUntil`, read by the one
 * availability predicate); a key spent for one model is passed over for that model only.
 */

import type { Candidate, CandidateState, Usage } from "../plugin.ts";
import type { BudgetState, Learned } from "../state_store.ts";
import type { QuotaConfig } from "../config/types.ts";
import { dayStart, nextReset } from "./reset.ts";
import type { LearnedBudgets } from "./headers.ts";

const MINUTE = 60_000;
/**
 * Models counted per key and day at most: a client naming ever new models cannot grow a key's
 * record (or the state file) without bound; the provider still enforces its own caps.
 */
export const MAX_MODELS = 100;

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
 * Starts a new daily window when the current one is over.
 * @param q the key's budgets
 * @param b its counters
 * @param now epoch ms
 */
function rollDay(q: Readonly<QuotaConfig>, b: BudgetState, now: number): void {
  if (now < b.dayEnd) return;
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

/** Starts a new minute window when the current one is over. */
function rollMinute(b: BudgetState, now: number): void {
  if (now - b.minuteStart < MINUTE) return;
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
 * @param model the request's model
 * @param now epoch ms
 */
export function allowsModel(c: Candidate, model: string | undefined, now: number): boolean {
  if (model === undefined) return true;
  const b = c.state.budget;
  const until = b.modelSpentUntil[model];
  if (until !== undefined && until > now) return false;
  const cap = c.quota.modelRequestsPerDay;
  return cap === 0 || now >= b.dayEnd || (b.modelRequests[model] ?? 0) < cap;
}

/**
 * When a key spent for a model may serve it again, by the passing of time alone.
 * @param c the key
 * @param model the model
 * @param now epoch ms
 * @returns epoch ms (`now` when it may already)
 */
export function modelReturnsAt(c: Candidate, model: string | undefined, now: number): number {
  if (model === undefined) return now;
  const b = c.state.budget;
  let t = now;
  const until = b.modelSpentUntil[model];
  if (until !== undefined && until > t) t = until;
  const cap = c.quota.modelRequestsPerDay;
  if (cap > 0 && now < b.dayEnd && (b.modelRequests[model] ?? 0) >= cap && b.dayEnd > t) {
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
function spendModel(b: BudgetState, model: string, until: number): boolean {
  if (until <= (b.modelSpentUntil[model] ?? 0)) return false;
  b.modelSpentUntil[model] = until;
  return true;
}

/** Options of {@linkcode Budgets}. */
export interface BudgetsOptions {
  /**
   * Told when a key's availability changed (it was spent, or its concurrency cap was reached
   * or freed): pools rebuild their snapshot.
   */
  onChange: () => void;
}

/** How a quota answer (429 exhaustion, 402) is scoped. */
export type SpendScope = "key" | "model";

/** Keeps every key's budgets. */
export class Budgets {
  readonly #onChange: () => void;
  #quotaRestMs = 0;

  /** @param options what to tell when availability changed */
  constructor(options: BudgetsOptions) {
    this.#onChange = options.onChange;
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
   * flight): today's and this minute's counts, the provider's last word. A budget that this
   * request fills takes the key out until its window rolls.
   * @param c the key
   * @param model the request's model
   * @param now epoch ms
   */
  take(c: Candidate, model: string | undefined, now: number): void {
    const q = c.quota;
    const b = (c.state as CandidateState).budget;
    rollDay(q, b, now);
    rollMinute(b, now);
    b.dayRequests++;
    b.minuteRequests++;
    let changed = false;
    if (model !== undefined) {
      const counted = b.modelRequests[model];
      if (counted !== undefined) b.modelRequests[model] = counted + 1;
      else if (Object.keys(b.modelRequests).length < MAX_MODELS) b.modelRequests[model] = 1;
      const lm = b.learnedModels[model];
      if (lm !== undefined && lm.until > now && --lm.remaining <= 0) {
        spendModel(b, model, lm.until);
      }
    }
    const l = b.learned;
    if (l !== null && l.until > now && --l.remaining <= 0) {
      changed = spend(b, l.until, "provider") || changed;
    }
    if (q.requestsPerDay > 0 && b.dayRequests >= q.requestsPerDay) {
      changed = spend(b, b.dayEnd, "day") || changed;
    }
    if (q.requestsPerMinute > 0 && b.minuteRequests >= q.requestsPerMinute) {
      changed = spend(b, b.minuteStart + MINUTE, "minute") || changed;
    }
    if (atCapacity(c)) changed = true;
    if (changed) this.#onChange();
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
    let changed = q.maxConcurrency > 0 && c.state.inFlight === q.maxConcurrency - 1;
    if (usage !== undefined && usage.totalTokens > 0) {
      rollDay(q, b, now);
      rollMinute(b, now);
      b.dayTokens += usage.totalTokens;
      b.minuteTokens += usage.totalTokens;
      if (q.tokensPerDay > 0 && b.dayTokens >= q.tokensPerDay) {
        changed = spend(b, b.dayEnd, "day_tokens") || changed;
      }
      if (q.tokensPerMinute > 0 && b.minuteTokens >= q.tokensPerMinute) {
        changed = spend(b, b.minuteStart + MINUTE, "minute_tokens") || changed;
      }
    }
    if (changed) this.#onChange();
  }

  /**
   * Takes in what a provider's headers said about a key: requests left today (or in its
   * window), for every model and for this one. A lower count than the proxy's wins; none left
   * takes the key out (for this model, when the count is the model's) until the window's reset.
   * @param c the key
   * @param model the request's model
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
    if (r !== undefined) {
      const l: Learned = { remaining: r.remaining, limit: r.limit, until: until(r.resetAt) };
      b.learned = l;
      if (l.remaining <= 0) changed = spend(b, l.until, "provider");
    }
    const m = learned.modelRequests;
    if (m !== undefined && model !== undefined) {
      const l: Learned = { remaining: m.remaining, limit: m.limit, until: until(m.resetAt) };
      b.learnedModels[model] = l;
      if (l.remaining <= 0) spendModel(b, model, l.until);
    }
    const t = learned.tokens;
    if (t !== undefined && t.remaining <= 0) {
      changed = spend(b, until(t.resetAt), "provider") || changed;
    }
    if (changed) this.#onChange();
  }

  /**
   * Takes a key out after the provider said its quota is exhausted: for one model or for every
   * model, until the provider's reset time or else the key's next daily reset.
   * @param c the key
   * @param model the request's model
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
    if (scope === "model" && model !== undefined) {
      spendModel(b, model, end);
    } else if (spend(b, end, "exhausted")) this.#onChange();
    return end;
  }

  /**
   * Clears a key's spends and counters (an operator's reset).
   * @param c the key
   */
  reset(c: Candidate): void {
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
    this.#onChange();
  }
}

/** One budget as stats show it. */
export interface BudgetView {
  limit: number;
  used: number;
  remaining: number;
  /** Whether `remaining` is the provider's word (else counted). */
  learned: boolean;
  /** Epoch ms of the window's end. */
  resetsAt: number;
}

/**
 * A key's budgets as stats show them: every configured or learned budget, per model where it
 * applies, with what is left and when it resets.
 * @param c the key
 * @param now epoch ms
 * @returns budgets by name (`requests_per_day`, `model_requests_per_day:<model>`, ...)
 */
export function budgetViews(c: Candidate, now: number): Record<string, BudgetView> {
  const q = c.quota;
  const b = c.state.budget;
  const inDay = now < b.dayEnd;
  const dayEnd = inDay ? b.dayEnd : nextReset(now, q.reset, q.timeZone);
  const inMinute = now - b.minuteStart < MINUTE;
  const out: Record<string, BudgetView> = {};
  const put = (name: string, limit: number, used: number, resetsAt: number, l?: Learned | null) => {
    const learned = l !== null && l !== undefined && l.until > now;
    const counted = Math.max(0, limit - used);
    const remaining = learned
      ? (limit > 0 ? Math.min(counted, l.remaining) : l.remaining)
      : counted;
    out[name] = {
      limit: limit > 0 ? limit : learned ? l.limit : 0,
      used,
      remaining: Math.max(0, remaining),
      learned,
      resetsAt: learned ? l.until : resetsAt,
    };
  };
  const dayRequests = inDay ? b.dayRequests : 0;
  if (q.requestsPerDay > 0 || (b.learned !== null && b.learned.until > now)) {
    put("requests_per_day", q.requestsPerDay, dayRequests, dayEnd, b.learned);
  }
  const models = new Set([
    ...(inDay ? Object.keys(b.modelRequests) : []),
    ...Object.keys(b.learnedModels),
  ]);
  for (const m of models) {
    const l = b.learnedModels[m];
    if (q.modelRequestsPerDay === 0 && (l === undefined || l.until <= now)) continue;
    put(
      `model_requests_per_day:${m}`,
      q.modelRequestsPerDay,
      inDay ? b.modelRequests[m] ?? 0 : 0,
      dayEnd,
      l,
    );
  }
  if (q.tokensPerDay > 0) put("tokens_per_day", q.tokensPerDay, inDay ? b.dayTokens : 0, dayEnd);
  const minuteEnd = inMinute ? b.minuteStart + MINUTE : now + MINUTE;
  if (q.requestsPerMinute > 0) {
    put("requests_per_minute", q.requestsPerMinute, inMinute ? b.minuteRequests : 0, minuteEnd);
  }
  if (q.tokensPerMinute > 0) {
    put("tokens_per_minute", q.tokensPerMinute, inMinute ? b.minuteTokens : 0, minuteEnd);
  }
  if (q.maxConcurrency > 0) {
    out.max_concurrency = {
      limit: q.maxConcurrency,
      used: c.state.inFlight,
      remaining: Math.max(0, q.maxConcurrency - c.state.inFlight),
      learned: false,
      resetsAt: 0,
    };
  }
  return out;
}

/**
 * What share of a key's tightest budget for a model is left, for strategies that drain keys
 * evenly: 1 when it has no budget at all.
 * @param c the key
 * @param model the request's model
 * @param now epoch ms
 * @returns a number in [0, 1]
 */
export function shareLeft(c: Candidate, model: string | undefined, now: number): number {
  const q = c.quota;
  const b = c.state.budget;
  const inDay = now < b.dayEnd;
  let share = 1;
  const consider = (limit: number, used: number, l?: Learned | null) => {
    if (l !== null && l !== undefined && l.until > now && l.limit > 0) {
      share = Math.min(share, Math.max(0, l.remaining) / l.limit);
    }
    if (limit > 0) share = Math.min(share, Math.max(0, limit - used) / limit);
  };
  consider(q.requestsPerDay, inDay ? b.dayRequests : 0, b.learned);
  if (model !== undefined) {
    consider(
      q.modelRequestsPerDay,
      inDay ? b.modelRequests[model] ?? 0 : 0,
      b.learnedModels[model],
    );
  }
  consider(q.tokensPerDay, inDay ? b.dayTokens : 0);
  return share;
}
