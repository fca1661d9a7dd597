/**
 * @module
 * The `http` probe: `GET <base_url><health_path>` with the key. Only a 2xx answer is healthy;
 * 401/403 mean the key is refused; 429 rests the key until its reset time; any other answer
 * (5xx, a 404 from a wrong health path, ...), a failed connection and a timeout are unhealthy.
 * A failed connection says why in plain words (refused, no such host, TLS, closed).
 */

import { retryAt } from "../../src/health/retry_after.ts";
import type { ProbePlugin, ProbeResult, ProbeTarget } from "../../src/plugin.ts";

/** The innermost message of an error and its causes (fetch hides the reason in `cause`). */
function innermost(err: unknown): string {
  let message = err instanceof Error ? err.message : String(err);
  let cause = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; cause !== undefined && cause !== null && depth < 8; depth++) {
    if (cause instanceof Error && cause.message !== "") message = cause.message;
    else if (typeof cause === "string" && cause !== "") message = cause;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return message;
}

/**
 * Says in plain words why a connection failed, without the URL: fetch's
 * `error sending request for url (...): client error (Connect): tcp connect error: Connection
 * refused (os error 111)` becomes `cannot connect: Connection refused (os error 111)`.
 * @param err what fetch threw
 * @returns a short reason
 */
export function connectionFailure(err: unknown): string {
  let text = innermost(err).trim();
  // the request (and its URL) is not the reason: keep what follows it
  text = text.replace(/^error sending request\b.*?\): (?=\S)/s, "");
  let phase = "";
  text = text.replace(/^client error \((\w+)\): /, (_, p: string) => {
    phase = p;
    return "";
  });
  text = text.replace(/^Fetch failed: /i, "");
  const rules: [RegExp, string][] = [
    [/^tcp connect error: /i, "cannot connect: "],
    [/^dns error: (failed to lookup address information: )?/i, "cannot resolve the host name: "],
    [/^(invalid peer certificate|received fatal alert|tls handshake eof)/i, "TLS failed: $1"],
  ];
  for (const [pattern, replacement] of rules) {
    if (pattern.test(text)) return text.replace(pattern, replacement);
  }
  if (phase === "Connect") return `cannot connect: ${text}`;
  return text === "" || text === "fetch failed" ? "connection failed" : text;
}

/** The detail of an answer that is neither 2xx nor 401/403/429. */
function unexpected(status: number): string {
  if (status >= 500) return `HTTP ${status}: server error`;
  if (status === 404) return "HTTP 404: nothing at the health path (health_check.path)";
  return `HTTP ${status}: not a success`;
}

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
      detail: timedOut ? "probe timed out" : connectionFailure(err),
    };
  }
  await res.body?.cancel().catch(() => {});
  const latencyMs = performance.now() - started;
  const status = res.status;
  if (status >= 200 && status < 300) return { outcome: "healthy", status, latencyMs };
  if (status === 401 || status === 403) {
    return { outcome: "auth", status, latencyMs, detail: `HTTP ${status}: key refused` };
  }
  if (status === 429) {
    const at = retryAt(res.headers, t.now());
    return at === undefined
      ? { outcome: "rate_limited", status, latencyMs }
      : { outcome: "rate_limited", status, latencyMs, retryAt: at };
  }
  return { outcome: "server_error", status, latencyMs, detail: unexpected(status) };
}

/** Probes a key with an authenticated GET of the upstream's health path. */
export default {
  kind: "probe",
  name: "http",
  description: "GET the upstream's health path with the key; anything but a 2xx is unhealthy",
  probe,
} satisfies ProbePlugin;
