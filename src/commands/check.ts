/**
 * @module
 * `llm-balance check`: validates a config beyond its schema (plugins load, every strategy and
 * probe it names exists, a non-loopback address has client keys) and prints a summary: pools,
 * strategies, upstreams and keys (masked). Contacts nothing. {@linkcode verifyConfig} is also
 * what `serve` and every reload run before a config is used.
 */

import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { App } from "../app.ts";
import { statePath } from "../state/open.ts";
import { redisDisplay } from "../shared/link.ts";
import { ConfigError, type ConfigIssue } from "../config/mod.ts";
import type { Config } from "../config/types.ts";
import { importPlugins, PluginError, Registry } from "../registry.ts";
import { builtins } from "../../plugins/mod.ts";
import { isLoopbackHost, out, reportFailure } from "./_io.ts";
import { unknownOptions } from "../runtime.ts";
import type { StrategyPlugin } from "../plugin.ts";

/** A config that passed {@linkcode verifyConfig}. */
export interface VerifiedConfig {
  config: Config;
  /** Built-ins plus the config's plugins. */
  registry: Registry;
  /** Each plugin module and the `kind:name` of what it registered. */
  plugins: { path: string; names: string[] }[];
}

/** Options of {@linkcode verifyConfig}. */
export interface VerifyOptions {
  /** The address the server listens on. @default config.server.host */
  bindHost?: string;
  /** Reads the config file (to give each problem its line). @default Deno.readTextFile */
  readTextFile?: (path: string) => Promise<string>;
}

type Segment = string | number;

/**
 * Checks what the config loader cannot: that the plugin modules load and register, that every
 * strategy and probe named exists, and that a non-loopback address has client keys.
 * @param config a loaded config
 * @param options the address actually listened on, and how to read the file
 * @returns the config with its registry
 * @throws {ConfigError} listing every problem with its field path and line
 */
export async function verifyConfig(
  config: Config,
  options: VerifyOptions = {},
): Promise<VerifiedConfig> {
  const issues: { path: Segment[][]; message: string }[] = [];
  const registry = new Registry();
  registry.register(...builtins);
  const plugins: VerifiedConfig["plugins"] = [];
  for (const [i, path] of config.plugins.entries()) {
    try {
      const found = await importPlugins(path);
      registry.register(...found);
      const names = found.map((p) => {
        const { kind, name } = p as { kind: string; name: string };
        return `${kind}:${name}`;
      });
      plugins.push({ path, names });
    } catch (err) {
      const detail = err instanceof PluginError ? err.detail : String(err);
      issues.push({ path: [["plugins", i]], message: `cannot load plugin "${path}": ${detail}` });
    }
  }
  for (const pool of config.pools) {
    const plugin = registry.strategy(pool.strategy);
    if (plugin !== undefined) {
      const problem = strategyOptionsProblem(plugin, pool.strategyOptions);
      if (problem !== undefined) {
        const where = pool.model === "*" ? "default" : pool.model;
        issues.push({ path: [["pools", where, "strategy_options"]], message: problem });
      }
      continue;
    }
    const paths: Segment[][] = config.format === "seed-b"
      ? [["models", pool.model, "load_balance_strategy"]]
      : pool.model === "*"
      ? [["pools", "default", "strategy"], ["pools", "*", "strategy"]]
      : [["pools", pool.model, "strategy"]];
    issues.push({
      path: paths,
      message: `unknown strategy "${pool.strategy}" (known: ${
        registry.names("strategy").join(", ")
      })`,
    });
  }
  for (const u of config.upstreams) {
    const probe = u.healthCheck?.probe;
    if (probe === undefined || registry.probe(probe) !== undefined) continue;
    issues.push({
      path: [["upstreams", u.name, "health_check", "probe"]],
      message: `unknown probe "${probe}" (known: ${registry.names("probe").join(", ")})`,
    });
  }
  const host = options.bindHost ?? config.server.host;
  if (
    !isLoopbackHost(host) && config.clientKeys.length === 0 &&
    !config.server.allowUnauthenticatedRemote
  ) {
    issues.push({
      path: [["server", "host"]],
      message: `listening on "${host}" needs client keys (auth.client_keys), or ` +
        "server.allow_unauthenticated_remote: true; without them anyone could spend your keys",
    });
  }
  if (issues.length > 0) {
    const read = options.readTextFile ?? ((p: string) => Deno.readTextFile(p));
    const text = await read(config.source).catch(() => undefined);
    throw new ConfigError(config.source, issues.map((issue) => locateIssue(issue, text)));
  }
  return { config, registry, plugins };
}

/**
 * What is wrong with a pool's `strategy_options`: an option its strategy does not take, or what
 * the strategy says when built with them (over no keys).
 * @param plugin the pool's strategy
 * @param settings the pool's options, if any
 * @returns the problem, or undefined
 */
