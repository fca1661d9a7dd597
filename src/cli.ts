/**
 * @module
 * The command line: `serve` (default), `check`, `probe`, `schema`, `status`, `version`, each with
 * `--help`.
 * Exit codes: 0 success, 1 runtime failure, 2 usage or config error. Output for machines on
 * stdout (the base URL line, summaries, probe tables and JSON), messages for humans on stderr.
 * Settings come from the config file; the common ones also from environment variables, and
 * flags win over both.
 */

import { ConfigError, loadConfig, resolveConfigPath } from "./config/mod.ts";
import type { Config, LogLevel } from "./config/types.ts";
import { check, verifyConfig, withUnknownStrategies } from "./commands/check.ts";
import { schema } from "./commands/schema.ts";
import { probe } from "./commands/probe.ts";
import { optionalConfig, status } from "./commands/status.ts";
import { serve } from "./commands/serve.ts";
import { describeError, out, reportFailure, say } from "./commands/_io.ts";
import { type Command, HELP } from "./commands/help.ts";
import denoJson from "../deno.json" with { type: "json" };

export { isLoopbackHost } from "./commands/_io.ts";

/** The version printed by `version`. */
export const VERSION: string = denoJson.version;

export type { Command } from "./commands/help.ts";

/** Parsed command-line flags. */
export interface Flags {
  /** @default "serve" */
  command: Command;
  /** For `help <command>`: the command to describe. */
  topic?: Command;
  /** `--config FILE`. */
  config?: string;
  /** `--host ADDR`. */
  host?: string;
  /** `--port N`. */
  port?: number;
  /** `--log-level LEVEL`. */
  logLevel?: LogLevel;
  /** `--json`. @default false */
  json: boolean;
  /** `--url URL` (status). */
  url?: string;
  /** `--watch` (status). */
  watch?: boolean;
  /** `--interval S` (status): seconds between frames of `--watch`. */
  interval?: number;
  /** `--all` (status). */
  all?: boolean;
  /** `--help` / `-h`. @default false */
  help: boolean;
}

/** A usage error (exit 2). */
export class UsageError extends Error {
  /** Always `"UsageError"`. */
  override name = "UsageError";
}

const COMMANDS: readonly Command[] = [
  "serve",
  "check",
  "probe",
  "schema",
  "status",
  "version",
  "help",
];
const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
/** Every option some command takes (besides `--help`). */
const OPTIONS: readonly string[] = [
  "--config",
  "--host",
  "--port",
  "--log-level",
  "--json",
  "--url",
  "--watch",
  "--interval",
  "--all",
];
/** Which options each command takes (besides `--help`). */
const ALLOWED: Record<Command, readonly string[]> = {
  serve: ["--config", "--host", "--port", "--log-level"],
  check: ["--config", "--host", "--port", "--log-level", "--json"],
  probe: ["--config", "--json"],
  schema: [],
  status: ["--config", "--url", "--json", "--watch", "--interval", "--all"],
  version: [],
  help: [],
};

/**
 * Parses command-line arguments.
 * @param args the arguments after the program name
 * @returns the flags
 * @throws {UsageError} on an unknown command or option, an option the command does not take,
 *   or a bad value
 */
export function parseArgs(args: readonly string[]): Flags {
  const flags: Flags = { command: "serve", json: false, help: false };
  let i = 0;
  const first = args[0];
  const explicit = first !== undefined && !first.startsWith("-");
  if (explicit) {
    if (!COMMANDS.includes(first as Command)) {
      throw new UsageError(`Unknown command "${first}" (${COMMANDS.join(", ")})`);
    }
    flags.command = first as Command;
    i = 1;
    const topic = args[1];
    if (flags.command === "help" && topic !== undefined && !topic.startsWith("-")) {
      if (!COMMANDS.includes(topic as Command)) throw new UsageError(`Unknown command "${topic}"`);
      flags.topic = topic as Command;
      i = 2;
    }
  }
  for (; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf("=");
    const inline = arg.startsWith("--") && eq > 0;
    const name = inline ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (inline) return arg.slice(eq + 1);
      const v = args[++i];
      if (v === undefined || v.startsWith("-") && v.length > 1 && !/^-\d/.test(v)) {
        throw new UsageError(`Option ${name} needs a value`);
      }
      return v;
    };
    const canonical = name === "-c" ? "--config" : name;
    if (name === "-h" || name === "--help") {
      flags.help = true;
      continue;
    }
    if (name === "-V" || name === "--version") {
      flags.command = "version";
      continue;
    }
    if (!OPTIONS.includes(canonical)) {
      throw new UsageError(`Unknown option "${arg}" (see llm-balance ${flags.command} --help)`);
    }
    if (!ALLOWED[flags.command].includes(canonical)) {
      throw new UsageError(`Option ${canonical} does not apply to "${flags.command}"`);
    }
    if (canonical === "--json" || canonical === "--watch" || canonical === "--all") {
      if (inline) throw new UsageError(`Option ${canonical} takes no value`);
      if (canonical === "--json") flags.json = true;
      else if (canonical === "--watch") flags.watch = true;
      else flags.all = true;
    } else if (canonical === "--config") flags.config = value();
    else if (canonical === "--url") flags.url = value();
    else if (canonical === "--interval") flags.interval = parseInterval(value());
    else if (canonical === "--host") flags.host = value();
    else if (canonical === "--port") flags.port = parsePort(value(), "--port");
    else flags.logLevel = parseLevel(value(), "--log-level");
  }
  if (flags.help && !explicit && flags.command === "serve") flags.command = "help";
  return flags;
}

