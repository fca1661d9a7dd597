/**
 * @module
 * Which config file to load: `--config`, else `$LLM_BALANCE_CONFIG`, else `./config.yaml`,
 * else `./config.json`.
 */

import type { EnvLookup } from "./env.ts";

/** What `resolveConfigPath` looks at. */
export interface ResolveConfigPathArgs {
  /** The `--config` flag's value, if given. */
  flag?: string;
  /** Reads environment variables (`LLM_BALANCE_CONFIG`). */
  env: EnvLookup;
  /** Whether a file exists. */
  exists: (path: string) => boolean;
}

/**
 * Picks the config file: the `--config` flag, else `$LLM_BALANCE_CONFIG`, else `./config.yaml`
 * if it exists, else `./config.json` if it exists, else `./config.yaml` (so loading then fails
 * with "file not found" rather than silently running without a config). An explicit flag or
 * variable is returned even when the file does not exist.
 *
 * @param args the flag, the environment and a file-existence check
 * @returns the path to load
 */
export function resolveConfigPath(args: ResolveConfigPathArgs): string {
  if (args.flag !== undefined && args.flag !== "") return args.flag;
  const fromEnv = args.env("LLM_BALANCE_CONFIG");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  for (const candidate of ["./config.yaml", "./config.json"]) {
    if (args.exists(candidate)) return candidate;
  }
  return "./config.yaml";
}