function strategyOptionsProblem(
  plugin: StrategyPlugin,
  settings: Readonly<Record<string, unknown>> | undefined,
): string | undefined {
  if (settings === undefined || Object.keys(settings).length === 0) return undefined;
  const unknown = unknownOptions(plugin, settings);
  if (unknown !== undefined) return unknown;
  try {
    plugin.create({
      candidates: [],
      random: Math.random,
      now: Date.now,
      budgetLeft: () => 1,
      settings,
    });
    return undefined;
  } catch (err) {
    return `strategy "${plugin.name}" refuses its options: ${
      err instanceof Error ? err.message : String(err)
    }`;
  }
}

/**
 * Finds strategy names no built-in plugin provides, straight from the file's text: used when the
 * schema already failed, so that one run reports these problems too. Skipped when the file
 * loads plugins (they may provide the names).
 * @param text the config file's content
 * @returns one issue per unknown strategy, with its line
 */
export function unknownStrategies(text: string): ConfigIssue[] {
  let tree: unknown;
  try {
    tree = parseDocument(text).toJS();
  } catch {
    return [];
  }
  if (typeof tree !== "object" || tree === null) return [];
  const root = tree as Record<string, unknown>;
  if (root.plugins !== undefined && root.plugins !== null) return [];
  const known = new Registry();
  known.register(...builtins);
  const names = known.names("strategy");
  const found: { path: Segment[][]; message: string }[] = [];
  const seedB = root.models !== undefined && root.upstreams === undefined;
  const section = (seedB ? root.models : root.pools) as Record<string, unknown> | undefined;
  if (typeof section !== "object" || section === null) return [];
  for (const [name, value] of Object.entries(section)) {
    if (typeof value !== "object" || value === null) continue;
    const field = seedB ? "load_balance_strategy" : "strategy";
    const strategy = (value as Record<string, unknown>)[field];
    if (typeof strategy !== "string" || known.strategy(strategy) !== undefined) continue;
    found.push({
      path: [[seedB ? "models" : "pools", name, field]],
      message: `unknown strategy "${strategy}" (known: ${names.join(", ")})`,
    });
  }
  return found.map((issue) => locateIssue(issue, text));
}

/**
 * Adds the unknown-strategy problems of the file to a schema error, so one run shows them all.
 * @param err the loader's error
 * @returns the same error, or a new one with the extra problems sorted in by line
 */
export async function withUnknownStrategies(err: ConfigError): Promise<ConfigError> {
  const text = await Deno.readTextFile(err.source).catch(() => undefined);
  if (text === undefined) return err;
  const seen = new Set(err.issues.map((i) => i.path));
  const extra = unknownStrategies(text).filter((i) => !seen.has(i.path));
  if (extra.length === 0) return err;
  const all = [...err.issues, ...extra].sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  return new ConfigError(err.source, all);
}

function locateIssue(issue: { path: Segment[][]; message: string }, text: string | undefined) {
  const lines = issue.path.map((p) => ({
    p,
    line: text === undefined ? undefined : lineOf(text, p),
  }));
  const found = lines.find((l) => l.line !== undefined) ?? lines[0]!;
  const located: ConfigIssue = { path: formatSegments(found.p), message: issue.message };
  if (found.line !== undefined) located.line = found.line;
  return located;
}

function formatSegments(path: readonly Segment[]): string {
  return path.map((s, i) => typeof s === "number" ? `[${s}]` : i === 0 ? s : `.${s}`).join("");
}

/**
 * Finds the line of a field in a YAML or JSON file.
 * @param text the file's content
 * @param path mapping keys and list indexes, outermost first
 * @returns the 1-based line of the field's key (of the item, for a list index), or undefined
 *   when the path is not in the file
 */
export function lineOf(text: string, path: readonly Segment[]): number | undefined {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter });
  let node: unknown = doc.contents;
  let at: number | undefined;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) =>
        String(isScalar(p.key) ? p.key.value : p.key) === String(segment)
      );
      if (pair === undefined) return undefined;
      at = (pair.key as { range?: [number, number, number] } | null)?.range?.[0];
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      node = node.items[segment];
      at = (node as { range?: [number, number, number] } | undefined)?.range?.[0];
    } else return undefined;
    if (at === undefined) return undefined;
  }
  return at === undefined ? undefined : counter.linePos(at).line;
}

