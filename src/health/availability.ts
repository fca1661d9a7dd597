/**
 * @module
 * The one eligibility predicate: whether a candidate may take a request now, and when an
 * unusable one comes back. Pure functions of the state record and the time.
 */

import type { CandidateState } from "../state_store.ts";

/** What a candidate is doing, as shown in stats. */
export type CandidateStatus =
  | "healthy"
  | "disabled"
  | "unhealthy"
  | "ejected"
  | "half_open"
  | "resting"
  | "spent";

/**
 * Tells a candidate's status.
 * @param s its state
 * @param now epoch ms
 * @returns the status; `half_open` means its ejection expired and a trial decides; `spent` that
 *   a budget of every model is used up until its window rolls
 */
export function statusOf(s: Readonly<CandidateState>, now: number): CandidateStatus {
  if (s.disabled) return "disabled";
  if (!s.healthy) return "unhealthy";
  if (s.restUntil > now) return "resting";
  if (s.budget.spentUntil > now) return "spent";
  if (s.ejectedUntil > 0) return s.ejectedUntil > now ? "ejected" : "half_open";
  return "healthy";
}

/**
 * The eligibility predicate: healthy (not disabled, resting or spent), or half-open with no
 * trial in flight.
 * @param s its state
 * @param now epoch ms
 * @returns whether the candidate may be picked
 */
export function isAvailable(s: Readonly<CandidateState>, now: number): boolean {
  if (s.disabled || !s.healthy || s.restUntil > now || s.budget.spentUntil > now) return false;
  if (s.ejectedUntil === 0) return true;
  return s.ejectedUntil <= now && !s.trialInFlight;
}

/**
 * When an unusable candidate becomes usable again by the passing of time alone.
 * @param s its state
 * @param now epoch ms
 * @returns epoch ms, or Infinity when only a probe, a trial result or an operator can bring it back
 */
export function returnsAt(s: Readonly<CandidateState>, now: number): number {
  if (s.disabled || !s.healthy) return Infinity;
  let t = now;
  if (s.restUntil > t) t = s.restUntil;
  if (s.budget.spentUntil > t) t = s.budget.spentUntil;
  if (s.ejectedUntil > 0) {
    if (s.trialInFlight) return Infinity;
    if (s.ejectedUntil > t) t = s.ejectedUntil;
  }
  return t;
}
