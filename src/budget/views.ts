/**
 * @module
 * A key's budgets as people and strategies see them: every configured or learned budget with
 * its limit, use, what is left (counted, or the provider's word when lower) and its reset; and
 * the share of the tightest budget left for a model, which `quota_aware` drains evenly.
 */

import type { Candidate } from "../plugin.ts";
import type { Learned } from "../state_store.ts";
import { nextReset, type ResetTime } from "./reset.ts";
import { MINUTE } from "./book.ts";
import { OTHER_MODELS, readModel, upstreamModel } from "./models.ts";

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

/** The next reset last computed per zone and reset time, and from when it holds. */
const resets = new Map<string, { from: number; at: number }>();

/**
 * {@linkcode nextReset}, remembered: for any time from the one it was computed at until it
 * comes, the next reset is the same (the views of 500 keys unused today ask 500 times).
 */
function cachedReset(now: number, reset: ResetTime, timeZone: string): number {
  const id = `${timeZone}|${reset.hour}:${reset.minute}`;
  const known = resets.get(id);
  if (known !== undefined && known.from <= now && now < known.at) return known.at;
  const at = nextReset(now, reset, timeZone);
  if (resets.size > 64) resets.clear();
  resets.set(id, { from: now, at });
  return at;
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
  const dayEnd = inDay ? b.dayEnd : cachedReset(now, q.reset, q.timeZone);
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
      `model_requests_per_day:${m === OTHER_MODELS ? "other" : m}`,
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
  const m = upstreamModel(c, model);
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
  if (m !== undefined) {
    consider(
      q.modelRequestsPerDay,
      inDay ? readModel(b.modelRequests, m) ?? 0 : 0,
      readModel(b.learnedModels, m),
    );
  }
  consider(q.tokensPerDay, inDay ? b.dayTokens : 0);
  return share;
}
