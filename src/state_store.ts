/**
 * @module
 * Candidate state (rests, failure counts, in-flight and usage counters) behind one small
 * interface. Strategies and the pool read the live record synchronously; every change goes
 * through {@linkcode StateStore.changed} so a persisted or shared store can save it.
 */

/** Why a candidate is resting (temporarily out of rotation until `restUntil`). */
export type RestReason = "" | "rate_limited" | "quota" | "auth";

/** What the provider said about a budget: how much is left, of how much, until when. */
export interface Learned {
  remaining: number;
  /** The provider's limit, when it said; 0 when unknown. */
  limit: number;
  /** Epoch ms when this stops being true (the window's reset); the count is stale after it. */
  until: number;
}

/**
 * A key's budget counters (see `src/budget/`). Plain data, JSON-serializable, so a persisted or
 * shared store can save it as it is. Times are epoch milliseconds.
 */
export interface BudgetState {
  /** Start of the daily window the day counters belong to; 0 before the first request. */
  dayStart: number;
  /** End of that window (the next daily reset); 0 before the first request. */
  dayEnd: number;
  /** Requests counted today, all models together. */
  dayRequests: number;
  /** Tokens counted today. */
  dayTokens: number;
  /** Requests counted today, per model. */
  modelRequests: Record<string, number>;
  /** Start of the minute window the minute counters belong to; 0 before the first request. */
  minuteStart: number;
  minuteRequests: number;
  minuteTokens: number;
  /** The provider's word on requests left, all models together (e.g. today's calls). */
  learned: Learned | null;
  /** The provider's word on requests left, per model. */
  learnedModels: Record<string, Learned>;
  /** Spent for every model until this time; 0 when not. */
  spentUntil: number;
  /** Why it is spent: `day`, `day_tokens`, `minute`, `minute_tokens`, `provider`, `exhausted`. */
  spentReason: string;
  /** Spent for one model until this time, per model. */
  modelSpentUntil: Record<string, number>;
}

/** Returns empty budget counters. */
export function emptyBudget(): BudgetState {
  return {
    dayStart: 0,
    dayEnd: 0,
    dayRequests: 0,
    dayTokens: 0,
    modelRequests: {},
    minuteStart: 0,
    minuteRequests: 0,
    minuteTokens: 0,
    learned: null,
    learnedModels: {},
    spentUntil: 0,
    spentReason: "",
    modelSpentUntil: {},
  };
}

/** The mutable state of one candidate (an upstream key). Times are epoch milliseconds. */
export interface CandidateState {
  /** Taken out by an operator; only an operator brings it back. */
  disabled: boolean;
  /** Result of the last active probe (true until a probe says otherwise). */
  healthy: boolean;
  /** Why the last probe failed, "" when healthy. */
  unhealthyReason: string;
  /** Ejected by passive health until this time; 0 when not ejected. */
  ejectedUntil: number;
  /** Ejections in a row; grows the next ejection's length, reset by a success. */
  ejections: number;
  /** The ejection has expired and one trial request decides. */
  halfOpen: boolean;
  /** A half-open trial request is in flight. */
  trialInFlight: boolean;
  /** Resting until this time; 0 when not resting. */
  restUntil: number;
  restReason: RestReason;
  consecutiveFailures: number;
  lastFailureAt: number;
  /** Class of the last failed attempt, "" if none. */
  lastError: string;
  inFlight: number;
  requests: number;
  failures: number;
  lastUsed: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Budget counters and what the provider said about them. */
  budget: BudgetState;
}

/** Returns a fresh state record: healthy, idle, never used. */
export function emptyState(): CandidateState {
  return {
    disabled: false,
    healthy: true,
    unhealthyReason: "",
    ejectedUntil: 0,
    ejections: 0,
    halfOpen: false,
    trialInFlight: false,
    restUntil: 0,
    restReason: "",
    consecutiveFailures: 0,
    lastFailureAt: 0,
    lastError: "",
    inFlight: 0,
    requests: 0,
    failures: 0,
    lastUsed: 0,
    promptTokens: 0,
    completionTokens: 0,
    totalTokens: 0,
    budget: emptyBudget(),
  };
}

/** Where candidate state lives. */
export interface StateStore {
  /**
   * Returns the live record of a candidate, creating an empty one on first use. The same
   * object is returned for the same id for the life of the store.
   * @param id the candidate's stable id
   */
  record(id: string): CandidateState;
  /**
   * Tells the store that a record changed, so it can persist or share it.
   * @param id the candidate's stable id
   */
  changed(id: string): void;
  /** Lists every known record. */
  entries(): IterableIterator<[string, CandidateState]>;
  /** Releases what the store holds (files, connections). */
  close(): Promise<void>;
}

/**
 * The live record of an id in a map of records, made empty on first use: what every store's
 * {@linkcode StateStore.record} does.
 * @param records the store's records
 * @param id the candidate's stable id
 */
export function recordIn(records: Map<string, CandidateState>, id: string): CandidateState {
  let rec = records.get(id);
  if (rec === undefined) records.set(id, rec = emptyState());
  return rec;
}

/** A {@linkcode StateStore} in process memory: state lives as long as the process. */
export class MemoryStateStore implements StateStore {
  #records = new Map<string, CandidateState>();

  /** {@inheritDoc StateStore.record} */
  record(id: string): CandidateState {
    return recordIn(this.#records, id);
  }

  /** Memory needs no saving: does nothing. */
  changed(_id: string): void {}

  /** {@inheritDoc StateStore.entries} */
  entries(): IterableIterator<[string, CandidateState]> {
    return this.#records.entries();
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
