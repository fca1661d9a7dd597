/**
 * @module
 * Passive and active health in one state machine (after Envoy's outlier detection): every
 * attempt's class and every probe result changes a candidate's state here, and nowhere else.
 * Consecutive failures eject a key for base × times ejected (capped); an expired ejection
 * allows one half-open trial; rate limits and quota rest the key; 401/403 take it out until a
 * probe succeeds. State changes are logged once each.
 */

import type { HealthConfig } from "../config/types.ts";
import type { Logger } from "../logger.ts";
import type { Candidate, ProbeResult } from "../plugin.ts";
import type { CandidateState, RestReason, StateStore } from "../state_store.ts";
import { type AttemptClass, isFailure } from "./classify.ts";
import { isAvailable } from "./availability.ts";

/** Details of an attempt's outcome. */
export interface OutcomeInfo {
  /** For rate limits and quota: when the provider says the key may be used again (epoch ms). */
  retryAt?: number | undefined;
  /** HTTP status, if a response came. */
  status?: number | undefined;
}

/** Options of {@linkcode HealthBoard}. */
export interface HealthBoardOptions {
  store: StateStore;
  logger: Logger;
  config: HealthConfig;
  /** @default Date.now */
  now?: () => number;
}

/** Applies outcomes to candidate state and tells pools when availability changed. */
export class HealthBoard {
  /** Grows whenever any candidate's availability may have changed; pools rebuild on change. */
  epoch = 0;
  readonly now: () => number;
  #store: StateStore;
  #log: Logger;
  #cfg: HealthConfig;

  /** @param options store, logger, health settings and clock */
  constructor(options: HealthBoardOptions) {
    this.#store = options.store;
    this.#log = options.logger;
    this.#cfg = options.config;
    this.now = options.now ?? Date.now;
  }

  /**
   * Replaces the health settings (hot reload).
   * @param config the new settings
   */
  configure(config: HealthConfig): void {
    this.#cfg = config;
  }

  /**
   * Records that an attempt starts on a candidate: in-flight, request count, last use; an
   * expired ejection turns into a half-open trial that no other request may share.
   * @param c the picked candidate
   */
  begin(c: Candidate): void {
    const s = this.#store.record(c.id);
    const now = this.now();
    s.inFlight++;
    s.requests++;
    s.lastUsed = now;
    if (s.ejectedUntil > 0 && s.ejectedUntil <= now && !s.trialInFlight) {
      s.trialInFlight = true;
      s.halfOpen = true;
      this.epoch++;
      this.#log.info("candidate half-open: trial request", fields(c, s));
    }
    this.#store.changed(c.id);
  }