function parsePort(v: string, what: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) {
    throw new UsageError(`${what} must be an integer from 0 to 65535, got "${v}"`);
  }
  return n;
}

function parseInterval(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !(n >= 0.1 && n <= 3600)) {
    throw new UsageError(`--interval must be a number of seconds from 0.1 to 3600, got "${v}"`);
  }
  return n;
}

function parseLevel(v: string, what: string): LogLevel {
  if (!LEVELS.includes(v as LogLevel)) {
    throw new UsageError(`${what} must be one of ${LEVELS.join(", ")}, got "${v}"`);
  }
  return v as LogLevel;
}

/**
 * Applies environment variables, then flags, over a loaded config (flags win over the
 * environment, the environment over the file). Empty variables are ignored. Variables:
 * `LLM_BALANCE_HOST`, `LLM_BALANCE_PORT`, `LLM_BALANCE_LOG_LEVEL`, `LLM_BALANCE_ADMIN_KEY`,
 * `LLM_BALANCE_CLIENT_KEYS` (comma- or space-separated; replaces the file's client keys).
 * @param config the config from the file
 * @param flags command-line flags
 * @param env reads environment variables
 * @returns a new config; the one given is not changed
 * @throws {UsageError} on a bad environment value
 */
export function applyOverrides(
  config: Config,
  flags: Pick<Flags, "host" | "port" | "logLevel">,
  env: (name: string) => string | undefined,
): Config {
  const get = (name: string) => {
    const v = env(name)?.trim();
    return v === "" ? undefined : v;
  };
  const c: Config = { ...config, server: { ...config.server }, log: { ...config.log } };
  const host = flags.host ?? get("LLM_BALANCE_HOST");
  if (host !== undefined) c.server.host = host;
  const envPort = get("LLM_BALANCE_PORT");
  const port = flags.port ??
    (envPort === undefined ? undefined : parsePort(envPort, "LLM_BALANCE_PORT"));
  if (port !== undefined) c.server.port = port;
  const envLevel = get("LLM_BALANCE_LOG_LEVEL");
  const level = flags.logLevel ??
    (envLevel === undefined ? undefined : parseLevel(envLevel, "LLM_BALANCE_LOG_LEVEL"));
  if (level !== undefined) c.log.level = level;
  const admin = get("LLM_BALANCE_ADMIN_KEY");
  if (admin !== undefined) c.adminKey = admin;
  const clients = get("LLM_BALANCE_CLIENT_KEYS");
  if (clients !== undefined) {
    const keys = [...new Set(clients.split(/[\s,]+/).filter((k) => k !== ""))];
    c.clientKeys = keys.map((key, i) => ({ key, name: `env-client-${i + 1}` }));
  }
  return c;
}

/**
 * Loads the config the flags and environment point at, with overrides applied.
 * @param flags the parsed flags
 * @param env reads environment variables
 * @returns the config in force
 * @throws {ConfigError} when the file is missing or invalid
 * @throws {UsageError} on a bad environment value
 */
export async function loadEffectiveConfig(
  flags: Flags,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<Config> {
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
 * Runs `status`. Its config is optional (it only gives the address and the admin key) unless
 * named by `--config` or `LLM_BALANCE_CONFIG`.
 * @param flags the parsed flags
 * @returns the exit code of `status`, or 2 when a named config cannot be loaded
 */
async function runStatus(flags: Flags): Promise<number> {
  const named = flags.config !== undefined || (Deno.env.get("LLM_BALANCE_CONFIG") ?? "") !== "";
  let config: Config | undefined;
  try {
    config = await optionalConfig(() => loadEffectiveConfig(flags), named);
  } catch (err) {
    reportFailure(err, { json: false, source: flags.config });
    return 2;
  }
  return await status({
    config,
    url: flags.url,
    json: flags.json,
    watch: flags.watch,
    intervalS: flags.interval,
    all: flags.all,
  });
}

/**
 * Runs the command line.
 * @param args the arguments after the program name
 * @returns the exit code (`serve` returns only when the server has stopped)
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
    const topic = flags.command === "help" ? flags.topic ?? "help" : flags.command;
    out(HELP[topic](VERSION));
    return 0;
  }
  if (flags.command === "version") {
    out(VERSION);
    return 0;
  }
  if (flags.command === "schema") return schema();
  try {
    if (flags.command === "status") return await runStatus(flags);
    let config: Config;
    try {
      config = await loadEffectiveConfig(flags);
    } catch (err) {
      // `check --json` and `probe --json` print the problems as JSON on stdout too
      const json = flags.json && (flags.command === "check" || flags.command === "probe");
      if (err instanceof ConfigError) {
        // a schema error stops loading: add the other problems the file has, all in one run
        reportFailure(await withUnknownStrategies(err), { json });
        return 2;
      }
      if (err instanceof UsageError) {
        reportFailure(err, { json, source: flags.config });
        return 2;
      }
      throw err;
    }
    if (flags.command === "check") return await check(config, flags.json);
    if (flags.command === "probe") return await probe(config, flags.json);
    try {
      await verifyConfig(config);
    } catch (err) {
      say(describeError(err));
      return 2;
    }
    const bindHost = config.server.host;
    return await serve(config, {
      reload: async () => {
        const next = await loadEffectiveConfig({ ...flags, config: config.source });
        await verifyConfig(next, { bindHost });
        return next;
      },
    });
  } catch (err) {
    say(`llm-balance: unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
