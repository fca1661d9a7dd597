/**
 * @module
 * `llm-balance probe`: sends one health probe per key, all at once, with each upstream's probe
 * plugin, and prints a table (or JSON, with each key's stable id too) of key mask, upstream,
 * result and latency. Exit 0 when every key is healthy, 1 when some are not.
 */

import { App } from "../app.ts";
import { builtins } from "../../plugins/mod.ts";
import type { Config } from "../config/types.ts";
import { runProbe } from "../health/active.ts";
import { verifyConfig } from "./check.ts";
import { out, reportFailure, say } from "./_io.ts";

/** One key's probe result, as printed. */
export interface ProbeRow {
  /** The key's mask (or `<upstream>:no-key`). */
  key: string;
  /** The key's stable id (`<upstream>:<hash>`), as `/admin/keys` and the admin URLs take it. */
  id: string;
  upstream: string;
  /** `healthy`, or why not: `server_error`, `auth`, `rate_limited`, `network`, `timeout`. */
  result: string;
  /** HTTP status, when a response came. */
  status: number | null;
  latency_ms: number;
  /** A short description, secrets masked. */
  detail: string | null;
}

/**
 * Probes every key of an application once, concurrently.
 * @param app the application (its runtime's candidates, registry, HTTP client and logger)
 * @param fetchFn what sends the probes: Deno's `fetch`, which the upstream client hands probes
 *   to anyway, called directly so that a failed connection's reason (in the error's `cause`)
 *   reaches the row's detail
 * @default fetchFn globalThis.fetch
 * @returns one row per key, in configuration order
 */
export async function probeAll(
  app: App,
  fetchFn: typeof fetch = globalThis.fetch,
): Promise<ProbeRow[]> {
  const candidates = [...app.rt.candidates.values()];
  return await Promise.all(candidates.map(async (c): Promise<ProbeRow> => {
    const r = await runProbe(c, {
      registry: app.rt.registry,
      fetch: fetchFn,
      client: app.httpClient,
      logger: app.logger,
    });
    return {
      key: c.mask,
      id: c.id,
      upstream: c.upstream.name,
      result: r.outcome,
      status: r.status ?? null,
      latency_ms: Math.round(r.latencyMs * 10) / 10,
      detail: r.detail === undefined ? null : app.logger.redact(r.detail),
    };
  }));
}

/**
 * Renders probe rows as an aligned table with a header line.
 * @param rows the results
 * @returns the table
 */
export function formatProbeTable(rows: readonly ProbeRow[]): string {
  const table = [["KEY", "UPSTREAM", "RESULT", "STATUS", "LATENCY", "DETAIL"]];
  for (const r of rows) {
    table.push([
      r.key,
      r.upstream,
      r.result,
      r.status === null ? "-" : String(r.status),
      `${r.latency_ms} ms`,
      r.detail ?? "",
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd())
    .join("\n");
}

/**
 * Runs `probe` on a loaded config.
 * @param config the loaded config
 * @param json print JSON instead of a table
 * @returns 0 when every key is healthy, 1 when some are not, 2 when the config is unusable
 */
export async function probe(config: Config, json: boolean): Promise<number> {
  let app: App;
  try {
    await verifyConfig(config, { bindHost: "127.0.0.1" });
    app = await App.create({ ...config, log: { ...config.log, level: "error" } }, {
      plugins: builtins,
      probes: false,
    });
  } catch (err) {
    const action = `Cannot start with config "${config.source}"`;
    reportFailure(err, { json, action, source: config.source });
    return 2;
  }
  let rows: ProbeRow[];
  try {
    rows = await probeAll(app);
  } finally {
    await app.close();
  }
  out(json ? JSON.stringify(rows, null, 2) : formatProbeTable(rows));
  const bad = rows.filter((r) => r.result !== "healthy").length;
  if (bad > 0) say(`${bad} of ${rows.length} key(s) not healthy`);
  return bad > 0 ? 1 : 0;
}
