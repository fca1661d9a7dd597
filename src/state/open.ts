/**
 * @module
 * Opens the state store a configuration asks for: nothing kept (`state: memory`), or a local
 * database file, at `state.path` or the platform's place for application state, one file per
 * config file.
 */

import { isAbsolute, resolve } from "node:path";
import type { Config } from "../config/types.ts";
import type { Logger } from "../logger.ts";
import { MemoryStateStore, type StateStore } from "../state_store.ts";
import { defaultStatePath } from "./path.ts";
import { SqliteStateStore } from "./sqlite_store.ts";

/**
 * Where a configuration keeps its state.
 * @param config the configuration (its `source` names the config file)
 * @param env reads the environment @default Deno.env.get
 * @returns the database file's path, or undefined for `state: memory`
 * @throws {Error} when no folder for application state can be found (no HOME)
 */
export function statePath(
  config: Config,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  if (config.state.kind === "memory") return undefined;
  if (config.state.path !== undefined) return config.state.path;
  const source = config.source;
  const file = source === "" || source.startsWith("<") ? undefined : source;
  return defaultStatePath(
    file === undefined || isAbsolute(file) ? file : resolve(file),
    env,
    Deno.build.os,
  );
}

/**
 * Opens the store a configuration asks for.
 * @param config the configuration
 * @param logger where a state file set aside or a failed save is reported
 * @returns the store and its path (undefined for memory)
 * @throws {Error} naming the path when the file cannot be created or opened
 */
export function openStateStore(
  config: Config,
  logger?: Logger,
): { store: StateStore; path: string | undefined } {
  const path = statePath(config);
  if (path === undefined) return { store: new MemoryStateStore(), path };
  return { store: SqliteStateStore.open(path, logger === undefined ? {} : { logger }), path };
}
