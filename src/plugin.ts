/**
 * @module
 * The plugin API: everything a strategy, probe or middleware plugin needs, exported from one
 * module. A plugin is a value with a `kind` and a unique `name`; write it as
 * `export default { kind: "strategy", name: "mine", create() {...} } satisfies StrategyPlugin`.
 */

import type { CandidateState } from "./state_store.ts";
import type { AuthStyle, PathMode, UpstreamConfig } from "./config/types.ts";

export type { CandidateState } from "./state_store.ts";

/** A secret that prints as its mask: logging or serializing it never reveals the value. */
export class Secret {
  readonly #value: string;
  /** The masked form, safe to show anywhere. */
  readonly mask: string;

  /**
   * @param value the secret
   * @param mask how it is shown
   */
  constructor(value: string, mask: string) {
    this.#value = value;
    this.mask = mask;
  }

  /** Returns the secret itself: only for the request sent upstream. */
  reveal(): string {
    return this.#value;
  }

  /** Returns the mask. */
  toString(): string {
    return this.mask;
  }

  /** Returns the mask. */
  toJSON(): string {
    return this.mask;
  }

  /** Shows the mask in `Deno.inspect` and `console.log`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Secret(${this.mask})`;
  }
}

/** An upstream as the proxy uses it at run time. */
export interface Upstream {
  readonly name: string;
  readonly baseUrl: string;
  readonly pathMode: PathMode;
  readonly auth: AuthStyle;
  readonly config: Readonly<UpstreamConfig>;
}

/**
 * One key of one upstream, as a member of a pool. Strategies read candidates and never
 * change them; `state` is the live record from the state store.
 */
export interface Candidate {
  /** Stable id: `<upstream>:<hash of the key>`; never the key itself. */
  readonly id: string;
  /** Position in the pool's stable order (0-based). */
  readonly index: number;
  readonly upstream: Upstream;
  /** The key (prints as its mask); undefined for an upstream without keys. */
  readonly key: Secret | undefined;
  /** The key's mask, or `<upstream>:no-key`. */
  readonly mask: string;
  /** Optional human name of the key. */
  readonly name: string | undefined;
  readonly weight: number;
  readonly priority: number;
  readonly state: Readonly<CandidateState>;
}

/** What a strategy knows about the request it picks for. */
export interface PickContext {
  /** The model the client asked for, if any. */
  readonly model: string | undefined;
  /** The attempt number, 1-based. */
  readonly attempt: number;
}

/**
 * A key-selection strategy: picks one of the available candidates. It must be synchronous,
 * never block, and never mutate candidates; it may keep its own state (cursors, weights).
 */
export interface Strategy {
  /**
   * @param available the usable candidates, in the pool's stable order; never empty
   * @param ctx the request
   * @returns the chosen candidate, one of `available`; or undefined when none of them may serve
   *   (the weighted strategy never chooses weight 0): the pool then tries the next priority tier
   */
  pick(available: readonly Candidate[], ctx: PickContext): Candidate | undefined;
}

/** What a strategy factory receives. */
export interface StrategyOptions {
  /** Every candidate of the pool, in stable order (`candidates[i].index === i`). */
  readonly candidates: readonly Candidate[];
  /** Returns a number in [0, 1); injected so tests are deterministic. */
  readonly random: () => number;
}

/** A strategy plugin: builds one strategy instance per pool, living as long as the pool. */
export interface StrategyPlugin {
  readonly kind: "strategy";
  readonly name: string;
  readonly description?: string;
  create(options: StrategyOptions): Strategy;
}

/** The outcome of one health probe. */
export interface ProbeResult {
  /** `healthy`, or why not. */
  readonly outcome: "healthy" | "server_error" | "auth" | "rate_limited" | "network" | "timeout";
  /** HTTP status if a response came. */
  readonly status?: number;
  readonly latencyMs: number;
  /** For `rate_limited`: when the key may be used again (epoch ms). */
  readonly retryAt?: number;
  /** A short description, secrets masked. */
  readonly detail?: string;
}

/** What a probe plugin probes. */
export interface ProbeTarget {
  readonly candidate: Candidate;
  /** Full URL to probe. */
  readonly url: string;
  /** Headers to send: the key in the upstream's auth style, plus its extra headers. */
  readonly headers: Headers;
  readonly signal: AbortSignal;
  readonly fetch: typeof fetch;
  readonly now: () => number;
}

/** A health probe plugin. */
export interface ProbePlugin {
  readonly kind: "probe";
  readonly name: string;
  readonly description?: string;
  probe(target: ProbeTarget): Promise<ProbeResult>;
}

/** Any plugin. */
export type Plugin = StrategyPlugin | ProbePlugin;
