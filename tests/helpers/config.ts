/**
 * @module
 * Helpers for config tests: parse a config text as if it were `/etc/llm-balance/config.yaml`,
 * and read the issues or the message of the {@linkcode ConfigError} a text raises.
 */

import { ConfigError, type ConfigIssue } from "../../src/config/errors.ts";
import { parseConfigText } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";

/** Where the parsed texts are said to be (relative paths in them resolve against its folder). */
export const CONFIG_PATH = "/etc/llm-balance/config.yaml";

/** Parses config texts with one environment. */
export interface ConfigParser {
  /** The config of a text (throws its {@linkcode ConfigError}). */
  parse(text: string): Config;
  /** The issues of the ConfigError a text raises; throws when it raises none. */
  issuesOf(text: string): ConfigIssue[];
  /** The message of the ConfigError a text raises; throws when it raises none. */
  errorOf(text: string): string;
}

/**
 * The ConfigError a function throws.
 * @param fn what should throw it
 * @returns the error
 * @throws {Error} when `fn` throws nothing (or something else, which is thrown again)
 */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

/**
 * Makes a parser of config texts at {@linkcode CONFIG_PATH}.
 * @param env the environment `${VAR}` references read
 * @returns parse, issuesOf and errorOf
 */
export function configParser(env: (name: string) => string | undefined): ConfigParser {
  const parse = (text: string) => parseConfigText(text, CONFIG_PATH, { env });
  return {
    parse,
    issuesOf: (text) => configError(() => parse(text)).issues,
    errorOf: (text) => configError(() => parse(text)).message,
  };
}
