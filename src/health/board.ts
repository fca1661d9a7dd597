/**
 * @module
 * Passive and active health in one state machine (after Envoy's outlier detection): every
 * attempt's class and every probe result changes a candidate's state here, and nowhere else.
 * Consecutive failures eject a key for base × times ejected (capped); an expired ejection
 * allows one half-open trial (a successful probe ends the cool-down early); rate limits and
 * quota rest the key; 401/403 take it out until a probe that validates keys succeeds, or else
 * rest it for `auth_rest`, after which a real request is its trial: a probe that answers 200 to
 * any token (ModelScope's `/v1/models`) never brings a refused key back. State changes are
 * logged once each; the pools' snapshot epoch moves whenever a candidate's availability or
 * return time changes.
 */

import type { HealthConfig } from "../config/types.ts";
import type { Logger } from "../logger.ts";
import type { Candidate, ProbeResult } from "../plugin.ts";
import type { CandidateState, RestReason, StateStore } from "../state_store.ts";
import { type AttemptClass, isFailure } from "./classify.ts";
import { returnsAt } from "./availability.ts";

/** Details of an attempt's outcome. */
export interface OutcomeInfo {
  /** For rate limits and quota: when the provider says the key may be used again (epoch ms). */
  retryAt?: number | undefined;
  /** HTTP status, if a response came. */
  status?: number | undefined;
  /**
   * What {@linkcode HealthBoard.begin} returned for this attempt: whether it was the half-open
   * trial. Tells the trial apart from attempts that started before the ejection and end while
   * the trial is in flight. @default true when a trial is in flight (the attempt is assumed to be it)
   */
  trial?: boolean | undefined;
  /**
   * Whether a rate limit or quota rests the key here. False when the budgets took the key (or
   * only its model) out instead. @default true
   */
  rest?: boolean | undefined;
}

/** Options of {@linkcode HealthBoard}. */
export interface HealthBoardOptions {
  store: StateStore;
  logger: Logger;
  config: HealthConfig;
  /** @default Date.now */
  now?: () => number;
  /**
   * Whether active probes run. When they do, a key refused with 401/403 on an upstream whose
   * health check validates keys (`validatesKey`) is out until a probe succeeds; otherwise it
   * rests for `authRestMs`, so that nothing stays out forever and a probe that cannot tell a
   * bad key from a good one never brings it back. @default true
   */
  probes?: boolean;
}

/** Rest after an exhausted quota when neither the provider nor `health.quota_rest` says. */
const QUOTA_REST_MS = 3_600_000;

const REST_WHY: Record<Exclude<RestReason, "">, string> = {
  rate_limited: "rate limited by the upstream",
  quota: "quota exhausted",
  auth: "refused by the upstream (401/403)",
};

/** Applies outcomes to candidate state and tells pools when availability changed. */
export class HealthBoard {
  /** Grows whenever any candidate's availability may have changed; pools rebuild on change. */
  epoch = 0;
  readonly now: () => number;
  #store: StateStore;
  #log: Logger;
  #cfg: HealthConfig;
  #probes: boolean;

