/**
 * @module
 * Candidate state (rests, failure counts, in-flight and usage counters) behind one small
 * interface. Strategies and the pool read the live record synchronously; every change goes
 * through {@linkcode StateStore.changed} so a persisted or shared store can save it.
 */

/** Why a candidate is resting (temporarily out of rotation until `restUntil`). */
export type RestReason = "" | "rate_limited" | "quota" | "auth";

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

/** A {@linkcode StateStore} in process memory: state lives as long as the process. */
export class MemoryStateStore implements StateStore {
  #records = new Map<string, CandidateState>();

  /** {@inheritDoc StateStore.record} */
  record(id: string): CandidateState {
    let rec = this.#records.get(id);
    if (rec === undefined) {
      rec = emptyState();
      this.#records.set(id, rec);
    }
    return rec;
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
