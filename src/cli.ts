/**
 * @module
 * The command line: `serve` (default), `check`, `probe`, `version`, each with `--help`.
 * Exit codes: 0 success, 1 runtime failure, 2 usage or config error. Output for machines on
 * stdout (the base URL line, probe JSON), messages for humans on stderr.
 */

import { App } from "./app.ts";
import { ConfigError, loadConfig, resolveConfigPath } from "./config/mod.ts";
import type { Config, LogLevel } from "./config/types.ts";
import { runProbe } from "./health/active.ts";
import { stderrSink } from "./logger.ts";
import { startServer } from "./server.ts";
import denoJson from "../deno.json" with { type: "json" };

/** The version printed by `version`. */
export const VERSION: string = denoJson.version;

/** Parsed command-line flags. */
export interface Flags {
  command: "serve" | "check" | "probe" | "version" | "help";
  config?: string;
  host?: string;
  port?: number;
  json: boolean;
  help: boolean;
}

/** A usage error (exit 2). */
export class UsageError extends Error {}

const HELP: Record<Flags["command"], string> = {
  help: `llm-balance ${VERSION}: one endpoint over many LLM API keys and upstreams

Usage: llm-balance [command] [options]

Commands:
  serve     Start the proxy (default)
  check     Validate a config file and print a summary; contacts nothing
  probe     Send one health probe per key and print the results
  version   Print the version

Run 'llm-balance <command> --help' for a command's options.
Exit codes: 0 success, 1 runtime failure, 2 usage or config error.`,
  serve: `Usage: llm-balance serve [--config FILE] [--host ADDR] [--port N]

Starts the proxy. When it accepts connections it prints its base URL (e.g.
http://127.0.0.1:8080) alone as the first line on stdout; logs go to stderr.
SIGINT/SIGTERM drain in-flight requests and stop; SIGHUP reloads the config.

Options:
  -c, --config FILE  Config file (native YAML/JSON, Seed A config.json or Seed B YAML).
                     Default: $LLM_BALANCE_CONFIG, else ./config.yaml, else ./config.json
  --host ADDR        Bind address (default: server.host, $LLM_BALANCE_HOST, 127.0.0.1)
  --port N           Port; 0 takes a free one (default: server.port, $LLM_BALANCE_PORT, 8080)

Environment: LLM_BALANCE_CONFIG, LLM_BALANCE_HOST, LLM_BALANCE_PORT, LLM_BALANCE_LOG_LEVEL,
LLM_BALANCE_ADMIN_KEY, LLM_BALANCE_CLIENT_KEYS (comma-separated); flags win over the
environment, the environment over the file.`,
  check: `Usage: llm-balance check [--config FILE]

Validates a config file (any format) and prints a summary: pools, strategies and keys
(masked). Contacts nothing. Exit 0 when valid, 2 with every problem (field path and line)
when not.`,
  probe: `Usage: llm-balance probe [--config FILE] [--json]

Sends one health probe per key (GET <base_url><health path>, default /models) and prints a
table of key mask, upstream, result and latency, or JSON with --json.
Exit 0 when every key is healthy, 1 when some are not, 2 on a config error.`,
  version: `Usage: llm-balance version

Prints the version.`,
};

/**
 * Parses command-line arguments.
 * @param args the arguments after the program name
 * @returns the flags
 * @throws {UsageError} on an unknown command or option, or a bad value
 */
export function parseArgs(args: readonly string[]): Flags {
  const flags: Flags = { command: "serve", json: false, help: false };
  let i = 0;
  const first = args[0];
  if (first !== undefined && !first.startsWith("-")) {
    if (!["serve", "check", "probe", "version", "help"].includes(first)) {
      throw new UsageError(`Unknown command "${first}" (serve, check, probe, version)`);
    }
    flags.command = first as Flags["command"];
    i = 1;
  }
  for (; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      if (arg.startsWith("--") && eq > 0) return arg.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new UsageError(`Option ${name} needs a value`);
      return v;
    };
    switch (name) {
      case "-h":
      case "--help":
        flags.help = true;
        break;
      case "-c":
      case "--config":
        flags.config = value();
        break;
      case "--host":
        flags.host = value();
        break;
      case "--port":
        flags.port = parsePort(value(), "--port");
        break;
      case "--json":
        flags.json = true;
        break;
      default:
        throw new UsageError(`Unknown option "${arg}" (see --help)`);
    }
  }
  return flags;
}

