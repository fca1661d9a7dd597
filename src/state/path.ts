/**
 * @module
 * Where a config file's state lives when the config does not say: the platform's place for
 * application state, one file per config file.
 */

import { createHash } from "node:crypto";
import { type PlatformPath, posix, win32 } from "node:path";

/**
 * Where the state of a config file lives by the platform's convention: `$XDG_STATE_HOME` (else
 * `$HOME/.local/state`) on Linux and other Unixes, `$HOME/Library/Application Support` on macOS,
 * `%LOCALAPPDATA%` on Windows, each under `llm-balance/`. One file per config file:
 * `<base name>-<first 8 hex of SHA-256 of its absolute path>.sqlite`, or `default.sqlite`.
 * Pure: reads nothing but its arguments (and the working folder for a relative config path).
 * @param configPath the config file, absolute or relative; undefined when there is none
 * @param env looks up an environment variable
 * @param os the platform (`Deno.build.os`)
 * @returns the state file's absolute path
 * @throws {Error} when the variables that name the folder are unset
 */
export function defaultStatePath(
  configPath: string | undefined,
  env: (name: string) => string | undefined,
  os: typeof Deno.build.os,
): string {
  const path = os === "windows" ? win32 : posix;
  const absolute = (name: string): string | undefined => {
    const value = env(name);
    return value && path.isAbsolute(value) ? value : undefined;
  };
  let base: string | undefined;
  if (os === "windows") {
    const profile = absolute("USERPROFILE");
    base = absolute("LOCALAPPDATA") ??
      (profile === undefined ? undefined : path.join(profile, "AppData", "Local"));
  } else if (os === "darwin") {
    const home = absolute("HOME");
    base = home === undefined ? undefined : path.join(home, "Library", "Application Support");
  } else {
    const home = absolute("HOME");
    base = absolute("XDG_STATE_HOME") ??
      (home === undefined ? undefined : path.join(home, ".local", "state"));
  }
  if (base === undefined) {
    const vars = os === "windows"
      ? "LOCALAPPDATA"
      : os === "darwin"
      ? "HOME"
      : "XDG_STATE_HOME or HOME";
    throw new Error(`Cannot find a folder for the state file: set ${vars}`);
  }
  return path.join(base, "llm-balance", stateFileName(configPath, path));
}

function stateFileName(configPath: string | undefined, path: PlatformPath): string {
  if (configPath === undefined) return "default.sqlite";
  const full = path.resolve(configPath);
  const name = path.basename(full, path.extname(full)).replace(/[^A-Za-z0-9_-]/g, "_")
    .slice(0, 64) || "config";
  // Windows paths are case-insensitive: C:\Cfg\a.yaml and c:\cfg\a.yaml are one file
  const key = path === win32 ? full.toLowerCase() : full;
  const hash = createHash("sha256").update(key).digest("hex").slice(0, 8);
  return `${name}-${hash}.sqlite`;
}
