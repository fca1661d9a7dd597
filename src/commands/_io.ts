/**
 * @module
 * Where commands write: output for machines (the URL line, summaries, tables, JSON) goes to
 * stdout, messages for humans to stderr. Both writes are synchronous, so nothing is lost when
 * the process exits right after.
 */

import { ConfigError } from "../config/errors.ts";
import { stderrSink } from "../logger.ts";

const encoder = new TextEncoder();

/**
 * Writes a line to stdout.
 * @param text the line (a newline is added)
 */
export function out(text: string): void {
  const bytes = encoder.encode(text + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/**
 * Writes a message for humans to stderr.
 * @param text the message (a newline is added)
 */
export function say(text: string): void {
  stderrSink(text);
}

/**
 * Whether an address is a loopback one (reachable from this machine only).
 * @param host a bind address
 */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1" || host === "[::1]";
}

/**
 * Renders an error for people. A `ConfigError` lists each problem with its field path and line:
 * `Cannot load config "x.yaml": upstreams.a.weight (line 5): must be >= 0`, one problem per
 * line when there are several.
 * Another error keeps its message, prefixed with `action` unless it already says what failed
 * (starts with "Cannot"), as errors thrown by plugins may not.
 * @param err what was thrown
 * @param action what failed, e.g. `Cannot start with config "x.yaml"`
 * @returns the message
 */
export function describeError(err: unknown, action?: string): string {
  if (!(err instanceof ConfigError)) {
    const message = err instanceof Error ? err.message : String(err);
    return action === undefined || message.startsWith("Cannot ")
      ? message
      : `${action}: ${message}`;
  }
  const head = `Cannot load config "${err.source}"`;
  const each = err.issues.map((i) => {
    const where = i.path === ""
      ? (i.line === undefined ? "" : `line ${i.line}`)
      : i.line === undefined
      ? i.path
      : `${i.path} (line ${i.line})`;
    return where === "" ? i.message : `${where}: ${i.message}`;
  });
  if (each.length === 1) return `${head}: ${each[0]}`;
  return [`${head}: ${each.length} problems`, ...each.map((e) => `  ${e}`)].join("\n");
}