function parsePort(v: string, what: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) {
    throw new UsageError(`${what} must be an integer from 0 to 65535, got "${v}"`);
  }
  return n;
}

const LEVELS = ["debug", "info", "warn", "error"];

/**
 * Applies environment variables and flags over a loaded config (flags win).
 * @param config the config from the file
 * @param flags command-line flags
 * @param env reads environment variables
 * @returns the config in force
 * @throws {UsageError} on a bad environment value
 */
export function applyOverrides(
  config: Config,
  flags: Pick<Flags, "host" | "port">,
  env: (name: string) => string | undefined,
): Config {
  const c: Config = { ...config, server: { ...config.server }, log: { ...config.log } };
  const host = flags.host ?? env("LLM_BALANCE_HOST");
  if (host) c.server.host = host;
  const port = flags.port ?? (env("LLM_BALANCE_PORT") ? parsePort(env("LLM_BALANCE_PORT")!, "LLM_BALANCE_PORT") : undefined);
  if (port !== undefined) c.server.port = port;
  const level = env("LLM_BALANCE_LOG_LEVEL");
  if (level) {
    if (!LEVELS.includes(level)) {
      throw new UsageError(`LLM_BALANCE_LOG_LEVEL must be one of ${LEVELS.join(", ")}, got "${level}"`);
    }
    c.log.level = level as LogLevel;
  }
  const admin = env("LLM_BALANCE_ADMIN_KEY");
  if (admin) c.adminKey = admin;
  const clients = env("LLM_BALANCE_CLIENT_KEYS");
  if (clients) {
    const keys = clients.split(/[\s,]+/).filter((k) => k !== "");
    c.clientKeys = keys.map((key, i) => ({ key, name: `env-client-${i + 1}` }));
  }
  return c;
}

/**
 * Whether an address is loopback.
 * @param host a bind address
 */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1" || host === "[::1]";
}

function say(message: string): void {
  stderrSink(message);
}

async function load(flags: Flags): Promise<Config> {
  const env = (n: string) => Deno.env.get(n);
  const path = resolveConfigPath({
    ...(flags.config === undefined ? {} : { flag: flags.config }),
    env,
    exists: (p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    },
  });
  return applyOverrides(await loadConfig(path, { env }), flags, env);
}

/**
 * Runs the command line.
 * @param args the arguments after the program name
 * @returns the exit code (serve returns only when the server stops)
 */
export async function main(args: readonly string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseArgs(args);
  } catch (err) {
    say(`llm-balance: ${(err as Error).message}`);
    return 2;
  }
  if (flags.command === "help" || flags.help) {
    console.log(HELP[flags.help ? flags.command : "help"]);
    return 0;
  }
  if (flags.command === "version") {
    console.log(VERSION);
    return 0;
  }
  let config: Config;
  try {
    config = await load(flags);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      say(err.message);
      return 2;
    }
    throw err;
  }
  if (flags.command === "check") return await check(config);
  if (flags.command === "probe") return await probe(config, flags.json);
  return await serve(config, flags);
}

async function buildApp(config: Config, probes: boolean): Promise<App | undefined> {
  try {
    return await App.create(config, { probes });
  } catch (err) {
    say((err as Error).message);
    return undefined;
  }
}

async function check(config: Config): Promise<number> {
  const app = await buildApp(config, false);
  if (app === undefined) return 2;
  const rt = app.rt;
  const lines = [`${config.source}: valid (${config.format} format)`];
  const pools = [...rt.pools.values(), ...(rt.defaultPool ? [rt.defaultPool] : [])];
  for (const p of pools) {
    lines.push(
      `  pool ${p.model === "*" ? "default (any other model)" : `"${p.model}"`}: ${p.strategyName}, ${p.candidates.length} key(s)`,
    );
  }
  for (const u of rt.upstreams.values()) {
    const masks = [...rt.candidates.values()].filter((c) => c.upstream === u).map((c) => c.mask);
    lines.push(`  upstream ${u.name}: ${u.baseUrl} [${masks.join(", ")}]`);
  }
  lines.push(
    `  client keys: ${config.clientKeys.length}, admin key: ${config.adminKey ? "set" : "not set"}`,
  );
  await app.close();
  console.log(lines.join("\n"));
  return 0;
}