/** What `check` prints. */
export interface ConfigSummary {
  /** Always true (an invalid config prints an `ErrorReport`, whose `valid` is false). */
  valid: true;
  source: string;
  format: Config["format"];
  /** Where `serve` would listen, e.g. `http://127.0.0.1:8080`. */
  listen: string;
  pools: {
    model: string;
    strategy: string;
    keys: string[];
    /** How requests are pinned (`by prompt_cache_key, user; ttl 600 s; max_load 1.25`), or null. */
    affinity: string | null;
    /** Seconds of slow start (0: off). */
    slow_start: number;
  }[];
  upstreams: { name: string; url: string; keys: string[]; health_check: string | null }[];
  plugins: VerifiedConfig["plugins"];
  client_keys: number;
  admin_key: boolean;
  /** Where `serve` keeps key state (rests, budgets spent, disables); "memory" keeps nothing. */
  state: string;
}

/**
 * Summarizes a config as built: pools, strategies, upstreams and masked keys.
 * @param app an application built from the config
 * @param verified the verified config (for the plugin list)
 */
export function summarize(app: App, verified: VerifiedConfig): ConfigSummary {
  const { config } = verified;
  const rt = app.rt;
  const pools = [...rt.pools.values(), ...(rt.defaultPool ? [rt.defaultPool] : [])];
  const host = config.server.host.includes(":") ? `[${config.server.host}]` : config.server.host;
  return {
    valid: true,
    source: config.source,
    format: config.format,
    listen: `http://${host}:${config.server.port}`,
    pools: pools.map((p) => ({
      model: p.model,
      strategy: p.strategyName,
      keys: p.candidates.map((c) => c.mask),
      affinity: p.affinity === undefined
        ? null
        : `by ${p.affinityBy.join(", ")}; ttl ${
          p.affinity.ttlMs / 1000
        } s; max_load ${p.affinity.maxLoad}`,
      slow_start: p.slowStart === undefined ? 0 : p.slowStart.periodMs / 1000,
    })),
    upstreams: [...rt.upstreams.values()].map((u) => {
      const hc = u.config.healthCheck;
      return {
        name: u.name,
        url: u.baseUrl,
        keys: [...rt.candidates.values()].filter((c) => c.upstream === u).map((c) => c.mask),
        health_check: hc === undefined
          ? null
          : `${hc.probe} ${hc.path} every ${hc.intervalMs / 1000}s` +
            (hc.validatesKey === true ? ", validates keys" : ""),
      };
    }),
    plugins: verified.plugins,
    client_keys: config.clientKeys.length,
    admin_key: config.adminKey !== undefined,
    state: stateOf(config),
  };
}

/** The state file `serve` would use, or "memory"; a path that cannot be told says why. */
function stateOf(config: Config): string {
  let local: string;
  try {
    local = statePath(config) ?? "memory";
  } catch (err) {
    local = `(unknown: ${err instanceof Error ? err.message : String(err)})`;
  }
  const redis = config.state.redis;
  if (redis === undefined) return local;
  // never the password
  const required = redis.required ? ", required" : "";
  return `${local}, shared through ${
    redisDisplay(redis.url)
  } (prefix "${redis.prefix}"${required})`;
}

/**
 * Renders a summary for people.
 * @param s the summary
 * @returns lines of text
 */
export function formatSummary(s: ConfigSummary): string {
  const lines = [`${s.source}: valid (${s.format} format), would listen on ${s.listen}`];
  for (const p of s.pools) {
    const which = p.model === "*" ? "default pool (every other model)" : `pool "${p.model}"`;
    const extra = [
      p.affinity === null ? "" : `, affinity ${p.affinity}`,
      p.slow_start > 0 ? `, slow start ${p.slow_start} s` : "",
    ].join("");
    lines.push(`  ${which}: ${p.strategy} over ${p.keys.length} key(s)${extra}`);
  }
  for (const u of s.upstreams) {
    const keys = u.keys.length === 0 ? "no key" : u.keys.join(", ");
    lines.push(`  upstream ${u.name}: ${u.url} [${keys}]`);
    lines.push(`    health check: ${u.health_check ?? "off"}`);
  }
  for (const p of s.plugins) lines.push(`  plugin ${p.path}: ${p.names.join(", ")}`);
  lines.push(`  client keys: ${s.client_keys}, admin key: ${s.admin_key ? "set" : "not set"}`);
  lines.push(`  state: ${s.state}`);
  return lines.join("\n");
}

/**
 * Runs `check` on a loaded config: prints the summary (JSON with `json`) on stdout, or every
 * problem on stderr (and, with `json`, as JSON on stdout).
 * @param config the loaded config
 * @param json print JSON instead of text
 * @returns 0 when valid, 2 when not
 */
export async function check(config: Config, json: boolean): Promise<number> {
  let verified: VerifiedConfig;
  let app: App;
  try {
    verified = await verifyConfig(config);
    app = await App.create(config, { plugins: builtins, probes: false });
  } catch (err) {
    const action = `Cannot start with config "${config.source}"`;
    reportFailure(err, { json, action, source: config.source });
    return 2;
  }
  const summary = summarize(app, verified);
  await app.close();
  out(json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
  return 0;
}
