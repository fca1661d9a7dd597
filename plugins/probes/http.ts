/**
 * @module
 * The `http` probe: `GET <base_url><health_path>` with the key. 2xx/3xx, and 4xx other than
 * 401/403/429, count as healthy (the server answered); 401/403 mean the key is refused; 429
 * rests the key until its reset time; 5xx, connection failures and timeouts are unhealthy.
 */

import { retryAt } from "../../src/health/retry_after.ts";
import type { ProbePlugin, ProbeResult, ProbeTarget } from "../../src/plugin.ts";

async function probe(t: ProbeTarget): Promise<ProbeResult> {
  const started = performance.now();
  let res: Response;
  try {
    res = await t.fetch(t.url, { method: "GET", headers: t.headers, signal: t.signal });
  } catch (err) {
    const timedOut = t.signal.aborted;
    return {
      outcome: timedOut ? "timeout" : "network",
      latencyMs: performance.now() - started,
      detail: timedOut ? "probe timed out" : err instanceof Error ? err.message : String(err),
    };
  }
  await res.body?.cancel().catch(() => {});
  const latencyMs = performance.now() - started;
  const status = res.status;
  if (status === 401 || status === 403) return { outcome: "auth", status, latencyMs };
  if (status === 429) {
    const at = retryAt(res.headers, t.now());
    return at === undefined
      ? { outcome: "rate_limited", status, latencyMs }
      : { outcome: "rate_limited", status, latencyMs, retryAt: at };
  }
  if (status >= 500) return { outcome: "server_error", status, latencyMs };
  return { outcome: "healthy", status, latencyMs };
}

/** Probes a key with an authenticated GET of the upstream's health path. */
export default {
  kind: "probe",
  name: "http",
  description: "GET the upstream's health path with the key; 5xx or no answer is unhealthy",
  probe,
} satisfies ProbePlugin;