async function probe(config: Config, json: boolean): Promise<number> {
  const app = await buildApp({ ...config, log: { ...config.log, level: "error" } }, false);
  if (app === undefined) return 2;
  const cands = [...app.rt.candidates.values()];
  const results = await Promise.all(cands.map(async (c) => {
    const r = await runProbe(c, {
      registry: app.rt.registry,
      fetch: app.fetch,
      client: app.httpClient,
      logger: app.logger,
    });
    return {
      key: c.mask,
      upstream: c.upstream.name,
      result: r.outcome,
      status: r.status ?? null,
      latency_ms: Math.round(r.latencyMs * 10) / 10,
      detail: r.detail === undefined ? null : app.logger.redact(r.detail),
    };
  }));
  await app.close();
  if (json) console.log(JSON.stringify(results, null, 2));
  else {
    const rows = [["KEY", "UPSTREAM", "RESULT", "STATUS", "LATENCY"]];
    for (const r of results) {
      rows.push([r.key, r.upstream, r.result, String(r.status ?? "-"), `${r.latency_ms} ms`]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd());
  }
  return results.every((r) => r.result === "healthy") ? 0 : 1;
}

async function serve(config: Config, flags: Flags): Promise<number> {
  const host = config.server.host;
  if (
    !isLoopbackHost(host) && config.clientKeys.length === 0 &&
    !config.server.allowUnauthenticatedRemote
  ) {
    say(
      `Refusing to listen on "${host}" without client keys: anyone could spend your upstream keys. ` +
        "Configure auth.client_keys, or set server.allow_unauthenticated_remote: true",
    );
    return 2;
  }
  const app = await buildApp(config, true);
  if (app === undefined) return 2;
  let server;
  try {
    server = await startServer(app, { hostname: host, port: config.server.port });
  } catch (err) {
    say(`Cannot listen on ${host}:${config.server.port}: ${(err as Error).message}`);
    await app.close();
    return 1;
  }
  console.log(server.url);
  app.logger.info("listening", {
    url: server.url,
    config: config.source,
    format: config.format,
    upstreams: app.rt.upstreams.size,
    keys: app.rt.candidates.size,
  });
  const reloader = new Reloader(app, flags);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    reloader.stop();
    const drainMs = app.rt.config.server.drainTimeoutMs;
    app.logger.info("shutting down", { signal, in_flight: server.inFlight(), drain_ms: drainMs });
    await server.shutdown(drainMs);
    await app.close();
    app.logger.info("stopped");
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, () => void stop(s));
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGHUP", () => void reloader.reload("SIGHUP"));
  if (config.server.watchConfig) reloader.watch(config.source);
  await server.finished;
  return 0;
}

/** Reloads the config on SIGHUP or file change; a broken config is logged and kept out. */
class Reloader {
  #app: App;
  #flags: Flags;
  #watcher: Deno.FsWatcher | undefined;
  #busy: Promise<void> = Promise.resolve();

  constructor(app: App, flags: Flags) {
    this.#app = app;
    this.#flags = flags;
  }

  reload(why: string): Promise<void> {
    this.#busy = this.#busy.then(async () => {
      const log = this.#app.logger;
      const old = this.#app.rt.config;
      let next: Config;
      try {
        next = applyOverrides(
          await loadConfig(old.source, { env: (n) => Deno.env.get(n) }),
          this.#flags,
          (n) => Deno.env.get(n),
        );
        await this.#app.reload(next);
      } catch (err) {
        log.error("reload rejected: the old config keeps serving", {
          trigger: why,
          error: log.redact((err as Error).message),
        });
        return;
      }
      if (next.server.host !== old.server.host || next.server.port !== old.server.port) {
        log.warn("server.host/port changes need a restart; still listening on the old address");
      }
      log.info("config reloaded", { trigger: why, upstreams: this.#app.rt.upstreams.size });
    });
    return this.#busy;
  }

  watch(path: string): void {
    try {
      this.#watcher = Deno.watchFs(path);
    } catch (err) {
      this.#app.logger.warn("cannot watch the config file", { error: (err as Error).message });
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    (async () => {
      for await (const ev of this.#watcher!) {
        if (ev.kind !== "modify" && ev.kind !== "create") continue;
        clearTimeout(timer);
        timer = setTimeout(() => void this.reload("file change"), 200);
      }
    })().catch(() => {});
  }

  stop(): void {
    this.#watcher?.close();
  }
}