  /**
   * Records how an attempt ended and applies the policy for its class.
   * @param c the candidate
   * @param cls the attempt's class
   * @param info reset time and status
   */
  end(c: Candidate, cls: AttemptClass, info: OutcomeInfo = {}): void {
    const s = this.#store.record(c.id);
    const now = this.now();
    const wasAvailable = isAvailable(s, now);
    if (s.inFlight > 0) s.inFlight--;
    switch (cls) {
      case "ok":
      case "bad_request":
        s.consecutiveFailures = 0;
        if (s.ejectedUntil > 0 && (s.trialInFlight || s.ejectedUntil <= now)) {
          s.ejectedUntil = 0;
          s.ejections = 0;
          s.halfOpen = false;
          s.trialInFlight = false;
          this.#log.info("candidate restored", fields(c, s));
        }
        break;
      case "client_abort":
        if (s.trialInFlight) s.trialInFlight = false;
        break;
      case "auth":
        this.#failed(s, cls);
        if (c.upstream.config.healthCheck !== undefined) {
          if (s.healthy) {
            s.healthy = false;
            s.unhealthyReason = `auth (HTTP ${info.status ?? 401})`;
            this.#log.warn("key refused by upstream: out until a probe succeeds", {
              ...fields(c, s),
              status: info.status,
            });
          }
        } else {
          this.#rest(c, s, "auth", now + this.#cfg.authRestMs, now, info.status);
        }
        break;
      case "rate_limited":
        this.#failed(s, cls);
        this.#rest(c, s, "rate_limited", info.retryAt ?? now + this.#cfg.rateLimitRestMs, now);
        break;
      case "quota":
        this.#failed(s, cls);
        this.#rest(c, s, "quota", info.retryAt ?? now + this.#cfg.quotaRestMs, now);
        break;
      default:
        if (isFailure(cls)) this.#serverFailure(c, s, cls, now);
    }
    if (cls !== "client_abort" && s.trialInFlight && !isFailure(cls)) s.trialInFlight = false;
    if (wasAvailable !== isAvailable(s, now)) this.epoch++;
    this.#store.changed(c.id);
  }

  /**
   * Applies an active probe's result.
   * @param c the probed candidate
   * @param r the result
   */
  probed(c: Candidate, r: ProbeResult): void {
    const s = this.#store.record(c.id);
    const now = this.now();
    const wasAvailable = isAvailable(s, now);
    if (r.outcome === "healthy") {
      if (!s.healthy) {
        s.healthy = true;
        s.unhealthyReason = "";
        this.#log.info("candidate healthy again (probe)", fields(c, s));
      }
      if (s.ejectedUntil > 0 && !s.trialInFlight) {
        s.ejectedUntil = 0;
        s.ejections = 0;
        s.halfOpen = false;
        s.consecutiveFailures = 0;
        this.#log.info("candidate restored by probe", fields(c, s));
      }
      if (s.restReason === "auth" && s.restUntil > now) {
        s.restUntil = 0;
        s.restReason = "";
      }
    } else if (r.outcome === "rate_limited") {
      this.#rest(c, s, "rate_limited", r.retryAt ?? now + this.#cfg.rateLimitRestMs, now);
    } else if (s.healthy) {
      s.healthy = false;
      s.unhealthyReason = r.outcome === "auth"
        ? `auth (HTTP ${r.status ?? 401})`
        : r.status !== undefined
        ? `probe: HTTP ${r.status}`
        : `probe: ${r.outcome}`;
      this.#log.warn("candidate unhealthy (probe)", { ...fields(c, s), detail: r.detail });
    }
    if (wasAvailable !== isAvailable(s, now)) this.epoch++;
    this.#store.changed(c.id);
  }

  /**
   * Takes a candidate out (operator) or brings it back.
   * @param c the candidate
   * @param disabled true to disable
   */
  setDisabled(c: Candidate, disabled: boolean): void {
    const s = this.#store.record(c.id);
    if (s.disabled === disabled) return;
    s.disabled = disabled;
    this.epoch++;
    this.#log.info(disabled ? "candidate disabled by operator" : "candidate enabled by operator", {
      ...fields(c, s),
    });
    this.#store.changed(c.id);
  }

  /**
   * Clears a candidate's health state (not its counters): healthy, not ejected, not resting.
   * @param c the candidate
   */
  reset(c: Candidate): void {
    const s = this.#store.record(c.id);
    s.healthy = true;
    s.unhealthyReason = "";
    s.ejectedUntil = 0;
    s.ejections = 0;
    s.halfOpen = false;
    s.trialInFlight = false;
    s.restUntil = 0;
    s.restReason = "";
    s.consecutiveFailures = 0;
    s.lastError = "";
    this.epoch++;
    this.#log.info("candidate reset by operator", fields(c, s));
    this.#store.changed(c.id);
  }

  #failed(s: CandidateState, cls: AttemptClass): void {
    s.failures++;
    s.lastError = cls;
    s.lastFailureAt = this.now();
  }

  #rest(
    c: Candidate,
    s: CandidateState,
    reason: RestReason,
    until: number,
    now: number,
    status?: number,
  ): void {
    const resting = s.restUntil > now && s.restReason === reason;
    if (until > s.restUntil) s.restUntil = until;
    s.restReason = reason;
    if (!resting) {
      this.#log.info(`key resting: ${reason.replace("_", " ")}`, {
        ...fields(c, s),
        until: new Date(s.restUntil).toISOString(),
        status,
      });
    }
  }

  #serverFailure(c: Candidate, s: CandidateState, cls: AttemptClass, now: number): void {
    this.#failed(s, cls);
    s.consecutiveFailures++;
    const trial = s.trialInFlight || (s.ejectedUntil > 0 && s.ejectedUntil <= now);
    if (!trial && (s.ejectedUntil > now || s.consecutiveFailures < c.upstream.config.maxFailures)) {
      this.#log.debug("upstream attempt failed", fields(c, s));
      return;
    }
    s.ejections++;
    const forMs = Math.min(this.#cfg.ejectionBaseMs * s.ejections, this.#cfg.ejectionMaxMs);
    s.ejectedUntil = now + forMs;
    s.halfOpen = false;
    s.trialInFlight = false;
    this.#log.warn(trial ? "candidate ejected again after failed trial" : "candidate ejected", {
      ...fields(c, s),
      for_ms: forMs,
    });
  }
}

function fields(c: Candidate, s: Readonly<CandidateState>): Record<string, unknown> {
  return {
    upstream: c.upstream.name,
    key: c.mask,
    consecutive_failures: s.consecutiveFailures,
    last_error: s.lastError || undefined,
  };
}