  /** @param options store, logger, health settings, clock and whether probes run */
  constructor(options: HealthBoardOptions) {
    this.#store = options.store;
    this.#log = options.logger;
    this.#cfg = options.config;
    this.now = options.now ?? Date.now;
    this.#probes = options.probes ?? true;
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
   * @returns true when this attempt is the half-open trial (pass it back as `info.trial`)
   */
  begin(c: Candidate): boolean {
    // the candidate's state is its store record (a store returns one object per id for its
    // life): no lookup on the hot path
    const s = c.state as CandidateState;
    const now = this.now();
    s.inFlight++;
    s.requests++;
    s.lastUsed = now;
    let trial = false;
    if (s.ejectedUntil > 0 && s.ejectedUntil <= now && !s.trialInFlight) {
      trial = true;
      s.trialInFlight = true;
      s.halfOpen = true;
      this.epoch++;
      this.#log.info("candidate half-open: trial request", fields(c, s));
    }
    this.#store.changed(c.id);
    return trial;
  }

  /**
   * Undoes {@linkcode HealthBoard.begin} for an attempt that never started (its key's budget
   * turned out spent): no longer in flight, not counted, and a half-open trial is free again.
   * @param c the candidate
   * @param trial what `begin` returned
   */
  withdraw(c: Candidate, trial: boolean): void {
    const s = c.state as CandidateState;
    if (s.inFlight > 0) s.inFlight--;
    if (s.requests > 0) s.requests--;
    if (trial && s.trialInFlight) {
      s.trialInFlight = false;
      this.epoch++;
    }
    this.#store.changed(c.id);
  }

  /**
   * Records how an attempt ended and applies the policy for its class.
   * @param c the candidate
   * @param cls the attempt's class
   * @param info reset time, status, and whether the attempt was the half-open trial
   */
  end(c: Candidate, cls: AttemptClass, info: OutcomeInfo = {}): void {
    const s = c.state as CandidateState;
    const now = this.now();
    const before = returnsAt(s, now);
    if (s.inFlight > 0) s.inFlight--;
    const trial = s.trialInFlight && (info.trial ?? true);
    const expired = s.ejectedUntil > 0 && s.ejectedUntil <= now && !s.trialInFlight;
    switch (cls) {
      case "ok":
      case "bad_request":
        s.consecutiveFailures = 0;
        if (trial || expired) {
          s.ejectedUntil = 0;
          s.ejections = 0;
          s.halfOpen = false;
          s.trialInFlight = false;
          this.#log.info("candidate restored", fields(c, s));
        }
        break;
      case "auth":
        this.#failed(s, cls);
        if (this.#probeValidates(c)) {
          if (s.healthy) {
            s.healthy = false;
            s.unhealthyReason = `auth (HTTP ${info.status ?? 401})`;
            this.#log.warn("key refused by the upstream (401/403): out until a probe succeeds", {
              ...fields(c, s),
              reason: s.unhealthyReason,
              status: info.status,
            });
          }
        } else {
          this.#rest(c, s, "auth", now + this.#cfg.authRestMs, now, info.status);
        }
        break;
      case "rate_limited":
      case "quota": {
        this.#failed(s, cls);
        if (info.rest === false) break;
        // (the budgets keep a quota the proxy's requests exhaust: this rest is for other callers)
        const restMs = cls === "quota"
          ? this.#cfg.quotaRestMs || QUOTA_REST_MS
          : this.#cfg.rateLimitRestMs;
        this.#rest(c, s, cls, info.retryAt ?? now + restMs, now, info.status);
        break;
      }
      default:
        if (isFailure(cls)) this.#serverFailure(c, s, cls, now, trial || expired);
    }
    // a trial that ended without a verdict on the server (client left, 429, 401) frees the slot
    if (trial && !isFailure(cls)) s.trialInFlight = false;
    if (returnsAt(s, now) !== before) this.epoch++;
    this.#store.changed(c.id);
  }

  /**
   * Forgets a probe's verdict on a key whose upstream no longer has a health check (the config
   * changed, or a saved state came from one that had): no probe would ever bring it back.
   * @param c the key
   */
  unprobed(c: Candidate): void {
    const s = this.#store.record(c.id);
    if (s.healthy) return;
    s.healthy = true;
    s.unhealthyReason = "";
    this.epoch++;
    this.#log.info("candidate healthy again: its upstream has no health check", fields(c, s));
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
    const before = returnsAt(s, now);
    if (r.outcome === "healthy") {
      if (!s.healthy) {
        s.healthy = true;
        s.unhealthyReason = "";
        this.#log.info("candidate healthy again (probe)", fields(c, s));
      }
      if (s.ejectedUntil > now && !s.trialInFlight) {
        // the probe path may work while real requests fail: end the cool-down early, and let
        // one trial request decide (a failed trial still ejects for longer)
        s.ejectedUntil = now;
        this.#log.info(
          "candidate half-open: probe succeeded, next request is a trial",
          fields(c, s),
        );
      }
      // only a probe that checks the key may end an auth rest: ModelScope's /v1/models says
      // 200 to any token, and would bring a refused key back every interval
      if (s.restReason === "auth" && s.restUntil > now && this.#probeValidates(c)) {
        s.restUntil = 0;
        s.restReason = "";
        this.#log.info("key restored: a probe that validates keys succeeded", fields(c, s));
      }
    } else if (r.outcome === "rate_limited") {
      this.#rest(c, s, "rate_limited", r.retryAt ?? now + this.#cfg.rateLimitRestMs, now, r.status);
    } else {
      const was = s.healthy;
      s.healthy = false;
      s.unhealthyReason = r.outcome === "auth"
        ? `auth (HTTP ${r.status ?? 401})`
        : r.status !== undefined
        ? `probe: HTTP ${r.status}`
        : `probe: ${r.outcome}`;
      if (was) {
        this.#log.warn("candidate unhealthy (probe)", {
          ...fields(c, s),
          reason: s.unhealthyReason,
          detail: r.detail,
        });
      }
    }
    if (returnsAt(s, now) !== before) this.epoch++;
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

  /** Whether the candidate's probes run and really check its key (a 200 proves the key). */
  #probeValidates(c: Candidate): boolean {
    return this.#probes && c.upstream.config.healthCheck?.validatesKey === true;
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
    if (reason === "" || until <= now) return;
    const resting = s.restUntil > now && s.restReason === reason;
    if (until > s.restUntil) s.restUntil = until;
    s.restReason = reason;
    if (!resting) {
      const level = reason === "rate_limited" ? "info" : "warn";
      this.#log[level](`key resting: ${REST_WHY[reason]}`, {
        ...fields(c, s),
        reason,
        until: new Date(s.restUntil).toISOString(),
        status,
      });
    }
  }

  #serverFailure(
    c: Candidate,
    s: CandidateState,
    cls: AttemptClass,
    now: number,
    trial: boolean,
  ): void {
    this.#failed(s, cls);
    s.consecutiveFailures++;
    // the proxy logs every failed attempt; only the state change is logged here
    if (!trial && (s.ejectedUntil > 0 || s.consecutiveFailures < c.upstream.config.maxFailures)) {
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
