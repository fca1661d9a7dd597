/**
 * @module
 * Test helpers to build fake pool candidates, deterministic random sources and pick sequences,
 * for strategy, pool and proxy tests.
 */

import {
  type Candidate,
  type CandidateState,
  type PickContext,
  Secret,
  type Strategy,
  type Upstream,
} from "../../src/plugin.ts";
import { emptyState } from "../../src/state_store.ts";
import type { QuotaConfig, UpstreamConfig } from "../../src/config/types.ts";
import { defaultQuota } from "../../src/config/defaults.ts";

/** A {@linkcode Candidate} whose state tests may change (e.g. `c.state.inFlight = 2`). */
export interface FakeCandidate extends Candidate {
  readonly state: CandidateState;
}

/** How to build one fake candidate; every field is optional. */
export interface CandidateSpec {
  /** Upstream name. @default "up" */
  upstream?: string | undefined;
  /** The key; `null` makes a key-less candidate. @default "sk-test-<index>" */
  key?: string | null | undefined;
  /** Human name of the key. @default undefined */
  name?: string | undefined;
  /** @default 1 */
  weight?: number | undefined;
  /** @default 0 */
  priority?: number | undefined;
  /** Budgets over the upstream's (none). */
  quota?: Partial<QuotaConfig> | undefined;
  /** Shortcut for `state.inFlight`. @default 0 */
  inFlight?: number | undefined;
  /** State fields to set over {@linkcode emptyState}. @default {} */
  state?: Partial<CandidateState> | undefined;
}

/**
 * Returns a fake upstream with default settings.
 * @param name the upstream name
 * @param baseUrl its base URL
 */
export function makeUpstream(name = "up", baseUrl = "http://127.0.0.1:1/v1"): Upstream {
  const config: UpstreamConfig = {
    name,
    baseUrl,
    pathMode: "v1",
    auth: "bearer",
    keys: [],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 1,
    priority: 0,
    timeouts: { connectMs: 10000, firstByteMs: 120000, idleMs: 120000, totalMs: 600000 },
    maxFailures: 3,
    quota: defaultQuota(baseUrl),
  };
  return { name, baseUrl, pathMode: "v1", auth: "bearer", config };
}

/**
 * Builds a pool's candidates in stable order (`candidates[i].index === i`).
 * @param specs one spec per candidate, or a count of default candidates
 * @returns fresh candidates, each with its own state record
 * @example
 * ```ts
 * const [a, b] = makeCandidates([{ weight: 8 }, { weight: 2, inFlight: 1 }]);
 * ```
 */
export function makeCandidates(specs: number | readonly CandidateSpec[]): FakeCandidate[] {
  const list: readonly CandidateSpec[] = typeof specs === "number"
    ? Array.from({ length: specs }, () => ({}))
    : specs;
  const upstreams = new Map<string, Upstream>();
  return list.map((spec, index) => {
    const upstreamName = spec.upstream ?? "up";
    let upstream = upstreams.get(upstreamName);
    if (upstream === undefined) {
      upstream = makeUpstream(upstreamName);
      upstreams.set(upstreamName, upstream);
    }
    const keyValue = spec.key === null ? undefined : spec.key ?? `sk-test-${index}`;
    const mask = keyValue === undefined ? `${upstreamName}/no-key` : `sk-...${index}`;
    const state: CandidateState = { ...emptyState(), ...spec.state };
    if (spec.inFlight !== undefined) state.inFlight = spec.inFlight;
    return {
      id: `${upstreamName}#k${index}`,
      index,
      upstream,
      key: keyValue === undefined ? undefined : new Secret(keyValue, mask),
      mask,
      name: spec.name,
      weight: spec.weight ?? 1,
      priority: spec.priority ?? 0,
      quota: spec.quota === undefined
        ? upstream.config.quota
        : { ...upstream.config.quota, ...spec.quota },
      state,
    };
  });
}

/**
 * Returns a seeded pseudo-random source in [0, 1) (mulberry32): the same seed gives the same
 * sequence, so distribution checks are deterministic.
 * @param seed any 32-bit integer
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Returns a random source that yields `values` in turn, cycling.
 * @param values numbers in [0, 1); at least one
 * @throws {RangeError} if `values` is empty
 */
export function sequenceRandom(values: readonly number[]): () => number {
  if (values.length === 0) throw new RangeError("Cannot build a random sequence: no values");
  let i = 0;
  return () => values[i++ % values.length]!;
}

/** A pick context for tests: no model, first attempt. */
export const PICK_CONTEXT: PickContext = {
  model: undefined,
  attempt: 1,
  client: undefined,
  affinityKey: undefined,
  headers: new Headers(),
};

/** What {@linkcode pickMany} does. */
export interface PickManyOptions {
  /** The available candidates, or a function giving them before each pick (step is 0-based). */
  available: readonly Candidate[] | ((step: number) => readonly Candidate[]);
  /** Number of picks. */
  count: number;
}

/**
 * Calls `strategy.pick` repeatedly and returns the picked indexes, in order.
 * @param strategy the strategy under test
 * @param options what to pick from and how often
 */
export function pickMany(strategy: Strategy, options: PickManyOptions): number[] {
  const { available, count } = options;
  const out: number[] = [];
  for (let step = 0; step < count; step++) {
    const list = typeof available === "function" ? available(step) : available;
    out.push(strategy.pick(list, PICK_CONTEXT)?.index ?? -1);
  }
  return out;
}

/**
 * Counts how many times each index occurs.
 * @param indexes picked indexes
 * @param size number of candidates
 * @returns `counts[i]` = occurrences of `i`
 */
export function countPicks(indexes: readonly number[], size: number): number[] {
  const counts = new Array<number>(size).fill(0);
  for (const i of indexes) counts[i] = (counts[i] ?? 0) + 1;
  return counts;
}
