/**
 * @module
 * Active health checks: each key of an upstream with `health_check` is probed on its own
 * timer (interval with jitter) by its probe plugin, never more than one probe at a time per
 * key; results go to the health board. Stops cleanly with the server.
 */

import type { Logger } from "../logger.ts";
import type { Candidate, ProbeResult } from "../plugin.ts";
import type { Registry } from "../registry.ts";
import { applyAuth } from "../proxy/headers.ts";
import type { HealthBoard } from "./board.ts";

/** Options of {@linkcode ActiveHealth}. */
export interface ActiveHealthOptions {
  /** Every distinct candidate; those whose upstream has no health check are ignored. */
  candidates: readonly Candidate[];
  registry: Registry;
  board: HealthBoard;
  logger: Logger;
  fetch: typeof fetch;
  client?: Deno.HttpClient | undefined;
  /** @default Math.random */
  random?: () => number;
}

/**
 * Builds the probe URL and headers of a candidate.
 * @param c the candidate
 * @returns the URL (base URL + health path) and the headers carrying its key
 */
export function probeRequest(c: Candidate): { url: string; headers: Headers } {
  const u = c.upstream.config;
  const headers = new Headers(u.headers);
  if (c.key !== undefined) applyAuth(headers, u.auth, c.key.reveal());
  return { url: u.baseUrl + (u.healthCheck?.path ?? "/models"), headers };
}

/** Runs the probes of a set of candidates. */
export class ActiveHealth {
  #o: ActiveHealthOptions;
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #running = new Set<string>();
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

  /** Stops every timer and aborts probes in flight. */
  stop(): void {
    this.#stopped = true;
    this.#stop.abort();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  /**
   * Probes one candidate now and applies the result.
   * @param c the candidate
   * @returns the result, or undefined when a probe of that key is already running
   */
  async probeNow(c: Candidate): Promise<ProbeResult | undefined> {
    if (this.#running.has(c.id)) return undefined;
    this.#running.add(c.id);
    try {
      const result = await runProbe(c, this.#o, this.#stop.signal);
      if (!this.#stopped) this.#o.board.probed(c, result);
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
 * Runs one probe with its plugin and timeout; never throws.
 * @param c the candidate
 * @param o plugins, fetch and logger
 * @param stop aborts the probe when the server stops
 * @returns the result
 */
export async function runProbe(
  c: Candidate,
  o: Pick<ActiveHealthOptions, "registry" | "fetch" | "client" | "logger">,
  stop?: AbortSignal,
): Promise<ProbeResult> {
  const hc = c.upstream.config.healthCheck;
  const plugin = o.registry.probe(hc?.probe ?? "http");
  const started = performance.now();
  if (plugin === undefined) {
    return { outcome: "network", latencyMs: 0, detail: `unknown probe "${hc?.probe}"` };
  }
  const timeout = AbortSignal.timeout(hc?.timeoutMs ?? 5000);
  const signal = stop ? AbortSignal.any([timeout, stop]) : timeout;
  const { url, headers } = probeRequest(c);
  const client = o.client;
  const probeFetch: typeof fetch = client === undefined
    ? o.fetch
    : (input, init) => o.fetch(input, { ...init, client } as RequestInit & { client: Deno.HttpClient });
  try {
    return await plugin.probe({
      candidate: c,
      url,
      headers,
      signal,
      fetch: probeFetch,
      now: Date.now,
    });
  } catch (err) {
    const detail = o.logger.redact(err instanceof Error ? err.message : String(err));
    o.logger.error("probe plugin failed", { probe: plugin.name, key: c.mask, error: detail });
    return {
      outcome: timeout.aborted ? "timeout" : "network",
      latencyMs: performance.now() - started,
      detail,
    };
  }
}
