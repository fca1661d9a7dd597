/**
 * @module
 * Active health checks: each key of an upstream with `health_check` is probed on its own
 * timer (interval with jitter) by its probe plugin, never more than one probe at a time per
 * key; results go to the health board. Stops cleanly with the server.
 */

import type { Logger } from "../logger.ts";
import type { Candidate, ProbeResult } from "../plugin.ts";
import type { Registry } from "../registry.ts";
import { applyAuth, configuredHeaders } from "../proxy/headers.ts";
import type { HealthBoard } from "./board.ts";

/** Options of {@linkcode ActiveHealth}. */
export interface ActiveHealthOptions {
  /** Every distinct candidate; those whose upstream has no health check are ignored. */
  candidates: readonly Candidate[];
  registry: Registry;
  board: HealthBoard;
  logger: Logger;
  fetch: typeof fetch;
  /** HTTP client for probe requests. @default undefined (fetch's own) */
  client?: Deno.HttpClient | undefined;
  /** @default Math.random */
  random?: () => number;
  /** Clock given to probe plugins (for reset times). @default the board's clock */
  now?: () => number;
}

/** What {@linkcode runProbe} needs. */
export type RunProbeOptions =
  & Pick<ActiveHealthOptions, "registry" | "fetch" | "client" | "logger">
  & {
    /** @default Date.now */
    now?: (() => number) | undefined;
  };

/**
 * Builds the probe URL and headers of a candidate.
 * @param c the candidate
 * @returns the URL (base URL + health path) and the headers carrying its key
 */
export function probeRequest(c: Candidate): { url: string; headers: Headers } {
  const u = c.upstream.config;
  const headers = configuredHeaders(u.headers, u.forceHeaders);
  if (c.key !== undefined) applyAuth(headers, u.auth, c.key.reveal());
  const path = u.healthCheck?.path ?? (u.pathMode === "full" ? "/v1/models" : "/models");
  return { url: u.baseUrl + path, headers };
}

/** Runs the probes of a set of candidates. */
export class ActiveHealth {
  #o: ActiveHealthOptions;
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #running = new Map<string, Promise<ProbeResult>>();
  #stop = new AbortController();
  #stopped = false;

  /** @param options candidates, plugins, board, logger and fetch */
  constructor(options: ActiveHealthOptions) {
    this.#o = options;
  }

  /** Starts every candidate's timer; the first probe of each runs within half a second. */
  start(): void {
    const random = this.#o.random ?? Math.random;
    for (const c of this.#o.candidates) {
      if (c.upstream.config.healthCheck === undefined) continue;
      this.#schedule(c, Math.floor(random() * 500));
    }
  }

  /**
   * Stops every timer and aborts probes in flight; their results are dropped.
   * @returns resolves once the probes in flight have settled (nothing of them is left running)
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stop.abort();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#running.values()]);
  }

  /**
   * Probes one candidate now and applies the result.
   * @param c the candidate
   * @returns the result, or undefined when a probe of that key is already running or probes
   *   were stopped
   */
  async probeNow(c: Candidate): Promise<ProbeResult | undefined> {
    if (this.#stopped || this.#running.has(c.id)) return undefined;
    const running = runProbe(
      c,
      { ...this.#o, now: this.#o.now ?? this.#o.board.now },
      this.#stop.signal,
    );
    this.#running.set(c.id, running);
    try {
      const result = await running;
      if (this.#stopped) return undefined;
      this.#o.board.probed(c, result);
      return result;
    } finally {
      this.#running.delete(c.id);
    }
  }

  #schedule(c: Candidate, delay: number): void {
    if (this.#stopped) return;
    const t = setTimeout(async () => {
      this.#timers.delete(c.id);
      await this.probeNow(c);
      const hc = c.upstream.config.healthCheck;
      if (hc === undefined) return;
      const random = this.#o.random ?? Math.random;
      this.#schedule(c, Math.round(hc.intervalMs * (0.9 + 0.2 * random())));
    }, delay);
    this.#timers.set(c.id, t);
  }
}

/**
 * Runs one probe with its plugin and timeout; never throws, and never outlives its timeout
 * (a plugin that ignores its abort signal is left behind, counted as timed out).
 * @param c the candidate
 * @param o plugins, fetch, logger and clock
 * @param stop aborts the probe when the server stops
 * @returns the result
 */
export async function runProbe(
  c: Candidate,
  o: RunProbeOptions,
  stop?: AbortSignal,
): Promise<ProbeResult> {
  const hc = c.upstream.config.healthCheck;
  const plugin = o.registry.probe(hc?.probe ?? "http");
  const started = performance.now();
  if (plugin === undefined) {
    return { outcome: "network", latencyMs: 0, detail: `unknown probe "${hc?.probe}"` };
  }
  const ctl = new AbortController();
  let timedOut = false;
  let giveUp!: () => void;
  const abandoned = new Promise<"abandoned">((resolve) => giveUp = () => resolve("abandoned"));
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort(new DOMException("probe timed out", "TimeoutError"));
    giveUp();
  }, hc?.timeoutMs ?? 5000);
  const onStop = () => {
    ctl.abort(new DOMException("probes stopped", "AbortError"));
    giveUp();
  };
  if (stop?.aborted) onStop();
  else stop?.addEventListener("abort", onStop, { once: true });
  const { url, headers } = probeRequest(c);
  const client = o.client;
  const probeFetch: typeof fetch = client === undefined
    ? o.fetch
    : (input, init) =>
      o.fetch(input, { ...init, client } as RequestInit & { client: Deno.HttpClient });
  const failed = (detail: string): ProbeResult => ({
    outcome: timedOut ? "timeout" : "network",
    latencyMs: performance.now() - started,
    detail,
  });
  try {
    const probing = plugin.probe({
      candidate: c,
      url,
      headers,
      signal: ctl.signal,
      fetch: probeFetch,
      now: o.now ?? Date.now,
    });
    const result = await Promise.race([probing, abandoned]);
    if (result !== "abandoned") return result;
    probing.catch(() => {});
    return failed(timedOut ? "probe timed out" : "probes stopped");
  } catch (err) {
    const detail = o.logger.redact(err instanceof Error ? err.message : String(err));
    if (!ctl.signal.aborted) {
      o.logger.error("probe plugin failed", { probe: plugin.name, key: c.mask, error: detail });
    }
    return failed(detail);
  } finally {
    clearTimeout(timer);
    stop?.removeEventListener("abort", onStop);
  }
}
