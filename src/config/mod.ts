/**
 * @module
 * Config loading: `loadConfig(path)` reads a native, Seed A or Seed B file and returns the
 * normalized `Config`; every problem becomes one `ConfigError`.
 */

export { loadConfig, parseConfigText } from "./load.ts";
export type { LoadOptions, ParseOptions } from "./load.ts";
export { ConfigError } from "./errors.ts";
export type { ConfigIssue } from "./errors.ts";
export type { EnvLookup } from "./env.ts";
export { resolveConfigPath } from "./resolve.ts";
export type { ResolveConfigPathArgs } from "./resolve.ts";
export type * from "./types.ts";
